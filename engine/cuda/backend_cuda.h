/* backend_cuda.h: the CUDA backend's private state (device, stream, cuBLAS
 * handle, the allocation arena, pinned staging, the first deferred error),
 * the check macros that turn CUDA / cuBLAS failures into SI_ERROR GErrors
 * (they return, never exit) and the signatures of its ops, one op family
 * per file in engine/cuda/ (twins of engine/cpu/backend_cpu.h and
 * engine/cpu/decoder_cpu.h).  Compiled by the C compiler and by nvcc.
 */
#ifndef SI_BACKEND_CUDA_H
#define SI_BACKEND_CUDA_H

#include <glib.h>

#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_runtime.h>

G_BEGIN_DECLS

#include "backend.h"
#include "gemm.h"

/* GroupNorm's pixel slices: each block sums one (at most 1024 of them,
 * and slices x channels <= SI_CUDA_GN_PARTIALS), and the slices' sums are
 * added in a fixed order (no atomics), so that a frame's statistics do not
 * depend on the order in which the blocks ran. */
#define SI_CUDA_GN_MAX_SLICES 1024
#define SI_CUDA_GN_PARTIALS (1024 * 256)

/* One cudaMalloc'ed chunk of the arena: bump-allocated, recycled when every
 * allocation in it has been freed. */
typedef struct
{
  uint8_t *base;
  size_t size;
  size_t used;
  int live; /* allocations handed out and not yet freed */
} SiCudaChunk;

/* SI_CUDA_PROFILE=1: per-op stream times (profile_cuda.c) */
typedef struct _SiCudaProfile SiCudaProfile;

typedef struct
{
  int device;
  SiPrecision precision;
  cudaStream_t stream;
  cublasHandle_t cublas;
  /* cuBLASLt, for GEMMs with a bias (+ ReLU) epilogue
   * (si_gemm_lt_bias_act_cuda); it shares cuBLAS's workspace (same stream) */
  cublasLtHandle_t lt;
  /* convolutions fuse bias + ReLU into the GEMM (SI_CUDA_FUSED_EPILOGUE=0
   * in the environment at init turns it off: the separate bias pass) */
  bool fused_epilogue;
  /* the decoder's self-attention in one kernel (attention_cuda.cu;
   * SI_CUDA_FUSED_ATTENTION=0 at init: the four ops of self_attention.h) */
  bool fused_attention;
  /* fp16: the backbone's maps (C a multiple of 16) are NHWC __half, so
   * every convolution reads and writes half (SI_CUDA_HALF_MAPS=0 in the
   * environment at init keeps them fp32: the fp16 path of session 5) */
  bool half_maps;
  bool lt_fallback_noted; /* the one message about a missing fused kernel */
  /* SiLtKey -> SiLtPlan: cuBLASLt setups and their chosen algorithms, so
   * that a GEMM shape pays for its heuristic once (gemm_cuda.c) */
  GHashTable *lt_plans;
  char device_name[256];

  GArray *chunks; /* SiCudaChunk: the arena (weights and activations) */

  /* Pinned host staging: frames go up through staging_in (one copy per
   * frame), small results come down through staging_out. */
  uint8_t *staging_in;
  size_t staging_in_size;
  cudaEvent_t staging_in_free; /* recorded after the copy that reads it */
  uint8_t *staging_out;
  size_t staging_out_size;

  /* Device copy of the raw frame: (sum of the plane sizes) bytes. */
  uint8_t *frame_dev;
  size_t frame_dev_size;

  /* cuBLAS workspace, set explicitly so that captured GEMMs allocate
   * nothing. */
  void *cublas_ws;
  size_t cublas_ws_size;
  /* the waits sleep on it (blocking sync) instead of spinning a core;
   * NULL with SI_CUDA_SPIN_WAIT=1 */
  cudaEvent_t wait_event;
  bool capturing;

  /* im2col workspace of the convolutions: conv_ws_floats floats (twice
   * as many halves in fp16). */
  float *conv_ws;
  size_t conv_ws_floats;

  /* GroupNorm statistics: (2, SI_CUDA_GN_PARTIALS) doubles (per-slice,
   * per-channel sums of t and t^2), then (2, gn_max_c) floats (scale and
   * shift). */
  void *gn_stats;
  int gn_max_c;

  /* First failure of an op that returns void (kernel launch, cuBLAS);
   * reported and cleared by sync(); deferred_lost: it lost the context. */
  GError *deferred;
  bool deferred_lost;

  SiCudaProfile *profile; /* NULL unless SI_CUDA_PROFILE=1 */
  int graphs_recorded;
} SiCudaBackend;

static inline SiCudaBackend *
si_cuda_priv (SiBackend *be)
{
  return (SiCudaBackend *) be->priv;
}

/* Sets @error from a CUDA status (code NO_MEMORY, NO_DEVICE or BACKEND)
 * with the CUDA error name and message and where it happened. */
void si_cuda_set_error (GError **error, cudaError_t status, const char *what,
    const char *file, int line);
void si_cublas_set_error (GError **error, cublasStatus_t status,
    const char *what, const char *file, int line);
/* Records the first failure of a void op into be's deferred error. */
void si_cuda_defer (SiBackend *be, cudaError_t status, const char *what,
    const char *file, int line);
void si_cublas_defer (SiBackend *be, cublasStatus_t status, const char *what,
    const char *file, int line);

/* The op profile (profile_cuda.c; each a no-op without SI_CUDA_PROFILE=1
 * at init and during a capture): new (NULL without the variable); the
 * start of a frame; an op just launched, named by a printf format;
 * collect the times of the ops since the last wait (after a wait); free
 * (prints the table). */
SiCudaProfile *si_cuda_profile_new (void);
void si_cuda_profile_begin_frame (SiCudaBackend *cu);
void si_cuda_profile_mark (SiBackend *be, const char *fmt, ...)
    G_GNUC_PRINTF (2, 3);
void si_cuda_profile_collect (SiCudaBackend *cu);
void si_cuda_profile_free (SiCudaBackend *cu);

/* Moves the deferred error into @error (FALSE), or TRUE without one. */
gboolean si_cuda_take_deferred (SiCudaBackend *cu, GError **error);
/* Reports a failed call @st of a frame's path: the frame's first failure,
 * which is the deferred error when there is one, except that a lost
 * context outranks a refusal (after a fault every call fails with it, so
 * its first report is the one that says the context is lost).  Either way
 * no deferred error is left for a later frame. */
void si_cuda_fail (SiCudaBackend *cu, cudaError_t st, const char *what,
    const char *file, int line, GError **error);

/* SI_CUDA_TRY for the calls of a frame's path (si_cuda_fail). */
#define SI_CUDA_TRY_FRAME(cu, call, error, ret)                                \
  do {                                                                         \
    cudaError_t si_cuda_status_ = (call);                                      \
    if (si_cuda_status_ != cudaSuccess) {                                      \
      si_cuda_fail (                                                           \
          (cu), si_cuda_status_, #call, __FILE__, __LINE__, (error));          \
      return ret;                                                              \
    }                                                                          \
  } while (0)

/* Return @ret with @error set when a CUDA runtime call fails. */
#define SI_CUDA_TRY(call, error, ret)                                          \
  do {                                                                         \
    cudaError_t si_cuda_status_ = (call);                                      \
    if (si_cuda_status_ != cudaSuccess) {                                      \
      si_cuda_set_error ((error), si_cuda_status_, #call, __FILE__, __LINE__); \
      return ret;                                                              \
    }                                                                          \
  } while (0)

#define SI_CUBLAS_TRY(call, error, ret)                                        \
  do {                                                                         \
    cublasStatus_t si_cublas_status_ = (call);                                 \
    if (si_cublas_status_ != CUBLAS_STATUS_SUCCESS) {                          \
      si_cublas_set_error (                                                    \
          (error), si_cublas_status_, #call, __FILE__, __LINE__);              \
      return ret;                                                              \
    }                                                                          \
  } while (0)

/* In void ops: record a failure of @call (reported by sync()). */
#define SI_CUDA_DEFER(be, call)                                                \
  do {                                                                         \
    cudaError_t si_cuda_status_ = (call);                                      \
    if (si_cuda_status_ != cudaSuccess)                                        \
      si_cuda_defer ((be), si_cuda_status_, #call, __FILE__, __LINE__);        \
  } while (0)

/* After a kernel launch in a void op. */
#define SI_CUDA_LAUNCHED(be, name)                                             \
  do {                                                                         \
    cudaError_t si_cuda_status_ = cudaGetLastError ();                         \
    if (si_cuda_status_ != cudaSuccess)                                        \
      si_cuda_defer ((be), si_cuda_status_, name, __FILE__, __LINE__);         \
    si_cuda_profile_mark ((be), "%s", name);                                   \
  } while (0)

/* Number of blocks of @threads covering @n items (at least 1). */
static inline unsigned int
si_cuda_blocks (long n, int threads)
{
  long b = (n + threads - 1) / threads;
  return (unsigned int) (b > 0 ? b : 1);
}

/* backend_cuda.c: the device's name (logs, benchmarks); memory */
const char *si_cuda_backend_device_name (SiBackend *be);
void *si_cuda_alloc (SiBackend *be, size_t bytes, GError **error);
void si_cuda_free (SiBackend *be, void *ptr);
/* Uploads @n_planes host buffers to frame_dev in one copy: straight from
 * the caller's memory when they all lie in one block of frame memory
 * (si_frame_memory_alloc: pinned), the gaps between them included; else
 * copied back to back into the pinned staging first.  offset[i]: where
 * plane i starts in frame_dev.  Returns frame_dev.  A direct copy reads
 * the caller's memory until the stream passes it. */
const uint8_t *si_cuda_upload_frame (SiBackend *be, const uint8_t *const *src,
    const size_t *bytes, int n_planes, size_t *offset, GError **error);

/* backend_cuda.c: record and replay (CUDA graphs).  Between capture_begin
 * and capture_end the ops issued on the backend are recorded instead of
 * run; nothing in between may sync, download, upload a frame or allocate
 * (an attempt invalidates the capture, capture_end reports it).
 * graph_launch replays the recording with the pointers and sizes it was
 * recorded with: the caller keeps the buffers and the shapes fixed and
 * re-records when a shape changes (the decoder: per frame size). */
typedef struct _SiCudaGraph SiCudaGraph;
gboolean si_cuda_capture_begin (SiBackend *be, GError **error);
SiCudaGraph *si_cuda_capture_end (SiBackend *be, GError **error);
gboolean si_cuda_graph_launch (
    SiBackend *be, SiCudaGraph *graph, GError **error);
void si_cuda_graph_free (SiBackend *be, SiCudaGraph *graph);

/* gemm_cuda.c */
/* An empty cache of cuBLASLt setups (SiCudaBackend.lt_plans). */
GHashTable *si_lt_plans_new (void);
void si_gemm_cuda (SiBackend *be, const SiGemm *g);
void si_gemm_batched_cuda (SiBackend *be, const SiGemm *g, int batch,
    long stride_a, long stride_b, long stride_c);
/* The table's gemm_bias_act (fp32 buffers, the backend's precision):
 * si_gemm_lt_bias_act_cuda unless SI_CUDA_FUSED_EPILOGUE=0 or it cannot,
 * else si_gemm_cuda and the bias pass. */
void si_gemm_bias_act_cuda (
    SiBackend *be, const SiGemm *g, const float *bias, bool relu);
/* C = act (alpha A B + beta C + bias) in one cuBLASLt call: bias (n values
 * of C's type, one per column of the row-major C) and, when @relu, ReLU in
 * the GEMM's epilogue, after the beta C term (so a residual in C is inside
 * the ReLU).  @half: A and B are __half (as for si_gemm_half_cuda), else
 * fp32 with the backend's precision; @half_c: C is __half (needs @half).
 * FALSE when cuBLASLt cannot set it up, has no
 * kernel for it on this device or refuses it (NOT_SUPPORTED,
 * INVALID_VALUE): nothing was queued, the caller runs the GEMM and the
 * bias pass itself.  Other failures of the matmul become the deferred
 * error (TRUE). */
bool si_gemm_lt_bias_act_cuda (SiBackend *be, const SiGemm *g, bool half,
    bool half_c, const void *bias, bool relu);
/* Half operands: g->a and g->b point to __half (typed float * only to go
 * through the shared mapping; never read as floats), C is fp32, or __half
 * when @half_c (then so is the bias of si_gemm_lt_bias_act_cuda: cuBLASLt's
 * bias has D's type); fp32 accumulation on the tensor cores, whatever the
 * backend's precision. */
void si_gemm_half_cuda (SiBackend *be, const SiGemm *g, bool half_c);

/* preprocess_cuda.cu */
gboolean si_resize_frame_cuda (SiBackend *be, const SiFrame *frame,
    const SiImageInfo *info, void *work, uint8_t *rgb, GError **error);
void si_normalize_pad_cuda (SiBackend *be, const uint8_t *rgb,
    const SiImageInfo *info, const float *lut, float *out);

/* conv_cuda.cu */
SiConvPlan *si_conv_prepare_cuda (
    SiBackend *be, const SiConv *conv, GError **error);
void si_conv_release_cuda (SiBackend *be, SiConvPlan *plan);
gboolean si_conv2d_cuda (SiBackend *be, SiConvPlan *plan, const float *x, int h,
    int w, float *y, bool accumulate, bool relu, GError **error);

/* deform_cuda.cu */
void si_deform_im2col_cuda (SiBackend *be, const float *x, int h, int w, int c,
    const float *offset, int ho, int wo, int stride, int deform_groups, long p0,
    int np, float *cols);

/* swin_cuda.cu */
void si_window_partition_cuda (SiBackend *be, const float *x, int h, int w,
    int c, int ws, int shift, float *win);
void si_window_merge_add_cuda (SiBackend *be, const float *win, int h, int w,
    int c, int ws, int shift, float *x);
void si_window_softmax_cuda (SiBackend *be, float *logits, const float *table,
    int nw_h, int nw_w, int heads, int ws, int shift);
void si_patch_merge_cuda (
    SiBackend *be, const float *x, int h, int w, int c, float *y);
void si_bias_gelu_cuda (
    SiBackend *be, float *y, const float *bias, int rows, int n);

/* pool_cuda.cu */
void si_maxpool3x3s2_cuda (
    SiBackend *be, const float *x, int h, int w, int c, float *y);

/* Whether a map of c channels is stored as __half (backend.h, map
 * layout). */
static inline bool
si_cuda_map_half (const SiCudaBackend *cu, int c)
{
  return cu->half_maps && c % 16 == 0;
}

/* norm_cuda.cu */
void si_group_norm_cuda (SiBackend *be, const float *x, int hw, int c,
    int groups, const float *bias, const float *gamma, const float *beta,
    float eps, float *y);

/* layout_cuda.cu */
void si_transpose_cuda (
    SiBackend *be, const float *src, int rows, int cols, float *dst);
void si_map_to_nhwc_cuda (
    SiBackend *be, const float *src, int h, int w, int c, float *dst);
void si_map_from_nhwc_cuda (
    SiBackend *be, const float *src, int h, int w, int c, float *dst);

/* decoder_misc_cuda.cu */
void si_layer_norm_cuda (SiBackend *be, const float *x, const float *res,
    const float *gamma, const float *beta, float *y, int rows, int n,
    bool relu);
void si_bias_act_cuda (SiBackend *be, float *y, const float *bias, int rows,
    int n, int ld, bool relu);
/* The same on a __half y with a __half bias (the fallback of a
 * convolution that writes a half map). */
void si_bias_act_half_cuda (SiBackend *be, void *y, const void *bias, int rows,
    int n, int ld, bool relu);
void si_sigmoid_cuda (SiBackend *be, float *x, long n);
void si_split_columns_cuda (SiBackend *be, const float *src, int rows, int ld,
    const SiColumnSlice *slices, int n_slices);
void si_copy_batched_cuda (SiBackend *be, float *dst, long dst_stride,
    const float *src, long src_stride, long n, int batch);
void si_init_boxes_cuda (SiBackend *be, const float *cxcywh, int n, float img_w,
    float img_h, float *xyzr, float *xyxy);
void si_posenc_add_cuda (
    SiBackend *be, const float *xyzr, const float *q, float *a, int n, int c);
void si_refine_boxes_cuda (SiBackend *be, const float *xyzr, const float *delta,
    float *xyzr_out, float *xyxy, int n);
void si_topk_sigmoid_cuda (SiBackend *be, const float *logits, int n, int k,
    float *scores, int32_t *idx, void *scratch);

/* attention_cuda.cu */
void si_iof_bias_cuda (SiBackend *be, const float *xyzr, const float *tau,
    float *bias, int n, int heads);
void si_softmax_bias_cuda (
    SiBackend *be, float *logits, const float *bias, int rows, int n);
void si_self_attention_cuda (SiBackend *be, const float *q, const float *k,
    const float *v, int ld, const float *xyzr, const float *tau, float *out,
    int ldo, int n, int heads, int hd, float *scratch);

/* sampler_cuda.cu */
void si_sample_points_cuda (SiBackend *be, const float *xyzr, const float *off1,
    const float *off2, float *pts, int n, int g, int p, int k);
void si_sample_features_cuda (SiBackend *be, const float *pts,
    const float *const levels[SI_NUM_LEVELS], const int h[SI_NUM_LEVELS],
    const int w[SI_NUM_LEVELS], const int strides[SI_NUM_LEVELS], int n, int g,
    int r, int dg, float *out);

/* mixing_cuda.cu */
void si_ln2d_bias_relu_cuda (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int rows, int cols);
void si_ln2d_bias_relu_swap_cuda (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int p, int k, int cols,
    float *swapped);
void si_swap_axes_cuda (SiBackend *be, const float *src, float *dst, int batch,
    int x, int y, int z);
void si_cascade_residual_cuda (SiBackend *be, const float *lc, const float *axt,
    const float *res, float *u, int batch, int p, int k, int dg);
void si_gate_mix_cuda (SiBackend *be, const float *old, long old_stride,
    const float *new_, long new_stride, const float *rowgate, long rg_stride,
    int rg_inc, const float *colgate, long cg_stride, int cg_inc, float *out,
    int batch, int rows, int cols);

G_END_DECLS

#endif /* SI_BACKEND_CUDA_H */
