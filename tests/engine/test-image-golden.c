/* test-image-golden.c: the image side against the golden case (suite
 * golden): preprocessing of image.ppm (preproc.resized_rgb exact, input
 * within float rounding) and of the same image in every packed pixel
 * format (identical to RGB) and in NV12 / I420 (identical to the RGB path
 * fed with the same BT.601 conversion); backbone.0..3 and neck.0..3 from
 * the golden input on the oneDNN and the plain-loop paths (relative L2
 * <= 1e-3, printed); and the same tensors dumped by si_net_run_frame().
 * Usage: test-image-golden [GOLDEN_CASE_DIR] (default: SI_GOLDEN_TINY).
 */
#include "backbone.h"
#include "backend.h"
#include "cpu/backend_cpu.h"
#include "neck.h"
#include "preprocess.h"
#include "safetensors.h"
#include "si-math.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define REL_L2_LIMIT 1e-3

static const char *case_dir;
static SiModel *model;
static SiSafetensors *io;
static uint8_t *image; /* (H, W, 3) RGB */
static int img_w, img_h;

static char *
case_path (const char *name)
{
  return g_build_filename (case_dir, name, NULL);
}

static uint8_t *
load_ppm (const char *path, int *w, int *h)
{
  gchar *data = NULL;
  gsize len = 0;
  int maxval, pos = 0;
  uint8_t *pix;

  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  g_assert_cmpint (sscanf (data, "P6 %d %d %d%n", w, h, &maxval, &pos), ==, 3);
  g_assert_cmpint (maxval, ==, 255);
  pos++; /* one whitespace byte after maxval */
  g_assert_cmpuint (len, >=, (gsize) pos + (gsize) *w * *h * 3);
  pix = g_memdup2 (data + pos, (gsize) *w * *h * 3);
  g_free (data);
  return pix;
}

/* A golden F32 tensor (maybe unaligned in the file) as a new array. */
static float *
golden (const char *name, size_t expect_numel)
{
  const SiTensorInfo *t = si_safetensors_find (io, name);
  float *out;

  if (t == NULL)
    g_error ("golden tensor %s missing", name);
  g_assert_cmpint (t->dtype, ==, SI_DTYPE_F32);
  if (expect_numel)
    g_assert_cmpint (t->numel, ==, (int64_t) expect_numel);
  out = g_new (float, t->numel);
  memcpy (out, t->data, t->numel * sizeof (float));
  return out;
}

static double
rel_l2 (const float *a, const float *ref, size_t n, double *max_abs)
{
  double num = 0.0, den = 0.0, m = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) a[i] - ref[i];
    num += d * d;
    den += (double) ref[i] * ref[i];
    m = MAX (m, fabs (d));
  }
  if (max_abs)
    *max_abs = m;
  return sqrt (num / MAX (den, 1e-30));
}

/* (H, W, C) -> (C, H, W) */
static void
hwc_to_chw (const float *src, int hw, int c, float *dst)
{
  for (int p = 0; p < hw; p++)
    for (int k = 0; k < c; k++)
      dst[(size_t) k * hw + p] = src[(size_t) p * c + k];
}

static void
check_tensor (const char *name, const float *chw, size_t n)
{
  float *ref = golden (name, n);
  double max_abs, e = rel_l2 (chw, ref, n, &max_abs);
  g_print ("%-12s rel L2 %.3g (limit %.0e, %.1f%% of it), max abs %.3g\n", name,
      e, REL_L2_LIMIT, 100.0 * e / REL_L2_LIMIT, max_abs);
  g_assert_cmpfloat (e, <=, REL_L2_LIMIT);
  g_free (ref);
}

/* ---- preprocessing ---- */

typedef struct
{
  uint8_t *rgb; /* (new_h, new_w, 3) */
  float *input; /* (pad_h, pad_w, 3) */
} Prep;

static void
preprocess (SiBackend *be, const SiFrame *f, const SiImageInfo *info, Prep *out)
{
  GError *error = NULL;
  float lut[3 * 256];
  void *work =
      g_malloc (si_preprocess_work_size (f->width, f->height, info->new_w));

  si_preprocess_make_lut (model, lut);
  out->rgb = g_malloc ((size_t) info->new_w * info->new_h * 3);
  out->input = g_new (float, (size_t) info->pad_w * info->pad_h * 3);
  g_assert_true (si_frame_validate (f, &error));
  g_assert_true (be->ops->resize_frame (be, f, info, work, out->rgb, &error));
  g_assert_no_error (error);
  be->ops->normalize_pad (be, out->rgb, info, lut, out->input);
  g_free (work);
}

static void
prep_clear (Prep *p)
{
  g_free (p->rgb);
  g_free (p->input);
}

static SiBackend *
cpu_backend (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  g_assert_no_error (error);
  return be;
}

static void
test_preprocess_rgb (void)
{
  SiBackend *be = cpu_backend ();
  SiImageInfo info;
  SiFrame f = { .format = SI_FORMAT_RGB, .width = img_w, .height = img_h };
  Prep p;
  size_t n_rgb, n_in;
  float *ref_rgb, *ref_in, *chw;
  double max_abs, e;
  long bad = 0;

  si_image_info_compute (model, img_w, img_h, &info);
  g_print ("geometry %dx%d -> %dx%d pad %dx%d scale %.6f %.6f\n", img_w, img_h,
      info.new_w, info.new_h, info.pad_w, info.pad_h, info.scale_factor[0],
      info.scale_factor[1]);
  g_assert_cmpint (info.new_w, ==, 123);
  g_assert_cmpint (info.new_h, ==, 90);
  g_assert_cmpint (info.pad_w, ==, 128);
  g_assert_cmpint (info.pad_h, ==, 96);
  g_assert_cmpfloat (info.scale_factor[0], ==, (float) (123.0 / 150.0));
  g_assert_cmpfloat (info.scale_factor[1], ==, (float) (90.0 / 110.0));

  f.planes[0] = image;
  f.strides[0] = (size_t) img_w * 3;
  preprocess (be, &f, &info, &p);

  n_rgb = (size_t) info.new_w * info.new_h * 3;
  ref_rgb = golden ("preproc.resized_rgb", n_rgb);
  for (size_t i = 0; i < n_rgb; i++)
    bad += ref_rgb[i] != (float) p.rgb[i];
  g_print ("preproc.resized_rgb: %ld of %zu values differ\n", bad, n_rgb);
  g_assert_cmpint (bad, ==, 0);

  n_in = (size_t) info.pad_w * info.pad_h * 3;
  ref_in = golden ("input", n_in);
  chw = g_new (float, n_in);
  hwc_to_chw (p.input, info.pad_w * info.pad_h, 3, chw);
  e = rel_l2 (chw, ref_in, n_in, &max_abs);
  g_print ("input: rel L2 %.3g, max abs %.3g\n", e, max_abs);
  g_assert_cmpfloat (e, <=, 1e-6);

  g_free (ref_rgb);
  g_free (ref_in);
  g_free (chw);
  prep_clear (&p);
  si_backend_free (&be);
}

static void
test_preprocess_packed_formats (void)
{
  static const SiPixelFormat formats[] = { SI_FORMAT_BGR, SI_FORMAT_RGBX,
    SI_FORMAT_BGRX, SI_FORMAT_XRGB, SI_FORMAT_XBGR, SI_FORMAT_RGBA,
    SI_FORMAT_BGRA, SI_FORMAT_ARGB, SI_FORMAT_ABGR };
  SiBackend *be = cpu_backend ();
  SiImageInfo info;
  SiFrame f = { .format = SI_FORMAT_RGB, .width = img_w, .height = img_h };
  Prep ref;

  si_image_info_compute (model, img_w, img_h, &info);
  f.planes[0] = image;
  f.strides[0] = (size_t) img_w * 3;
  preprocess (be, &f, &info, &ref);

  for (guint i = 0; i < G_N_ELEMENTS (formats); i++) {
    int bpp, off[3];
    size_t stride;
    uint8_t *buf;
    Prep p;

    g_assert_true (si_pixel_format_packed (formats[i], &bpp, off));
    stride = (size_t) img_w * bpp + 13; /* any stride */
    buf = g_malloc (stride * img_h);
    memset (buf, 0xa5, stride * img_h);
    for (int y = 0; y < img_h; y++)
      for (int x = 0; x < img_w; x++)
        for (int c = 0; c < 3; c++)
          buf[y * stride + x * bpp + off[c]] = image[(y * img_w + x) * 3 + c];
    f.format = formats[i];
    f.planes[0] = buf;
    f.strides[0] = stride;
    preprocess (be, &f, &info, &p);
    g_assert_cmpmem (p.rgb, (size_t) info.new_w * info.new_h * 3, ref.rgb,
        (size_t) info.new_w * info.new_h * 3);
    g_assert_cmpmem (p.input, sizeof (float) * info.pad_w * info.pad_h * 3,
        ref.input, sizeof (float) * info.pad_w * info.pad_h * 3);
    g_print ("format %d (bpp %d, stride %zu): identical to RGB\n",
        (int) formats[i], bpp, stride);
    prep_clear (&p);
    g_free (buf);
  }
  prep_clear (&ref);
  si_backend_free (&be);
}

/* NV12 / I420 of a w x h crop: the result must equal the RGB path fed
 * with the same BT.601 conversion done here on the host. */
static void
check_yuv (SiBackend *be, SiPixelFormat format, int w, int h)
{
  int cw = (w + 1) / 2, ch = (h + 1) / 2;
  size_t ys = w + 7, cs = (format == SI_FORMAT_NV12 ? 2 * cw : cw) + 5;
  uint8_t *yp = g_malloc0 (ys * h), *up = g_malloc0 (cs * ch);
  uint8_t *vp = g_malloc0 (cs * ch), *rgb = g_malloc ((size_t) w * h * 3);
  SiFrame f = { .format = format, .width = w, .height = h };
  SiFrame fr = { .format = SI_FORMAT_RGB, .width = w, .height = h };
  SiImageInfo info;
  Prep a, b;

  /* RGB -> YUV (any conversion will do: the check is self-consistency) */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const uint8_t *s = &image[(y * img_w + x) * 3];
      double r = s[0], g = s[1], bl = s[2];
      yp[y * ys + x] = (uint8_t) CLAMP (
          16 + 0.257 * r + 0.504 * g + 0.098 * bl + 0.5, 0, 255);
      if (y % 2 == 0 && x % 2 == 0) {
        uint8_t u = (uint8_t) CLAMP (
            128 - 0.148 * r - 0.291 * g + 0.439 * bl + 0.5, 0, 255);
        uint8_t v = (uint8_t) CLAMP (
            128 + 0.439 * r - 0.368 * g - 0.071 * bl + 0.5, 0, 255);
        if (format == SI_FORMAT_NV12) {
          up[(y / 2) * cs + 2 * (x / 2)] = u;
          up[(y / 2) * cs + 2 * (x / 2) + 1] = v;
        } else {
          up[(y / 2) * cs + x / 2] = u;
          vp[(y / 2) * cs + x / 2] = v;
        }
      }
    }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int u, v;
      if (format == SI_FORMAT_NV12) {
        u = up[(y / 2) * cs + 2 * (x / 2)];
        v = up[(y / 2) * cs + 2 * (x / 2) + 1];
      } else {
        u = up[(y / 2) * cs + x / 2];
        v = vp[(y / 2) * cs + x / 2];
      }
      uint8_t *o = &rgb[(y * w + x) * 3];
      si_yuv_to_rgb (yp[y * ys + x], u, v, &o[0], &o[1], &o[2]);
    }

  f.planes[0] = yp;
  f.strides[0] = ys;
  f.planes[1] = up;
  f.strides[1] = cs;
  f.planes[2] = format == SI_FORMAT_I420 ? vp : NULL;
  f.strides[2] = format == SI_FORMAT_I420 ? cs : 0;
  fr.planes[0] = rgb;
  fr.strides[0] = (size_t) w * 3;
  si_image_info_compute (model, w, h, &info);
  preprocess (be, &f, &info, &a);
  preprocess (be, &fr, &info, &b);
  g_assert_cmpmem (a.input, sizeof (float) * info.pad_w * info.pad_h * 3,
      b.input, sizeof (float) * info.pad_w * info.pad_h * 3);
  g_print ("format %d %dx%d: identical to the RGB path\n", (int) format, w, h);
  prep_clear (&a);
  prep_clear (&b);
  g_free (yp);
  g_free (up);
  g_free (vp);
  g_free (rgb);
}

static void
test_preprocess_yuv (void)
{
  SiBackend *be = cpu_backend ();
  check_yuv (be, SI_FORMAT_NV12, img_w, img_h);
  check_yuv (be, SI_FORMAT_I420, img_w, img_h);
  check_yuv (be, SI_FORMAT_NV12, img_w - 1, img_h - 1);
  check_yuv (be, SI_FORMAT_I420, img_w - 3, img_h - 1);
  si_backend_free (&be);
}

/* ---- backbone and neck from the golden input ---- */

static void
run_backbone_neck (bool reference)
{
  GError *error = NULL;
  SiBackend *be = cpu_backend ();
  const SiBackbone *bb = &model->backbone;
  int hp = 96, wp = 128, d = model->neck.out_channels;
  size_t px = (size_t) hp * wp;
  SiBackboneSizes s;
  SiBackboneBuffers buf;
  SiBackboneNet *bn;
  SiNeckNet *nn;
  float *in_chw = golden ("input", 3 * px), *in = g_new (float, 3 * px);
  float *lv[SI_NUM_LEVELS], *nhwc[SI_NUM_LEVELS], *scratch;
  const float *cin[SI_NUM_LEVELS];
  int lh[SI_NUM_LEVELS], lw[SI_NUM_LEVELS];

  g_print ("-- %s path\n", reference ? "plain-loop reference" : "oneDNN");
  si_cpu_backend_set_reference (be, reference);
  for (size_t p = 0; p < px; p++)
    for (int c = 0; c < 3; c++)
      in[p * 3 + c] = in_chw[c * px + p];
  si_backbone_sizes (bb, px, 0, &s);
  buf.stem = g_new (float, s.stem);
  buf.pool = g_new (float, s.pool);
  buf.t1 = g_new (float, s.t1);
  buf.t2 = g_new (float, MAX (s.t2, 1));
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    buf.out[l] = g_new (float, s.out[l]);
    nhwc[l] = g_new (float, s.out[l]);
    lh[l] = hp >> (l + 2);
    lw[l] = wp >> (l + 2);
    lv[l] = g_new (float, (size_t) lh[l] * lw[l] * d);
    cin[l] = buf.out[l];
  }
  scratch = g_new (float, s.out[0] + s.out[1] + s.out[2] + s.out[3]);
  bn = si_backbone_net_new (be, bb, &error);
  g_assert_no_error (error);
  nn = si_neck_net_new (be, model, &error);
  g_assert_no_error (error);
  g_assert_true (si_backbone_run (bn, in, hp, wp, &buf, &error));
  g_assert_no_error (error);
  /* the backbone outputs are checked first: the neck may not change them */
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    be->ops->map_to_nhwc (
        be, buf.out[l], lh[l], lw[l], bb->out_channels[l], nhwc[l]);
  g_assert_true (si_neck_run (nn, cin, lh, lw, scratch, lv, &error));
  g_assert_no_error (error);

  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    char name[32];
    size_t hw = (size_t) lh[l] * lw[l];
    size_t nb = hw * bb->out_channels[l], nl = hw * d;
    float *chw = g_new (float, MAX (nb, nl));
    g_snprintf (name, sizeof (name), "backbone.%d", l);
    hwc_to_chw (nhwc[l], hw, bb->out_channels[l], chw);
    check_tensor (name, chw, nb);
    g_snprintf (name, sizeof (name), "neck.%d", l);
    hwc_to_chw (lv[l], hw, d, chw);
    check_tensor (name, chw, nl);
    g_free (chw);
  }

  si_neck_net_free (&nn);
  si_backbone_net_free (&bn);
  g_free (buf.stem);
  g_free (buf.pool);
  g_free (buf.t1);
  g_free (buf.t2);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    g_free (buf.out[l]);
    g_free (nhwc[l]);
    g_free (lv[l]);
  }
  g_free (in);
  g_free (in_chw);
  g_free (scratch);
  si_backend_free (&be);
}

static void
test_backbone_neck_onednn (void)
{
  run_backbone_neck (false);
}

static void
test_backbone_neck_reference (void)
{
  run_backbone_neck (true);
}

/* ---- the same through si_net_run_frame () and its dumps ---- */

static void
dump_check (const char *name, const int64_t *shape, int ndim, const float *data,
    void *user_data)
{
  int *n_checked = user_data;
  size_t n = 1;

  if (!g_str_has_prefix (name, "backbone.") &&
      !g_str_has_prefix (name, "neck.") && strcmp (name, "input") != 0 &&
      strcmp (name, "preproc.resized_rgb"))
    return;
  for (int i = 0; i < ndim; i++)
    n *= (size_t) shape[i];
  if (strcmp (name, "preproc.resized_rgb") == 0) {
    float *ref = golden (name, n);
    g_assert_cmpmem (data, n * sizeof (float), ref, n * sizeof (float));
    g_print ("%-12s exact\n", name);
    g_free (ref);
  } else {
    check_tensor (name, data, n);
  }
  (*n_checked)++;
}

static void
test_net_dumps (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU, .part_timings = TRUE };
  SiRunParams params = { .threshold = 0.0f, .max_detections = 0 };
  SiFrame f = { .format = SI_FORMAT_RGB, .width = img_w, .height = img_h };
  SiNet *net = si_net_new (model, &opts, &error);
  const SiDetection *dets;
  size_t n_dets;
  SiTimings t;
  int n_checked = 0;
  gboolean ok;

  g_assert_no_error (error);
  f.planes[0] = image;
  f.strides[0] = (size_t) img_w * 3;
  si_net_set_dump (net, dump_check, &n_checked);
  ok = si_net_run_frame (net, &f, &params, &dets, &n_dets, &error);
  /* the image-side dumps come before the decoder runs */
  g_assert_cmpint (n_checked, ==, 10);
  if (!ok)
    g_print ("decoder part failed: %s\n", error->message);
  g_assert_no_error (error);
  si_net_get_timings (net, &t);
  g_print ("timings (ms): preprocess %.2f backbone %.2f neck %.2f total %.2f, "
           "%zu detections\n",
      t.preprocess, t.backbone, t.neck, t.total, n_dets);
  /* a second frame reuses every buffer and primitive */
  si_net_set_dump (net, NULL, NULL);
  g_assert_true (si_net_run_frame (net, &f, &params, &dets, &n_dets, &error));
  g_assert_no_error (error);
  si_net_free (&net);
  g_assert_null (net);
}

/* Frames of every shape the test_scale box allows (both orientations at
 * the largest padded size, extreme aspect ratios, 1x1, odd YUV sizes) run
 * in one context without reallocation and give finite detections. */
static void
test_net_odd_frames (void)
{
  static const struct
  {
    SiPixelFormat format;
    int w, h;
  } cases[] = {
    { SI_FORMAT_RGB, 150, 90 },
    { SI_FORMAT_BGRX, 90, 150 },
    { SI_FORMAT_RGB, 1, 1 },
    { SI_FORMAT_RGBA, 1000, 7 },
    { SI_FORMAT_BGR, 7, 1000 },
    { SI_FORMAT_NV12, 151, 111 },
    { SI_FORMAT_I420, 33, 65 },
    { SI_FORMAT_RGB, 150, 110 },
  };
  GError *error = NULL;
  SiContextOptions opts = {
    .backend = SI_BACKEND_CPU, .max_width = 1000, .max_height = 1000
  };
  SiRunParams params = { .threshold = 0.0f, .max_detections = 0 };
  SiNet *net = si_net_new (model, &opts, &error);

  g_assert_no_error (error);
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++) {
    int w = cases[i].w, h = cases[i].h;
    SiFrame f = { .format = cases[i].format, .width = w, .height = h };
    uint8_t *buf = g_malloc0 ((size_t) w * h * 4 + 16);
    const SiDetection *dets;
    size_t n_dets;
    SiImageInfo info;

    for (size_t k = 0; k < (size_t) w * h * 4; k++)
      buf[k] = (uint8_t) (k * 37 + k / 7);
    if (cases[i].format == SI_FORMAT_NV12 ||
        cases[i].format == SI_FORMAT_I420) {
      int cw = (w + 1) / 2, ch = (h + 1) / 2;
      f.planes[0] = buf;
      f.strides[0] = w;
      f.planes[1] = buf + (size_t) w * h;
      f.strides[1] = cases[i].format == SI_FORMAT_NV12 ? 2 * cw : cw;
      f.planes[2] = buf + (size_t) w * h + (size_t) cw * ch;
      f.strides[2] = cw;
    } else {
      int bpp, off[3];
      g_assert_true (si_pixel_format_packed (cases[i].format, &bpp, off));
      f.planes[0] = buf;
      f.strides[0] = (size_t) w * bpp;
    }
    si_image_info_compute (model, w, h, &info);
    g_assert_true (si_net_run_frame (net, &f, &params, &dets, &n_dets, &error));
    g_assert_no_error (error);
    g_print ("frame %dx%d format %d -> %dx%d pad %dx%d: %zu detections\n", w, h,
        (int) cases[i].format, info.new_w, info.new_h, info.pad_w, info.pad_h,
        n_dets);
    for (size_t k = 0; k < n_dets; k++)
      for (int j = 0; j < 4; j++)
        g_assert_true (isfinite (dets[k].box[j]));
    g_free (buf);
  }
  /* a YUV frame larger than the context's maximum is refused */
  {
    SiFrame f = { .format = SI_FORMAT_NV12, .width = 1002, .height = 10 };
    uint8_t *buf = g_malloc0 (1002 * 20);
    const SiDetection *dets;
    size_t n_dets;
    f.planes[0] = buf;
    f.strides[0] = 1002;
    f.planes[1] = buf + 1002 * 10;
    f.strides[1] = 1002;
    g_assert_false (
        si_net_run_frame (net, &f, &params, &dets, &n_dets, &error));
    g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
    g_clear_error (&error);
    g_free (buf);
  }
  si_net_free (&net);
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  char *path;
  int ret;

  g_test_init (&argc, &argv, NULL);
  case_dir = argc > 1 ? argv[1] : SI_GOLDEN_TINY;
  if (!g_file_test (case_dir, G_FILE_TEST_IS_DIR)) {
    g_printerr ("golden case directory %s is missing\n", case_dir);
    return 1;
  }
  path = case_path ("model.safetensors");
  model = si_model_load (path, &error);
  g_free (path);
  if (model == NULL) {
    g_printerr ("cannot load the golden model: %s\n", error->message);
    return 1;
  }
  path = case_path ("io.safetensors");
  io = si_safetensors_open (path, &error);
  g_free (path);
  if (io == NULL) {
    g_printerr ("cannot open io.safetensors: %s\n", error->message);
    return 1;
  }
  path = case_path ("image.ppm");
  image = load_ppm (path, &img_w, &img_h);
  g_free (path);

  g_test_add_func ("/image/golden/preprocess-rgb", test_preprocess_rgb);
  g_test_add_func (
      "/image/golden/preprocess-packed", test_preprocess_packed_formats);
  g_test_add_func ("/image/golden/preprocess-yuv", test_preprocess_yuv);
  g_test_add_func (
      "/image/golden/backbone-neck-onednn", test_backbone_neck_onednn);
  g_test_add_func (
      "/image/golden/backbone-neck-reference", test_backbone_neck_reference);
  g_test_add_func ("/image/golden/net-dumps", test_net_dumps);
  g_test_add_func ("/image/golden/net-odd-frames", test_net_odd_frames);
  ret = g_test_run ();
  si_safetensors_close (&io);
  si_model_unref (model);
  g_free (image);
  return ret;
}
