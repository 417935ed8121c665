/* test-parity-ops.c: every op of the backend table on the backend under
 * test (CUDA) against its CPU twin (plain-loop reference mode) on random
 * and edge inputs: normalized error (nmse) with a per-op tolerance, exact
 * bytes for the integer outputs (resized frames, LUT normalisation).
 * A ResNet-18-style backbone and a ResNeXt one with DCNv1 convs run
 * through backbone.c on both (the golden case, a bottleneck R-50, is the
 * detector test's).
 * Under the emulation (SI_PARITY_EMU) the convolutions also run with
 * cuBLASLt finding no fused-epilogue kernel: the separate bias pass must
 * give the same results, and the fused path must have been taken before.
 * Usage: test-parity-ops [fp16].  Skips (77) without a CUDA device.
 */
#include "parity.h"

#ifdef SI_PARITY_EMU
#include "cublasLt.h"
#endif

#include "backbone.h"
#include "preprocess.h"
#include "si-math.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FOR_BOTH(i) for (int i = 0; i < 2; i++)
#define BE(i) (pt->be[i])
#define OPS(i) (pt->be[i]->ops)

/* nmse tolerances: same formula on both sides / different summation order
 * or device libm (fp32) / tensor-core GEMMs (fp16 mode) */
#define TOL_ELEM 1e-12
#define TOL_SUM 1e-10
static double tol_gemm = 1e-10;

static SiParity parity, *pt = &parity;
static GRand *rng;

static SiTwin
twin_random (size_t n, float lo, float hi)
{
  float *h = si_parity_random (rng, n, lo, hi);
  SiTwin t = si_twin_new (pt, h, n * sizeof (float));
  g_free (h);
  return t;
}

/* ---- GEMM family ---- */

static void
test_gemm_case (bool ta, bool tb, int m, int n, int k, int pad, float beta)
{
  char what[96];
  int lda = MAX (ta ? m : k, 1) + pad, ldb = MAX (tb ? k : n, 1) + pad;
  int ldc = MAX (n, 1) + pad;
  int rows_a = ta ? k : m, rows_b = tb ? n : k;
  SiTwin a = twin_random ((size_t) rows_a * lda, -1, 1);
  SiTwin b = twin_random ((size_t) rows_b * ldb, -1, 1);
  SiTwin c = twin_random ((size_t) m * ldc, -1, 1);

  FOR_BOTH (i) {
    SiGemm g = { ta, tb, m, n, k, 1.5f, beta, TF (a, i), lda, TF (b, i), ldb,
      TF (c, i), ldc };
    OPS (i)->gemm (BE (i), &g);
  }
  snprintf (what, sizeof (what), "gemm %c%c m%d n%d k%d ld+%d beta %g",
      ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, pad, beta);
  si_parity_sync (pt, what);
  si_parity_check (pt, what, &c, (size_t) m * ldc, tol_gemm);
  si_twin_free (pt, &a);
  si_twin_free (pt, &b);
  si_twin_free (pt, &c);
}

static void
test_gemm_batched (bool ta, bool tb)
{
  int m = 17, n = 33, k = 29, batch = 5;
  long sa = (long) m * k + 7, sb = (long) k * n + 3, sc = (long) m * n + 1;
  SiTwin a = twin_random (sa * batch, -1, 1);
  SiTwin b = twin_random (sb * batch, -1, 1);
  SiTwin c = twin_random (sc * batch, -1, 1);
  char what[64];

  FOR_BOTH (i) {
    SiGemm g = { ta, tb, m, n, k, 1.0f, 0.5f, TF (a, i), ta ? m : k, TF (b, i),
      tb ? k : n, TF (c, i), n };
    OPS (i)->gemm_batched (BE (i), &g, batch, sa, sb, sc);
  }
  snprintf (what, sizeof (what), "gemm_batched %c%c x%d", ta ? 'T' : 'N',
      tb ? 'T' : 'N', batch);
  si_parity_sync (pt, what);
  si_parity_check (pt, what, &c, sc * batch, tol_gemm);
  si_twin_free (pt, &a);
  si_twin_free (pt, &b);
  si_twin_free (pt, &c);
}

/* A Linear layer as the decoder and Swin run it: c = act (a W^T + beta c
 * + bias), W stored (n, k); a and c with padded rows (a view into wider
 * buffers); the bias @bias_off floats into its buffer. */
static void
test_gemm_bias_act_case (
    int m, int n, int k, int pad, float beta, bool relu, int bias_off)
{
  char what[112];
  int lda = k + pad, ldc = n + pad;
  SiTwin a = twin_random ((size_t) m * lda, -1, 1);
  SiTwin w = twin_random ((size_t) n * k, -1, 1);
  SiTwin bias = twin_random ((size_t) n + bias_off, -1, 1);
  SiTwin c = twin_random ((size_t) m * ldc, -1, 1);

  FOR_BOTH (i) {
    SiGemm g = { false, true, m, n, k, 1.0f, beta, TF (a, i), lda, TF (w, i), k,
      TF (c, i), ldc };
    OPS (i)->gemm_bias_act (BE (i), &g, TF (bias, i) + bias_off, relu);
  }
  snprintf (what, sizeof (what),
      "gemm_bias_act m%d n%d k%d ld+%d beta %g%s bias+%d", m, n, k, pad, beta,
      relu ? " relu" : "", bias_off);
  si_parity_sync (pt, what);
  si_parity_check (pt, what, &c, (size_t) m * ldc, tol_gemm);
  si_twin_free (pt, &a);
  si_twin_free (pt, &w);
  si_twin_free (pt, &bias);
  si_twin_free (pt, &c);
}

static void
test_gemm_bias_act (void)
{
  test_gemm_bias_act_case (100, 256, 256, 0, 0.0f, false, 0); /* projections */
  test_gemm_bias_act_case (100, 2048, 256, 0, 0.0f, true, 0); /* FFN */
  test_gemm_bias_act_case (37, 53, 71, 5, 0.0f, true, 0);
  test_gemm_bias_act_case (
      49, 96, 384, 0, 1.0f, false, 0); /* onto a residual */
  test_gemm_bias_act_case (1, 1, 1, 0, 0.0f, true, 0);
#ifdef SI_PARITY_EMU
  {
    /* each case above was one cuBLASLt call; with no fused kernel on the
     * device, new shapes take the GEMM and the bias pass */
    int fused = si_emu_lt_matmuls ();
    test_gemm_bias_act_case (100, 64, 256, 0, 0.0f, true, 0);
    if (si_emu_lt_matmuls () != fused + 1)
      si_parity_fail (pt, "gemm_bias_act: %d cuBLASLt calls for one case",
          si_emu_lt_matmuls () - fused);
    fused = si_emu_lt_matmuls ();
    si_emu_lt_no_algo (1);
    test_gemm_bias_act_case (100, 80, 256, 3, 0.0f, false, 0);
    test_gemm_bias_act_case (33, 96, 384, 0, 1.0f, true, 0);
    si_emu_lt_no_algo (0);
    if (si_emu_lt_matmuls () != fused)
      si_parity_fail (pt, "gemm_bias_act: %d fused GEMMs with no fused kernel",
          si_emu_lt_matmuls () - fused);
    /* a bias off 16 bytes: cuBLASLt's alignment preferences do not cover
     * it, so the separate pass runs rather than a kernel that may fault */
    fused = si_emu_lt_matmuls ();
    test_gemm_bias_act_case (100, 64, 256, 0, 0.0f, true, 1);
    test_gemm_bias_act_case (49, 96, 384, 0, 1.0f, false, 2);
    if (si_emu_lt_matmuls () != fused)
      si_parity_fail (pt,
          "gemm_bias_act: %d fused GEMMs with a misaligned bias",
          si_emu_lt_matmuls () - fused);
  }
#endif
}

static void
test_gemm (void)
{
  for (int t = 0; t < 4; t++) {
    test_gemm_case (t & 1, t & 2, 37, 53, 71, 0, 0.0f);
    test_gemm_case (t & 1, t & 2, 64, 256, 256, 3, 1.0f);
    test_gemm_batched (t & 1, t & 2);
  }
  test_gemm_case (false, true, 1, 1, 1, 0, 0.0f);
  test_gemm_case (false, false, 5, 7, 0, 0, 1.0f); /* k = 0: C = beta C */
  test_gemm_bias_act ();
}

/* ---- preprocessing ---- */

static const char *format_names[] = { "RGB", "BGR", "RGBX", "BGRX", "XRGB",
  "XBGR", "RGBA", "BGRA", "ARGB", "ABGR", "NV12", "I420" };

static void
test_resize_case (SiPixelFormat fmt, int w, int h, int nw, int nh)
{
  SiFrame f;
  SiImageInfo info;
  int bpp, off[3];
  uint8_t *planes[3] = { NULL, NULL, NULL };
  size_t work_bytes = si_preprocess_work_size (w, h, nw);
  SiTwin work, rgb, lut, out;
  float *lut_h = g_new (float, 3 * 256);
  char what[96];
  GError *error = NULL;

  memset (&f, 0, sizeof (f));
  memset (&info, 0, sizeof (info));
  f.format = fmt;
  f.width = w;
  f.height = h;
  if (si_pixel_format_packed (fmt, &bpp, off)) {
    f.strides[0] = (size_t) w * bpp + 5; /* padded rows */
    planes[0] = g_malloc (f.strides[0] * h);
  } else {
    int cw = (w + 1) / 2, ch = (h + 1) / 2;
    f.strides[0] = w + 3;
    planes[0] = g_malloc (f.strides[0] * h);
    f.strides[1] =
        fmt == SI_FORMAT_NV12 ? (size_t) cw * 2 + 1 : (size_t) cw + 2;
    planes[1] = g_malloc (f.strides[1] * ch);
    if (fmt == SI_FORMAT_I420) {
      f.strides[2] = cw + 4;
      planes[2] = g_malloc (f.strides[2] * ch);
    }
    for (int p = 1; p < 3; p++)
      if (planes[p])
        for (size_t i = 0; i < f.strides[p] * ch; i++)
          planes[p][i] = (uint8_t) g_rand_int_range (rng, 0, 256);
  }
  for (size_t i = 0; i < f.strides[0] * h; i++)
    planes[0][i] = (uint8_t) g_rand_int_range (rng, 0, 256);
  /* saturated corners: black and white */
  planes[0][0] = 0;
  planes[0][1] = 255;
  for (int p = 0; p < 3; p++)
    f.planes[p] = planes[p];

  info.width = w;
  info.height = h;
  info.new_w = nw;
  info.new_h = nh;
  info.pad_w = (nw + 31) / 32 * 32;
  info.pad_h = (nh + 31) / 32 * 32;
  for (int c = 0; c < 3; c++)
    for (int x = 0; x < 256; x++)
      lut_h[c * 256 + x] = si_normalize_value (x, 100.0f + c, 57.0f + c);

  work = si_twin_new (pt, NULL, work_bytes);
  rgb = si_twin_new (pt, NULL, (size_t) nw * nh * 3);
  lut = si_twin_new (pt, lut_h, 3 * 256 * sizeof (float));
  out = si_twin_new (pt, NULL, (size_t) info.pad_w * info.pad_h * 3 * 4);
  snprintf (what, sizeof (what), "resize_frame %s %dx%d->%dx%d",
      format_names[fmt], w, h, nw, nh);
  FOR_BOTH (i) {
    if (!OPS (i)->resize_frame (
            BE (i), &f, &info, work.p[i], TB (rgb, i), &error)) {
      si_parity_fail (pt, "%s: %s: %s", what, pt->name[i], error->message);
      g_clear_error (&error);
    }
    OPS (i)->normalize_pad (
        BE (i), TB (rgb, i), &info, TF (lut, i), TF (out, i));
  }
  si_parity_sync (pt, what);
  si_parity_check_exact (pt, what, &rgb);
  snprintf (what, sizeof (what), "normalize_pad %s %dx%d pad %dx%d",
      format_names[fmt], nw, nh, info.pad_w, info.pad_h);
  si_parity_check_exact (pt, what, &out);

  si_twin_free (pt, &work);
  si_twin_free (pt, &rgb);
  si_twin_free (pt, &lut);
  si_twin_free (pt, &out);
  for (int p = 0; p < 3; p++)
    g_free (planes[p]);
  g_free (lut_h);
}

static void
test_preprocess (void)
{
  for (int fmt = SI_FORMAT_RGB; fmt <= SI_FORMAT_I420; fmt++) {
    test_resize_case (fmt, 150, 110, 123, 90); /* golden-like downscale */
    test_resize_case (fmt, 37, 23, 80, 50);    /* odd sizes, upscale */
  }
  test_resize_case (SI_FORMAT_RGB, 1, 1, 32, 32);    /* single source pixel */
  test_resize_case (SI_FORMAT_NV12, 64, 48, 32, 24); /* exact 2x down */
}

/* ---- map layout (backend.h): NHWC fp32, or the backend's own where it
 * has map_from_nhwc / map_to_nhwc (blocked on the CPU's oneDNN path, half
 * on CUDA in fp16) ---- */

/* A map given in NHWC, stored in each backend's own layout. */
static SiTwin
twin_map (const float *nhwc, int hw, int c)
{
  size_t n = (size_t) hw * c;
  SiTwin t = si_twin_new (pt, nhwc, n * sizeof (float));
  SiTwin o = si_twin_new (pt, NULL, n * sizeof (float));

  FOR_BOTH (i) {
    if (OPS (i)->map_from_nhwc == NULL)
      continue;
    OPS (i)->map_from_nhwc (BE (i), t.p[i], 1, hw, c, o.p[i]);
    OPS (i)->copy (BE (i), t.p[i], o.p[i], n * sizeof (float));
  }
  si_twin_free (pt, &o);
  return t;
}

static SiTwin
twin_map_random (int hw, int c, float lo, float hi)
{
  float *h = si_parity_random (rng, (size_t) hw * c, lo, hi);
  SiTwin t = twin_map (h, hw, c);
  g_free (h);
  return t;
}

/* Compares two maps after bringing both to NHWC. */
static void
check_map (const char *what, SiTwin *t, int h, int w, int c, double tol)
{
  size_t bytes = (size_t) h * w * c * sizeof (float);
  SiTwin o = si_twin_new (pt, NULL, bytes);

  FOR_BOTH (i) {
    if (OPS (i)->map_to_nhwc)
      OPS (i)->map_to_nhwc (BE (i), t->p[i], h, w, c, o.p[i]);
    else
      OPS (i)->copy (BE (i), o.p[i], t->p[i], bytes);
  }
  si_parity_sync (pt, what);
  si_parity_check (pt, what, &o, (size_t) h * w * c, tol);
  si_twin_free (pt, &o);
}

/* ---- convolution, pool, norm, layout ---- */

/* bn: the conv carries eval-BatchNorm views and no bias, as the loader
 * gives backbone convs: each backend folds them itself (si_conv_fold). */
static void
test_conv_case (int cin, int cout, int k, int stride, int groups, int h, int w,
    bool acc, bool relu, bool bn)
{
  SiConv cv = { 0 };
  SiConvPlan *plan[2];
  int pad = k / 2;
  int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
  float *wt = si_parity_random (
      rng, (size_t) cout * (cin / groups) * k * k, -0.2f, 0.2f);
  float *b = si_parity_random (rng, cout, -1, 1);
  float *gv = si_parity_random (rng, cout, 0.5f, 1.5f);
  float *mb = si_parity_random (rng, cout, -1, 1);
  float *var = si_parity_random (rng, cout, 0.5f, 1.5f);
  SiTwin x = twin_map_random (h * w, cin, -1, 1);
  SiTwin y = twin_map_random (ho * wo, cout, -1, 1);
  GError *error = NULL;
  char what[96];

  cv.w = wt;
  cv.b = bn ? NULL : b;
  cv.cout = cout;
  cv.cin = cin;
  cv.kh = cv.kw = k;
  cv.stride = stride;
  cv.pad = pad;
  cv.groups = groups;
  if (bn) {
    cv.bn.gamma = gv;
    cv.bn.beta = b;
    cv.bn.mean = mb;
    cv.bn.var = var;
    cv.bn.eps = 1e-5;
  }
  snprintf (what, sizeof (what), "conv2d %d->%d %dx%d/%d g%d %dx%d%s%s%s", cin,
      cout, k, k, stride, groups, h, w, acc ? " +res" : "", relu ? " relu" : "",
      bn ? " bn" : "");
  FOR_BOTH (i) {
    plan[i] = OPS (i)->conv_prepare (BE (i), &cv, &error);
    if (plan[i] == NULL ||
        !OPS (i)->conv2d (
            BE (i), plan[i], TF (x, i), h, w, TF (y, i), acc, relu, &error)) {
      si_parity_fail (pt, "%s: %s: %s", what, pt->name[i], error->message);
      g_clear_error (&error);
    }
  }
  si_parity_sync (pt, what);
  check_map (what, &y, ho, wo, cout, tol_gemm);
  FOR_BOTH (i) {
    if (plan[i])
      OPS (i)->conv_release (BE (i), plan[i]);
  }
  si_twin_free (pt, &x);
  si_twin_free (pt, &y);
  g_free (wt);
  g_free (b);
  g_free (gv);
  g_free (mb);
  g_free (var);
}

static SiConv
random_conv (GPtrArray *owned, int cin, int cout, int k, int stride)
{
  SiConv cv = { 0 };
  float *wt =
      si_parity_random (rng, (size_t) cout * cin * k * k, -0.25f, 0.25f);
  float *b = si_parity_random (rng, cout, -0.5f, 0.5f);

  g_ptr_array_add (owned, wt);
  g_ptr_array_add (owned, b);
  cv.w = wt;
  cv.b = b;
  cv.cout = cout;
  cv.cin = cin;
  cv.kh = cv.kw = k;
  cv.stride = stride;
  cv.pad = k / 2;
  cv.groups = 1;
  return cv;
}

static SiTwin
twin_buffer (size_t floats)
{
  return si_twin_new (pt, NULL, MAX (floats, 1) * sizeof (float));
}

/* Runs bb through backbone.c on both backends on a random (h, w) input
 * and compares every level's output; frees the blocks and owned. */
static void
check_backbone (
    const char *name, SiBackbone *bb, int h, int w, GPtrArray *owned)
{
  size_t px = (size_t) h * w;
  SiBackboneSizes s;
  SiTwin x = twin_random (px * 3, -1, 1), out[SI_NUM_LEVELS];
  SiBackboneNet *bn[2] = { NULL, NULL };
  GError *error = NULL;

  si_backbone_sizes (bb, px, MAX (h, w), &s);
  SiTwin stem = twin_buffer (s.stem), pool = twin_buffer (s.pool),
         t1 = twin_buffer (s.t1), t2 = twin_buffer (s.t2),
         doff = twin_buffer (s.dcn_offset), dcols = twin_buffer (s.dcn_cols),
         dout = twin_buffer (s.dcn_out);
  /* Swin scratch (one float each for ResNets); hidden over qkv as in
   * net.c */
  SiTwin sx = twin_buffer (s.swin_x), sln = twin_buffer (s.swin_ln),
         swin = twin_buffer (s.swin_win), sattn = twin_buffer (s.swin_attn),
         slog = twin_buffer (s.swin_logits),
         sqkv = twin_buffer (MAX (s.swin_qkv, s.swin_hidden));
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    out[l] = twin_buffer (s.out[l]);
  FOR_BOTH (i) {
    SiBackboneBuffers buf = { .stem = TF (stem, i),
      .pool = TF (pool, i),
      .t1 = TF (t1, i),
      .t2 = TF (t2, i),
      .dcn_offset = TF (doff, i),
      .dcn_cols = TF (dcols, i),
      .dcn_out = TF (dout, i),
      .swin_x = TF (sx, i),
      .swin_ln = TF (sln, i),
      .swin_win = TF (swin, i),
      .swin_qkv = TF (sqkv, i),
      .swin_logits = TF (slog, i),
      .swin_attn = TF (sattn, i),
      .swin_hidden = TF (sqkv, i),
      .out = {
          TF (out[0], i), TF (out[1], i), TF (out[2], i), TF (out[3], i) } };
    bn[i] = si_backbone_net_new (BE (i), bb, &error);
    if (bn[i] == NULL ||
        !si_backbone_run (bn[i], TF (x, i), h, w, &buf, &error)) {
      si_parity_fail (pt, "%s: %s: %s", name, pt->name[i], error->message);
      g_clear_error (&error);
    }
  }
  si_parity_sync (pt, name);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    char what[64];
    snprintf (what, sizeof (what), "%s level %d", name, l);
    check_map (what, &out[l], h >> (l + 2), w >> (l + 2), bb->out_channels[l],
        tol_gemm);
  }
  FOR_BOTH (i) {
    si_backbone_net_free (&bn[i]);
  }
  SiTwin *all[] = { &x, &stem, &pool, &t1, &t2, &doff, &dcols, &dout, &sx, &sln,
    &swin, &sattn, &slog, &sqkv };
  for (size_t i = 0; i < G_N_ELEMENTS (all); i++)
    si_twin_free (pt, all[i]);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    si_twin_free (pt, &out[l]);
    g_free (bb->blocks[l]);
    g_free (bb->swin.blocks[l]);
  }
  g_ptr_array_free (owned, TRUE);
}

/* A ResNet-18-style backbone through backbone.c (the golden case is a
 * bottleneck R-50): BasicBlocks, layer1.0 without a downsample (its
 * identity copied: map_bytes), on random weights; every level's output
 * compared after map_to_nhwc. */
static void
test_basic_block_backbone (void)
{
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  SiBackbone bb = { 0 };
  int ch[SI_NUM_LEVELS] = { 16, 32, 64, 128 },
      nb[SI_NUM_LEVELS] = { 2, 2, 1, 1 };
  int h = 64, w = 96, cin = 16;

  bb.depth = 18;
  bb.bottleneck = false;
  bb.stem_channels = 16;
  bb.stem = random_conv (owned, 3, 16, 7, 2);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    bb.n_blocks[l] = nb[l];
    bb.out_channels[l] = ch[l];
    bb.blocks[l] = g_new0 (SiBottleneck, nb[l]);
    for (int b = 0; b < nb[l]; b++) {
      SiBottleneck *blk = &bb.blocks[l][b];
      int stride = (b == 0 && l > 0) ? 2 : 1;
      blk->conv1 = random_conv (owned, b == 0 ? cin : ch[l], ch[l], 3, stride);
      blk->conv2 = random_conv (owned, ch[l], ch[l], 3, 1);
      blk->has_downsample = b == 0 && (stride != 1 || cin != ch[l]);
      if (blk->has_downsample)
        blk->downsample = random_conv (owned, cin, ch[l], 1, stride);
    }
    cin = ch[l];
  }
  check_backbone ("basic-block backbone", &bb, h, w, owned);
}

/* Deformable im2col (DCNv1) of output pixels p0 .. total - 1: offsets of
 * up to +-range pixels, every fifth one rounded to a whole pixel so that
 * taps land on the floor boundaries and on the map's -1 / H edges. */
static void
test_deform_im2col_case (int h, int w, int c, int dg, int stride, float range)
{
  int ho = (h + 2 - 3) / stride + 1, wo = (w + 2 - 3) / stride + 1;
  int n_off = 18 * dg;
  long total = (long) ho * wo, p0 = total / 3;
  int np = (int) (total - p0);
  float *off = si_parity_random (rng, (size_t) total * n_off, -range, range);
  SiTwin x = twin_map_random (h * w, c, -1, 1), o, cols;
  char what[96];

  for (size_t i = 0; i < (size_t) total * n_off; i += 5)
    off[i] = rintf (off[i]);
  o = twin_map (off, (int) total, n_off);
  cols = si_twin_new (pt, NULL, (size_t) np * c * 9 * sizeof (float));
  snprintf (what, sizeof (what), "deform_im2col %dx%dx%d dg%d /%d +-%.0f", h, w,
      c, dg, stride, (double) range);
  FOR_BOTH (i) {
    OPS (i)->deform_im2col (
        BE (i), x.p[i], h, w, c, o.p[i], ho, wo, stride, dg, p0, np, cols.p[i]);
  }
  si_parity_sync (pt, what);
  /* fp16: the maps (offsets too where 18 dg % 16 == 0) are half */
  si_parity_check (pt, what, &cols, (size_t) np * c * 9,
      tol_gemm > 1e-9 ? tol_gemm : TOL_SUM);
  si_twin_free (pt, &x);
  si_twin_free (pt, &o);
  si_twin_free (pt, &cols);
  g_free (off);
}

static void
test_deform_im2col (void)
{
  test_deform_im2col_case (13, 17, 32, 1, 1, 3.0f);
  test_deform_im2col_case (14, 18, 32, 1, 2, 4.0f);
  test_deform_im2col_case (9, 11, 48, 2, 1, 12.0f); /* mostly off the map */
  test_deform_im2col_case (10, 12, 24, 8, 2, 2.0f); /* half offsets only */
  test_deform_im2col_case (8, 9, 64, 8, 1, 2.0f);   /* both half */
}

/* A ResNeXt bottleneck backbone with DCNv1 conv2s in layer2-4 (model-spec
 * 3.2) through backbone.c: offset conv, deformable im2col in chunks, the
 * GEMM batched over groups, bias + ReLU, the map layout; deform groups 1
 * and 2, strided and not. */
static void
test_dcn_backbone (void)
{
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  SiBackbone bb = { 0 };
  int nb[SI_NUM_LEVELS] = { 1, 2, 1, 1 };
  int h = 64, w = 96, cin = 16;

  bb.depth = 50;
  bb.bottleneck = true;
  bb.stem_channels = 16;
  bb.groups = 4;
  bb.stem = random_conv (owned, 3, 16, 7, 2);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    int planes = 16 << l, width = planes;
    bb.n_blocks[l] = nb[l];
    bb.out_channels[l] = planes * 4;
    bb.blocks[l] = g_new0 (SiBottleneck, nb[l]);
    for (int b = 0; b < nb[l]; b++) {
      SiBottleneck *blk = &bb.blocks[l][b];
      int stride = (b == 0 && l > 0) ? 2 : 1;
      blk->conv1 = random_conv (owned, b == 0 ? cin : planes * 4, width, 1, 1);
      blk->conv2 = random_conv (owned, width, width, 3, stride);
      blk->conv2.groups = 4;
      blk->conv3 = random_conv (owned, width, planes * 4, 1, 1);
      if (l > 0) {
        blk->deform_groups = 1 + (l + b) % 2;
        blk->conv2_offset =
            random_conv (owned, width, 18 * blk->deform_groups, 3, stride);
        /* offsets of a few pixels: a small weight, a wide bias */
        float *ow = (float *) blk->conv2_offset.w;
        float *ob = (float *) blk->conv2_offset.b;
        for (size_t i = 0; i < (size_t) 18 * blk->deform_groups * width * 9;
             i++)
          ow[i] *= 0.1f;
        for (int i = 0; i < 18 * blk->deform_groups; i++)
          ob[i] *= 6.0f;
      }
      blk->has_downsample = b == 0;
      if (blk->has_downsample)
        blk->downsample = random_conv (owned, cin, planes * 4, 1, stride);
    }
    cin = planes * 4;
  }
  check_backbone ("DCN backbone", &bb, h, w, owned);
}

static SiLinear
random_linear (GPtrArray *owned, int out, int in, bool bias)
{
  SiLinear l = { .out = out, .in = in };
  float a = 1.0f / sqrtf ((float) in);
  float *wt = si_parity_random (rng, (size_t) out * in, -a, a);
  g_ptr_array_add (owned, wt);
  l.w = wt;
  if (bias) {
    float *b = si_parity_random (rng, out, -0.1f, 0.1f);
    g_ptr_array_add (owned, b);
    l.b = b;
  }
  return l;
}

static SiNorm
random_norm (GPtrArray *owned, int n)
{
  SiNorm nrm = { .n = n };
  float *g = si_parity_random (rng, n, 0.5f, 1.5f);
  float *b = si_parity_random (rng, n, -0.2f, 0.2f);
  g_ptr_array_add (owned, g);
  g_ptr_array_add (owned, b);
  nrm.gamma = g;
  nrm.beta = b;
  return nrm;
}

/* The Swin ops on their own: (shifted) windows of a map that is not a
 * multiple of the window, their softmax with bias and mask, the merge
 * back, the 2x2 unfold, bias + GELU. */
static void
test_swin_ops_case (int h, int w, int c, int ws, int shift, int heads)
{
  int nw_h = (h + ws - 1) / ws, nw_w = (w + ws - 1) / ws, n = ws * ws;
  size_t nwt = (size_t) nw_h * nw_w * n;
  SiTwin x = twin_random ((size_t) h * w * c, -1, 1);
  SiTwin y = twin_random ((size_t) h * w * c, -1, 1);
  SiTwin win = twin_buffer (nwt * c);
  SiTwin lg = twin_random (nwt * heads * n, -4, 4);
  SiTwin tab =
      twin_random ((size_t) (2 * ws - 1) * (2 * ws - 1) * heads, -1, 1);
  SiTwin merged = twin_buffer ((size_t) h * w * c);
  SiTwin bias = twin_random (c, -1, 1);
  char what[96];

  snprintf (what, sizeof (what), "swin ops %dx%dx%d ws%d shift%d", h, w, c, ws,
      shift);
  FOR_BOTH (i) {
    OPS (i)->window_partition (BE (i), x.p[i], h, w, c, ws, shift, win.p[i]);
    OPS (i)->window_softmax (
        BE (i), lg.p[i], tab.p[i], nw_h, nw_w, heads, ws, shift);
    OPS (i)->window_merge_add (BE (i), win.p[i], h, w, c, ws, shift, y.p[i]);
    OPS (i)->patch_merge (BE (i), y.p[i], h & ~1, w & ~1, c, merged.p[i]);
    OPS (i)->bias_gelu (BE (i), x.p[i], bias.p[i], h * w, c);
  }
  si_parity_sync (pt, what);
  si_parity_check (pt, "window_partition", &win, nwt * c, 0.0);
  si_parity_check (pt, "window_softmax", &lg, nwt * heads * n, TOL_ELEM);
  si_parity_check (pt, "window_merge_add", &y, (size_t) h * w * c, 0.0);
  si_parity_check (
      pt, "patch_merge", &merged, (size_t) (h / 2) * (w / 2) * 4 * c, 0.0);
  si_parity_check (pt, "bias_gelu", &x, (size_t) h * w * c, TOL_ELEM);
  SiTwin *all[] = { &x, &y, &win, &lg, &tab, &merged, &bias };
  for (size_t i = 0; i < G_N_ELEMENTS (all); i++)
    si_twin_free (pt, all[i]);
}

/* A small Swin (model-spec 3.3) through backbone_swin.c on both
 * backends: every stage with a plain and a shifted-window block, token
 * maps padded to whole windows. */
static void
test_swin_backbone (void)
{
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  SiBackbone bb = { 0 };
  SiSwin *sw = &bb.swin;
  int e = 16, ws = 7;
  int heads[SI_NUM_LEVELS] = { 1, 2, 2, 4 };

  test_swin_ops_case (13, 17, 16, 7, 3, 2);
  test_swin_ops_case (14, 21, 8, 7, 0, 1);
  test_swin_ops_case (9, 10, 4, 5, 2, 3);

  bb.type = SI_BACKBONE_SWIN;
  sw->embed_dims = e;
  sw->window_size = ws;
  sw->mlp_ratio = 4;
  sw->patch_embed = random_conv (owned, 3, e, 4, 4);
  sw->patch_embed.pad = 0;
  sw->patch_norm = random_norm (owned, e);
  for (int i = 0; i < SI_NUM_LEVELS; i++) {
    int c = e << i;
    sw->depths[i] = 2;
    sw->heads[i] = heads[i];
    sw->blocks[i] = g_new0 (SiSwinBlock, 2);
    for (int j = 0; j < 2; j++) {
      SiSwinBlock *blk = &sw->blocks[i][j];
      float *tab = si_parity_random (
          rng, (size_t) (2 * ws - 1) * (2 * ws - 1) * heads[i], -1, 1);
      g_ptr_array_add (owned, tab);
      blk->shift = j ? ws / 2 : 0;
      blk->norm1 = random_norm (owned, c);
      blk->norm2 = random_norm (owned, c);
      blk->qkv = random_linear (owned, 3 * c, c, true);
      blk->proj = random_linear (owned, c, c, true);
      blk->fc1 = random_linear (owned, 4 * c, c, true);
      blk->fc2 = random_linear (owned, c, 4 * c, true);
      blk->rel_bias = tab;
    }
    sw->out_norm[i] = random_norm (owned, c);
    if (i < 3) {
      sw->merge_norm[i] = random_norm (owned, 4 * c);
      sw->merge_reduce[i] = random_linear (owned, 2 * c, 4 * c, false);
    }
    bb.out_channels[i] = c;
  }
  /* tokens 24x40 .. 3x5: padded to 28x42 .. 7x7 */
  check_backbone ("Swin backbone", &bb, 96, 160, owned);
}

static void
test_image_ops (void)
{
  test_conv_case (3, 16, 7, 2, 1, 37, 45, false, true, true); /* stem */
  test_conv_case (16, 32, 1, 1, 1, 20, 24, false, false, false);
  test_conv_case (16, 32, 1, 2, 1, 20, 24, true, true, true); /* downsample */
  test_conv_case (32, 32, 3, 1, 1, 19, 23, true, true, true);
  test_conv_case (32, 32, 3, 2, 1, 19, 23, false, true, false);
  test_conv_case (64, 64, 3, 1, 32, 9, 11, false, true, false);  /* groups */
  test_conv_case (64, 16, 3, 1, 1, 180, 180, true, true, false); /* slices */
  /* 1x1s between a map that may be half (C 32) and one that is not (C 8) */
  test_conv_case (8, 32, 1, 1, 1, 13, 17, true, true, false);
  test_conv_case (32, 8, 1, 1, 1, 13, 17, false, false, true);
#ifdef SI_PARITY_EMU
  {
    /* every case above but the grouped one fused bias and ReLU into its
     * GEMMs; the same shapes again reuse their cached cuBLASLt setups (no
     * heuristic); then the device "has no such kernel" for new shapes:
     * the two-pass path */
    int fused = si_emu_lt_matmuls (), heur = si_emu_lt_heuristics ();
    test_conv_case (3, 16, 7, 2, 1, 37, 45, false, true, true);
    test_conv_case (32, 32, 3, 1, 1, 19, 23, true, true, true);
    if (fused < 6 || si_emu_lt_matmuls () != fused + 2 ||
        si_emu_lt_heuristics () != heur)
      si_parity_fail (pt,
          "conv2d: %d fused GEMMs for the 6 ungrouped cases, then %d more "
          "and %d new heuristics for two repeated shapes (expected >= 6, "
          "2, 0)",
          fused, si_emu_lt_matmuls () - fused, si_emu_lt_heuristics () - heur);
    fused = si_emu_lt_matmuls ();
    si_emu_lt_no_algo (1);
    test_conv_case (3, 16, 7, 2, 1, 39, 41, false, true, true);
    test_conv_case (16, 32, 1, 1, 1, 21, 23, true, true, false);
    test_conv_case (32, 32, 3, 1, 1, 17, 25, true, true, true);
    si_emu_lt_no_algo (0);
    if (si_emu_lt_matmuls () != fused)
      si_parity_fail (pt, "conv2d: %d fused GEMMs with no fused kernel",
          si_emu_lt_matmuls () - fused);
    else
      printf ("ok   conv2d: %d GEMMs with a fused bias epilogue, repeated "
              "shapes from the cache, the two-pass fallback as above\n",
          fused);
  }
#endif

  /* max pool: random, then all-negative (padding must not win); C 24 is
   * NHWC everywhere, C 32 may be blocked or half.  The values are
   * multiples of 2^-8, exact in half, so that the max is exact everywhere */
  for (int t = 0; t < 3; t++) {
    int h = 33, w = 40, c = t == 2 ? 32 : 24, ho = 17, wo = 20;
    float *xh = si_parity_random (
        rng, (size_t) h * w * c, t == 1 ? -5.0f : -1.0f, t == 1 ? -1.0f : 1.0f);
    SiTwin x, y;
    for (size_t k = 0; k < (size_t) h * w * c; k++)
      xh[k] = roundf (xh[k] * 256.0f) / 256.0f;
    x = twin_map (xh, h * w, c);
    g_free (xh);
    y = si_twin_new (pt, NULL, (size_t) ho * wo * c * 4);
    FOR_BOTH (i) {
      OPS (i)->maxpool3x3s2 (BE (i), TF (x, i), h, w, c, TF (y, i));
    }
    si_parity_sync (pt, "maxpool");
    check_map (t == 1 ? "maxpool3x3s2 all negative"
                      : (t ? "maxpool3x3s2 C 32" : "maxpool3x3s2"),
        &y, ho, wo, c, 0.0);
    si_twin_free (pt, &x);
    si_twin_free (pt, &y);
  }

  /* group norm: with bias, affine or not, in place and not; a large
   * offset tests the variance's cancellation; then the CUDA twin's pixel
   * slices: uneven ones of several pixels (C 512: 512 slices of 3001
   * pixels), the slice count cut by the channels (C 4096: 64 slices), a
   * channel tile not full (C 40) and one slice of two pixels */
  static const int gn_cases[][3] = { { 24 * 32, 64, 32 }, { 24 * 32, 64, 32 },
    { 24 * 32, 64, 32 }, { 3001, 512, 32 }, { 300, 4096, 32 },
    { 1025, 40, 8 } };
  for (int t = 0; t < (int) G_N_ELEMENTS (gn_cases); t++) {
    int hw = gn_cases[t][0], c = gn_cases[t][1], groups = gn_cases[t][2];
    char name[64];
    SiTwin x = twin_random (
        (size_t) hw * c, t == 2 ? 99.0f : -2.0f, t == 2 ? 101.0f : 2.0f);
    SiTwin y = si_twin_new (pt, NULL, (size_t) hw * c * 4);
    SiTwin bias = twin_random (c, -1, 1);
    SiTwin gamma = twin_random (c, 0.5f, 1.5f);
    SiTwin beta = twin_random (c, -1, 1);
    FOR_BOTH (i) {
      OPS (i)->group_norm (BE (i), TF (x, i), hw, c, groups, TF (bias, i),
          t == 1 ? NULL : TF (gamma, i), t == 1 ? NULL : TF (beta, i), 1e-5f,
          t == 0 ? TF (x, i) : TF (y, i));
    }
    si_parity_sync (pt, "group_norm");
    if (t < 3)
      g_snprintf (name, sizeof (name), "%s",
          t == 0 ? "group_norm in place"
                 : (t == 1 ? "group_norm no affine" : "group_norm offset 100"));
    else
      g_snprintf (
          name, sizeof (name), "group_norm HW %d C %d G %d", hw, c, groups);
    si_parity_check (pt, name, t == 0 ? &x : &y, (size_t) hw * c, TOL_SUM);
    si_twin_free (pt, &x);
    si_twin_free (pt, &y);
    si_twin_free (pt, &bias);
    si_twin_free (pt, &gamma);
    si_twin_free (pt, &beta);
  }

  {
    int rows = 67, cols = 45;
    SiTwin x = twin_random ((size_t) rows * cols, -1, 1);
    SiTwin y = si_twin_new (pt, NULL, (size_t) rows * cols * 4);
    FOR_BOTH (i) {
      OPS (i)->transpose (BE (i), TF (x, i), rows, cols, TF (y, i));
    }
    si_parity_sync (pt, "transpose");
    si_parity_check (pt, "transpose 67x45", &y, (size_t) rows * cols, 0.0);
    si_twin_free (pt, &x);
    si_twin_free (pt, &y);
  }

  {
    SiTwin x = twin_random (1000, -1, 1), y = twin_random (1000, -1, 1);
    FOR_BOTH (i) {
      OPS (i)->copy (
          BE (i), TF (y, i) + 7, TF (x, i) + 3, 900 * sizeof (float));
    }
    si_parity_sync (pt, "copy");
    si_parity_check (pt, "copy (offsets)", &y, 1000, 0.0);
    si_twin_free (pt, &x);
    si_twin_free (pt, &y);
  }
}

/* ---- decoder: small ops ---- */

static void
test_decoder_misc (void)
{
  int n = 37, c = 64;

  for (int t = 0; t < 4; t++) {
    bool res = t & 1, affine = t & 2;
    SiTwin x = twin_random ((size_t) n * c, -3, 3);
    SiTwin r = twin_random ((size_t) n * c, -1, 1);
    SiTwin gm = twin_random (c, 0.5f, 1.5f), bt = twin_random (c, -1, 1);
    char what[64];
    FOR_BOTH (i) {
      /* in place on the residual when there is one */
      OPS (i)->layer_norm (BE (i), TF (x, i), res ? TF (r, i) : NULL,
          affine ? TF (gm, i) : NULL, TF (bt, i), res ? TF (r, i) : TF (x, i),
          n, c, t == 3);
    }
    snprintf (what, sizeof (what), "layer_norm%s%s%s", res ? " +res" : "",
        affine ? " affine" : "", t == 3 ? " relu" : "");
    si_parity_sync (pt, what);
    si_parity_check (pt, what, res ? &r : &x, (size_t) n * c, TOL_SUM);
    si_twin_free (pt, &x);
    si_twin_free (pt, &r);
    si_twin_free (pt, &gm);
    si_twin_free (pt, &bt);
  }

  {
    /* the decoder's q1 heads: slices of a padded source, some through the
     * sigmoid, one of no columns, destinations in source order or not */
    const int cols[] = { 12, 0, 40, 7, 64, 3, 16 };
    const bool sig[] = { false, true, false, true, false, true, true };
    const int order[] = { 0, 1, 2, 4, 3, 6, 5 };
    int ns = G_N_ELEMENTS (cols), width = 0, ld;
    SiTwin src, dst[G_N_ELEMENTS (cols)];
    SiColumnSlice sl[2][G_N_ELEMENTS (cols)];
    for (int j = 0; j < ns; j++)
      width += cols[j];
    ld = width + 5;
    src = twin_random ((size_t) n * ld, -6, 6);
    for (int j = 0; j < ns; j++)
      dst[j] = twin_random ((size_t) n * MAX (cols[j], 1), -1, 1);
    FOR_BOTH (i) {
      int col = 0;
      for (int j = 0; j < ns; j++) {
        int o = order[j];
        sl[i][j] = (SiColumnSlice){
          .dst = TF (dst[o], i), .col0 = col, .cols = cols[o], .sigmoid = sig[o]
        };
        col += cols[o];
      }
      OPS (i)->split_columns (BE (i), TF (src, i), n, ld, sl[i], ns);
    }
    si_parity_sync (pt, "split_columns");
    for (int j = 0; j < ns; j++) {
      char what[64];
      snprintf (what, sizeof (what), "split_columns slice %d (%d%s)", j,
          cols[j], sig[j] ? ", sigmoid" : "");
      si_parity_check (pt, what, &dst[j], (size_t) n * MAX (cols[j], 1),
          sig[j] ? TOL_ELEM : 0.0);
      si_twin_free (pt, &dst[j]);
    }
    si_twin_free (pt, &src);
  }

  {
    int ld = c + 9;
    SiTwin y = twin_random ((size_t) n * ld, -1, 1), b = twin_random (c, -1, 1);
    FOR_BOTH (i) {
      OPS (i)->bias_act (BE (i), TF (y, i), TF (b, i), n, c, ld, true);
      OPS (i)->bias_act (BE (i), TF (y, i), TF (b, i), n, c, ld, false);
    }
    si_parity_sync (pt, "bias_act");
    si_parity_check (
        pt, "bias_act ld>n relu, then plain", &y, (size_t) n * ld, 0.0);
    si_twin_free (pt, &y);
    si_twin_free (pt, &b);
  }

  {
    float *h = si_parity_random (rng, 1000, -20, 20);
    SiTwin x;
    h[0] = 100.0f;
    h[1] = -100.0f; /* saturation: 1 and 0 (no NaN) */
    h[2] = 0.0f;
    x = si_twin_new (pt, h, 1000 * sizeof (float));
    FOR_BOTH (i) {
      OPS (i)->sigmoid (BE (i), TF (x, i), 1000);
    }
    si_parity_sync (pt, "sigmoid");
    si_parity_check (pt, "sigmoid incl. +-100", &x, 1000, TOL_ELEM);
    si_twin_free (pt, &x);
    g_free (h);
  }

  {
    SiTwin src = twin_random (7 * 50, -1, 1);
    SiTwin dst = twin_random (7 * 60, -1, 1);
    FOR_BOTH (i) {
      OPS (i)->copy_batched (
          BE (i), TF (dst, i) + 3, 60, TF (src, i) + 1, 50, 40, 7);
    }
    si_parity_sync (pt, "copy_batched");
    si_parity_check (pt, "copy_batched strided", &dst, 7 * 60, 0.0);
    si_twin_free (pt, &src);
    si_twin_free (pt, &dst);
  }

  {
    float *cx = si_parity_random (rng, (size_t) n * 4, 0.05f, 1.0f);
    SiTwin b, xyzr, xyxy, q, a, delta;
    for (int k = 0; k < 4; k++)
      cx[k] = k < 2 ? 0.5f : 1.0f; /* the default whole-image box */
    b = si_twin_new (pt, cx, (size_t) n * 4 * sizeof (float));
    xyzr = si_twin_new (pt, NULL, (size_t) n * 4 * sizeof (float));
    xyxy = si_twin_new (pt, NULL, (size_t) n * 4 * sizeof (float));
    q = twin_random ((size_t) n * c, -1, 1);
    a = si_twin_new (pt, NULL, (size_t) n * c * sizeof (float));
    delta = twin_random ((size_t) n * 4, -0.5f, 0.5f);
    FOR_BOTH (i) {
      OPS (i)->init_boxes (
          BE (i), TF (b, i), n, 123.0f, 90.0f, TF (xyzr, i), TF (xyxy, i));
    }
    si_parity_sync (pt, "init_boxes");
    si_parity_check (pt, "init_boxes xyzr", &xyzr, (size_t) n * 4, TOL_ELEM);
    si_parity_check (pt, "init_boxes xyxy", &xyxy, (size_t) n * 4, TOL_ELEM);
    FOR_BOTH (i) {
      OPS (i)->posenc_add (BE (i), TF (xyzr, i), TF (q, i), TF (a, i), n, c);
    }
    si_parity_sync (pt, "posenc_add");
    si_parity_check (pt, "posenc_add", &a, (size_t) n * c, TOL_ELEM);
    FOR_BOTH (i) {
      /* in place, as the decoder does */
      OPS (i)->refine_boxes (
          BE (i), TF (xyzr, i), TF (delta, i), TF (xyzr, i), TF (xyxy, i), n);
    }
    si_parity_sync (pt, "refine_boxes");
    si_parity_check (pt, "refine_boxes xyzr", &xyzr, (size_t) n * 4, TOL_ELEM);
    si_parity_check (pt, "refine_boxes xyxy", &xyxy, (size_t) n * 4, TOL_ELEM);
    si_twin_free (pt, &b);
    si_twin_free (pt, &xyzr);
    si_twin_free (pt, &xyxy);
    si_twin_free (pt, &q);
    si_twin_free (pt, &a);
    si_twin_free (pt, &delta);
    g_free (cx);
  }
}

/* Top-k: scores must agree; indices may differ only between candidates
 * whose reference scores are within 1e-6 (device and host expf).  NaN
 * logits score 0 on both (ranked last, by index). */
static void
test_topk_case (int n, int k, bool ties, bool nans)
{
  float *h = si_parity_random (rng, n, -8, 4);
  SiTwin lg, sc, ix, scratch;
  float *s[2];
  int32_t *id[2];
  char what[64];
  int bad = 0;

  if (ties) {
    for (int i = 0; i < n; i += 7)
      h[i] = h[(i * 13) % n]; /* exact duplicates */
    for (int i = 0; i < n; i += 97)
      h[i] = 40.0f; /* sigmoid == 1.0f: ties across the k boundary */
  }
  if (nans)
    for (int i = 3; i < n; i += 5)
      h[i] = NAN;
  lg = si_twin_new (pt, h, (size_t) n * sizeof (float));
  sc = si_twin_new (pt, NULL, (size_t) k * sizeof (float));
  ix = si_twin_new (pt, NULL, (size_t) k * sizeof (int32_t));
  scratch = si_twin_new (pt, NULL, (size_t) n * 8);
  FOR_BOTH (i) {
    OPS (i)->topk_sigmoid (
        BE (i), TF (lg, i), n, k, TF (sc, i), TI (ix, i), scratch.p[i]);
  }
  snprintf (what, sizeof (what), "topk_sigmoid n%d k%d%s%s", n, k,
      ties ? " ties" : "", nans ? " nan" : "");
  si_parity_sync (pt, what);
  si_parity_check (pt, what, &sc, k, TOL_ELEM);
  FOR_BOTH (i) {
    GError *error = NULL;
    s[i] = g_new (float, k);
    id[i] = g_new (int32_t, k);
    if (!OPS (i)->download (
            BE (i), s[i], sc.p[i], k * sizeof (float), &error) ||
        !OPS (i)->download (
            BE (i), id[i], ix.p[i], k * sizeof (int32_t), &error)) {
      si_parity_fail (pt, "%s: download: %s", what, error->message);
      g_clear_error (&error);
    }
  }
  for (int j = 0; j < k; j++) {
    if (id[0][j] == id[1][j])
      continue;
    if (id[1][j] < 0 || id[1][j] >= n ||
        !(fabsf (si_topk_score (h[id[1][j]]) - s[0][j]) <= 1e-6f))
      bad++;
  }
  /* NaN logits: finite scores on the reference, the NaNs last (score 0)
   * when k takes every candidate (the comparison skips NaN on both sides) */
  if (nans) {
    int n_nan = 0, zeros = 0;
    for (int i = 3; i < n; i += 5)
      n_nan++;
    for (int j = 0; j < k; j++) {
      bad += !isfinite (s[0][j]);
      zeros += j >= k - n_nan && s[0][j] == 0.0f;
    }
    bad += k == n && zeros != n_nan;
  }
  pt->checks++;
  printf ("%s %-40s %d indices out of near-ties%s\n", bad ? "FAIL" : "ok  ",
      what, bad, nans ? " or NaN scores" : "");
  if (bad)
    pt->failures++;
  FOR_BOTH (i) {
    g_free (s[i]);
    g_free (id[i]);
  }
  si_twin_free (pt, &lg);
  si_twin_free (pt, &sc);
  si_twin_free (pt, &ix);
  si_twin_free (pt, &scratch);
  g_free (h);
}

/* ---- decoder: attention, sampler, mixing ---- */

static float *
random_xyzr (int n)
{
  float *b = g_new (float, (size_t) n * 4);
  for (int i = 0; i < n; i++) {
    b[4 * i] = (float) g_rand_double_range (rng, 0, 120);
    b[4 * i + 1] = (float) g_rand_double_range (rng, 0, 90);
    b[4 * i + 2] = (float) g_rand_double_range (rng, 2, 6);
    b[4 * i + 3] = (float) g_rand_double_range (rng, -1.5, 1.5);
  }
  /* a duplicate box and a tiny far-away one (log (1e-7) bias) */
  memcpy (b + 4, b, 4 * sizeof (float));
  b[8] = 1000.0f;
  b[9] = 1000.0f;
  b[10] = -3.0f;
  return b;
}

static void
test_attention (void)
{
  int n = 37, heads = 8;
  float *bx = random_xyzr (n);
  SiTwin xyzr = si_twin_new (pt, bx, (size_t) n * 16);
  SiTwin tau = twin_random (heads, 0.1f, 2.0f);
  SiTwin bias = si_twin_new (pt, NULL, (size_t) heads * n * n * 4);
  SiTwin lg = twin_random ((size_t) heads * n * n, -5, 5);

  FOR_BOTH (i) {
    OPS (i)->iof_bias (
        BE (i), TF (xyzr, i), TF (tau, i), TF (bias, i), n, heads);
  }
  si_parity_sync (pt, "iof_bias");
  si_parity_check (pt, "iof_bias (dup, disjoint boxes)", &bias,
      (size_t) heads * n * n, TOL_ELEM);
  FOR_BOTH (i) {
    OPS (i)->softmax_bias (BE (i), TF (lg, i), TF (bias, i), heads * n, n);
  }
  si_parity_sync (pt, "softmax_bias");
  si_parity_check (pt, "softmax_bias", &lg, (size_t) heads * n * n, TOL_SUM);
  si_twin_free (pt, &xyzr);
  si_twin_free (pt, &tau);
  si_twin_free (pt, &bias);
  si_twin_free (pt, &lg);
  g_free (bx);
}

/* The decoder's self-attention on qkv (N, 3 heads hd + pad) into out
 * (N, heads hd + pad): the CPU's four ops against CUDA's one kernel (or,
 * for hd over its 128, the same four ops); @launches: the kernels CUDA
 * should launch for it under the emulation (cuBLAS calls not counted). */
static void
test_self_attention_case (int n, int heads, int hd, int launches)
{
  char what[96];
  int c = heads * hd, ld = 3 * c + 3, ldo = c + 5;
  float *bx = random_xyzr (MAX (n, 3));
  SiTwin xyzr = si_twin_new (pt, bx, (size_t) MAX (n, 3) * 16);
  SiTwin tau = twin_random (heads, 0.1f, 2.0f);
  SiTwin qkv = twin_random ((size_t) n * ld, -2, 2);
  SiTwin out = twin_random ((size_t) n * ldo, -1, 1);
  SiTwin scratch = si_twin_new (pt, NULL, (size_t) 2 * heads * n * n * 4);
  int before = 0;

  (void) launches;
  FOR_BOTH (i) {
#ifdef SI_PARITY_EMU
    if (i == 1)
      before = si_emu_launches ();
#endif
    OPS (i)->self_attention (BE (i), TF (qkv, i), TF (qkv, i) + c,
        TF (qkv, i) + 2 * c, ld, TF (xyzr, i), TF (tau, i), TF (out, i), ldo, n,
        heads, hd, TF (scratch, i));
  }
  snprintf (
      what, sizeof (what), "self_attention n%d heads %d hd %d", n, heads, hd);
#ifdef SI_PARITY_EMU
  if (si_emu_launches () - before != launches)
    si_parity_fail (pt, "%s: %d kernels launched, want %d", what,
        si_emu_launches () - before, launches);
#endif
  si_parity_sync (pt, what);
  /* the columns between the rows (ldo > c) must be left as they were */
  si_parity_check (pt, what, &out, (size_t) n * ldo,
      hd > 128 ? MAX (tol_gemm, TOL_SUM) : TOL_SUM);
  si_twin_free (pt, &xyzr);
  si_twin_free (pt, &tau);
  si_twin_free (pt, &qkv);
  si_twin_free (pt, &out);
  si_twin_free (pt, &scratch);
  g_free (bx);
  (void) before;
}

static void
test_self_attention (void)
{
  test_self_attention_case (100, 8, 32, 1); /* R-50 100 queries */
  test_self_attention_case (37, 8, 32, 1);  /* part chunks and blocks */
  test_self_attention_case (300, 2, 32, 1); /* 10 key chunks */
  test_self_attention_case (1, 1, 16, 1);
  test_self_attention_case (33, 2, 100, 1); /* hd over a warp, not whole */
  test_self_attention_case (45, 4, 128, 1);
  test_self_attention_case (20, 2, 160, 2); /* wider: iof_bias, softmax */
}

static void
test_sampler (void)
{
  int n = 23, g = 4, p = 4, k = 8, r = p * k, dg = 16, d = g * dg;
  int lh[SI_NUM_LEVELS] = { 24, 12, 6, 3 },
      lw[SI_NUM_LEVELS] = { 32, 16, 8, 4 };
  int strides[SI_NUM_LEVELS] = { 4, 8, 16, 32 };
  float *bx = random_xyzr (n);
  SiTwin xyzr = si_twin_new (pt, bx, (size_t) n * 16);
  SiTwin off1 = twin_random ((size_t) n * g * p * 3, -1, 1);
  SiTwin off2 = twin_random ((size_t) n * k * 3, -1, 1);
  SiTwin pts = si_twin_new (pt, NULL, (size_t) n * g * r * 3 * 4);
  SiTwin out = si_twin_new (pt, NULL, (size_t) n * g * r * dg * 4);
  SiTwin lv[SI_NUM_LEVELS];

  for (int l = 0; l < SI_NUM_LEVELS; l++)
    lv[l] = twin_random ((size_t) lh[l] * lw[l] * d, -1, 1);
  FOR_BOTH (i) {
    OPS (i)->sample_points (BE (i), TF (xyzr, i), TF (off1, i), TF (off2, i),
        TF (pts, i), n, g, p, k);
  }
  si_parity_sync (pt, "sample_points");
  si_parity_check (pt, "sample_points", &pts, (size_t) n * g * r * 3, TOL_ELEM);
  FOR_BOTH (i) {
    const float *levels[SI_NUM_LEVELS];
    for (int l = 0; l < SI_NUM_LEVELS; l++)
      levels[l] = TF (lv[l], i);
    OPS (i)->sample_features (
        BE (i), TF (pts, i), levels, lh, lw, strides, n, g, r, dg, TF (out, i));
  }
  si_parity_sync (pt, "sample_features");
  si_parity_check (pt, "sample_features (points off the map too)", &out,
      (size_t) n * g * r * dg, TOL_SUM);

  /* points no model should make, which must sample nothing on both twins
   * (a device converts a NaN coordinate to 0, x86 to INT_MIN): NaN and
   * infinite x or y, and far off the map */
  {
    size_t np = (size_t) n * g * r;
    float *h = g_new (float, np * 3),
          bad[] = { NAN, INFINITY, -INFINITY, 3e9f, -3e9f };
    GError *error = NULL;
    SiTwin edge;

    if (!OPS (0)->download (BE (0), h, TF (pts, 0), np * 12, &error)) {
      si_parity_fail (pt, "sample_features: download: %s", error->message);
      g_clear_error (&error);
    }
    for (size_t q = 0; q < np; q += 3)
      h[q * 3 + (q / 3) % 2] = bad[(q / 6) % G_N_ELEMENTS (bad)];
    edge = si_twin_new (pt, h, np * 12);
    FOR_BOTH (i) {
      const float *levels[SI_NUM_LEVELS];
      for (int l = 0; l < SI_NUM_LEVELS; l++)
        levels[l] = TF (lv[l], i);
      OPS (i)->sample_features (BE (i), TF (edge, i), levels, lh, lw, strides,
          n, g, r, dg, TF (out, i));
    }
    si_parity_sync (pt, "sample_features edge points");
    si_parity_check (
        pt, "sample_features (NaN, inf, far points)", &out, np * dg, TOL_SUM);
    /* and the reference itself stays finite (NaN on both would pass) */
    {
      float *o = g_new (float, np *dg);
      size_t nonfinite = 0;
      if (OPS (0)->download (BE (0), o, TF (out, 0), np * dg * 4, &error)) {
        for (size_t q = 0; q < np * dg; q++)
          nonfinite += !isfinite (o[q]);
      } else {
        si_parity_fail (pt, "sample_features: download: %s", error->message);
        g_clear_error (&error);
      }
      pt->checks++;
      printf ("%s %-40s %zu non-finite values\n", nonfinite ? "FAIL" : "ok  ",
          "sample_features edge points, cpu", nonfinite);
      if (nonfinite)
        pt->failures++;
      g_free (o);
    }
    si_twin_free (pt, &edge);
    g_free (h);
  }
  si_twin_free (pt, &xyzr);
  si_twin_free (pt, &off1);
  si_twin_free (pt, &off2);
  si_twin_free (pt, &pts);
  si_twin_free (pt, &out);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    si_twin_free (pt, &lv[l]);
  g_free (bx);
}

static void
test_mixing (void)
{
  int batch = 29, p = 4, k = 8, dg = 16, rows = p * k;

  for (int t = 0; t < 2; t++) {
    long bstride = 3 * (t ? rows : dg);
    SiTwin x = twin_random ((size_t) batch * rows * dg, -2, 3);
    SiTwin b = twin_random ((size_t) batch * bstride, -1, 1);
    FOR_BOTH (i) {
      OPS (i)->ln2d_bias_relu (
          BE (i), TF (x, i), TF (b, i), bstride, t, batch, rows, dg);
    }
    si_parity_sync (pt, "ln2d_bias_relu");
    si_parity_check (pt, t ? "ln2d_bias_relu per row" : "ln2d_bias_relu", &x,
        (size_t) batch * rows * dg, TOL_SUM);
    si_twin_free (pt, &x);
    si_twin_free (pt, &b);
  }

  /* with the swapped copy (the next reuse step's axis input); p != k */
  {
    int sp = 3, sk = 5, sr = sp * sk;
    size_t sz = (size_t) batch * sr * dg;
    SiTwin x = twin_random (sz, -2, 3);
    SiTwin b = twin_random ((size_t) batch * 2 * dg, -1, 1);
    SiTwin sw = si_twin_new (pt, NULL, sz * 4);
    FOR_BOTH (i) {
      OPS (i)->ln2d_bias_relu_swap (BE (i), TF (x, i), TF (b, i), 2 * dg, false,
          batch, sp, sk, dg, TF (sw, i));
    }
    si_parity_sync (pt, "ln2d_bias_relu_swap");
    si_parity_check (pt, "ln2d_bias_relu_swap", &x, sz, TOL_SUM);
    si_parity_check (pt, "ln2d_bias_relu_swap (swapped)", &sw, sz, TOL_SUM);
    si_twin_free (pt, &x);
    si_twin_free (pt, &b);
    si_twin_free (pt, &sw);
  }

  {
    size_t sz = (size_t) batch * p * k * dg;
    SiTwin src = twin_random (sz, -1, 1);
    SiTwin axt = si_twin_new (pt, NULL, sz * 4);
    SiTwin lc = twin_random (sz, -1, 1);
    SiTwin res = twin_random (sz, -1, 1);
    FOR_BOTH (i) {
      OPS (i)->swap_axes (BE (i), TF (src, i), TF (axt, i), batch, p, k, dg);
      /* u aliases res, as in the decoder */
      OPS (i)->cascade_residual (BE (i), TF (lc, i), TF (axt, i), TF (res, i),
          TF (res, i), batch, p, k, dg);
    }
    si_parity_sync (pt, "swap_axes");
    si_parity_check (pt, "swap_axes", &axt, sz, 0.0);
    si_parity_check (pt, "cascade_residual (u = res)", &res, sz, TOL_ELEM);
    si_twin_free (pt, &src);
    si_twin_free (pt, &axt);
    si_twin_free (pt, &lc);
    si_twin_free (pt, &res);
  }

  {
    int gr = 16, gc = 16, l = 3;
    /* gates laid out as (B, Dg, 2, L): row gate at [i][1][m], column gate
     * at [j][0][m] for m = 1: inc 2L, as the decoder reads them */
    SiTwin old = twin_random ((size_t) batch * gr * gc + 5, -1, 1);
    SiTwin nw = twin_random ((size_t) batch * gr * gc, -1, 1);
    SiTwin gates = twin_random ((size_t) batch * gr * 2 * l, 0, 1);
    SiTwin out = si_twin_new (pt, NULL, (size_t) batch * gr * gc * 4);
    FOR_BOTH (i) {
      OPS (i)->gate_mix (BE (i), TF (old, i) + 5, gr * gc, TF (nw, i), gr * gc,
          TF (gates, i) + l + 1, gr * 2 * l, 2 * l, TF (gates, i) + 1,
          gr * 2 * l, 2 * l, TF (out, i), batch, gr, gc);
    }
    si_parity_sync (pt, "gate_mix");
    si_parity_check (
        pt, "gate_mix strided gates", &out, (size_t) batch * gr * gc, TOL_ELEM);
    si_twin_free (pt, &old);
    si_twin_free (pt, &nw);
    si_twin_free (pt, &gates);
    si_twin_free (pt, &out);
  }
}

int
main (int argc, char **argv)
{
  bool fp16 = argc > 1 && g_strcmp0 (argv[1], "fp16") == 0;

  si_parity_init (pt, fp16 ? SI_PRECISION_FP16 : SI_PRECISION_FP32);
  if (fp16)
    tol_gemm = 1e-5; /* fp16 operands, fp32 accumulation */
  rng = g_rand_new_with_seed (20231002);

  test_gemm ();
  test_preprocess ();
  test_image_ops ();
  test_basic_block_backbone ();
  test_deform_im2col ();
  test_dcn_backbone ();
  test_swin_backbone ();
  test_decoder_misc ();
  test_topk_case (20 * 80, 20, false, false);
  test_topk_case (100 * 80, 100, true, false);
  test_topk_case (100 * 80, 50, true, false); /* 83 scores of 1 for 50 */
  test_topk_case (300 * 80, 300, true, false);
  test_topk_case (160, 160, false, true);
  test_topk_case (160, 100, false, true);
  test_attention ();
  test_self_attention ();
  test_sampler ();
  test_mixing ();

  g_rand_free (rng);
  return si_parity_finish (pt);
}
