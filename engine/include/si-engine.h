/* si-engine.h: public API of the StageInteractor inference engine.
 *
 * A model (SiModel) is loaded once from a safetensors file and is immutable
 * and reference counted: several contexts, in several threads, may share it.
 * A context (SiContext) owns every activation buffer for one backend and one
 * maximum frame size; running a frame allocates nothing.  A context is used
 * by one thread at a time.  Functions that can fail return FALSE/NULL and set
 * a GError in the SI_ERROR domain; they never abort.  No GStreamer in here.
 */
#ifndef SI_ENGINE_H
#define SI_ENGINE_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Marks the exported symbols (the library is built with
 * -fvisibility=hidden). */
#if defined(__GNUC__) || defined(__clang__)
#define SI_API __attribute__ ((visibility ("default")))
#else
#define SI_API
#endif

typedef struct _SiModel SiModel;
typedef struct _SiContext SiContext;

#define SI_ERROR (si_error_quark ())
SI_API GQuark si_error_quark (void);

typedef enum
{
  SI_ERROR_IO,               /* cannot open / read / map a file */
  SI_ERROR_FORMAT,           /* not a valid safetensors file, bad header */
  SI_ERROR_MISSING_TENSOR,   /* a tensor the network needs is absent */
  SI_ERROR_TENSOR_SHAPE,     /* a tensor has the wrong shape */
  SI_ERROR_TENSOR_DTYPE,     /* a tensor has the wrong dtype */
  SI_ERROR_CONFIG,           /* bad or missing value in __metadata__ */
  SI_ERROR_UNSUPPORTED,      /* valid but not supported (backbone, ...) */
  SI_ERROR_INVALID_ARGUMENT, /* bad argument: zero-sized frame, ... */
  SI_ERROR_NO_MEMORY,        /* allocation failed */
  SI_ERROR_NO_DEVICE,        /* backend not built or no device */
  SI_ERROR_BACKEND,          /* backend failure (CUDA error message) */
} SiErrorCode;

typedef enum
{
  /* cuda when built and a device exists, else cpu; chosen when the
   * context is made (a failure after that is the caller's to handle: the
   * stageinteractor element then goes on with a cpu context) */
  SI_BACKEND_AUTO,
  SI_BACKEND_CPU,
  SI_BACKEND_CUDA,
} SiBackendKind;

typedef enum
{
  SI_PRECISION_FP32,
  SI_PRECISION_FP16,
} SiPrecision;

/* Frame layouts accepted by si_context_run().  Packed formats name their
 * bytes in memory order (GStreamer's convention): SI_FORMAT_BGRX is
 * B, G, R, X.  NV12 and I420 are BT.601 limited-range YUV 4:2:0. */
typedef enum
{
  SI_FORMAT_RGB,
  SI_FORMAT_BGR,
  SI_FORMAT_RGBX,
  SI_FORMAT_BGRX,
  SI_FORMAT_XRGB,
  SI_FORMAT_XBGR,
  SI_FORMAT_RGBA,
  SI_FORMAT_BGRA,
  SI_FORMAT_ARGB,
  SI_FORMAT_ABGR,
  SI_FORMAT_NV12,
  SI_FORMAT_I420,
} SiPixelFormat;

/* One video frame, not owned.  Packed formats use plane 0 only. */
typedef struct
{
  SiPixelFormat format;
  int width;
  int height;
  const uint8_t *planes[3];
  size_t strides[3]; /* bytes per row of each plane */
} SiFrame;

typedef struct
{
  int class_id;
  const char *label; /* owned by the model, valid while it lives */
  float score;       /* sigmoid probability */
  float box[4];      /* x1, y1, x2, y2 in frame pixels, not clipped */
  int query_index;
} SiDetection;

typedef struct
{
  SiBackendKind backend;
  int device_id;
  SiPrecision precision;
  int max_width; /* largest frame this context accepts */
  int max_height;
  int num_threads; /* CPU threads; 0 = all cores */
  /* CPU backend: give each decoder stage's weight pages back to the page
   * cache after the stage (the model file stays mapped; the next frame
   * maps the pages again from memory).  The process then holds one
   * stage's weights at a time: ~340 MiB less resident memory for an R-50
   * model, for ~20 ms more per frame on 2 cores (bench/RESULTS.md).
   * Default TRUE. */
  gboolean release_weights;
  /* Wait for the backend after each part of the frame (preprocess,
   * backbone, neck, decoder, post-processing) so that SiTimings has each
   * part's time.  Without it the parts run back to back (on the CUDA
   * backend, one wait a frame, when the detections come down) and only
   * SiTimings.total is measured.  Default FALSE. */
  gboolean part_timings;
} SiContextOptions;

/* Per-run thresholds.  Detections are the top max_per_img candidates of
 * the official post-processing, then those with score >= threshold, sorted
 * by score descending (ties: lower query*classes+label first), at most
 * max_detections of them (0 = no limit). */
typedef struct
{
  float threshold;
  int max_detections;
} SiRunParams;

#define SI_MAX_STAGES 16

/* Milliseconds spent in each part by the last si_context_run(): with
 * SiContextOptions.part_timings, else only total (the rest 0).
 * The CUDA backend runs a frame size's first frame op by op (a warm-up),
 * records the backbone, the neck and the decoder (query init and every
 * stage) as three CUDA graphs on its second frame, whose figures include
 * the recording, and replays them on later frames.  The backbone and the
 * neck keep their own figures; with a decoder graph the decoder's is one:
 * query_init is the whole decoder's time, num_stages is 0 and stage[] is
 * 0.  Graphs are off while a dump is set
 * (for the decoder) and when SI_CUDA_GRAPHS=0 is in the environment at
 * the context's creation, which gives the per-stage figures back. */
typedef struct
{
  double preprocess;
  double backbone;
  double neck;
  double query_init; /* the whole decoder when num_stages is 0 */
  double stage[SI_MAX_STAGES];
  int num_stages;
  double postprocess;
  double total;
} SiTimings;

/* Called by a context for every named intermediate tensor (the names of
 * the golden io.safetensors, e.g. "input", "backbone.0", "stage3.xyzr").
 * data is float32, row-major, valid during the call only. */
typedef void (*SiDumpFunc) (const char *name, const int64_t *shape, int ndim,
    const float *data, void *user_data);

SI_API void si_context_options_init (SiContextOptions *options);
SI_API void si_run_params_init (SiRunParams *params);

/* Model: load from a safetensors file (mmap'ed). transfer full. */
SI_API SiModel *si_model_load (const char *path, GError **error);
SI_API SiModel *si_model_ref (SiModel *model);
SI_API void si_model_unref (SiModel *model);
/* Sets *model to NULL. */
SI_API void si_model_clear (SiModel **model);

SI_API int si_model_get_num_classes (const SiModel *model);
SI_API const char *si_model_get_class_name (const SiModel *model, int class_id);
/* File base name without extension, e.g. "demo"; owned by the model. */
SI_API const char *si_model_get_name (const SiModel *model);
SI_API int si_model_get_num_queries (const SiModel *model);
SI_API int si_model_get_num_stages (const SiModel *model);

/* Context: all activation memory is allocated here. The context holds a
 * reference on the model. */
SI_API SiContext *si_context_new (
    SiModel *model, const SiContextOptions *options, GError **error);
/* Sets *ctx to NULL. */
SI_API void si_context_free (SiContext **ctx);
SI_API SiBackendKind si_context_get_backend (const SiContext *ctx);

SI_API gboolean si_context_run (SiContext *ctx, const SiFrame *frame,
    const SiRunParams *params, GError **error);
/* Detections of the last successful run; owned by the context, valid until
 * the next run. */
SI_API const SiDetection *si_context_get_detections (
    const SiContext *ctx, size_t *n_detections);
SI_API void si_context_get_timings (const SiContext *ctx, SiTimings *timings);
/* NULL disables.  Dumping costs time; meant for tests and debugging. */
SI_API void si_context_set_dump (
    SiContext *ctx, SiDumpFunc func, void *user_data);

/* Frame memory: host memory that a context of @backend reads without
 * staging.  A frame whose planes all lie in one block goes to the device
 * in one copy straight from the block (CUDA: the block is pinned,
 * cudaHostAlloc'ed, usable with every device); a frame anywhere else is
 * first copied on the host into the context's pinned staging buffer
 * (0.21 ms for a 1333x800 RGB frame, 3.2 MB, on one core of our build
 * machine).  Frames work from any memory; this saves that copy.  For the
 * CPU backend, which reads frames where they are, a block is plain memory
 * (64-byte aligned).
 * SI_BACKEND_AUTO gives pinned memory when CUDA has a device, else plain
 * memory.  Blocks are not tied to a context and may outlive every
 * context; a block must not be written or freed while a run reads it
 * (si_context_run reads it until it returns).  NULL with an error when
 * the backend cannot give memory (no device for SI_BACKEND_CUDA, out of
 * memory, size 0). */
SI_API void *si_frame_memory_alloc (
    SiBackendKind backend, size_t size, GError **error);
/* Frees a block of si_frame_memory_alloc; NULL is ignored. */
SI_API void si_frame_memory_free (void *mem);

/* Which backends this build has, e.g. "cpu cuda". */
SI_API const char *si_engine_backends (void);
SI_API const char *si_engine_version (void);
SI_API gboolean si_backend_available (SiBackendKind backend, GError **error);

G_END_DECLS

#endif /* SI_ENGINE_H */
