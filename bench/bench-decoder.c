/* bench-decoder.c: times the query side alone (query init, the decoder
 * stages, post-processing) for a full-size StageInteractor decoder built
 * in memory with random weights (model-spec 6.0 sizes of the r50 configs)
 * on random neck maps of an 800x1344 input.  Not part of `meson test`.
 * Usage: bench-decoder [N_QUERIES (100)] [RUNS (5)] [THREADS (0 = all)]
 *   [profile]: adds the wall time per op (timers around every table call).
 */
#include "backend.h"
#include "decoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static guint32 rng = 1;

/* uniform (-scale, scale), xorshift32 */
static float *
rnd (GPtrArray *owned, size_t n, float scale)
{
  float *p = g_new (float, n);
  for (size_t i = 0; i < n; i++) {
    rng ^= rng << 13;
    rng ^= rng >> 17;
    rng ^= rng << 5;
    p[i] = scale * ((float) (rng >> 8) / 8388608.0f - 1.0f);
  }
  g_ptr_array_add (owned, p);
  return p;
}

static SiLinear
lin (GPtrArray *owned, int out, int in)
{
  SiLinear l = { rnd (owned, (size_t) out * in, 1.0f / sqrtf ((float) in)),
    rnd (owned, out, 0.1f), out, in };
  return l;
}

static SiNorm
norm (GPtrArray *owned, int n)
{
  SiNorm m = { rnd (owned, n, 1.0f), rnd (owned, n, 0.1f), n };
  for (int i = 0; i < n; i++)
    ((float *) m.gamma)[i] += 1.0f;
  return m;
}

/* The decoder part of struct _SiModel for the r50 configs with n queries. */
static void
make_model (SiModel *m, int n, GPtrArray *owned)
{
  static const int points[6] = { 8, 4, 4, 4, 4, 4 };
  int c = 256, g = 4, dg = 64, k = 8, o = 128, reuse_st = 2;

  m->num_query = n;
  m->content_dim = c;
  m->num_stages = 6;
  m->num_classes = 80;
  m->max_per_img = n;
  m->use_sigmoid = true;
  for (int l = 0; l < 4; l++)
    m->featmap_strides[l] = 4 << l;
  m->init_content = rnd (owned, (size_t) n * c, 1.0f);
  m->init_boxes = rnd (owned, (size_t) n * 4, 0.0f);
  for (int i = 0; i < n; i++) {
    float *b = (float *) m->init_boxes + 4 * i;
    b[0] = b[1] = 0.5f;
    b[2] = b[3] = 1.0f;
  }
  m->stages = g_new0 (SiStage, 6);
  g_ptr_array_add (owned, m->stages);
  for (int s = 0; s < 6; s++) {
    SiStage *st = &m->stages[s];
    *st = (SiStage){ .idx = s,
      .C = c,
      .D = c,
      .G = g,
      .Dg = dg,
      .Ha = 8,
      .P = points[s],
      .K = k,
      .R = points[s] * k,
      .O = o,
      .F = 2048,
      .NC = 80,
      .reuse = s >= reuse_st };
    st->Sg = st->reuse ? o / 2 : o;
    st->O_tot = o;
    st->L = st->reuse ? s - reuse_st + 1 : 0;
    st->lim = st->reuse ? 1 : 0;
    st->in_proj = lin (owned, 3 * c, c);
    st->out_proj = lin (owned, c, c);
    st->attn_norm = norm (owned, c);
    st->iof_tau = rnd (owned, 8, 1.0f);
    st->gen_one_d = lin (owned, 3 * g * st->P, c);
    st->gen_double_d = lin (owned, 3 * k, c);
    st->param_gen = lin (owned, g * (dg * dg + st->Sg * st->R), c);
    st->mix_bias = lin (owned, g * (dg + o), c);
    st->Wv = lin (owned, c, o * c);
    st->Wv_norm = norm (owned, c);
    st->subbox_local = g_new (SiLinear, MAX (st->L, 1));
    st->axis_atten = g_new (SiLinear, MAX (st->L, 1));
    g_ptr_array_add (owned, st->subbox_local);
    g_ptr_array_add (owned, st->axis_atten);
    for (int i = 0; i < st->L; i++) {
      st->subbox_local[i] = lin (owned, k * dg, k * dg);
      st->axis_atten[i] = lin (owned, st->P * dg, st->P * dg);
    }
    if (st->reuse) {
      st->M_score = lin (owned, g * dg * 2 * st->L, c);
      st->M_score_mix_bias = lin (owned, g * dg * st->L, c);
      st->S_score = lin (owned, g * st->Sg, c);
      st->S_score2 = lin (owned, g * st->R, c);
    }
    st->ffn1 = lin (owned, 2048, c);
    st->ffn2 = lin (owned, c, 2048);
    st->ffn_norm = norm (owned, c);
    st->n_cls_fcs = st->n_reg_fcs = 1;
    st->cls_fc = g_new (SiLinear, 1);
    st->cls_ln = g_new (SiNorm, 1);
    st->reg_fc = g_new (SiLinear, 1);
    st->reg_ln = g_new (SiNorm, 1);
    g_ptr_array_add (owned, st->cls_fc);
    g_ptr_array_add (owned, st->cls_ln);
    g_ptr_array_add (owned, st->reg_fc);
    g_ptr_array_add (owned, st->reg_ln);
    st->cls_fc[0] = lin (owned, c, c);
    st->cls_ln[0] = norm (owned, c);
    st->reg_fc[0] = lin (owned, c, c);
    st->reg_ln[0] = norm (owned, c);
    st->fc_cls = lin (owned, 80, c);
    st->fc_reg = lin (owned, 4, c);
  }
}

/* CPU time of the process (all threads), ms. */
static double
cpu_ms (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ---- per-op profile (--profile): the table wrapped with timers ---- */
static SiBackendOps orig_ops, prof_ops;
static GHashTable *prof; /* name -> double[2] (ms, calls) */

static double
wall_ms (void)
{
  return g_get_monotonic_time () / 1e3;
}

static void
prof_add (const char *name, double t0)
{
  double *v = g_hash_table_lookup (prof, name);
  if (!v) {
    v = g_new0 (double, 2);
    g_hash_table_insert (prof, g_strdup (name), v);
  }
  v[0] += wall_ms () - t0;
  v[1] += 1;
}

static void
p_gemm (SiBackend *be, const SiGemm *g)
{
  double t0 = wall_ms ();
  char name[64];
  orig_ops.gemm (be, g);
  g_snprintf (name, sizeof (name), "gemm %dx%dx%d", g->m, g->n, g->k);
  prof_add (name, t0);
}

static void
p_gemm_batched (
    SiBackend *be, const SiGemm *g, int batch, long sa, long sb, long sc)
{
  double t0 = wall_ms ();
  char name[64];
  orig_ops.gemm_batched (be, g, batch, sa, sb, sc);
  g_snprintf (name, sizeof (name), "gemm_batched %d x %dx%dx%d", batch, g->m,
      g->n, g->k);
  prof_add (name, t0);
}

#define WRAP(op, params, args)                                                 \
  static void p_##op params                                                    \
  {                                                                            \
    double t0 = wall_ms ();                                                    \
    orig_ops.op args;                                                          \
    prof_add (#op, t0);                                                        \
  }
WRAP (layer_norm,
    (SiBackend * be, const float *x, const float *res, const float *gamma,
        const float *beta, float *y, int rows, int n, bool relu),
    (be, x, res, gamma, beta, y, rows, n, relu))
WRAP (bias_act,
    (SiBackend * be, float *y, const float *bias, int rows, int n, int ld,
        bool relu),
    (be, y, bias, rows, n, ld, relu))
WRAP (sigmoid, (SiBackend * be, float *x, long n), (be, x, n))
WRAP (copy_batched,
    (SiBackend * be, float *dst, long ds, const float *src, long ss, long n,
        int batch),
    (be, dst, ds, src, ss, n, batch))
WRAP (posenc_add,
    (SiBackend * be, const float *xyzr, const float *q, float *a, int n, int c),
    (be, xyzr, q, a, n, c))
WRAP (iof_bias,
    (SiBackend * be, const float *xyzr, const float *tau, float *bias, int n,
        int heads),
    (be, xyzr, tau, bias, n, heads))
WRAP (softmax_bias, (SiBackend * be, float *l, const float *b, int rows, int n),
    (be, l, b, rows, n))
WRAP (sample_points,
    (SiBackend * be, const float *xyzr, const float *o1, const float *o2,
        float *pts, int n, int g, int p, int k),
    (be, xyzr, o1, o2, pts, n, g, p, k))
WRAP (sample_features,
    (SiBackend * be, const float *pts, const float *const levels[SI_NUM_LEVELS],
        const int h[SI_NUM_LEVELS], const int w[SI_NUM_LEVELS],
        const int st[SI_NUM_LEVELS], int n, int g, int r, int dg, float *out),
    (be, pts, levels, h, w, st, n, g, r, dg, out))
WRAP (ln2d_bias_relu,
    (SiBackend * be, float *x, const float *bias, long bs, bool per_row,
        int batch, int rows, int cols),
    (be, x, bias, bs, per_row, batch, rows, cols))
WRAP (ln2d_bias_relu_swap,
    (SiBackend * be, float *x, const float *bias, long bs, bool per_row,
        int batch, int p, int k, int cols, float *sw),
    (be, x, bias, bs, per_row, batch, p, k, cols, sw))
WRAP (swap_axes,
    (SiBackend * be, const float *src, float *dst, int batch, int x, int y,
        int z),
    (be, src, dst, batch, x, y, z))
WRAP (cascade_residual,
    (SiBackend * be, const float *lc, const float *axt, const float *res,
        float *u, int batch, int p, int k, int dg),
    (be, lc, axt, res, u, batch, p, k, dg))
WRAP (gate_mix,
    (SiBackend * be, const float *old, long os, const float *nw, long ns,
        const float *rg, long rs, int ri, const float *cg, long cs, int ci,
        float *out, int batch, int rows, int cols),
    (be, old, os, nw, ns, rg, rs, ri, cg, cs, ci, out, batch, rows, cols))
WRAP (refine_boxes,
    (SiBackend * be, const float *xyzr, const float *delta, float *xo,
        float *xyxy, int n),
    (be, xyzr, delta, xo, xyxy, n))

static void
profile_install (SiBackend *be)
{
  orig_ops = prof_ops = *be->ops;
  prof = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);
  prof_ops.gemm = p_gemm;
  prof_ops.gemm_batched = p_gemm_batched;
  prof_ops.layer_norm = p_layer_norm;
  prof_ops.bias_act = p_bias_act;
  prof_ops.sigmoid = p_sigmoid;
  prof_ops.copy_batched = p_copy_batched;
  prof_ops.posenc_add = p_posenc_add;
  prof_ops.iof_bias = p_iof_bias;
  prof_ops.softmax_bias = p_softmax_bias;
  prof_ops.sample_points = p_sample_points;
  prof_ops.sample_features = p_sample_features;
  prof_ops.ln2d_bias_relu = p_ln2d_bias_relu;
  prof_ops.ln2d_bias_relu_swap = p_ln2d_bias_relu_swap;
  prof_ops.swap_axes = p_swap_axes;
  prof_ops.cascade_residual = p_cascade_residual;
  prof_ops.gate_mix = p_gate_mix;
  prof_ops.refine_boxes = p_refine_boxes;
  be->ops = &prof_ops;
}

static gint
prof_cmp (gconstpointer a, gconstpointer b)
{
  double x = ((double *) g_hash_table_lookup (prof, *(char **) a))[0];
  double y = ((double *) g_hash_table_lookup (prof, *(char **) b))[0];
  return (x < y) - (x > y);
}

static void
profile_print (int runs)
{
  guint n;
  char **keys = (char **) g_hash_table_get_keys_as_array (prof, &n);
  qsort (keys, n, sizeof (char *),
      (int (*) (const void *, const void *)) prof_cmp);
  printf ("per op, wall ms per run, calls per run:\n");
  for (guint i = 0; i < n; i++) {
    double *v = g_hash_table_lookup (prof, keys[i]);
    printf ("  %-36s %8.2f  %5.0f\n", keys[i], v[0] / runs, v[1] / runs);
  }
  g_free (keys);
  g_hash_table_unref (prof);
}

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return (x > y) - (x < y);
}

int
main (int argc, char **argv)
{
  int n = argc > 1 ? atoi (argv[1]) : 100;
  int runs = argc > 2 ? atoi (argv[2]) : 5;
  SiContextOptions opts = { .backend = SI_BACKEND_CPU };
  GPtrArray *owned = g_ptr_array_new_with_free_func (g_free);
  SiModel model = { 0 };
  SiImageInfo info = { .width = 1333,
    .height = 800,
    .new_w = 1333,
    .new_h = 800,
    .pad_w = 1344,
    .pad_h = 800,
    .scale_factor = { 1, 1, 1, 1 } };
  SiRunParams params = { .threshold = 0.3f, .max_detections = 0 };
  GError *error = NULL;
  SiBackend *be;
  SiDecoder *dec;
  float *levels[4];
  int h[4], w[4];
  double *total, *stage_ms[6], *cpu;

  opts.num_threads = argc > 3 ? atoi (argv[3]) : 0;
  make_model (&model, n, owned);
  be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  if (!be || !(dec = si_decoder_new (be, &model, &error))) {
    fprintf (stderr, "bench-decoder: %s\n", error->message);
    return 1;
  }
  if (argc > 4 && strcmp (argv[4], "profile") == 0)
    profile_install (be);
  for (int l = 0; l < 4; l++) {
    float *host;
    h[l] = 800 >> (l + 2);
    w[l] = 1344 >> (l + 2);
    host = rnd (owned, (size_t) h[l] * w[l] * 256, 1.0f);
    levels[l] = be->ops->alloc (be, (size_t) h[l] * w[l] * 256 * 4, &error);
    be->ops->upload (
        be, levels[l], host, (size_t) h[l] * w[l] * 256 * 4, &error);
  }
  total = g_new (double, runs);
  cpu = g_new (double, runs);
  for (int s = 0; s < 6; s++)
    stage_ms[s] = g_new (double, runs);
  for (int r = 0; r < runs; r++) {
    SiTimings t = { 0 };
    const SiDetection *dets;
    size_t n_dets;
    double c0 = cpu_ms ();
    if (!si_decoder_run (dec, (const float *const *) levels, h, w, &info, &t,
            NULL, NULL, &error) ||
        !si_decoder_postprocess (
            dec, &info, &params, &t, NULL, NULL, &dets, &n_dets, &error)) {
      fprintf (stderr, "bench-decoder: %s\n", error->message);
      return 1;
    }
    cpu[r] = cpu_ms () - c0;
    total[r] = t.query_init + t.postprocess;
    for (int s = 0; s < 6; s++) {
      stage_ms[s][r] = t.stage[s];
      total[r] += t.stage[s];
    }
  }
  printf (
      "decoder, N=%d, C=256, 6 stages, %d runs (ms, min / median)\n", n, runs);
  for (int s = 0; s < 6; s++) {
    qsort (stage_ms[s], runs, sizeof (double), cmp_double);
    printf ("  stage %d  %8.2f / %8.2f\n", s, stage_ms[s][0],
        stage_ms[s][runs / 2]);
  }
  qsort (total, runs, sizeof (double), cmp_double);
  printf ("  total    %8.2f / %8.2f\n", total[0], total[runs / 2]);
  qsort (cpu, runs, sizeof (double), cmp_double);
  printf ("  cpu time %8.2f / %8.2f (all threads)\n", cpu[0], cpu[runs / 2]);

  if (prof)
    profile_print (runs);
  si_decoder_free (&dec);
  for (int l = 0; l < 4; l++)
    be->ops->free (be, levels[l]);
  si_backend_free (&be);
  g_ptr_array_unref (owned);
  for (int s = 0; s < 6; s++)
    g_free (stage_ms[s]);
  g_free (total);
  g_free (cpu);
  return 0;
}
