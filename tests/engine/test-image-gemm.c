/* test-image-gemm.c: the row-major GEMM of the backend table through the
 * column-major mapping of gemm.h on the CPU backend (suite unit): all four
 * transpose combinations, odd sizes, leading dimensions larger than the
 * rows, alpha/beta, and the batched variant, against a double-precision
 * triple loop.
 */
#include "backend.h"
#include "gemm.h"

#include <math.h>

/* Row-major reference: C = alpha op(A) op(B) + beta C. */
static void
gemm_ref (const SiGemm *g, float *c)
{
  for (int i = 0; i < g->m; i++)
    for (int j = 0; j < g->n; j++) {
      double acc = 0.0;
      for (int l = 0; l < g->k; l++) {
        double a = g->trans_a ? g->a[(size_t) l * g->lda + i]
                              : g->a[(size_t) i * g->lda + l];
        double b = g->trans_b ? g->b[(size_t) j * g->ldb + l]
                              : g->b[(size_t) l * g->ldb + j];
        acc += a * b;
      }
      float *o = &c[(size_t) i * g->ldc + j];
      *o = (float) (g->alpha * acc + g->beta * (double) *o);
    }
}

static float *
random_floats (GRand *r, size_t n)
{
  float *p = g_new (float, n);
  for (size_t i = 0; i < n; i++)
    p[i] = (float) g_rand_double_range (r, -1.0, 1.0);
  return p;
}

static double
max_abs_diff (const float *a, const float *b, size_t n)
{
  double m = 0.0;
  for (size_t i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

static void
check_case (SiBackend *be, GRand *r, bool ta, bool tb, int m, int n, int k,
    int pad, float alpha, float beta, int batch)
{
  SiGemm g = { 0 };
  int rows_a = ta ? k : m, cols_a = ta ? m : k;
  int rows_b = tb ? n : k, cols_b = tb ? k : n;
  long sa, sb, sc;
  float *a, *b, *c, *c_ref;
  double err;

  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.beta = beta;
  g.lda = cols_a + pad;
  g.ldb = cols_b + pad + 1;
  g.ldc = n + pad + 2;
  sa = (long) rows_a * g.lda;
  sb = (long) rows_b * g.ldb;
  sc = (long) m * g.ldc;
  a = random_floats (r, sa * batch);
  b = random_floats (r, sb * batch);
  c = random_floats (r, sc * batch);
  c_ref = g_memdup2 (c, sizeof (float) * sc * batch);
  g_assert_true (si_gemm_is_valid (&g));

  for (int i = 0; i < batch; i++) {
    SiGemm gi = g;
    gi.a = a + i * sa;
    gi.b = b + i * sb;
    gi.c = c_ref + i * sc;
    gemm_ref (&gi, c_ref + i * sc);
  }
  g.a = a;
  g.b = b;
  g.c = c;
  if (batch == 1)
    be->ops->gemm (be, &g);
  else
    be->ops->gemm_batched (be, &g, batch, sa, sb, sc);

  err = max_abs_diff (c, c_ref, sc * batch);
  g_print ("gemm ta=%d tb=%d m=%d n=%d k=%d pad=%d batch=%d: max err %.3g\n",
      ta, tb, m, n, k, pad, batch, err);
  g_assert_cmpfloat (err, <, 1e-4 * sqrt ((double) k + 1));
  g_free (a);
  g_free (b);
  g_free (c);
  g_free (c_ref);
}

static void
test_gemm_transposes (void)
{
  GError *error = NULL;
  SiContextOptions opts = { 0 };
  SiBackend *be;
  GRand *r = g_rand_new_with_seed (7);

  opts.backend = SI_BACKEND_CPU;
  be = si_backend_new (SI_BACKEND_CPU, &opts, &error);
  g_assert_no_error (error);

  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      check_case (be, r, ta, tb, 37, 23, 19, 0, 1.0f, 0.0f, 1);
      check_case (be, r, ta, tb, 37, 23, 19, 5, 0.5f, 1.0f, 1);
      check_case (be, r, ta, tb, 1, 129, 67, 3, 1.0f, 0.25f, 1);
      check_case (be, r, ta, tb, 131, 1, 3, 1, -2.0f, 0.0f, 1);
      check_case (be, r, ta, tb, 301, 257, 255, 7, 1.0f, 0.0f, 1);
      /* few rows, many columns: split over the threads */
      check_case (be, r, ta, tb, 100, 1030, 64, 3, 1.0f, 0.5f, 1);
      check_case (be, r, ta, tb, 13, 17, 11, 2, 1.0f, 1.0f, 9);
      check_case (be, r, ta, tb, 64, 64, 64, 0, 1.0f, 0.0f, 40);
    }
  /* column-major mapping of one case written out by hand */
  {
    SiGemm g = { .trans_a = true,
      .trans_b = false,
      .m = 2,
      .n = 3,
      .k = 4,
      .lda = 5,
      .ldb = 6,
      .ldc = 7,
      .alpha = 1,
      .beta = 0 };
    SiGemmColMajor cm;
    si_gemm_to_col_major (&g, &cm);
    g_assert_true (!cm.trans_a && cm.trans_b);
    g_assert_cmpint (cm.m, ==, 3);
    g_assert_cmpint (cm.n, ==, 2);
    g_assert_cmpint (cm.k, ==, 4);
    g_assert_cmpint (cm.lda, ==, 6);
    g_assert_cmpint (cm.ldb, ==, 5);
    g_assert_cmpint (cm.ldc, ==, 7);
  }
  si_backend_free (&be);
  g_assert_null (be);
  g_rand_free (r);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/image/gemm/transposes", test_gemm_transposes);
  return g_test_run ();
}
