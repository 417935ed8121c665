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

/* The largest power of two up to 256 that divides the address (cuBLASLt
 * picks kernels by the operands' alignment). */
static uint32_t
alignment_of (const void *p)
{
  uint32_t a = 256;
  while (a > 1 && ((uintptr_t) p % a) != 0)
    a /= 2;
  return a;
}

/* Notes, once per backend, that a GEMM runs without its fused epilogue. */
static void
note_fallback (SiBackend *be, const SiGemmColMajor *cm, cublasStatus_t st)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (cu->lt_fallback_noted)
    return;
  cu->lt_fallback_noted = true;
  g_message ("cuda: no cuBLASLt fused bias epilogue for a %d x %d x %d "
             "GEMM on %s (%s); such GEMMs run with a separate bias pass",
      cm->m, cm->n, cm->k, cu->device_name, cublasGetStatusName (st));
}

bool
si_gemm_bias_act_cuda (
    SiBackend *be, const SiGemm *g, bool half, const float *bias, bool relu)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  cudaDataType type = half ? CUDA_R_16F : CUDA_R_32F;
  cublasComputeType_t compute = CUBLAS_COMPUTE_32F;
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t la = NULL, lb = NULL, lc = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t found;
  int32_t ta, tb;
  uint32_t epilogue =
      relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  uint64_t ws = cu->cublas_ws_size;
  uint32_t align[4];
  SiGemmColMajor cm;
  cublasStatus_t st;
  int n_found = 0;
  bool queued = true;

  if (!cuda_gemm_map (be, g, &cm))
    return true; /* nothing to run, or the deferred error */
  if (!half && cu->precision == SI_PRECISION_FP16)
    compute = CUBLAS_COMPUTE_32F_FAST_16F;
  ta = cm.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  tb = cm.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  align[0] = alignment_of (cm.a);
  align[1] = alignment_of (cm.b);
  align[2] = align[3] = alignment_of (cm.c);
  /* column-major: op(A) (m, k), op(B) (k, n), C (m, n); the bias runs down
   * C's m rows, the row-major C's columns */
  if ((st = cublasLtMatmulDescCreate (&op, compute, CUDA_R_32F)) ||
      (st = cublasLtMatmulDescSetAttribute (
           op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof (ta))) ||
      (st = cublasLtMatmulDescSetAttribute (
           op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof (tb))) ||
      (st = cublasLtMatmulDescSetAttribute (
           op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof (epilogue))) ||
      (st = cublasLtMatmulDescSetAttribute (
           op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof (bias))) ||
      (st = cublasLtMatrixLayoutCreate (&la, type, cm.trans_a ? cm.k : cm.m,
           cm.trans_a ? cm.m : cm.k, cm.lda)) ||
      (st = cublasLtMatrixLayoutCreate (&lb, type, cm.trans_b ? cm.n : cm.k,
           cm.trans_b ? cm.k : cm.n, cm.ldb)) ||
      (st = cublasLtMatrixLayoutCreate (&lc, CUDA_R_32F, cm.m, cm.n, cm.ldc)) ||
      (st = cublasLtMatmulPreferenceCreate (&pref)) ||
      (st = cublasLtMatmulPreferenceSetAttribute (
           pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof (ws))))
    goto unsupported;
  for (int i = 0; i < 4; i++)
    if ((st = cublasLtMatmulPreferenceSetAttribute (pref,
             CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i, &align[i],
             sizeof (align[i]))))
      goto unsupported;
  st = cublasLtMatmulAlgoGetHeuristic (
      cu->lt, op, la, lb, lc, lc, pref, 1, &found, &n_found);
  if (st != CUBLAS_STATUS_SUCCESS || n_found < 1)
    goto unsupported;
  /* C is D (in place): the residual, when beta is 1, is read from it */
  st = cublasLtMatmul (cu->lt, op, &cm.alpha, cm.a, la, cm.b, lb, &cm.beta,
      cm.c, lc, cm.c, lc, &found.algo, cu->cublas_ws, cu->cublas_ws_size,
      cu->stream);
  /* these two are refusals before anything is queued */
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)
    goto unsupported;
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, "gemm_bias_act", __FILE__, __LINE__);
  goto done;
unsupported:
  /* a configuration this cuBLASLt cannot set up, has no kernel for or
   * refuses: nothing queued, the caller's two-pass path runs instead */
  note_fallback (
      be, &cm, st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st);
  queued = false;
done:
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  if (la)
    cublasLtMatrixLayoutDestroy (la);
  if (lb)
    cublasLtMatrixLayoutDestroy (lb);
  if (lc)
    cublasLtMatrixLayoutDestroy (lc);
  if (op)
    cublasLtMatmulDescDestroy (op);
  return queued;
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
