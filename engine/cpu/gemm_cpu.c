/* gemm_cpu.c: the GEMM family on the CPU.  Every call goes through the
 * row-major -> column-major mapping of gemm.h and then one column-major
 * sgemm: oneDNN's dnnl_sgemm by default (row-major API, so the column-major
 * call is mapped back), OpenBLAS's cblas_sgemm with SI_GEMM=blas, a plain
 * triple loop with SI_GEMM=loops or without either library.
 */
#include "si-config.h"

#include "backend_cpu.h"
#include "decoder_cpu.h"

#include <string.h>
#ifdef SI_HAVE_BLAS
#include <cblas.h>
#endif
#ifdef SI_HAVE_DNNL
#include <dnnl.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

typedef enum
{
  GEMM_IMPL_UNSET,
  GEMM_IMPL_BLAS,
  GEMM_IMPL_DNNL,
  GEMM_IMPL_LOOPS,
} GemmImpl;

static GemmImpl
gemm_impl (void)
{
  static gsize impl = 0; /* GemmImpl, 0 until chosen */

  if (g_once_init_enter (&impl)) {
    const char *env = g_getenv ("SI_GEMM");
    GemmImpl v = GEMM_IMPL_LOOPS;
    /* oneDNN first: it shares the OpenMP pool of the convolutions and
     * the other CPU ops, while OpenBLAS's own spinning threads fight
     * them for the cores (measured: same CPU time per GEMM, but tiny-model
     * neck 0.2 ms vs 14-60 ms wall with OpenBLAS on 2 cores). */
#ifdef SI_HAVE_DNNL
    v = GEMM_IMPL_DNNL;
#elif defined(SI_HAVE_BLAS)
    v = GEMM_IMPL_BLAS;
#endif
#ifdef SI_HAVE_DNNL
    if (env && strcmp (env, "dnnl") == 0)
      v = GEMM_IMPL_DNNL;
#endif
#ifdef SI_HAVE_BLAS
    if (env && strcmp (env, "blas") == 0)
      v = GEMM_IMPL_BLAS;
#endif
    if (env && strcmp (env, "loops") == 0)
      v = GEMM_IMPL_LOOPS;
    g_once_init_leave (&impl, (gsize) v);
  }
  return (GemmImpl) impl;
}

/* Column-major reference: C (m, n) = alpha op(A) op(B) + beta C. */
static void
sgemm_col_major_loops (const SiGemmColMajor *cm)
{
  for (int j = 0; j < cm->n; j++) {
    for (int i = 0; i < cm->m; i++) {
      double acc = 0.0;
      for (int l = 0; l < cm->k; l++) {
        float a = cm->trans_a ? cm->a[(size_t) i * cm->lda + l]
                              : cm->a[(size_t) l * cm->lda + i];
        float b = cm->trans_b ? cm->b[(size_t) l * cm->ldb + j]
                              : cm->b[(size_t) j * cm->ldb + l];
        acc += (double) a * b;
      }
      float *c = &cm->c[(size_t) j * cm->ldc + i];
      *c = cm->alpha * (float) acc + (cm->beta == 0.0f ? 0.0f : cm->beta * *c);
    }
  }
}

void
si_cpu_sgemm_col_major (const SiGemmColMajor *cm)
{
  if (cm->m == 0 || cm->n == 0)
    return;
  switch (gemm_impl ()) {
#ifdef SI_HAVE_BLAS
    case GEMM_IMPL_BLAS:
      cblas_sgemm (CblasColMajor, cm->trans_a ? CblasTrans : CblasNoTrans,
          cm->trans_b ? CblasTrans : CblasNoTrans, cm->m, cm->n, cm->k,
          cm->alpha, cm->a, cm->lda, cm->b, cm->ldb, cm->beta, cm->c, cm->ldc);
      return;
#endif
#ifdef SI_HAVE_DNNL
    case GEMM_IMPL_DNNL:
      /* dnnl_sgemm is row-major: the column-major C (m, n) is the
       * row-major C^T (n, m) = op(B)^T op(A)^T. */
      dnnl_sgemm (cm->trans_b ? 'T' : 'N', cm->trans_a ? 'T' : 'N', cm->n,
          cm->m, cm->k, cm->alpha, cm->b, cm->ldb, cm->a, cm->lda, cm->beta,
          cm->c, cm->ldc);
      return;
#endif
    default:
      sgemm_col_major_loops (cm);
      return;
  }
}

/* Few rows, many columns (the decoder's (N, C) x (C, 32768) Wv and
 * parameter generators): dnnl_sgemm's own threading barely scales on that
 * shape, so split the columns of C over the OpenMP threads, one sequential
 * sgemm per slice (oneDNN runs sequentially inside a parallel region).
 * Each slice is a row-major SiGemm of its own, mapped by gemm.h. */
static bool
gemm_split_columns (SiBackend *be, const SiGemm *g)
{
#if defined(_OPENMP) && defined(SI_HAVE_DNNL)
  int nt = si_cpu_priv (be)->num_threads;
  if (nt < 2 || omp_in_parallel () || gemm_impl () != GEMM_IMPL_DNNL ||
      g->m > 512 || g->n < 128 * nt || (double) g->m * g->n * g->k < 4.0e6)
    return false;
  /* slices of a multiple of 64 columns */
  int chunk = (g->n + nt - 1) / nt;
  chunk = (chunk + 63) / 64 * 64;
#pragma omp parallel for schedule(static) num_threads(nt)
  for (int t = 0; t < nt; t++) {
    int j0 = t * chunk, j1 = j0 + chunk < g->n ? j0 + chunk : g->n;
    if (j0 >= j1)
      continue;
    SiGemm sub = *g;
    SiGemmColMajor cm;
    sub.n = j1 - j0;
    /* columns j0.. of op(B): rows of B when transposed, columns if not */
    sub.b = g->trans_b ? g->b + (size_t) j0 * g->ldb : g->b + j0;
    sub.c = g->c + j0;
    si_gemm_to_col_major (&sub, &cm);
    si_cpu_sgemm_col_major (&cm);
  }
  return true;
#else
  return false;
#endif
}

void
si_gemm_cpu (SiBackend *be, const SiGemm *g)
{
  SiGemmColMajor cm;

  si_cpu_apply_threads (be);
  if (gemm_split_columns (be, g))
    return;
  si_gemm_to_col_major (g, &cm);
  si_cpu_sgemm_col_major (&cm);
}

void
si_gemm_batched_cpu (SiBackend *be, const SiGemm *g, int batch, long stride_a,
    long stride_b, long stride_c)
{
  SiGemmColMajor cm0;

  si_cpu_apply_threads (be);
  si_gemm_to_col_major (g, &cm0);
  /* Small matrices: one single-threaded sgemm per thread (oneDNN runs
   * sequentially inside an OpenMP region); large ones: threaded calls. */
#if defined(_OPENMP) && defined(SI_HAVE_DNNL)
  if (batch > 1 && (double) g->m * g->n * g->k < 4.0e6 &&
      gemm_impl () != GEMM_IMPL_LOOPS) {
#pragma omp parallel for schedule(static)
    for (int i = 0; i < batch; i++) {
      SiGemmColMajor cm = cm0;
      cm.a = cm0.a + (long) i * stride_b; /* the swapped operands */
      cm.b = cm0.b + (long) i * stride_a;
      cm.c = cm0.c + (long) i * stride_c;
      dnnl_sgemm (cm.trans_b ? 'T' : 'N', cm.trans_a ? 'T' : 'N', cm.n, cm.m,
          cm.k, cm.alpha, cm.b, cm.ldb, cm.a, cm.lda, cm.beta, cm.c, cm.ldc);
    }
    return;
  }
#endif
  for (int i = 0; i < batch; i++) {
    SiGemmColMajor cm = cm0;
    cm.a = cm0.a + (long) i * stride_b;
    cm.b = cm0.b + (long) i * stride_a;
    cm.c = cm0.c + (long) i * stride_c;
    si_cpu_sgemm_col_major (&cm);
  }
}

void
si_gemm_bias_act_cpu (
    SiBackend *be, const SiGemm *g, const float *bias, bool relu)
{
  si_gemm_cpu (be, g);
  si_bias_act_cpu (be, g->c, bias, g->m, g->n, g->ldc, relu);
}
