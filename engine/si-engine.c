/* si-engine.c: the public API glue.  Error domain, option defaults,
 * SiContext (a validated wrapper around the SiNet of net.h), version and
 * backend queries.  The model functions live in model.c.  Every public
 * function validates its arguments and reports problems as GErrors.
 */
#include "si-config.h"

#include "backend.h"
#include "net.h"
#include "si-engine.h"

#include <math.h>
#include <string.h>

/* Frames larger than this in either dimension are refused outright. */
#define SI_MAX_FRAME_DIM 16384

struct _SiContext
{
  SiModel *model; /* reference */
  SiNet *net;
  SiContextOptions options;
  const SiDetection *dets; /* owned by net, last successful run */
  size_t n_dets;
};

GQuark
si_error_quark (void)
{
  return g_quark_from_static_string (SI_ERROR_QUARK_NAME);
}

void
si_context_options_init (SiContextOptions *options)
{
  if (options == NULL)
    return;
  options->backend = SI_BACKEND_AUTO;
  options->device_id = 0;
  options->precision = SI_PRECISION_FP32;
  options->max_width = 3840;
  options->max_height = 2160;
  options->num_threads = 0;
  options->release_weights = TRUE;
  options->part_timings = FALSE;
}

void
si_run_params_init (SiRunParams *params)
{
  if (params == NULL)
    return;
  params->threshold = 0.3f;
  params->max_detections = 0;
}

void *
si_frame_memory_alloc (SiBackendKind backend, size_t size, GError **error)
{
  return si_backend_frame_memory_alloc (backend, size, error);
}

void
si_frame_memory_free (void *mem)
{
  si_backend_frame_memory_free (mem);
}

const char *
si_engine_backends (void)
{
  return SI_BACKENDS;
}

const char *
si_engine_version (void)
{
  return SI_VERSION;
}

gboolean
si_backend_available (SiBackendKind backend, GError **error)
{
  switch (backend) {
    case SI_BACKEND_AUTO:
    case SI_BACKEND_CPU:
      return TRUE;
    case SI_BACKEND_CUDA:
    {
#ifdef SI_HAVE_CUDA
      SiContextOptions opts;
      si_context_options_init (&opts);
      opts.backend = SI_BACKEND_CUDA;
      SiBackend *be = si_backend_new (SI_BACKEND_CUDA, &opts, error);
      if (be == NULL)
        return FALSE;
      si_backend_free (&be);
      return TRUE;
#else
      g_set_error_literal (error, SI_ERROR, SI_ERROR_NO_DEVICE,
          "the CUDA backend is not built in (built backends: " SI_BACKENDS ")");
      return FALSE;
#endif
    }
    default:
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "unknown backend kind %d", (int) backend);
      return FALSE;
  }
}

static gboolean
validate_options (const SiContextOptions *o, GError **error)
{
  if (o->backend != SI_BACKEND_AUTO && o->backend != SI_BACKEND_CPU &&
      o->backend != SI_BACKEND_CUDA) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "unknown backend kind %d", (int) o->backend);
    return FALSE;
  }
  if (o->precision != SI_PRECISION_FP32 && o->precision != SI_PRECISION_FP16) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "unknown precision %d", (int) o->precision);
    return FALSE;
  }
  if (o->max_width <= 0 || o->max_height <= 0 ||
      o->max_width > SI_MAX_FRAME_DIM || o->max_height > SI_MAX_FRAME_DIM) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "maximum frame size %dx%d is out of range (1..%d)", o->max_width,
        o->max_height, SI_MAX_FRAME_DIM);
    return FALSE;
  }
  if (o->num_threads < 0 || o->num_threads > 4096) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "num_threads = %d is out of range (0 = all cores)", o->num_threads);
    return FALSE;
  }
  if (o->device_id < 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "device_id = %d is negative", o->device_id);
    return FALSE;
  }
  if (o->backend != SI_BACKEND_AUTO &&
      !si_backend_available (o->backend, error))
    return FALSE;
  return TRUE;
}

SiContext *
si_context_new (SiModel *model, const SiContextOptions *options, GError **error)
{
  SiContextOptions opts;
  SiContext *ctx;

  if (model == NULL) {
    g_set_error_literal (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "si_context_new: model is NULL");
    return NULL;
  }
  if (options != NULL)
    opts = *options;
  else
    si_context_options_init (&opts);
  if (!validate_options (&opts, error))
    return NULL;

  ctx = g_new0 (SiContext, 1);
  ctx->options = opts;
  ctx->model = si_model_ref (model);
  ctx->net = si_net_new (model, &opts, error);
  if (ctx->net == NULL) {
    si_model_unref (ctx->model);
    g_free (ctx);
    return NULL;
  }
  return ctx;
}

void
si_context_free (SiContext **ctx)
{
  if (ctx == NULL || *ctx == NULL)
    return;
  si_net_free (&(*ctx)->net);
  si_model_unref ((*ctx)->model);
  g_free (*ctx);
  *ctx = NULL;
}

SiBackendKind
si_context_get_backend (const SiContext *ctx)
{
  g_return_val_if_fail (ctx != NULL, SI_BACKEND_CPU);
  return si_net_get_backend (ctx->net);
}

/* Bytes per pixel of plane 0 for packed formats, 0 for planar YUV. */
static int
packed_bpp (SiPixelFormat f)
{
  switch (f) {
    case SI_FORMAT_RGB:
    case SI_FORMAT_BGR:
      return 3;
    case SI_FORMAT_RGBX:
    case SI_FORMAT_BGRX:
    case SI_FORMAT_XRGB:
    case SI_FORMAT_XBGR:
    case SI_FORMAT_RGBA:
    case SI_FORMAT_BGRA:
    case SI_FORMAT_ARGB:
    case SI_FORMAT_ABGR:
      return 4;
    default:
      return 0;
  }
}

static gboolean
check_plane (const SiFrame *f, int i, size_t min_stride, GError **error)
{
  if (f->planes[i] == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame plane %d is NULL", i);
    return FALSE;
  }
  if (f->strides[i] < min_stride) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame plane %d: stride %" G_GSIZE_FORMAT
        " is smaller than a row (%" G_GSIZE_FORMAT " bytes for width %d)",
        i, f->strides[i], min_stride, f->width);
    return FALSE;
  }
  return TRUE;
}

static gboolean
validate_frame (const SiContext *ctx, const SiFrame *f, GError **error)
{
  if (f == NULL) {
    g_set_error_literal (
        error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT, "frame is NULL");
    return FALSE;
  }
  if (f->width <= 0 || f->height <= 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame size %dx%d is empty or negative", f->width, f->height);
    return FALSE;
  }
  if (f->width > ctx->options.max_width ||
      f->height > ctx->options.max_height) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame size %dx%d exceeds the context's maximum %dx%d", f->width,
        f->height, ctx->options.max_width, ctx->options.max_height);
    return FALSE;
  }
  size_t w = (size_t) f->width, cw = (w + 1) / 2;
  int bpp = packed_bpp (f->format);
  if (bpp > 0)
    return check_plane (f, 0, w * bpp, error);
  switch (f->format) {
    case SI_FORMAT_NV12:
      return check_plane (f, 0, w, error) && check_plane (f, 1, 2 * cw, error);
    case SI_FORMAT_I420:
      return check_plane (f, 0, w, error) && check_plane (f, 1, cw, error) &&
          check_plane (f, 2, cw, error);
    default:
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "unknown pixel format %d", (int) f->format);
      return FALSE;
  }
}

gboolean
si_context_run (SiContext *ctx, const SiFrame *frame, const SiRunParams *params,
    GError **error)
{
  SiRunParams p;

  if (ctx == NULL) {
    g_set_error_literal (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "si_context_run: context is NULL");
    return FALSE;
  }
  ctx->dets = NULL;
  ctx->n_dets = 0;
  if (!validate_frame (ctx, frame, error))
    return FALSE;
  if (params != NULL)
    p = *params;
  else
    si_run_params_init (&p);
  if (!isfinite (p.threshold) || p.max_detections < 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "bad run parameters: threshold %g, max_detections %d",
        (double) p.threshold, p.max_detections);
    return FALSE;
  }
  const SiDetection *out = NULL;
  size_t n = 0;
  if (!si_net_run_frame (ctx->net, frame, &p, &out, &n, error))
    return FALSE;
  ctx->dets = out;
  ctx->n_dets = n;
  return TRUE;
}

const SiDetection *
si_context_get_detections (const SiContext *ctx, size_t *n_detections)
{
  if (ctx == NULL) {
    if (n_detections != NULL)
      *n_detections = 0;
    return NULL;
  }
  if (n_detections != NULL)
    *n_detections = ctx->n_dets;
  return ctx->dets;
}

void
si_context_get_timings (const SiContext *ctx, SiTimings *timings)
{
  if (timings == NULL)
    return;
  memset (timings, 0, sizeof *timings);
  if (ctx != NULL)
    si_net_get_timings (ctx->net, timings);
}

void
si_context_set_dump (SiContext *ctx, SiDumpFunc func, void *user_data)
{
  if (ctx == NULL)
    return;
  si_net_set_dump (ctx->net, func, user_data);
}
