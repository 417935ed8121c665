/* cublasLt.h (emulation): the cuBLASLt calls engine/cuda/ makes (one
 * matmul with a bias or bias + ReLU epilogue), as column-major loops
 * written from the cuBLASLt documentation (cuda-emu.cc):
 * D = epilogue (alpha op(A) op(B) + beta C + bias), bias per row of D,
 * with cuBLASLt's layout checks.  The heuristic finds one algorithm, or
 * none after si_emu_lt_no_algo (1), as when a device has no kernel for
 * the configuration.  Enum values are cuBLASLt's.
 */
#ifndef SI_CUDA_EMU_CUBLASLT_H
#define SI_CUDA_EMU_CUBLASLT_H

#include "cublas_v2.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SiEmuLt *cublasLtHandle_t;
typedef struct SiEmuLtDesc *cublasLtMatmulDesc_t;
typedef struct SiEmuLtLayout *cublasLtMatrixLayout_t;
typedef struct SiEmuLtPref *cublasLtMatmulPreference_t;

typedef struct
{
  uint64_t data[8];
} cublasLtMatmulAlgo_t;

typedef struct
{
  cublasLtMatmulAlgo_t algo;
  size_t workspaceSize;
  cublasStatus_t state;
  float wavesCount;
  int reserved[4];
} cublasLtMatmulHeuristicResult_t;

typedef enum
{
  CUBLASLT_MATMUL_DESC_TRANSA = 3,
  CUBLASLT_MATMUL_DESC_TRANSB = 4,
  CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
  CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8,
} cublasLtMatmulDescAttributes_t;

typedef enum
{
  CUBLASLT_EPILOGUE_DEFAULT = 1,
  CUBLASLT_EPILOGUE_RELU = 2,
  CUBLASLT_EPILOGUE_BIAS = 4,
  CUBLASLT_EPILOGUE_RELU_BIAS = 6,
} cublasLtEpilogue_t;

typedef enum
{
  CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1,
  CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK = 3,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES = 5,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES = 6,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES = 7,
  CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES = 8,
} cublasLtMatmulPreferenceAttributes_t;

typedef enum
{
  CUBLASLT_REDUCTION_SCHEME_NONE = 0,
  CUBLASLT_REDUCTION_SCHEME_INPLACE = 1,
  CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE = 2,
  CUBLASLT_REDUCTION_SCHEME_OUTPUT_TYPE = 4,
  CUBLASLT_REDUCTION_SCHEME_MASK = 0x7,
} cublasLtReductionScheme_t;

cublasStatus_t cublasLtCreate (cublasLtHandle_t *handle);
cublasStatus_t cublasLtDestroy (cublasLtHandle_t handle);
cublasStatus_t cublasLtMatmulDescCreate (cublasLtMatmulDesc_t *desc,
    cublasComputeType_t compute, cudaDataType scale);
cublasStatus_t cublasLtMatmulDescDestroy (cublasLtMatmulDesc_t desc);
cublasStatus_t cublasLtMatmulDescSetAttribute (cublasLtMatmulDesc_t desc,
    cublasLtMatmulDescAttributes_t attr, const void *buf, size_t size);
cublasStatus_t cublasLtMatrixLayoutCreate (cublasLtMatrixLayout_t *layout,
    cudaDataType type, uint64_t rows, uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy (cublasLtMatrixLayout_t layout);
cublasStatus_t cublasLtMatmulPreferenceCreate (
    cublasLtMatmulPreference_t *pref);
cublasStatus_t cublasLtMatmulPreferenceDestroy (
    cublasLtMatmulPreference_t pref);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute (
    cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
    const void *buf, size_t size);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic (cublasLtHandle_t handle,
    cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
    cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
    cublasLtMatmulHeuristicResult_t results[], int *returned);
cublasStatus_t cublasLtMatmul (cublasLtHandle_t handle,
    cublasLtMatmulDesc_t desc, const void *alpha, const void *A,
    cublasLtMatrixLayout_t a, const void *B, cublasLtMatrixLayout_t b,
    const void *beta, const void *C, cublasLtMatrixLayout_t c, void *D,
    cublasLtMatrixLayout_t d, const cublasLtMatmulAlgo_t *algo, void *workspace,
    size_t workspace_bytes, cudaStream_t stream);

/* Test hook: while @none is set, the heuristic finds no algorithm. */
void si_emu_lt_no_algo (int none);
/* cublasLtMatmul and cublasLtMatmulAlgoGetHeuristic calls since the
 * start. */
int si_emu_lt_matmuls (void);
int si_emu_lt_heuristics (void);

#ifdef __cplusplus
}
#endif

#endif /* SI_CUDA_EMU_CUBLASLT_H */
