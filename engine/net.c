/* net.c: the forward pass of one context (net.h): preprocessing ->
 * backbone -> neck -> decoder -> post-processing on one backend, timings
 * per part and the named dumps.  Every activation buffer is allocated in
 * si_net_new() for the largest padded input the model's test_scale allows
 * (sized by pixel count, so both orientations fit); running a frame
 * allocates nothing.
 *
 * Legend: Hp, Wp padded input; px = Hp * Wp; D neck channels; levels
 * l = 0..3 have stride 4 * 2^l.
 */
#include "net.h"

#include <string.h>

#include "backbone.h"
#include "backend.h"
#include "decoder.h"
#include "neck.h"
#include "preprocess.h"

/* Largest frame accepted when the options leave it open (0): only YUV
 * frames need staging memory of this size; untouched pages cost nothing. */
#define SI_NET_DEFAULT_MAX_W 3840
#define SI_NET_DEFAULT_MAX_H 2160

struct _SiNet
{
  SiModel *model;
  SiBackend *be;
  SiBackboneNet *backbone;
  SiNeckNet *neck;
  SiDecoder *decoder;

  size_t max_px; /* largest Hp * Wp */
  int max_frame_w, max_frame_h;

  /* activation arena (backend memory) */
  GPtrArray *allocs;            /* every buffer below that is not an alias */
  float *input;                 /* (Hp, Wp, 3) network input, NHWC */
  float *input_chw;             /* (3, Hp, Wp) staging of si_net_run_input */
  uint8_t *rgb;                 /* (new_h, new_w, 3) resized frame */
  void *work;                   /* resize_frame work */
  float *lut;                   /* (3, 256) normalisation table */
  SiBackboneBuffers bbuf;       /* stem, pool, t1, t2, C2..C5 */
  float *neck_scratch;          /* NHWC copy of one C_l (in bbuf.stem) */
  float *levels[SI_NUM_LEVELS]; /* F_l (H_l, W_l, D), over C_l */

  SiTimings timings;
  gboolean part_timings; /* SiContextOptions.part_timings */
  SiDumpFunc dump;
  void *dump_data;
  float *dump_host; /* host staging for dumps */
  float *dump_tmp;
  size_t dump_floats;
};

/* The end of a part: si_backend_lap into *ms with part timings. */
static gboolean
part_done (SiNet *net, gint64 *t0, double *ms, GError **error)
{
  return si_backend_lap (net->be, t0, net->part_timings ? ms : NULL, error);
}

#define ROUND_UP_64(n) (((n) + 63) / 64 * 64)

static void *
arena_alloc (SiNet *net, size_t bytes, GError **error)
{
  void *p = net->be->ops->alloc (net->be, bytes, error);
  if (p)
    g_ptr_array_add (net->allocs, p);
  return p;
}

/* Padded input pixels for the largest frame of the test_scale box. */
static size_t
max_pixels (const SiModel *model)
{
  size_t div = model->size_divisor > 0 ? model->size_divisor : 1;
  size_t lm = MAX (model->test_scale[0], model->test_scale[1]);
  size_t sm = MIN (model->test_scale[0], model->test_scale[1]);
  return (lm + div - 1) / div * div * ((sm + div - 1) / div * div);
}

/* The padded input's longest side for frames of the test_scale box. */
static int
max_side (const SiModel *model)
{
  int div = model->size_divisor > 0 ? model->size_divisor : 1;
  int lm = MAX (model->test_scale[0], model->test_scale[1]);
  lm = (lm + div - 1) / div * div;
  return (lm + 31) / 32 * 32; /* padded sides are multiples of 32 too */
}

static gboolean
net_alloc_arena (SiNet *net, GError **error)
{
  const SiModel *m = net->model;
  size_t px = net->max_px;
  size_t d = m->neck.out_channels;
  size_t lsz[SI_NUM_LEVELS];
  size_t max_new_w = MAX (m->test_scale[0], m->test_scale[1]);
  SiBackboneSizes s;
  float lut[3 * 256];
  size_t max_out = 0, stem_sz;

  si_backbone_sizes (&m->backbone, px, max_side (m), &s);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    lsz[l] = d * (px / ((size_t) 16 << (2 * l)));
    max_out = MAX (max_out, s.out[l]);
  }
  /* Aliases (backbone.h, neck.h): t1, t2 and the DCN scratch live in the
   * stem buffer (dead once pooled), which later holds the neck's NHWC copy
   * of C_l; the pool lives in out[1], the network input and run_input's
   * NCHW staging in out[0]; the neck writes F_l over C_l.  The DCN
   * scratch starts on 256-byte boundaries (GEMM operands). */
  s.t2 = ROUND_UP_64 (s.t2);
  s.dcn_offset = ROUND_UP_64 (s.dcn_offset);
  s.dcn_cols = ROUND_UP_64 (s.dcn_cols);
  size_t block_sz =
      ROUND_UP_64 (s.t1) + s.t2 + s.dcn_offset + s.dcn_cols + s.dcn_out;
  /* Swin: x, ln, win, then qkv, logits, attn with hidden over them */
  size_t swin_att = ROUND_UP_64 (s.swin_qkv) + ROUND_UP_64 (s.swin_logits) +
      ROUND_UP_64 (s.swin_attn);
  size_t swin_sz = ROUND_UP_64 (s.swin_x) + ROUND_UP_64 (s.swin_ln) +
      ROUND_UP_64 (s.swin_win) + MAX (swin_att, ROUND_UP_64 (s.swin_hidden));
  block_sz = MAX (block_sz, swin_sz);
  stem_sz = MAX (MAX (s.stem, block_sz), max_out);
  if (!(net->rgb = arena_alloc (net, px * 3, error)) ||
      !(net->work = arena_alloc (net,
            si_preprocess_work_size (
                net->max_frame_w, net->max_frame_h, max_new_w),
            error)) ||
      !(net->lut = arena_alloc (net, sizeof (lut), error)) ||
      !(net->bbuf.stem = arena_alloc (net, stem_sz * sizeof (float), error)))
    return FALSE;
  net->bbuf.t1 = net->bbuf.stem;
  net->bbuf.t2 = net->bbuf.stem + ROUND_UP_64 (s.t1);
  if (s.dcn_cols > 0) {
    net->bbuf.dcn_offset = net->bbuf.t2 + s.t2;
    net->bbuf.dcn_cols = net->bbuf.dcn_offset + s.dcn_offset;
    net->bbuf.dcn_out = net->bbuf.dcn_cols + s.dcn_cols;
  }
  if (s.swin_x > 0) {
    SiBackboneBuffers *b = &net->bbuf;
    b->swin_x = b->stem;
    b->swin_ln = b->swin_x + ROUND_UP_64 (s.swin_x);
    b->swin_win = b->swin_ln + ROUND_UP_64 (s.swin_ln);
    b->swin_qkv = b->swin_win + ROUND_UP_64 (s.swin_win);
    b->swin_logits = b->swin_qkv + ROUND_UP_64 (s.swin_qkv);
    b->swin_attn = b->swin_logits + ROUND_UP_64 (s.swin_logits);
    b->swin_hidden = b->swin_qkv;
    b->t1 = b->t2 = NULL;
  }
  net->neck_scratch = net->bbuf.stem;
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    size_t need = s.out[l];
    if (l == 0)
      need = MAX (need, 2 * 3 * px); /* input + input_chw */
    if (l == 1)
      need = MAX (need, s.pool);
    need = MAX (need, lsz[l]);
    if (!(net->bbuf.out[l] = arena_alloc (net, need * sizeof (float), error)))
      return FALSE;
    net->levels[l] = net->bbuf.out[l];
  }
  net->input = net->bbuf.out[0];
  net->input_chw = net->bbuf.out[0] + 3 * px;
  net->bbuf.pool = net->bbuf.out[1];

  si_preprocess_make_lut (m, lut);
  if (!net->be->ops->upload (net->be, net->lut, lut, sizeof (lut), error))
    return FALSE;

  net->dump_floats = MAX (3 * px, max_out);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    net->dump_floats = MAX (net->dump_floats, lsz[l]);
  return TRUE;
}

SiNet *
si_net_new (SiModel *model, const SiContextOptions *options, GError **error)
{
  SiNet *net;
  SiBackendKind kind = options ? options->backend : SI_BACKEND_CPU;

  g_return_val_if_fail (model != NULL, NULL);
  if (!model->to_rgb) {
    g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
        "model: only to_rgb=True normalisation is supported");
    return NULL;
  }
  if (kind == SI_BACKEND_AUTO) {
    kind = SI_BACKEND_CPU;
    if (si_backend_available (SI_BACKEND_CUDA, NULL))
      kind = SI_BACKEND_CUDA;
  }

  net = g_new0 (SiNet, 1);
  net->model = si_model_ref (model);
  net->allocs = g_ptr_array_new ();
  net->max_px = max_pixels (model);
  net->max_frame_w = options && options->max_width > 0 ? options->max_width
                                                       : SI_NET_DEFAULT_MAX_W;
  net->max_frame_h = options && options->max_height > 0 ? options->max_height
                                                        : SI_NET_DEFAULT_MAX_H;

  if (!(net->be = si_backend_new (kind, options, error)) ||
      !(net->backbone =
              si_backbone_net_new (net->be, &model->backbone, error)) ||
      !(net->neck = si_neck_net_new (net->be, model, error)) ||
      !net_alloc_arena (net, error) ||
      !(net->decoder = si_decoder_new (net->be, model, error))) {
    si_net_free (&net);
    return NULL;
  }
  si_decoder_set_release_weights (
      net->decoder, options ? options->release_weights : TRUE);
  net->part_timings = options ? options->part_timings : FALSE;
  return net;
}

void
si_net_free (SiNet **pnet)
{
  SiNet *net = pnet ? *pnet : NULL;

  if (net == NULL)
    return;
  si_decoder_free (&net->decoder);
  si_neck_net_free (&net->neck);
  si_backbone_net_free (&net->backbone);
  if (net->be) {
    for (guint i = 0; i < net->allocs->len; i++)
      net->be->ops->free (net->be, g_ptr_array_index (net->allocs, i));
  }
  g_ptr_array_free (net->allocs, TRUE);
  si_backend_free (&net->be);
  g_free (net->dump_host);
  g_free (net->dump_tmp);
  si_model_unref (net->model);
  g_free (net);
  *pnet = NULL;
}

SiBackendKind
si_net_get_backend (const SiNet *net)
{
  return net->be->kind;
}

void
si_net_get_timings (const SiNet *net, SiTimings *timings)
{
  *timings = net->timings;
}

void
si_net_set_dump (SiNet *net, SiDumpFunc func, void *user_data)
{
  net->dump = func;
  net->dump_data = user_data;
  if (func && net->dump_host == NULL) {
    net->dump_host = g_new (float, net->dump_floats);
    net->dump_tmp = g_new (float, net->dump_floats);
  }
}

/* Dumps an NHWC map (h, w, c) of backend memory as NCHW (1, c, h, w). */
static gboolean
dump_nhwc (SiNet *net, const char *name, const float *x, int h, int w, int c,
    GError **error)
{
  size_t n = (size_t) h * w * c, hw = (size_t) h * w;
  int64_t shape[4] = { 1, c, h, w };

  if (!net->be->ops->download (
          net->be, net->dump_tmp, x, n * sizeof (float), error))
    return FALSE;
  for (size_t p = 0; p < hw; p++)
    for (int k = 0; k < c; k++)
      net->dump_host[(size_t) k * hw + p] = net->dump_tmp[p * c + k];
  net->dump (name, shape, 4, net->dump_host, net->dump_data);
  return TRUE;
}

static gboolean
check_geometry (SiNet *net, const SiImageInfo *info, GError **error)
{
  int div = net->model->size_divisor > 0 ? net->model->size_divisor : 1;

  if (info->pad_w <= 0 || info->pad_h <= 0 || info->pad_w % 32 ||
      info->pad_h % 32 || info->pad_w % div || info->pad_h % div ||
      info->new_w > info->pad_w || info->new_h > info->pad_h ||
      (size_t) info->pad_w * info->pad_h > net->max_px ||
      MAX (info->pad_w, info->pad_h) > max_side (net->model)) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "input %dx%d (padded %dx%d) does not fit this context (at most %zu "
        "padded pixels, sides of at most %d, multiples of 32)",
        info->new_w, info->new_h, info->pad_w, info->pad_h, net->max_px,
        max_side (net->model));
    return FALSE;
  }
  return TRUE;
}

/* backbone -> neck -> decoder -> post-processing on net->input. */
static gboolean
net_run_body (SiNet *net, const SiImageInfo *info, const SiRunParams *params,
    gint64 t_start, const SiDetection **out, size_t *n_out, GError **error)
{
  SiBackend *be = net->be;
  const SiModel *m = net->model;
  int lh[SI_NUM_LEVELS], lw[SI_NUM_LEVELS];
  const float *cin[SI_NUM_LEVELS];
  const float *lv[SI_NUM_LEVELS];
  gint64 t0 = g_get_monotonic_time ();

  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    lh[l] = info->pad_h / (4 << l);
    lw[l] = info->pad_w / (4 << l);
    cin[l] = net->bbuf.out[l];
    lv[l] = net->levels[l];
  }

  if (!si_backbone_run (net->backbone, net->input, info->pad_h, info->pad_w,
          &net->bbuf, error) ||
      !part_done (net, &t0, &net->timings.backbone, error))
    return FALSE;
  if (net->dump) {
    for (int l = 0; l < SI_NUM_LEVELS; l++) {
      char name[32];
      g_snprintf (name, sizeof (name), "backbone.%d", l);
      /* C_l is in the map layout: NHWC through the neck's scratch */
      if (be->ops->map_to_nhwc)
        be->ops->map_to_nhwc (be, net->bbuf.out[l], lh[l], lw[l],
            m->backbone.out_channels[l], net->neck_scratch);
      else
        be->ops->copy (be, net->neck_scratch, net->bbuf.out[l],
            sizeof (float) * lh[l] * lw[l] * m->backbone.out_channels[l]);
      if (!dump_nhwc (net, name, net->neck_scratch, lh[l], lw[l],
              m->backbone.out_channels[l], error))
        return FALSE;
    }
  }

  if (!si_neck_run (
          net->neck, cin, lh, lw, net->neck_scratch, net->levels, error) ||
      !part_done (net, &t0, &net->timings.neck, error))
    return FALSE;
  if (net->dump) {
    for (int l = 0; l < SI_NUM_LEVELS; l++) {
      char name[32];
      g_snprintf (name, sizeof (name), "neck.%d", l);
      if (!dump_nhwc (net, name, net->levels[l], lh[l], lw[l],
              m->neck.out_channels, error))
        return FALSE;
    }
  }

  if (!si_decoder_run (net->decoder, lv, lh, lw, info,
          net->part_timings ? &net->timings : NULL, net->dump, net->dump_data,
          error) ||
      !si_decoder_postprocess (net->decoder, info, params,
          net->part_timings ? &net->timings : NULL, net->dump, net->dump_data,
          out, n_out, error))
    return FALSE;
  net->timings.total = (g_get_monotonic_time () - t_start) / 1000.0;
  return TRUE;
}

gboolean
si_net_run_frame (SiNet *net, const SiFrame *frame, const SiRunParams *params,
    const SiDetection **out, size_t *n_out, GError **error)
{
  SiBackend *be = net->be;
  SiImageInfo info;
  gint64 t0, t_part;
  int bpp, off[3];

  if (!si_frame_validate (frame, error))
    return FALSE;
  if (!si_pixel_format_packed (frame->format, &bpp, off) &&
      (frame->width > net->max_frame_w || frame->height > net->max_frame_h)) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame %dx%d is larger than the context's maximum %dx%d", frame->width,
        frame->height, net->max_frame_w, net->max_frame_h);
    return FALSE;
  }
  si_image_info_compute (net->model, frame->width, frame->height, &info);
  if (!check_geometry (net, &info, error))
    return FALSE;

  memset (&net->timings, 0, sizeof (net->timings));
  t0 = t_part = g_get_monotonic_time ();
  if (!be->ops->resize_frame (be, frame, &info, net->work, net->rgb, error))
    return FALSE;
  be->ops->normalize_pad (be, net->rgb, &info, net->lut, net->input);
  if (!part_done (net, &t_part, &net->timings.preprocess, error))
    goto fail;

  if (net->dump) {
    size_t n = (size_t) info.new_h * info.new_w * 3;
    uint8_t *bytes = (uint8_t *) net->dump_tmp;
    int64_t shape[3] = { info.new_h, info.new_w, 3 };
    if (!be->ops->download (be, bytes, net->rgb, n, error))
      goto fail;
    for (size_t i = 0; i < n; i++)
      net->dump_host[i] = bytes[i];
    net->dump ("preproc.resized_rgb", shape, 3, net->dump_host, net->dump_data);
    if (!dump_nhwc (net, "input", net->input, info.pad_h, info.pad_w, 3, error))
      goto fail;
  }
  if (net_run_body (net, &info, params, t0, out, n_out, error))
    return TRUE;

fail:
  /* The frame's upload may still be reading the caller's memory (frame
   * memory goes up straight from it): done before we return. */
  be->ops->sync (be, NULL);
  return FALSE;
}

gboolean
si_net_run_input (SiNet *net, const float *input_nchw, const SiImageInfo *info,
    const SiRunParams *params, const SiDetection **out, size_t *n_out,
    GError **error)
{
  SiBackend *be = net->be;
  size_t hw;
  gint64 t0, t_part;

  if (input_nchw == NULL || info == NULL) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT, "run_input: no input");
    return FALSE;
  }
  if (!check_geometry (net, info, error))
    return FALSE;
  hw = (size_t) info->pad_h * info->pad_w;

  memset (&net->timings, 0, sizeof (net->timings));
  t0 = g_get_monotonic_time ();
  /* (3, Hp*Wp) -> (Hp*Wp, 3) */
  if (!be->ops->upload (
          be, net->input_chw, input_nchw, 3 * hw * sizeof (float), error))
    return FALSE;
  be->ops->transpose (be, net->input_chw, 3, (int) hw, net->input);
  t_part = t0;
  if (part_done (net, &t_part, &net->timings.preprocess, error) &&
      (net->dump == NULL ||
          dump_nhwc (
              net, "input", net->input, info->pad_h, info->pad_w, 3, error)) &&
      net_run_body (net, info, params, t0, out, n_out, error))
    return TRUE;
  be->ops->sync (be, NULL); /* no work of this run left behind */
  return FALSE;
}
