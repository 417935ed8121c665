/* gemm.h: the one place where the row-major GEMM of the backend table
 * (SiGemm, backend.h) is mapped onto a column-major BLAS call, exactly as
 * cuBLAS gets it.  The CPU backend runs the same mapping through
 * cblas_sgemm (OpenBLAS, column-major) so the CPU tests exercise it.
 *
 * Row-major C (m, n) with leading dimension ldc is, read column-major, the
 * matrix C^T (n, m) with the same ldc.  C = op(A) op(B) is therefore
 * C^T = op(B)^T op(A)^T: swap the operands and the sizes m <-> n, keep
 * every transpose flag and leading dimension with its matrix.
 */
#ifndef SI_GEMM_H
#define SI_GEMM_H

#include "backend.h"

/* One column-major sgemm call: C (m, n) = alpha op(A) op(B) + beta C,
 * op(A) (m, k), op(B) (k, n), all column-major. */
typedef struct
{
  bool trans_a, trans_b;
  int m, n, k;
  float alpha, beta;
  const float *a;
  int lda;
  const float *b;
  int ldb;
  float *c;
  int ldc;
} SiGemmColMajor;

static inline void
si_gemm_to_col_major (const SiGemm *g, SiGemmColMajor *cm)
{
  cm->trans_a = g->trans_b;
  cm->trans_b = g->trans_a;
  cm->m = g->n;
  cm->n = g->m;
  cm->k = g->k;
  cm->alpha = g->alpha;
  cm->beta = g->beta;
  cm->a = g->b;
  cm->lda = g->ldb;
  cm->b = g->a;
  cm->ldb = g->lda;
  cm->c = g->c;
  cm->ldc = g->ldc;
}

/* TRUE when the leading dimensions of a row-major SiGemm are consistent
 * (row-major: ld >= number of columns of the stored matrix). */
static inline bool
si_gemm_is_valid (const SiGemm *g)
{
  int cols_a = g->trans_a ? g->m : g->k;
  int cols_b = g->trans_b ? g->k : g->n;
  return g->m >= 0 && g->n >= 0 && g->k >= 0 &&
      g->lda >= (cols_a > 1 ? cols_a : 1) &&
      g->ldb >= (cols_b > 1 ? cols_b : 1) && g->ldc >= (g->n > 1 ? g->n : 1);
}

#endif /* SI_GEMM_H */
