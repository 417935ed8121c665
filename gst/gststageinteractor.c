/* gststageinteractor.c: the stageinteractor element.  Loads the engine in
 * start(), creates a context sized for the negotiated caps, runs every
 * interval-th frame (read-only map: the video passes through unchanged) and
 * attaches a SiDetectionMeta (plus ROI metas) to every frame.  Properties
 * live under the object lock and are snapshotted once per frame; engine
 * properties changed while running reload the engine before the next frame.
 */

/**
 * SECTION:element-stageinteractor
 * @title: stageinteractor
 *
 * Runs the StageInteractor object detector on raw video and attaches the
 * detections of each frame as a #SiDetectionMeta (and, unless
 * #GstStageInteractor:attach-roi-meta is %FALSE, as
 * #GstVideoRegionOfInterestMeta with a "detection" structure).  The video is
 * not modified.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=30 ! videoconvert ! \
 *   stageinteractor model=model.safetensors ! stageoverlay ! \
 *   videoconvert ! pngenc ! multifilesink location=frame-%05d.png
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gststageinteractor.h"
#include "si-frame-allocator.h"

#include <si-engine.h>
#include <si-detection-meta.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_stage_interactor_debug);
#define GST_CAT_DEFAULT gst_stage_interactor_debug

#define DEFAULT_MODEL NULL
#define DEFAULT_BACKEND SI_BACKEND_AUTO
#define DEFAULT_DEVICE_ID 0
#define DEFAULT_THRESHOLD 0.3f
#define DEFAULT_MAX_DETECTIONS 100
#define DEFAULT_CLASSES NULL
#define DEFAULT_LABELS NULL
#define DEFAULT_INTERVAL 1
#define DEFAULT_PRECISION SI_PRECISION_FP32
#define DEFAULT_ATTACH_ROI_META TRUE
#define DEFAULT_NUM_THREADS 0
#define DEFAULT_STATS_INTERVAL 0
#define DEFAULT_FRAME_POOL TRUE

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_BACKEND,
  PROP_DEVICE_ID,
  PROP_THRESHOLD,
  PROP_MAX_DETECTIONS,
  PROP_CLASSES,
  PROP_LABELS,
  PROP_INTERVAL,
  PROP_PRECISION,
  PROP_ATTACH_ROI_META,
  PROP_NUM_THREADS,
  PROP_STATS,
  PROP_STATS_INTERVAL,
  PROP_FRAME_POOL,
};

/* Properties: written by any thread under the object lock. */
typedef struct
{
  gchar *model;
  SiBackendKind backend;
  gint device_id;
  SiPrecision precision;
  gint num_threads;
  gchar *labels;
  gfloat threshold;
  guint max_detections;
  gchar *classes;
  guint interval;
  gboolean attach_roi;
  guint stats_interval_ms;
  gboolean frame_pool;
  guint engine_gen;  /* bumped when the engine must be reloaded */
  guint classes_gen; /* bumped when classes changes */
} SiSettings;

/* Stored detection of the last run, repeated on skipped frames. */
typedef struct
{
  gint class_id;
  const gchar *label; /* interned */
  gfloat score;
  gfloat box[4];
} SiStoredDetection;

struct _GstStageInteractor
{
  GstVideoFilter parent;

  /* properties, under the object lock */
  SiSettings settings;

  /* statistics, under the object lock */
  guint64 stat_frames;
  guint64 stat_inferences;
  gdouble stat_inference_ms;
  gint64 stat_start_us;
  gint64 stat_last_post_us;
  const gchar *stat_backend; /* interned: the context's, NULL without one */

  /* streaming state: streaming thread, start() and stop() only */
  SiModel *model;
  SiContext *ctx;
  gint ctx_width, ctx_height; /* the size ctx was made for */
  guint engine_gen;           /* generation ctx/model were loaded from */
  guint classes_gen;
  const gchar *model_name;    /* interned */
  const gchar **class_labels; /* (n_classes) interned */
  gint n_classes;
  gboolean *class_mask;      /* (n_classes) NULL: every class */
  SiBackendKind ctx_backend; /* the property's (auto resolved per context) */
  /* backend=auto: CUDA failed since the engine was loaded (at a context's
   * creation or on a frame): contexts are made on the CPU from then on */
  gboolean cuda_failed;
  SiPrecision ctx_precision;
  gint ctx_device_id;
  gint ctx_threads;
  GArray *last; /* SiStoredDetection, last run's result */
  guint64 frame_count;
  guint64 last_source_frame;
  gboolean have_last;
};

#define VIDEO_FORMATS                                                          \
  "{ RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA, ARGB, ABGR, NV12, I420 }"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
        GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (VIDEO_FORMATS)));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
        GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (VIDEO_FORMATS)));

#define gst_stage_interactor_parent_class parent_class
G_DEFINE_TYPE (GstStageInteractor, gst_stage_interactor, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE (stageinteractor, "stageinteractor",
    GST_RANK_NONE, GST_TYPE_STAGE_INTERACTOR,
    GST_DEBUG_CATEGORY_INIT (gst_stage_interactor_debug, "stageinteractor", 0,
        "StageInteractor detector"));

GType
gst_stage_interactor_backend_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { SI_BACKEND_AUTO, "CUDA when built and a device exists, else CPU",
        "auto" },
    { SI_BACKEND_CPU, "CPU", "cpu" },
    { SI_BACKEND_CUDA, "CUDA", "cuda" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstStageInteractorBackend", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

GType
gst_stage_interactor_precision_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { SI_PRECISION_FP32, "32-bit float", "fp32" },
    { SI_PRECISION_FP16, "16-bit float (where the backend has it)", "fp16" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type)) {
    GType t = g_enum_register_static ("GstStageInteractorPrecision", values);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
si_pixel_format (GstVideoFormat format, SiPixelFormat *out)
{
  switch (format) {
    case GST_VIDEO_FORMAT_RGB:
      *out = SI_FORMAT_RGB;
      return TRUE;
    case GST_VIDEO_FORMAT_BGR:
      *out = SI_FORMAT_BGR;
      return TRUE;
    case GST_VIDEO_FORMAT_RGBx:
      *out = SI_FORMAT_RGBX;
      return TRUE;
    case GST_VIDEO_FORMAT_BGRx:
      *out = SI_FORMAT_BGRX;
      return TRUE;
    case GST_VIDEO_FORMAT_xRGB:
      *out = SI_FORMAT_XRGB;
      return TRUE;
    case GST_VIDEO_FORMAT_xBGR:
      *out = SI_FORMAT_XBGR;
      return TRUE;
    case GST_VIDEO_FORMAT_RGBA:
      *out = SI_FORMAT_RGBA;
      return TRUE;
    case GST_VIDEO_FORMAT_BGRA:
      *out = SI_FORMAT_BGRA;
      return TRUE;
    case GST_VIDEO_FORMAT_ARGB:
      *out = SI_FORMAT_ARGB;
      return TRUE;
    case GST_VIDEO_FORMAT_ABGR:
      *out = SI_FORMAT_ABGR;
      return TRUE;
    case GST_VIDEO_FORMAT_NV12:
      *out = SI_FORMAT_NV12;
      return TRUE;
    case GST_VIDEO_FORMAT_I420:
      *out = SI_FORMAT_I420;
      return TRUE;
    default:
      return FALSE;
  }
}

/* ---- engine lifetime (streaming state) ---- */

/* The backend's name for the statistics ("cpu", "cuda"). */
static void
set_stat_backend (GstStageInteractor *self)
{
  const gchar *name = NULL;

  if (self->ctx)
    name =
        si_context_get_backend (self->ctx) == SI_BACKEND_CUDA ? "cuda" : "cpu";
  GST_OBJECT_LOCK (self);
  self->stat_backend = name ? g_intern_static_string (name) : NULL;
  GST_OBJECT_UNLOCK (self);
}

static void
engine_release (GstStageInteractor *self)
{
  si_context_free (&self->ctx);
  set_stat_backend (self);
  si_model_clear (&self->model);
  g_clear_pointer (&self->class_labels, g_free);
  g_clear_pointer (&self->class_mask, g_free);
  self->n_classes = 0;
  self->ctx_width = self->ctx_height = 0;
  self->model_name = NULL;
}

/* Reads a labels file: one class name per line, blank lines kept as empty
 * names (the model's name is used for those). */
static gchar **
read_labels (const gchar *path, GError **error)
{
  gchar *contents = NULL, **lines;
  gsize len, n;

  if (!g_file_get_contents (path, &contents, &len, error))
    return NULL;
  lines = g_strsplit (contents, "\n", -1);
  g_free (contents);
  n = g_strv_length (lines);
  /* a final newline leaves one empty string: drop it */
  if (n > 0 && lines[n - 1][0] == '\0') {
    g_free (lines[n - 1]);
    lines[n - 1] = NULL;
  }
  for (n = 0; lines[n]; n++)
    g_strstrip (lines[n]);
  return lines;
}

/* Loads the model and labels of the settings snapshot s.  On failure posts
 * an error message naming the file and returns FALSE with nothing loaded. */
static gboolean
engine_load (GstStageInteractor *self, const SiSettings *s)
{
  GError *err = NULL;
  gchar **labels = NULL;
  gint i, n_labels;

  engine_release (self);

  if (s->model == NULL || s->model[0] == '\0') {
    GST_ELEMENT_ERROR (self, RESOURCE, NOT_FOUND,
        ("No model given: set the \"model\" property to a .safetensors file"),
        (NULL));
    goto fail;
  }
  if (!si_backend_available (s->backend, &err)) {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
        ("Backend not available for model \"%s\": %s", s->model, err->message),
        (NULL));
    goto fail;
  }
  self->model = si_model_load (s->model, &err);
  if (self->model == NULL) {
    if (err->code == SI_ERROR_IO)
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Could not load model \"%s\": %s", s->model, err->message),
          ("si_model_load(%s) failed (code %d)", s->model, err->code));
    else
      GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
          ("Could not load model \"%s\": %s", s->model, err->message),
          ("si_model_load(%s) failed (code %d)", s->model, err->code));
    goto fail;
  }
  if (s->labels && s->labels[0]) {
    labels = read_labels (s->labels, &err);
    if (labels == NULL) {
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
          ("Could not read labels file \"%s\": %s", s->labels, err->message),
          (NULL));
      goto fail;
    }
  }

  self->n_classes = si_model_get_num_classes (self->model);
  self->class_labels = g_new0 (const gchar *, MAX (self->n_classes, 1));
  n_labels = labels ? (gint) g_strv_length (labels) : 0;
  for (i = 0; i < self->n_classes; i++) {
    const gchar *name = NULL;

    if (i < n_labels && labels[i][0] != '\0')
      name = labels[i];
    if (name == NULL)
      name = si_model_get_class_name (self->model, i);
    self->class_labels[i] = g_intern_string (name ? name : "object");
  }
  if (labels && n_labels != self->n_classes)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("Labels file \"%s\" has %d names, the model %d classes", s->labels,
            n_labels, self->n_classes),
        (NULL));
  g_strfreev (labels);
  self->model_name = g_intern_string (si_model_get_name (self->model)
          ? si_model_get_name (self->model)
          : s->model);
  self->ctx_backend = s->backend;
  self->cuda_failed = FALSE; /* a new engine tries CUDA again */
  self->ctx_precision = s->precision;
  self->ctx_device_id = s->device_id;
  self->ctx_threads = s->num_threads;
  self->engine_gen = s->engine_gen;
  self->classes_gen = s->classes_gen - 1; /* resolve classes again */
  g_array_set_size (self->last, 0);
  self->have_last = FALSE;
  GST_INFO_OBJECT (
      self, "loaded model %s (%d classes)", s->model, self->n_classes);
  return TRUE;

fail:
  g_clear_error (&err);
  g_strfreev (labels);
  engine_release (self);
  return FALSE;
}

/* A context of kind for frames up to width x height; fp16 falls back to
 * fp32 where the backend lacks it. */
static SiContext *
context_new (GstStageInteractor *self, SiBackendKind kind, gint width,
    gint height, GError **error)
{
  SiContextOptions opts;
  SiContext *ctx;
  GError *err = NULL;

  si_context_options_init (&opts);
  opts.backend = kind;
  opts.device_id = self->ctx_device_id;
  opts.precision = self->ctx_precision;
  opts.num_threads = self->ctx_threads;
  opts.max_width = width;
  opts.max_height = height;
  ctx = si_context_new (self->model, &opts, &err);
  if (ctx == NULL && opts.precision == SI_PRECISION_FP16 &&
      g_error_matches (err, SI_ERROR, SI_ERROR_UNSUPPORTED)) {
    /* fp16 only "where the backend has it": fall back to fp32 */
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
        ("fp16 not available (%s), using fp32", err->message), (NULL));
    g_clear_error (&err);
    opts.precision = SI_PRECISION_FP32;
    ctx = si_context_new (self->model, &opts, &err);
  }
  if (ctx == NULL)
    g_propagate_error (error, err);
  return ctx;
}

/* A context for frames up to width x height (kept when big enough).
 * backend=auto tries CUDA, unless it failed since the engine was loaded,
 * and makes a CPU context when that fails: quietly without CUDA (not
 * built, not installed, no device), with a warning otherwise. */
static gboolean
engine_ensure_context (GstStageInteractor *self, gint width, gint height)
{
  gboolean autoselect = self->ctx_backend == SI_BACKEND_AUTO;
  SiBackendKind kind = self->ctx_backend;
  GError *err = NULL;

  if (self->ctx && width <= self->ctx_width && height <= self->ctx_height)
    return TRUE;
  si_context_free (&self->ctx);
  self->ctx_width = self->ctx_height = 0;
  if (autoselect)
    kind = self->cuda_failed ? SI_BACKEND_CPU : SI_BACKEND_CUDA;
  self->ctx = context_new (self, kind, width, height, &err);
  if (self->ctx == NULL && autoselect && kind == SI_BACKEND_CUDA) {
    if (g_error_matches (err, SI_ERROR, SI_ERROR_NO_DEVICE)) {
      GST_INFO_OBJECT (self, "backend auto: %s; using the CPU", err->message);
    } else {
      GST_ELEMENT_WARNING (self, RESOURCE, FAILED,
          ("Could not create a CUDA context for %dx%d frames (%s): "
           "backend=auto runs on the CPU",
              width, height, err->message),
          (NULL));
      self->cuda_failed = TRUE;
    }
    g_clear_error (&err);
    self->ctx = context_new (self, SI_BACKEND_CPU, width, height, &err);
  }
  set_stat_backend (self);
  if (self->ctx == NULL) {
    GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
        ("Could not create an inference context for %dx%d frames: %s", width,
            height, err->message),
        (NULL));
    g_clear_error (&err);
    return FALSE;
  }
  self->ctx_width = width;
  self->ctx_height = height;
  return TRUE;
}

/* Resolves the classes property ("person, car, 2") into a class mask. */
static void
resolve_classes (GstStageInteractor *self, const gchar *classes)
{
  gchar **tokens;
  gint i, j;

  g_clear_pointer (&self->class_mask, g_free);
  if (classes == NULL || classes[0] == '\0' || self->n_classes <= 0)
    return;
  self->class_mask = g_new0 (gboolean, self->n_classes);
  tokens = g_strsplit_set (classes, ",;", -1);
  for (i = 0; tokens[i]; i++) {
    gchar *tok = g_strstrip (tokens[i]), *end = NULL;
    gint64 id;
    gboolean found = FALSE;

    if (tok[0] == '\0')
      continue;
    id = g_ascii_strtoll (tok, &end, 10);
    if (end && *end == '\0' && id >= 0 && id < self->n_classes) {
      self->class_mask[id] = TRUE;
      continue;
    }
    for (j = 0; j < self->n_classes; j++) {
      if (g_ascii_strcasecmp (tok, self->class_labels[j]) == 0) {
        self->class_mask[j] = TRUE;
        found = TRUE;
      }
    }
    if (!found)
      GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
          ("Unknown class \"%s\" in \"classes\"", tok), (NULL));
  }
  g_strfreev (tokens);
}

/* ---- GstBaseTransform vmethods ---- */

static void
settings_copy (SiSettings *dst, const SiSettings *src)
{
  *dst = *src;
  dst->model = g_strdup (src->model);
  dst->labels = g_strdup (src->labels);
  dst->classes = g_strdup (src->classes);
}

static void
settings_clear (SiSettings *s)
{
  g_clear_pointer (&s->model, g_free);
  g_clear_pointer (&s->labels, g_free);
  g_clear_pointer (&s->classes, g_free);
}

static gboolean
gst_stage_interactor_start (GstBaseTransform *trans)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (trans);
  SiSettings s;
  gboolean ok;

  GST_OBJECT_LOCK (self);
  settings_copy (&s, &self->settings);
  self->stat_frames = 0;
  self->stat_inferences = 0;
  self->stat_inference_ms = 0.0;
  self->stat_start_us = g_get_monotonic_time ();
  self->stat_last_post_us = self->stat_start_us;
  GST_OBJECT_UNLOCK (self);

  self->frame_count = 0;
  self->have_last = FALSE;
  ok = engine_load (self, &s);
  settings_clear (&s);
  return ok;
}

static gboolean
gst_stage_interactor_stop (GstBaseTransform *trans)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (trans);

  engine_release (self);
  g_array_set_size (self->last, 0);
  self->have_last = FALSE;
  return TRUE;
}

static gboolean
gst_stage_interactor_set_info (GstVideoFilter *filter, GstCaps *incaps,
    GstVideoInfo *in_info, GstCaps *outcaps, GstVideoInfo *out_info)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (filter);

  /* boxes of the previous caps do not fit new frames */
  g_array_set_size (self->last, 0);
  self->have_last = FALSE;
  if (self->model == NULL)
    return TRUE; /* reloaded (with its error) on the next frame */
  return engine_ensure_context (
      self, GST_VIDEO_INFO_WIDTH (in_info), GST_VIDEO_INFO_HEIGHT (in_info));
}

/* Whether an allocator is plain system memory (NULL: the default). */
static gboolean
plain_allocator (GstAllocator *allocator)
{
  return allocator == NULL || allocator->mem_type == NULL ||
      strcmp (allocator->mem_type, GST_ALLOCATOR_SYSMEM) == 0;
}

/* Whether downstream's answer asks for memory of its own (GL, DMA-buf,
 * XShm, a device's): then it is kept as it is.  Only the plain pool types
 * with system memory may be replaced: a pool subclass may hand out its own
 * memory whatever its configured allocator says. */
static gboolean
downstream_wants_own_memory (GstQuery *query)
{
  gboolean special = FALSE;

  for (guint i = 0; i < gst_query_get_n_allocation_params (query); i++) {
    GstAllocator *allocator = NULL;

    gst_query_parse_nth_allocation_param (query, i, &allocator, NULL);
    special |= !plain_allocator (allocator);
    if (allocator)
      gst_object_unref (allocator);
  }
  for (guint i = 0; i < gst_query_get_n_allocation_pools (query); i++) {
    GstBufferPool *pool = NULL;
    GstAllocator *allocator = NULL;
    GstStructure *config;
    GType type;

    gst_query_parse_nth_allocation_pool (query, i, &pool, NULL, NULL, NULL);
    if (pool == NULL)
      continue;
    type = G_OBJECT_TYPE (pool);
    config = gst_buffer_pool_get_config (pool);
    gst_buffer_pool_config_get_allocator (config, &allocator, NULL);
    special |=
        (type != GST_TYPE_BUFFER_POOL && type != GST_TYPE_VIDEO_BUFFER_POOL) ||
        !plain_allocator (allocator);
    gst_structure_free (config);
    gst_object_unref (pool);
  }
  return special;
}

/* Upstream asks what to allocate frames in.  With the CUDA backend, a pool
 * of frame memory (pinned): frames decoded into it go to the GPU in one
 * copy straight from the buffer, without the engine's host copy into its
 * staging.  It goes first, in place of a system-memory pool that
 * GstVideoFilter or downstream offered (it is system memory too, for
 * everyone else), but not of memory downstream needs for itself.  Other
 * backends read frames where they are: nothing changes for them. */
static gboolean
gst_stage_interactor_propose_allocation (
    GstBaseTransform *trans, GstQuery *decide_query, GstQuery *query)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (trans);
  GstCaps *caps = NULL;
  gboolean need_pool = FALSE, offer, ret;
  GstVideoInfo info;
  GstAllocator *allocator;
  GstBufferPool *pool = NULL;
  GError *err = NULL;
  guint min = 0, max = 0, size, downstream_size = 0;
  GstAllocationParams params;

  ret = GST_BASE_TRANSFORM_CLASS (parent_class)
            ->propose_allocation (trans, decide_query, query);
  GST_OBJECT_LOCK (self);
  offer = self->settings.frame_pool;
  GST_OBJECT_UNLOCK (self);
  gst_query_parse_allocation (query, &caps, &need_pool);
  if (!offer || self->ctx == NULL ||
      si_context_get_backend (self->ctx) != SI_BACKEND_CUDA || caps == NULL ||
      !gst_video_info_from_caps (&info, caps) ||
      downstream_wants_own_memory (query))
    return ret;

  /* auto: plain memory should pinned memory run out */
  allocator = si_frame_allocator_new (SI_BACKEND_AUTO);
  /* downstream's alignment, prefix and padding still hold */
  gst_allocation_params_init (&params);
  if (gst_query_get_n_allocation_params (query) > 0)
    gst_query_parse_nth_allocation_param (query, 0, NULL, &params);
  if (need_pool &&
      !(pool = si_frame_pool_new (allocator, &params, caps, 0, &err))) {
    GST_WARNING_OBJECT (self, "no frame memory pool: %s", err->message);
    g_clear_error (&err);
    gst_object_unref (allocator);
    return ret;
  }
  size = (guint) GST_VIDEO_INFO_SIZE (&info);
  if (gst_query_get_n_allocation_pools (query) > 0) {
    /* downstream's buffer counts and sizes still hold */
    gst_query_parse_nth_allocation_pool (
        query, 0, NULL, &downstream_size, &min, &max);
    gst_query_set_nth_allocation_pool (
        query, 0, pool, MAX (size, downstream_size), min, max);
  } else {
    gst_query_add_allocation_pool (query, pool, size, 0, 0);
  }
  if (gst_query_get_n_allocation_params (query) > 0)
    gst_query_set_nth_allocation_param (query, 0, allocator, &params);
  else
    gst_query_add_allocation_param (query, allocator, &params);
  GST_DEBUG_OBJECT (self, "offering frame memory upstream");
  if (pool)
    gst_object_unref (pool);
  gst_object_unref (allocator);
  return TRUE;
}

/* Whether a failed run's error err sends backend=auto to the CPU: a
 * failure of the CUDA backend itself (not a frame any backend refuses). */
static gboolean
cuda_failure_falls_back (GstStageInteractor *self, const GError *err)
{
  return self->ctx_backend == SI_BACKEND_AUTO &&
      si_context_get_backend (self->ctx) == SI_BACKEND_CUDA &&
      (g_error_matches (err, SI_ERROR, SI_ERROR_BACKEND) ||
          g_error_matches (err, SI_ERROR, SI_ERROR_NO_MEMORY) ||
          g_error_matches (err, SI_ERROR, SI_ERROR_NO_DEVICE) ||
          /* limits of the CUDA kernels, which the CPU does not share */
          g_error_matches (err, SI_ERROR, SI_ERROR_UNSUPPORTED));
}

/* Runs the engine on frame and stores the result in self->last. */
static gboolean
run_inference (
    GstStageInteractor *self, GstVideoFrame *frame, const SiSettings *s)
{
  SiFrame sf;
  SiRunParams params;
  GError *err = NULL;
  const SiDetection *dets;
  size_t n = 0, i;
  gint64 t0, t1;
  guint kept = 0;
  guint p;
  gboolean ok;

  memset (&sf, 0, sizeof (sf));
  if (!si_pixel_format (GST_VIDEO_FRAME_FORMAT (frame), &sf.format))
    return FALSE;
  sf.width = GST_VIDEO_FRAME_WIDTH (frame);
  sf.height = GST_VIDEO_FRAME_HEIGHT (frame);
  for (p = 0; p < GST_VIDEO_FRAME_N_PLANES (frame) && p < 3; p++) {
    sf.planes[p] = GST_VIDEO_FRAME_PLANE_DATA (frame, p);
    sf.strides[p] = GST_VIDEO_FRAME_PLANE_STRIDE (frame, p);
  }

  si_run_params_init (&params);
  params.threshold = s->threshold;
  /* with a class filter the limit applies after filtering */
  params.max_detections = self->class_mask ? 0 : (int) s->max_detections;

  t0 = g_get_monotonic_time ();
  ok = si_context_run (self->ctx, &sf, &params, &err);
  if (!ok && cuda_failure_falls_back (self, err)) {
    /* backend=auto: this frame again, and the stream from now on, on the
     * CPU (after a lost context CUDA fails for the rest of the process) */
    gint width = self->ctx_width, height = self->ctx_height;

    GST_ELEMENT_WARNING (self, STREAM, FAILED,
        ("CUDA inference failed on frame %" G_GUINT64_FORMAT
         " (%s): backend=auto continues on the CPU",
            self->frame_count, err->message),
        (NULL));
    g_clear_error (&err);
    self->cuda_failed = TRUE;
    si_context_free (&self->ctx);
    if (!engine_ensure_context (self, width, height))
      return FALSE;
    ok = si_context_run (self->ctx, &sf, &params, &err);
  }
  if (!ok) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED,
        ("Inference failed on frame %" G_GUINT64_FORMAT ": %s",
            self->frame_count, err->message),
        (NULL));
    g_clear_error (&err);
    return FALSE;
  }
  t1 = g_get_monotonic_time ();

  dets = si_context_get_detections (self->ctx, &n);
  g_array_set_size (self->last, 0);
  for (i = 0; i < n; i++) {
    SiStoredDetection d;

    if (dets[i].class_id < 0 || dets[i].class_id >= self->n_classes)
      continue;
    if (self->class_mask && !self->class_mask[dets[i].class_id])
      continue;
    if (s->max_detections > 0 && kept >= s->max_detections)
      break;
    d.class_id = dets[i].class_id;
    d.label = self->class_labels[d.class_id];
    d.score = dets[i].score;
    memcpy (d.box, dets[i].box, sizeof (d.box));
    g_array_append_val (self->last, d);
    kept++;
  }
  self->have_last = TRUE;
  self->last_source_frame = self->frame_count;

  GST_OBJECT_LOCK (self);
  self->stat_inferences++;
  self->stat_inference_ms += (t1 - t0) / 1000.0;
  GST_OBJECT_UNLOCK (self);
  GST_LOG_OBJECT (self, "frame %" G_GUINT64_FORMAT ": %u detections in %.2f ms",
      self->frame_count, kept, (t1 - t0) / 1000.0);
  return TRUE;
}

static GstStructure *
stats_structure_locked (GstStageInteractor *self, gint64 now)
{
  gdouble secs = (now - self->stat_start_us) / 1e6;

  return gst_structure_new ("stageinteractor-stats", "frames", G_TYPE_UINT64,
      self->stat_frames, "inferences", G_TYPE_UINT64, self->stat_inferences,
      "mean-inference-ms", G_TYPE_DOUBLE,
      self->stat_inferences ? self->stat_inference_ms / self->stat_inferences
                            : 0.0,
      "fps", G_TYPE_DOUBLE, secs > 0 ? self->stat_frames / secs : 0.0,
      "backend", G_TYPE_STRING, self->stat_backend, NULL);
}

static GstFlowReturn
gst_stage_interactor_transform_ip (GstBaseTransform *trans, GstBuffer *buf)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (trans);
  GstVideoFilter *filter = GST_VIDEO_FILTER (trans);
  GstVideoFrame frame;
  SiDetectionMeta *meta;
  GstStructure *stats = NULL;
  SiSettings s;
  gboolean run, engine_changed;
  GstFlowReturn ret = GST_FLOW_OK;
  gint64 now;
  guint i;

  if (!filter->negotiated)
    return GST_FLOW_NOT_NEGOTIATED;

  /* engine properties changed (or never loaded): reload before this frame */
  GST_OBJECT_LOCK (self);
  engine_changed =
      self->settings.engine_gen != self->engine_gen || self->model == NULL;
  if (engine_changed)
    settings_copy (&s, &self->settings);
  GST_OBJECT_UNLOCK (self);
  if (engine_changed) {
    gboolean ok = engine_load (self, &s);

    settings_clear (&s);
    if (!ok)
      return GST_FLOW_ERROR;
  }

  /* one consistent snapshot of the per-frame properties; the classes string
   * is only copied (and resolved outside the lock) when it changed */
  GST_OBJECT_LOCK (self);
  s = self->settings;
  s.model = s.labels = NULL;
  s.classes = s.classes_gen != self->classes_gen
      ? g_strdup (self->settings.classes)
      : NULL;
  GST_OBJECT_UNLOCK (self);
  if (s.classes_gen != self->classes_gen) {
    resolve_classes (self, s.classes);
    self->classes_gen = s.classes_gen;
    g_clear_pointer (&s.classes, g_free);
  }

  if (!engine_ensure_context (self, GST_VIDEO_INFO_WIDTH (&filter->in_info),
          GST_VIDEO_INFO_HEIGHT (&filter->in_info)))
    return GST_FLOW_ERROR;

  run = !self->have_last || s.interval <= 1 ||
      self->frame_count - self->last_source_frame >= s.interval;
  if (run) {
    /* read-only: the pixels pass through untouched and are not copied */
    if (!gst_video_frame_map (&frame, &filter->in_info, buf, GST_MAP_READ)) {
      GST_ELEMENT_ERROR (
          self, STREAM, FAILED, ("Could not map the frame"), (NULL));
      return GST_FLOW_ERROR;
    }
    if (!run_inference (self, &frame, &s))
      ret = GST_FLOW_ERROR;
    gst_video_frame_unmap (&frame);
    if (ret != GST_FLOW_OK)
      return ret;
  }

  meta = si_buffer_add_detection_meta (buf, self->model_name,
      GST_VIDEO_INFO_WIDTH (&filter->in_info),
      GST_VIDEO_INFO_HEIGHT (&filter->in_info));
  if (meta) {
    meta->frame = self->frame_count;
    meta->source_frame = self->last_source_frame;
    if (!run)
      meta->flags |= SI_DETECTION_META_FLAG_REPEATED;
    for (i = 0; i < self->last->len; i++) {
      const SiStoredDetection *d =
          &g_array_index (self->last, SiStoredDetection, i);
      si_detection_meta_add (meta, d->class_id, d->label, d->score, d->box[0],
          d->box[1], d->box[2], d->box[3]);
    }
    if (s.attach_roi)
      si_detection_meta_attach_roi_metas (meta, buf);
  }
  self->frame_count++;

  GST_OBJECT_LOCK (self);
  self->stat_frames++;
  if (s.stats_interval_ms > 0) {
    now = g_get_monotonic_time ();
    if (now - self->stat_last_post_us >= (gint64) s.stats_interval_ms * 1000) {
      self->stat_last_post_us = now;
      stats = stats_structure_locked (self, now);
    }
  }
  GST_OBJECT_UNLOCK (self);
  if (stats)
    gst_element_post_message (
        GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), stats));
  return GST_FLOW_OK;
}

/* ---- GObject ---- */

static void
gst_stage_interactor_set_property (
    GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (object);
  SiSettings *s = &self->settings;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_free (s->model);
      s->model = g_value_dup_string (value);
      s->engine_gen++;
      break;
    case PROP_BACKEND:
      s->backend = g_value_get_enum (value);
      s->engine_gen++;
      break;
    case PROP_DEVICE_ID:
      s->device_id = g_value_get_int (value);
      s->engine_gen++;
      break;
    case PROP_PRECISION:
      s->precision = g_value_get_enum (value);
      s->engine_gen++;
      break;
    case PROP_NUM_THREADS:
      s->num_threads = g_value_get_int (value);
      s->engine_gen++;
      break;
    case PROP_LABELS:
      g_free (s->labels);
      s->labels = g_value_dup_string (value);
      s->engine_gen++;
      break;
    case PROP_THRESHOLD:
      s->threshold = g_value_get_float (value);
      break;
    case PROP_MAX_DETECTIONS:
      s->max_detections = g_value_get_uint (value);
      break;
    case PROP_CLASSES:
      g_free (s->classes);
      s->classes = g_value_dup_string (value);
      s->classes_gen++;
      break;
    case PROP_INTERVAL:
      s->interval = g_value_get_uint (value);
      break;
    case PROP_ATTACH_ROI_META:
      s->attach_roi = g_value_get_boolean (value);
      break;
    case PROP_STATS_INTERVAL:
      s->stats_interval_ms = g_value_get_uint (value);
      break;
    case PROP_FRAME_POOL:
      s->frame_pool = g_value_get_boolean (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_stage_interactor_get_property (
    GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (object);
  SiSettings *s = &self->settings;

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_MODEL:
      g_value_set_string (value, s->model);
      break;
    case PROP_BACKEND:
      g_value_set_enum (value, s->backend);
      break;
    case PROP_DEVICE_ID:
      g_value_set_int (value, s->device_id);
      break;
    case PROP_PRECISION:
      g_value_set_enum (value, s->precision);
      break;
    case PROP_NUM_THREADS:
      g_value_set_int (value, s->num_threads);
      break;
    case PROP_LABELS:
      g_value_set_string (value, s->labels);
      break;
    case PROP_THRESHOLD:
      g_value_set_float (value, s->threshold);
      break;
    case PROP_MAX_DETECTIONS:
      g_value_set_uint (value, s->max_detections);
      break;
    case PROP_CLASSES:
      g_value_set_string (value, s->classes);
      break;
    case PROP_INTERVAL:
      g_value_set_uint (value, s->interval);
      break;
    case PROP_ATTACH_ROI_META:
      g_value_set_boolean (value, s->attach_roi);
      break;
    case PROP_STATS_INTERVAL:
      g_value_set_uint (value, s->stats_interval_ms);
      break;
    case PROP_FRAME_POOL:
      g_value_set_boolean (value, s->frame_pool);
      break;
    case PROP_STATS:
      g_value_take_boxed (
          value, stats_structure_locked (self, g_get_monotonic_time ()));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_stage_interactor_finalize (GObject *object)
{
  GstStageInteractor *self = GST_STAGE_INTERACTOR (object);

  engine_release (self);
  settings_clear (&self->settings);
  g_array_free (self->last, TRUE);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_stage_interactor_init (GstStageInteractor *self)
{
  SiSettings *s = &self->settings;

  s->model = g_strdup (DEFAULT_MODEL);
  s->backend = DEFAULT_BACKEND;
  s->device_id = DEFAULT_DEVICE_ID;
  s->precision = DEFAULT_PRECISION;
  s->num_threads = DEFAULT_NUM_THREADS;
  s->labels = g_strdup (DEFAULT_LABELS);
  s->threshold = DEFAULT_THRESHOLD;
  s->max_detections = DEFAULT_MAX_DETECTIONS;
  s->classes = g_strdup (DEFAULT_CLASSES);
  s->interval = DEFAULT_INTERVAL;
  s->attach_roi = DEFAULT_ATTACH_ROI_META;
  s->stats_interval_ms = DEFAULT_STATS_INTERVAL;
  s->frame_pool = DEFAULT_FRAME_POOL;
  s->engine_gen = 1;
  s->classes_gen = 1;
  self->last = g_array_new (FALSE, FALSE, sizeof (SiStoredDetection));
}

static void
gst_stage_interactor_class_init (GstStageInteractorClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);
  const GParamFlags rw =
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;

  gobject_class->set_property = gst_stage_interactor_set_property;
  gobject_class->get_property = gst_stage_interactor_get_property;
  gobject_class->finalize = gst_stage_interactor_finalize;

  g_object_class_install_property (gobject_class, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Path of the StageInteractor model (.safetensors). Loaded when the "
          "element starts; a change while playing reloads it before the next "
          "frame",
          DEFAULT_MODEL, rw));
  g_object_class_install_property (gobject_class, PROP_BACKEND,
      g_param_spec_enum ("backend", "Backend", "Inference backend",
          GST_TYPE_STAGE_INTERACTOR_BACKEND, DEFAULT_BACKEND, rw));
  g_object_class_install_property (gobject_class, PROP_DEVICE_ID,
      g_param_spec_int ("device-id", "Device id",
          "GPU index for the cuda backend", 0, G_MAXINT, DEFAULT_DEVICE_ID,
          rw));
  g_object_class_install_property (gobject_class, PROP_THRESHOLD,
      g_param_spec_float ("threshold", "Threshold",
          "Keep detections with at least this score (0..1)", 0.0f, 1.0f,
          DEFAULT_THRESHOLD, rw | GST_PARAM_CONTROLLABLE));
  g_object_class_install_property (gobject_class, PROP_MAX_DETECTIONS,
      g_param_spec_uint ("max-detections", "Max detections",
          "At most this many detections per frame, best first (0 = no limit)",
          0, G_MAXINT, DEFAULT_MAX_DETECTIONS, rw));
  g_object_class_install_property (gobject_class, PROP_CLASSES,
      g_param_spec_string ("classes", "Classes",
          "Only report these classes: comma-separated class names or ids, "
          "e.g. \"person,car,2\" (empty = all)",
          DEFAULT_CLASSES, rw));
  g_object_class_install_property (gobject_class, PROP_LABELS,
      g_param_spec_string ("labels", "Labels file",
          "Text file with one class name per line, overriding the model's "
          "class names",
          DEFAULT_LABELS, rw));
  g_object_class_install_property (gobject_class, PROP_INTERVAL,
      g_param_spec_uint ("interval", "Interval",
          "Run the model on every Nth frame; frames in between carry the last "
          "detections, flagged as repeated",
          1, G_MAXINT, DEFAULT_INTERVAL, rw));
  g_object_class_install_property (gobject_class, PROP_PRECISION,
      g_param_spec_enum ("precision", "Precision",
          "Compute precision (fp16 where the backend has it)",
          GST_TYPE_STAGE_INTERACTOR_PRECISION, DEFAULT_PRECISION, rw));
  g_object_class_install_property (gobject_class, PROP_ATTACH_ROI_META,
      g_param_spec_boolean ("attach-roi-meta", "Attach ROI meta",
          "Also attach each detection as a GstVideoRegionOfInterestMeta with "
          "a \"detection\" structure (label_id, confidence, label)",
          DEFAULT_ATTACH_ROI_META, rw));
  g_object_class_install_property (gobject_class, PROP_NUM_THREADS,
      g_param_spec_int ("num-threads", "Threads",
          "CPU threads for the cpu backend (0 = all cores)", 0, 1024,
          DEFAULT_NUM_THREADS, rw));
  g_object_class_install_property (gobject_class, PROP_STATS,
      g_param_spec_boxed ("stats", "Statistics",
          "frames, inferences, mean-inference-ms, fps since the element "
          "started, and the backend running (cuda, cpu)",
          GST_TYPE_STRUCTURE, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (gobject_class, PROP_STATS_INTERVAL,
      g_param_spec_uint ("stats-interval", "Statistics interval",
          "Post the statistics as a \"stageinteractor-stats\" element message "
          "every this many milliseconds (0 = never)",
          0, G_MAXUINT, DEFAULT_STATS_INTERVAL, rw));
  g_object_class_install_property (gobject_class, PROP_FRAME_POOL,
      g_param_spec_boolean ("frame-pool", "Frame pool",
          "With the cuda backend, offer upstream a buffer pool of pinned "
          "host memory, which the engine uploads from without copying each "
          "frame on the host first (read at caps negotiation)",
          DEFAULT_FRAME_POOL, rw));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "StageInteractor object detector", "Filter/Analyzer/Video",
      "Detects objects with the StageInteractor model and attaches the "
      "detections as metadata; the video passes through unchanged",
      "StageInteractor developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_stage_interactor_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_stage_interactor_stop);
  /* our own transform_ip: map read-only, GstVideoFilter's maps for write */
  trans_class->transform_ip =
      GST_DEBUG_FUNCPTR (gst_stage_interactor_transform_ip);
  trans_class->transform_ip_on_passthrough = FALSE;
  filter_class->set_info = GST_DEBUG_FUNCPTR (gst_stage_interactor_set_info);
  trans_class->propose_allocation =
      GST_DEBUG_FUNCPTR (gst_stage_interactor_propose_allocation);

  gst_type_mark_as_plugin_api (GST_TYPE_STAGE_INTERACTOR_BACKEND, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_STAGE_INTERACTOR_PRECISION, 0);
}
