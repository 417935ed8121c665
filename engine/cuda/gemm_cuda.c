/* gemm_cuda.c: the GEMM family on cuBLAS.  The row-major SiGemm goes
 * through si_gemm_to_col_major() (gemm.h, the mapping the CPU backend runs
 * through cblas), nothing else here reorders operands.  fp32: cublasSgemm
 * with CUBLAS_DEFAULT_MATH (no TF32, parity mode); fp16: tensor cores on
 * the same fp32 buffers with fp32 accumulation (CUBLAS_COMPUTE_32F_FAST_16F),
 * or on half operands stored as such (si_gemm_half_cuda: the fp16
 * convolutions' weights, im2col and half maps, which may be C too).  The
 * GEMMs with a bias (+ ReLU) epilogue, the convolutions' and the Linear
 * layers' (gemm_bias_act), go through cuBLASLt (si_gemm_lt_bias_act_cuda),
 * whose setup and chosen algorithm are cached per GEMM shape and
 * alignment.
 */
#include "si-config.h"

#include "backend_cuda.h"

#include <string.h>

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

/* One mapped GEMM through cublasGemmEx: A and B of @operands, C of
 * @c_type. */
static void
gemm_ex (SiBackend *be, const SiGemmColMajor *cm, cudaDataType operands,
    cudaDataType c_type, cublasComputeType_t compute, const char *what)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  cublasStatus_t st;

  st = cublasGemmEx (cu->cublas, cuda_op (cm->trans_a), cuda_op (cm->trans_b),
      cm->m, cm->n, cm->k, &cm->alpha, cm->a, operands, cm->lda, cm->b,
      operands, cm->ldb, &cm->beta, cm->c, c_type, cm->ldc, compute,
      CUBLAS_GEMM_DEFAULT);
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, what, __FILE__, __LINE__);
  si_cuda_profile_mark (be, "%s %dx%dx%d", what, cm->m, cm->n, cm->k);
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
    gemm_ex (
        be, &cm, CUDA_R_32F, CUDA_R_32F, CUBLAS_COMPUTE_32F_FAST_16F, "gemm");
    return;
  }
  st = cublasSgemm (cu->cublas, cuda_op (cm.trans_a), cuda_op (cm.trans_b),
      cm.m, cm.n, cm.k, &cm.alpha, cm.a, cm.lda, cm.b, cm.ldb, &cm.beta, cm.c,
      cm.ldc);
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, "gemm", __FILE__, __LINE__);
  si_cuda_profile_mark (be, "gemm %dx%dx%d", cm.m, cm.n, cm.k);
}

void
si_gemm_half_cuda (SiBackend *be, const SiGemm *g, bool half_c)
{
  SiGemmColMajor cm;

  if (cuda_gemm_map (be, g, &cm))
    gemm_ex (be, &cm, CUDA_R_16F, half_c ? CUDA_R_16F : CUDA_R_32F,
        CUBLAS_COMPUTE_32F, "gemm_half");
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

/* Everything a cuBLASLt setup and its heuristic's choice depend on; the
 * pointers themselves are set per call. */
typedef struct
{
  int m, n, k, lda, ldb, ldc;
  int32_t ta, tb;
  int type, c_type, compute; /* A and B; C (= D) and the bias */
  uint32_t epilogue;
  uint32_t align[4]; /* A, B, C (= D), bias */
} SiLtKey;

/* One cached setup: the descriptors and the chosen algorithm, or none
 * (supported FALSE: this cuBLASLt cannot run it, the two-pass path). */
typedef struct
{
  SiLtKey key;
  gboolean supported;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc;
  cublasLtMatmulAlgo_t algo;
} SiLtPlan;

static guint
lt_key_hash (gconstpointer p)
{
  const guint8 *b = p;
  guint h = 2166136261u; /* FNV-1a */
  for (size_t i = 0; i < sizeof (SiLtKey); i++)
    h = (h ^ b[i]) * 16777619u;
  return h;
}

static gboolean
lt_key_equal (gconstpointer a, gconstpointer b)
{
  return memcmp (a, b, sizeof (SiLtKey)) == 0;
}

static void
lt_plan_free (gpointer data)
{
  SiLtPlan *plan = data;

  if (plan->lc)
    cublasLtMatrixLayoutDestroy (plan->lc);
  if (plan->lb)
    cublasLtMatrixLayoutDestroy (plan->lb);
  if (plan->la)
    cublasLtMatrixLayoutDestroy (plan->la);
  if (plan->op)
    cublasLtMatmulDescDestroy (plan->op);
  g_free (plan);
}

GHashTable *
si_lt_plans_new (void)
{
  return g_hash_table_new_full (lt_key_hash, lt_key_equal, NULL, lt_plan_free);
}

/* Notes, once per backend, that a GEMM runs without its fused epilogue. */
static void
note_fallback (SiBackend *be, const SiLtKey *k, cublasStatus_t st)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (cu->lt_fallback_noted)
    return;
  cu->lt_fallback_noted = true;
  g_message ("cuda: no cuBLASLt fused bias epilogue for a %d x %d x %d "
             "GEMM on %s (%s); such GEMMs run with a separate bias pass",
      k->m, k->n, k->k, cu->device_name, cublasGetStatusName (st));
}

/* Sets up @plan for its key: descriptors, then the heuristic's choice
 * (the bias pointer's alignment counts there: it is set first). */
static void
lt_plan_setup (SiBackend *be, SiLtPlan *plan, const void *bias)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  const SiLtKey *k = &plan->key;
  cublasLtMatmulPreference_t pref = NULL;
  cublasLtMatmulHeuristicResult_t found;
  uint64_t ws = cu->cublas_ws_size;
  uint32_t fp32_reduction =
      CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
  cublasStatus_t st;
  int n_found = 0;

  /* column-major: op(A) (m, k), op(B) (k, n), C (m, n); the bias runs down
   * C's m rows, the row-major C's columns */
  if ((st = cublasLtMatmulDescCreate (
           &plan->op, (cublasComputeType_t) k->compute, CUDA_R_32F)) ||
      (st = cublasLtMatmulDescSetAttribute (
           plan->op, CUBLASLT_MATMUL_DESC_TRANSA, &k->ta, sizeof (k->ta))) ||
      (st = cublasLtMatmulDescSetAttribute (
           plan->op, CUBLASLT_MATMUL_DESC_TRANSB, &k->tb, sizeof (k->tb))) ||
      (st = cublasLtMatmulDescSetAttribute (plan->op,
           CUBLASLT_MATMUL_DESC_EPILOGUE, &k->epilogue,
           sizeof (k->epilogue))) ||
      (st = cublasLtMatmulDescSetAttribute (plan->op,
           CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof (bias))) ||
      (st = cublasLtMatrixLayoutCreate (&plan->la, (cudaDataType) k->type,
           k->ta == CUBLAS_OP_T ? k->k : k->m,
           k->ta == CUBLAS_OP_T ? k->m : k->k, k->lda)) ||
      (st = cublasLtMatrixLayoutCreate (&plan->lb, (cudaDataType) k->type,
           k->tb == CUBLAS_OP_T ? k->n : k->k,
           k->tb == CUBLAS_OP_T ? k->k : k->n, k->ldb)) ||
      (st = cublasLtMatrixLayoutCreate (
           &plan->lc, (cudaDataType) k->c_type, k->m, k->n, k->ldc)) ||
      (st = cublasLtMatmulPreferenceCreate (&pref)) ||
      (st = cublasLtMatmulPreferenceSetAttribute (
           pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof (ws))))
    goto out;
  /* a half D: split-K partial sums in fp32 (the compute type), never in
   * D's half (the in-place and output-type schemes, allowed by default) */
  if (k->c_type == CUDA_R_16F &&
      (st = cublasLtMatmulPreferenceSetAttribute (pref,
           CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &fp32_reduction,
           sizeof (fp32_reduction))))
    goto out;
  for (int i = 0; i < 3; i++)
    if ((st = cublasLtMatmulPreferenceSetAttribute (pref,
             CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES + i, &k->align[i],
             sizeof (k->align[i]))))
      goto out;
  /* D is C */
  if ((st = cublasLtMatmulPreferenceSetAttribute (pref,
           CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &k->align[2],
           sizeof (k->align[2]))))
    goto out;
  st = cublasLtMatmulAlgoGetHeuristic (cu->lt, plan->op, plan->la, plan->lb,
      plan->lc, plan->lc, pref, 1, &found, &n_found);
  if (st == CUBLAS_STATUS_SUCCESS && n_found >= 1) {
    plan->algo = found.algo;
    plan->supported = TRUE;
  }
out:
  if (pref)
    cublasLtMatmulPreferenceDestroy (pref);
  if (!plan->supported)
    note_fallback (
        be, k, st == CUBLAS_STATUS_SUCCESS ? CUBLAS_STATUS_NOT_SUPPORTED : st);
}

/* Setups kept per backend before the cache starts over (frame sizes x
 * convolutions x slices: a few hundred for one stream of one size). */
#define SI_LT_PLANS_MAX 1024

bool
si_gemm_lt_bias_act_cuda (SiBackend *be, const SiGemm *g, bool half,
    bool half_c, const void *bias, bool relu)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  SiGemmColMajor cm;
  SiLtKey key;
  SiLtPlan *plan;
  cublasStatus_t st;

  if (!cuda_gemm_map (be, g, &cm))
    return true;                  /* nothing to run, or the deferred error */
  memset (&key, 0, sizeof (key)); /* hashed bytewise */
  key.m = cm.m;
  key.n = cm.n;
  key.k = cm.k;
  key.lda = cm.lda;
  key.ldb = cm.ldb;
  key.ldc = cm.ldc;
  key.ta = cm.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  key.tb = cm.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  key.type = half ? CUDA_R_16F : CUDA_R_32F;
  key.c_type = half_c ? CUDA_R_16F : CUDA_R_32F;
  key.compute = !half && cu->precision == SI_PRECISION_FP16
      ? CUBLAS_COMPUTE_32F_FAST_16F
      : CUBLAS_COMPUTE_32F;
  key.epilogue = relu ? CUBLASLT_EPILOGUE_RELU_BIAS : CUBLASLT_EPILOGUE_BIAS;
  key.align[0] = alignment_of (cm.a);
  key.align[1] = alignment_of (cm.b);
  key.align[2] = alignment_of (cm.c);
  key.align[3] = alignment_of (bias);
  /* cuBLASLt's alignment preferences cover A, B, C and D but not the
   * epilogue's bias: a kernel it picks may assume 16 bytes and fault on
   * a device, so a bias off that takes the separate pass */
  if (key.align[3] < 16) {
    note_fallback (be, &key, CUBLAS_STATUS_NOT_SUPPORTED);
    return false;
  }

  if ((plan = g_hash_table_lookup (cu->lt_plans, &key)) == NULL) {
    /* full: start over, but not in the middle of a recording (every
     * later GEMM of it would set its plan up again inside the capture) */
    if (g_hash_table_size (cu->lt_plans) >= SI_LT_PLANS_MAX && !cu->capturing)
      g_hash_table_remove_all (cu->lt_plans);
    plan = g_new0 (SiLtPlan, 1);
    plan->key = key;
    lt_plan_setup (be, plan, bias);
    g_hash_table_insert (cu->lt_plans, &plan->key, plan);
  }
  if (!plan->supported)
    return false;
  /* C is D (in place): the residual, when beta is 1, is read from it */
  st = cublasLtMatmulDescSetAttribute (
      plan->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof (bias));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmul (cu->lt, plan->op, &cm.alpha, cm.a, plan->la, cm.b,
        plan->lb, &cm.beta, cm.c, plan->lc, cm.c, plan->lc, &plan->algo,
        cu->cublas_ws, cu->cublas_ws_size, cu->stream);
  /* these two are refusals before anything is queued: the setup stays
   * cached as unsupported */
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE) {
    plan->supported = FALSE;
    note_fallback (be, &key, st);
    return false;
  }
  if (st != CUBLAS_STATUS_SUCCESS)
    si_cublas_defer (be, st, "gemm_bias_act", __FILE__, __LINE__);
  si_cuda_profile_mark (be, "gemm_bias_act %dx%dx%d", cm.m, cm.n, cm.k);
  return true;
}

void
si_gemm_bias_act_cuda (
    SiBackend *be, const SiGemm *g, const float *bias, bool relu)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (cu->fused_epilogue &&
      si_gemm_lt_bias_act_cuda (be, g, false, false, bias, relu))
    return;
  si_gemm_cuda (be, g);
  si_bias_act_cuda (be, g->c, bias, g->m, g->n, g->ldc, relu);
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
  si_cuda_profile_mark (
      be, "gemm_batched %dx%dx%d x%d", cm.m, cm.n, cm.k, batch);
}
