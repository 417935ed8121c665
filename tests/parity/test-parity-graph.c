/* test-parity-graph.c: record and replay on the CUDA backend (CUDA graphs,
 * backend_cuda.h): a decoder-like op sequence (GEMMs, bias + ReLU, layer
 * norm, biased softmax, batched GEMM, LN2D, gated mix, top-k) is recorded
 * once, then replayed on new input contents; the replay must equal a
 * direct run on the same inputs bit for bit.  Calls that cannot be
 * recorded (sync, download, upload, alloc) must fail cleanly during a
 * capture without spoiling it.  Skips (77) without a CUDA device.
 */
#include "si-config.h"

#include "backend.h"
#include "backend_cuda.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N 37  /* queries */
#define C 64  /* channels */
#define F 128 /* hidden */
#define G 4   /* groups */
#define DG 16 /* C / G */
#define NC 80 /* classes */
#define K 20  /* top-k */

static int failures;

typedef struct
{
  float *x, *w1, *b1, *h, *w2, *y, *gm, *bt, *att, *bias, *mix, *mb, *g, *old,
      *sc;
  int32_t *idx;
  void *scratch;
} Bufs;

static void *
dev (SiBackend *be, size_t bytes)
{
  GError *error = NULL;
  void *p = be->ops->alloc (be, bytes, &error);
  if (p == NULL) {
    printf ("FAIL: alloc: %s\n", error->message);
    exit (1);
  }
  return p;
}

static void
put (SiBackend *be, void *d, GRand *r, size_t n, float lo, float hi)
{
  GError *error = NULL;
  float *h = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    h[i] = (float) g_rand_double_range (r, lo, hi);
  if (!be->ops->upload (be, d, h, n * sizeof (float), &error)) {
    printf ("FAIL: upload: %s\n", error->message);
    exit (1);
  }
  g_free (h);
}

/* The recorded sequence: no sync, no host traffic. */
static void
sequence (SiBackend *be, Bufs *b)
{
  const SiBackendOps *o = be->ops;
  SiGemm g1 = { false, true, N, F, C, 1.0f, 0.0f, b->x, C, b->w1, C, b->h, F };
  SiGemm g2 = { false, true, N, C, F, 1.0f, 0.0f, b->h, F, b->w2, F, b->y, C };
  SiGemm ga = { false, true, N, N, C, 0.125f, 0.0f, b->y, C, b->y, C, b->att,
    N };
  SiGemm gm = { false, false, DG, DG, DG, 1.0f, 0.0f, b->mix, DG, b->g, DG,
    b->mb, DG };

  o->gemm (be, &g1);
  o->bias_act (be, b->h, b->b1, N, F, F, true);
  o->gemm (be, &g2);
  o->layer_norm (be, b->y, b->x, b->gm, b->bt, b->y, N, C, false);
  o->gemm (be, &ga);
  o->softmax_bias (be, b->att, b->bias, N, N);
  o->gemm_batched (be, &gm, N * G, DG * DG, DG * DG, DG * DG);
  o->ln2d_bias_relu (be, b->mb, b->b1, DG, false, N * G, DG, DG);
  o->gate_mix (be, b->old, DG * DG, b->mb, DG * DG, b->g, DG * DG, DG, b->g,
      DG * DG, 1, b->mix, N * G, DG, DG);
  o->copy (be, b->sc, b->att, (size_t) N * N * sizeof (float));
  o->topk_sigmoid (be, b->sc, N * N, K, b->sc + N * N, b->idx, b->scratch);
}

static float *
fetch (SiBackend *be, const void *d, size_t bytes)
{
  GError *error = NULL;
  float *h = g_malloc (bytes);
  if (!be->ops->download (be, h, d, bytes, &error)) {
    printf ("FAIL: download: %s\n", error->message);
    exit (1);
  }
  return h;
}

/* Everything the sequence writes, in one host block. */
static float *
outputs (SiBackend *be, Bufs *b, size_t *n)
{
  size_t sizes[] = { (size_t) N * F, (size_t) N * C, (size_t) N * N,
    (size_t) N * G * DG * DG, (size_t) N * G * DG * DG, (size_t) N * N + K, K };
  const void *ptrs[] = { b->h, b->y, b->att, b->mb, b->mix, b->sc, b->idx };
  size_t total = 0, off = 0;
  float *all;

  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++)
    total += sizes[i];
  all = g_new (float, total);
  for (size_t i = 0; i < G_N_ELEMENTS (sizes); i++) {
    float *h = fetch (be, ptrs[i], sizes[i] * sizeof (float));
    memcpy (all + off, h, sizes[i] * sizeof (float));
    off += sizes[i];
    g_free (h);
  }
  *n = total;
  return all;
}

static void
inputs (SiBackend *be, Bufs *b, GRand *r)
{
  put (be, b->x, r, (size_t) N * C, -1, 1);
  put (be, b->bias, r, (size_t) N * N, -2, 0);
  put (be, b->g, r, (size_t) N * G * DG * DG, 0, 1);
  put (be, b->old, r, (size_t) N * G * DG * DG, -1, 1);
  put (be, b->mix, r, (size_t) N * G * DG * DG, -1, 1);
}

int
main (void)
{
  SiContextOptions opts;
  GError *error = NULL;
  SiBackend *be;
  SiCudaGraph *graph;
  Bufs b;
  GRand *r = g_rand_new_with_seed (7);
  float *direct, *replay;
  size_t n1, n2;

  si_context_options_init (&opts);
  opts.max_width = 64;
  opts.max_height = 64;
  be = si_backend_new (SI_BACKEND_CUDA, &opts, &error);
  if (be == NULL) {
    if (g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE)) {
      printf ("skipped: no CUDA device (%s)\n", error->message);
      g_error_free (error);
      g_rand_free (r);
      return 77;
    }
    printf ("FAIL: %s\n", error->message);
    return 1;
  }

  b.x = dev (be, (size_t) N * C * 4);
  b.w1 = dev (be, (size_t) F * C * 4);
  b.b1 = dev (be, (size_t) F * 4);
  b.h = dev (be, (size_t) N * F * 4);
  b.w2 = dev (be, (size_t) C * F * 4);
  b.y = dev (be, (size_t) N * C * 4);
  b.gm = dev (be, C * 4);
  b.bt = dev (be, C * 4);
  b.att = dev (be, (size_t) N * N * 4);
  b.bias = dev (be, (size_t) N * N * 4);
  b.mix = dev (be, (size_t) N * G * DG * DG * 4);
  b.mb = dev (be, (size_t) N * G * DG * DG * 4);
  b.g = dev (be, (size_t) N * G * DG * DG * 4);
  b.old = dev (be, (size_t) N * G * DG * DG * 4);
  b.sc = dev (be, ((size_t) N * N + K) * 4);
  b.idx = dev (be, K * 4);
  b.scratch = dev (be, (size_t) N * N * 8);
  put (be, b.w1, r, (size_t) F * C, -0.2f, 0.2f);
  put (be, b.b1, r, F, -0.5f, 0.5f);
  put (be, b.w2, r, (size_t) C * F, -0.2f, 0.2f);
  put (be, b.gm, r, C, 0.5f, 1.5f);
  put (be, b.bt, r, C, -0.5f, 0.5f);

  /* record once (with inputs A in place) */
  inputs (be, &b, r);
  if (!si_cuda_capture_begin (be, &error)) {
    printf ("FAIL: capture_begin: %s\n", error->message);
    return 1;
  }
  sequence (be, &b);
  /* calls that cannot be recorded fail cleanly */
  {
    float tmp[4];
    if (be->ops->sync (be, &error) || error == NULL) {
      printf ("FAIL: sync during a capture must fail\n");
      failures++;
    } else
      printf ("ok   sync during capture refused: %s\n", error->message);
    g_clear_error (&error);
    if (be->ops->download (be, tmp, b.x, sizeof (tmp), &error)) {
      printf ("FAIL: download during a capture must fail\n");
      failures++;
    }
    g_clear_error (&error);
    if (be->ops->alloc (be, 16, &error) != NULL) {
      printf ("FAIL: alloc during a capture must fail\n");
      failures++;
    }
    g_clear_error (&error);
  }
  graph = si_cuda_capture_end (be, &error);
  if (graph == NULL) {
    printf ("FAIL: capture_end: %s\n", error->message);
    return 1;
  }

  /* inputs B: a direct run, then the same inputs through the graph */
  for (int round = 0; round < 3; round++) {
    GRand *rb = g_rand_new_with_seed (100 + round);
    bool same;
    inputs (be, &b, rb);
    sequence (be, &b);
    direct = outputs (be, &b, &n1);
    g_rand_free (rb);
    rb = g_rand_new_with_seed (100 + round);
    inputs (be, &b, rb);
    if (!si_cuda_graph_launch (be, graph, &error) ||
        !be->ops->sync (be, &error)) {
      printf ("FAIL: replay: %s\n", error->message);
      return 1;
    }
    replay = outputs (be, &b, &n2);
    same = n1 == n2 && memcmp (direct, replay, n1 * sizeof (float)) == 0;
    printf ("%s replay %d: %zu values %s the direct run\n",
        same ? "ok  " : "FAIL", round, n1,
        same ? "identical to" : "differ from");
    if (!same)
      failures++;
    g_free (direct);
    g_free (replay);
    g_rand_free (rb);
  }
  si_cuda_graph_free (be, graph);
  si_backend_free (&be);
  g_rand_free (r);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
