/* test-image-conv.c: the CPU backend's fast convolution path (oneDNN on
 * the map layout, Winograd, fused residual sum and ReLU) against the
 * plain-loop reference convolution on random data (suite unit), convs
 * carrying an eval BatchNorm (folded by the backend, si_conv_fold), plus
 * max pool (blocked maps) and GroupNorm against direct formulas.
 */
#include "backend.h"
#include "backbone.h"
#include "cpu/backend_cpu.h"

#include <float.h>
#include <math.h>
#include <string.h>

static float *
random_floats (GRand *r, size_t n)
{
  float *p = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    p[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  return p;
}

/* NHWC (H, W, C) -> the backend's map layout (backend.h) through
 * map_from_nhwc, checked against the layout: blocked
 * (C/16, H, W, 16) when the CPU keeps it so. */
static float *
to_map (SiBackend *be, const float *nhwc, int h, int w, int c)
{
  size_t hw = (size_t) h * w;
  float *m = g_new (float, hw *c);

  be->ops->map_from_nhwc (be, nhwc, h, w, c, m);
  if (si_cpu_map_blocked (be, c))
    for (size_t p = 0; p < hw; p++)
      for (int k = 0; k < c; k++)
        g_assert_cmpfloat (
            m[((size_t) (k / 16) * hw + p) * 16 + k % 16], ==, nhwc[p * c + k]);
  else
    g_assert_cmpmem (m, hw * c * sizeof (float), nhwc, hw * c * sizeof (float));
  return m;
}

/* map layout -> NHWC through the backend op; frees m */
static float *
from_map (SiBackend *be, float *m, int h, int w, int c)
{
  float *out = g_new (float, (size_t) h *w *c);
  be->ops->map_to_nhwc (be, m, h, w, c, out);
  g_free (m);
  return out;
}

static double
rel_l2 (const float *a, const float *ref, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) a[i] - ref[i];
    num += d * d;
    den += (double) ref[i] * ref[i];
  }
  return sqrt (num / MAX (den, 1e-30));
}

/* Checks one conv against the reference; returns the name of oneDNN's
 * kernel that ran it (si_conv_impl_cpu), NULL on the plain-loop path. */
static gchar *
check_conv_impl (SiBackend *be, GRand *r, int cin, int cout, int k, int stride,
    int groups, int h, int w, bool acc, bool relu)
{
  GError *error = NULL;
  SiConv cv = { 0 };
  SiConvPlan *plan;
  int pad = k / 2;
  int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
  size_t ny = (size_t) ho * wo * cout;
  float *wt = random_floats (r, (size_t) cout * (cin / groups) * k * k);
  float *b = random_floats (r, cout);
  float *x = random_floats (r, (size_t) h * w * cin);
  float *y = random_floats (r, ny);
  float *y_ref = g_memdup2 (y, ny * sizeof (float));
  float *xm = to_map (be, x, h, w, cin), *ym = to_map (be, y, ho, wo, cout);
  double err;
  gchar *impl;

  cv.w = wt;
  cv.b = b;
  cv.cout = cout;
  cv.cin = cin;
  cv.kh = cv.kw = k;
  cv.stride = stride;
  cv.pad = pad;
  cv.groups = groups;

  si_conv2d_reference (&cv, x, h, w, y_ref, acc, relu);
  plan = be->ops->conv_prepare (be, &cv, &error);
  g_assert_no_error (error);
  g_assert_true (be->ops->conv2d (be, plan, xm, h, w, ym, acc, relu, &error));
  g_assert_no_error (error);
  /* a second run hits the primitive cache */
  if (!acc) {
    memset (ym, 0, ny * sizeof (float));
    g_assert_true (be->ops->conv2d (be, plan, xm, h, w, ym, acc, relu, &error));
  }
  g_free (y);
  y = from_map (be, ym, ho, wo, cout);
  g_free (xm);
  err = rel_l2 (y, y_ref, ny);
  impl = g_strdup (si_conv_impl_cpu (plan));
  g_print ("conv %d->%d k%d s%d g%d %dx%d acc=%d relu=%d: rel L2 %.3g (%s)\n",
      cin, cout, k, stride, groups, h, w, acc, relu, err,
      impl ? impl : "plain loops");
  g_assert_cmpfloat (err, <, 1e-5);
  be->ops->conv_release (be, plan);
  g_free (wt);
  g_free (b);
  g_free (x);
  g_free (y);
  g_free (y_ref);
  return impl;
}

static void
check_conv (SiBackend *be, GRand *r, int cin, int cout, int k, int stride,
    int groups, int h, int w, bool acc, bool relu)
{
  g_free (
      check_conv_impl (be, r, cin, cout, k, stride, groups, h, w, acc, relu));
}

static void
test_conv_vs_reference (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  GRand *r = g_rand_new_with_seed (3);

  g_assert_no_error (error);
  si_cpu_backend_set_reference (be, false);
  check_conv (be, r, 3, 16, 7, 2, 1, 38, 30, false, true);
  check_conv (be, r, 16, 16, 3, 1, 1, 13, 17, false, true);
  check_conv (be, r, 16, 32, 3, 2, 1, 14, 18, false, true);
  check_conv (be, r, 16, 64, 1, 1, 1, 12, 9, false, false);
  check_conv (be, r, 16, 64, 1, 1, 1, 12, 9, true, true);
  check_conv (be, r, 64, 128, 1, 2, 1, 12, 10, false, false);
  check_conv (be, r, 32, 32, 3, 1, 4, 11, 7, true, true);
  check_conv (be, r, 40, 24, 3, 2, 1, 9, 15, true, false);
  /* 3x3 stride 1 on blocked maps: Winograd */
  check_conv (be, r, 64, 64, 3, 1, 1, 24, 32, false, true);
  check_conv (be, r, 128, 128, 3, 1, 1, 13, 21, true, true);
  check_conv (be, r, 64, 256, 1, 1, 1, 24, 32, true, true);
  si_backend_free (&be);
  g_rand_free (r);
}

static bool
is_reference_kernel (const char *impl)
{
  return impl != NULL && g_str_has_prefix (impl, "ref");
}

/* The convs of ResNeXt and DCN that oneDNN has no JIT kernel for on
 * blocked maps (groups of fewer than 16 channels; DCN's offset convs: a
 * blocked source, 18 or 36 NHWC outputs) run its NHWC kernels on copies
 * (~100x faster than its reference loops), wherever a plain 3x3 conv has
 * a JIT kernel at all. */
static void
test_conv_no_reference_kernels (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  GRand *r = g_rand_new_with_seed (5);
  gchar *plain;
  /* cin, cout, stride, groups, h, w, acc */
  static const int shapes[][7] = {
    { 64, 18, 1, 1, 13, 17, 0 }, /* offset convs */
    { 256, 18, 2, 1, 14, 18, 0 },
    { 64, 36, 1, 1, 9, 11, 0 },     /* deform_groups 2 */
    { 128, 128, 1, 32, 12, 10, 0 }, /* ResNeXt 32x4d layer1 */
    { 64, 64, 2, 32, 14, 12, 0 },
    { 32, 32, 1, 4, 11, 7, 1 }, /* + residual sum */
  };

  g_assert_no_error (error);
  si_cpu_backend_set_reference (be, false);
  plain = check_conv_impl (be, r, 64, 64, 3, 1, 1, 12, 10, false, true);
  if (plain == NULL || is_reference_kernel (plain)) {
    g_test_skip (plain ? "oneDNN has no JIT 3x3 conv on this CPU"
                       : "built without oneDNN");
  } else {
    for (size_t i = 0; i < G_N_ELEMENTS (shapes); i++) {
      const int *s = shapes[i];
      gchar *impl = check_conv_impl (
          be, r, s[0], s[1], 3, s[2], s[3], s[4], s[5], s[6], true);
      g_assert_false (is_reference_kernel (impl));
      g_free (impl);
    }
  }
  g_free (plain);
  si_backend_free (&be);
  g_rand_free (r);
}

/* Random eval BatchNorm views for a conv of cout channels (owned by
 * `owned`): gamma, var in [0.5, 1.5], beta, mean in [-1, 1]. */
static void
random_bn (GRand *r, GPtrArray *owned, SiConv *cv)
{
  float *v[4];
  for (int i = 0; i < 4; i++) {
    v[i] = random_floats (r, cv->cout);
    g_ptr_array_add (owned, v[i]);
  }
  for (int o = 0; o < cv->cout; o++) {
    v[0][o] = 1.0f + 0.5f * v[0][o];
    v[3][o] = 1.0f + 0.5f * v[3][o];
  }
  cv->bn.gamma = v[0];
  cv->bn.beta = v[1];
  cv->bn.mean = v[2];
  cv->bn.var = v[3];
  cv->bn.eps = 1e-5;
}

/* A conv with BN views (and optionally its own bias) through both CPU
 * paths: the plain-loop path must give exactly the reference conv on the
 * si_conv_fold weights, the oneDNN path the same within 1e-5. */
static void
check_conv_bn (SiBackend *be, GRand *r, int cin, int cout, int k, int stride,
    int h, int w, bool conv_bias)
{
  GError *error = NULL;
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  SiConv cv = { 0 }, folded;
  int pad = k / 2;
  int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
  size_t ny = (size_t) ho * wo * cout, nw = (size_t) cout * cin * k * k;
  float *x = random_floats (r, (size_t) h * w * cin);
  float *y_ref = g_new0 (float, ny), *fw = g_new (float, nw);
  float *fb = g_new (float, cout);

  cv.w = random_floats (r, nw);
  g_ptr_array_add (owned, (float *) cv.w);
  if (conv_bias) {
    cv.b = random_floats (r, cout);
    g_ptr_array_add (owned, (float *) cv.b);
  }
  cv.cout = cout;
  cv.cin = cin;
  cv.kh = cv.kw = k;
  cv.stride = stride;
  cv.pad = pad;
  cv.groups = 1;
  random_bn (r, owned, &cv);
  g_assert_cmpuint (si_conv_weight_numel (&cv), ==, nw);
  si_conv_fold (&cv, fw, fb);
  /* spot check of the formula */
  {
    double s = cv.bn.gamma[1] / sqrt ((double) cv.bn.var[1] + 1e-5);
    double b = conv_bias ? (cv.b[1] - (double) cv.bn.mean[1]) * s
                         : -(double) cv.bn.mean[1] * s;
    g_assert_cmpfloat (
        fabs (fw[nw / cout + 2] - cv.w[nw / cout + 2] * s), <, 1e-6);
    g_assert_cmpfloat (fabs (fb[1] - (cv.bn.beta[1] + b)), <, 1e-6);
  }
  folded = cv;
  folded.w = fw;
  folded.b = fb;
  memset (&folded.bn, 0, sizeof folded.bn);
  si_conv2d_reference (&folded, x, h, w, y_ref, false, true);

  for (int pass = 0; pass < 2; pass++) {
    bool reference = pass == 1;
    si_cpu_backend_set_reference (be, reference);
    SiConvPlan *plan = be->ops->conv_prepare (be, &cv, &error);
    g_assert_no_error (error);
    float *xm = reference ? g_memdup2 (x, (size_t) h * w * cin * 4)
                          : to_map (be, x, h, w, cin);
    float *ym = g_new0 (float, ny);
    g_assert_true (
        be->ops->conv2d (be, plan, xm, h, w, ym, false, true, &error));
    g_assert_no_error (error);
    float *y = reference ? ym : from_map (be, ym, ho, wo, cout);
    double err = rel_l2 (y, y_ref, ny);
    g_print ("conv+BN %d->%d k%d s%d %dx%d bias=%d %s: rel L2 %.3g\n", cin,
        cout, k, stride, h, w, conv_bias, reference ? "reference" : "oneDNN",
        err);
    if (reference)
      g_assert_cmpmem (y, ny * 4, y_ref, ny * 4);
    else
      g_assert_cmpfloat (err, <, 1e-5);
    be->ops->conv_release (be, plan);
    g_free (xm);
    g_free (y);
  }
  si_cpu_backend_set_reference (be, false);
  g_free (x);
  g_free (y_ref);
  g_free (fw);
  g_free (fb);
  g_ptr_array_unref (owned);
}

static void
test_conv_bn (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  GRand *r = g_rand_new_with_seed (5);

  g_assert_no_error (error);
  check_conv_bn (be, r, 3, 16, 7, 2, 30, 26, false); /* stem */
  check_conv_bn (be, r, 16, 32, 3, 1, 12, 14, false);
  check_conv_bn (be, r, 32, 16, 1, 2, 12, 14, true);
  si_backend_free (&be);
  g_rand_free (r);
}

static void
test_pool_and_group_norm (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  GRand *r = g_rand_new_with_seed (5);
  int h = 9, w = 12, c = 32, g = 4;
  int ho = (h - 1) / 2 + 1, wo = (w - 1) / 2 + 1;
  float *x = random_floats (r, (size_t) h * w * c);
  float *y = g_new (float, (size_t) ho *wo *c);
  float *bias = random_floats (r, c), *gamma = random_floats (r, c);
  float *beta = random_floats (r, c), *z = g_new (float, (size_t) h *w *c);

  g_assert_no_error (error);
  {
    float *xm = to_map (be, x, h, w, c), *ym = to_map (be, y, ho, wo, c);
    be->ops->maxpool3x3s2 (be, xm, h, w, c, ym);
    g_free (y);
    y = from_map (be, ym, ho, wo, c);
    g_free (xm);
  }
  for (int oy = 0; oy < ho; oy++)
    for (int ox = 0; ox < wo; ox++)
      for (int k = 0; k < c; k++) {
        float m = -FLT_MAX;
        for (int iy = MAX (2 * oy - 1, 0); iy <= MIN (2 * oy + 1, h - 1); iy++)
          for (int ix = MAX (2 * ox - 1, 0); ix <= MIN (2 * ox + 1, w - 1);
               ix++)
            m = MAX (m, x[((size_t) iy * w + ix) * c + k]);
        g_assert_cmpfloat (y[((size_t) oy * wo + ox) * c + k], ==, m);
      }

  be->ops->group_norm (be, x, h * w, c, g, bias, gamma, beta, 1e-5f, z);
  for (int gi = 0; gi < g; gi++) {
    double s = 0, q = 0, n = (double) h * w * (c / g);
    for (int p = 0; p < h * w; p++)
      for (int k = gi * (c / g); k < (gi + 1) * (c / g); k++)
        s += x[(size_t) p * c + k] + bias[k];
    double mean = s / n;
    for (int p = 0; p < h * w; p++)
      for (int k = gi * (c / g); k < (gi + 1) * (c / g); k++) {
        double d = x[(size_t) p * c + k] + bias[k] - mean;
        q += d * d;
      }
    double rstd = 1.0 / sqrt (q / n + 1e-5);
    for (int p = 0; p < h * w; p++)
      for (int k = gi * (c / g); k < (gi + 1) * (c / g); k++) {
        double want =
            (x[(size_t) p * c + k] + bias[k] - mean) * rstd * gamma[k] +
            beta[k];
        g_assert_cmpfloat (fabs (z[(size_t) p * c + k] - want), <, 1e-5);
      }
  }
  si_backend_free (&be);
  g_rand_free (r);
  g_free (x);
  g_free (y);
  g_free (z);
  g_free (bias);
  g_free (gamma);
  g_free (beta);
}

/* A random conv (weights scaled for O(1) activations) followed by an eval
 * BatchNorm, as the loader gives it (no conv bias). */
static SiConv
random_conv (GRand *r, GPtrArray *owned, int cin, int cout, int k, int stride)
{
  SiConv cv = { 0 };
  size_t n = (size_t) cout * cin * k * k;
  float *w = random_floats (r, n);
  float scale = (float) sqrt (3.0 / (cin * k * k));

  for (size_t i = 0; i < n; i++)
    w[i] *= scale;
  g_ptr_array_add (owned, w);
  cv.w = w;
  cv.cin = cin;
  cv.cout = cout;
  cv.kh = cv.kw = k;
  cv.stride = stride;
  cv.pad = k / 2;
  cv.groups = 1;
  random_bn (r, owned, &cv);
  return cv;
}

/* ResNet-18-style BasicBlock backbone (layer1.0 without downsample, the
 * identity copied) on random weights: oneDNN path vs plain loops. */
static void
test_basic_block_backbone (void)
{
  GError *error = NULL;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  GRand *r = g_rand_new_with_seed (11);
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  SiBackbone bb = { 0 };
  int ch[4] = { 16, 32, 64, 128 }, nb[4] = { 2, 2, 1, 1 };
  int h = 64, w = 96, cin = 16;
  size_t px = (size_t) h * w;
  float *x = random_floats (r, px * 3);
  float *res[2][SI_NUM_LEVELS];

  g_assert_no_error (error);
  bb.depth = 18;
  bb.bottleneck = false;
  bb.stem_channels = 16;
  bb.stem = random_conv (r, owned, 3, 16, 7, 2);
  for (int l = 0; l < 4; l++) {
    bb.n_blocks[l] = nb[l];
    bb.out_channels[l] = ch[l];
    bb.blocks[l] = g_new0 (SiBottleneck, nb[l]);
    for (int b = 0; b < nb[l]; b++) {
      SiBottleneck *blk = &bb.blocks[l][b];
      int stride = (b == 0 && l > 0) ? 2 : 1;
      blk->conv1 =
          random_conv (r, owned, b == 0 ? cin : ch[l], ch[l], 3, stride);
      blk->conv2 = random_conv (r, owned, ch[l], ch[l], 3, 1);
      blk->has_downsample = b == 0 && (stride != 1 || cin != ch[l]);
      if (blk->has_downsample)
        blk->downsample = random_conv (r, owned, cin, ch[l], 1, stride);
    }
    cin = ch[l];
  }

  for (int pass = 0; pass < 2; pass++) {
    SiBackboneSizes s;
    SiBackboneBuffers buf;
    SiBackboneNet *bn;

    si_cpu_backend_set_reference (be, pass == 1);
    si_backbone_sizes (&bb, px, 0, &s);
    buf.stem = g_new (float, s.stem);
    buf.pool = g_new (float, s.pool);
    buf.t1 = g_new (float, s.t1);
    buf.t2 = g_new (float, MAX (s.t2, 1));
    for (int l = 0; l < 4; l++)
      buf.out[l] = g_new (float, s.out[l]);
    bn = si_backbone_net_new (be, &bb, &error);
    g_assert_no_error (error);
    g_assert_true (si_backbone_run (bn, x, h, w, &buf, &error));
    g_assert_no_error (error);
    for (int l = 0; l < 4; l++) {
      int hl = h >> (l + 2), wl = w >> (l + 2);
      res[pass][l] = g_new (float, (size_t) hl *wl *ch[l]);
      be->ops->map_to_nhwc (be, buf.out[l], hl, wl, ch[l], res[pass][l]);
      g_free (buf.out[l]);
    }
    si_backbone_net_free (&bn);
    g_free (buf.stem);
    g_free (buf.pool);
    g_free (buf.t1);
    g_free (buf.t2);
  }
  for (int l = 0; l < 4; l++) {
    size_t n = (size_t) (h >> (l + 2)) * (w >> (l + 2)) * ch[l];
    double err = rel_l2 (res[0][l], res[1][l], n);
    g_print ("basic-block backbone level %d: rel L2 %.3g\n", l, err);
    g_assert_cmpfloat (err, <, 1e-5);
    g_free (res[0][l]);
    g_free (res[1][l]);
  }
  for (int l = 0; l < 4; l++)
    g_free (bb.blocks[l]);
  g_ptr_array_free (owned, TRUE);
  g_free (x);
  g_rand_free (r);
  si_backend_free (&be);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/image/conv/onednn-vs-reference", test_conv_vs_reference);
  g_test_add_func ("/image/conv/bn-folded", test_conv_bn);
  g_test_add_func (
      "/image/conv/no-reference-kernels", test_conv_no_reference_kernels);
  g_test_add_func ("/image/pool-and-group-norm", test_pool_and_group_norm);
  g_test_add_func ("/image/backbone/basic-block", test_basic_block_backbone);
  return g_test_run ();
}
