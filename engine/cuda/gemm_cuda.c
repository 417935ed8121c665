/* gemm_cuda.c: the GEMM family on cuBLAS.  The row-major SiGemm goes
 * through si_gemm_to_col_major() (gemm.h, the mapping the CPU backend runs
 * through cblas), nothing else here reorders operands.  fp32: cublasSgemm
 * with CUBLAS_DEFAULT_MATH (no TF32, parity mode); fp16: tensor cores on
 * the same fp32 buffers with fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_16F),
 * or on half operands stored as such (si_gemm_half_cuda: the fp16
 * convolutions' weights and im2col).
 */
#include "si-config.h"

#include "backend_cuda.h"

static cublasOperation_t
cuda_op (bool trans)
{
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

/* Checks g (a failure becomes the deferred error) and maps it to cuBLAS's
 * column-major call; false when there is nothing to run. */
static bool
cuda_gemm_map (SiBackend *be, const SiGemm *g, SiGemmColMajor *cm)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (!si_gemm_is_valid (g)) {
    if (cu->deferred == NULL)
      g_set_error (&cu->deferred, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "gemm: inconsistent sizes m %d n %d k %d lda %d ldb %d ldc %d", g->m,
          g->n, g->k, g->lda, g->ldb, g->ldc);
    return false;
  }
  si_gemm_to_col_major (g, cm);
  return cm->m > 0 && cm->n > 0;
}

/* One mapped GEMM through cublasGemmEx: A and B of @operands, C fp32. */
static void
gemm_ex (SiBackend *be, const SiGemmColMajor *cm, cudaDataType operands,
    cublasComputeType_t compute, const char *what)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  cublasStatus_t st;

  st = cublasGemmEx (cu->cublas, cuda_op (cm->trans_a), cuda_op (cm->trans_b),
      cm->m, cm->n, cm->k, &cm->alpha, cm->a, operands, cm->lda, cm->b,
      operands, cm->ldb, &cm->beta, cm->c, CUDA_R_32F, cm->ldc, compute,
      CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, what, __FILE__, __LINE__);
}

void
si_gemm_cuda (SiBackend *be, const SiGemm *g)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  SiGemmColMajor cm;
  cublasStatus_t st;

  if (!cuda_gemm_map (be, g, &cm))
    return;
  if (cu->precision == SI_PRECISION_FP16) {
    gemm_ex (be, &cm, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_16F, "gemm");
    return;
  }
  st = cublasSgemm (cu->cublas, cuda_op (cm.trans_a), cuda_op (cm.trans_b),
      cm.m, cm.n, cm.k, &cm.alpha, cm.a, cm.lda, cm.b, cm.ldb, &cm.beta, cm.c,
      cm.ldc);
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, "gemm", __FILE__, __LINE__);
}

void
si_gemm_half_cuda (SiBackend *be, const SiGemm *g)
{
  SiGemmColMajor cm;

  if (cuda_gemm_map (be, g, &cm))
    gemm_ex (be, &cm, CUDA_R_16F, CUBLAS_COMPUTE_32F, "gemm_half");
}

/* Strides follow their matrices through the mapping: the row-major A is
 * cuBLAS's B and vice versa. */
void
si_gemm_batched_cuda (SiBackend *be, const SiGemm *g, int batch, long stride_a,
    long stride_b, long stride_c)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  SiGemmColMajor cm;
  cublasStatus_t st;

  if (!cuda_gemm_map (be, g, &cm) || batch <= 0)
    return;
  if (cu->precision == SI_PRECISION_FP16)
    st = cublasGemmStridedBatchedEx (cu->cublas, cuda_op (cm.trans_a),
        cuda_op (cm.trans_b), cm.m, cm.n, cm.k, &cm.alpha, cm.a, CUDA_R_32F,
        cm.lda, stride_b, cm.b, CUDA_R_32F, cm.ldb, stride_a, &cm.beta, cm.c,
        CUDA_R_32F, cm.ldc, stride_c, batch, CUBLAS_COMPUTE_32F_FAST_16F,
        CUBLAS_GEMM_DEFAULT);
  else
    st = cublasSgemmStridedBatched (cu->cublas, cuda_op (cm.trans_a),
        cuda_op (cm.trans_b), cm.m, cm.n, cm.k, &cm.alpha, cm.a, cm.lda,
        stride_b, cm.b, cm.ldb, stride_a, &cm.beta, cm.c, cm.ldc, stride_c,
        batch);
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, "gemm_batched", __FILE__, __LINE__);
}
