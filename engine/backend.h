/* backend.h: the backend table.  A backend is one struct of function
 * pointers (SiBackendOps) plus its private state; the model code (net.c,
 * backbone.c, neck.c, decoder*.c, postprocess.c) calls only this table and
 * never #ifdefs on CUDA.  engine/cpu/ implements it with plain loops,
 * oneDNN and BLAS; engine/cuda/ mirrors it op for op with kernels and
 * cuBLAS.  All float pointers passed to ops are backend memory (device
 * memory for CUDA) obtained from ops->alloc.  Ops are stream-ordered:
 * they may return before the work is done; sync() reports errors.
 *
 * Activation layout: feature maps are NHWC (batch 1: (H, W, C)), the same
 * on every backend; the dump converts to NCHW for the golden names.
 */
#ifndef SI_BACKEND_H
#define SI_BACKEND_H

#include "model.h"

typedef struct _SiBackend SiBackend;
typedef struct _SiBackendOps SiBackendOps;

/* Row-major GEMM: C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C.
 * The column-major mapping for cuBLAS / cblas lives in gemm.h only. */
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
} SiGemm;

struct _SiBackendOps
{
  const char *name;

  /* lifetime */
  gboolean (*init) (SiBackend *be, const SiContextOptions *options,
      GError **error);
  void (*destroy) (SiBackend *be);

  /* memory */
  void *(*alloc) (SiBackend *be, size_t bytes, GError **error);
  void (*free) (SiBackend *be, void *ptr);
  gboolean (*upload) (SiBackend *be, void *dst, const void *src,
      size_t bytes, GError **error);
  gboolean (*download) (SiBackend *be, void *dst, const void *src,
      size_t bytes, GError **error);
  gboolean (*sync) (SiBackend *be, GError **error);

  /* ---- ops: each has a CPU twin in engine/cpu/ and a CUDA twin ----
   * The sections below are filled by the modules that use them; keep one
   * op family per section. */

  /* GEMM family (gemm) */
  void (*gemm) (SiBackend *be, const SiGemm *g);
  /* Batched GEMM with constant strides between matrices. */
  void (*gemm_batched) (SiBackend *be, const SiGemm *g, int batch,
      long stride_a, long stride_b, long stride_c);

  /* image side: preprocessing, backbone, neck (see backbone.h) */
  /* decoder side (see decoder.h) */
};

struct _SiBackend
{
  const SiBackendOps *ops;
  SiBackendKind kind;
  void *priv; /* backend state */
};

/* Creates and initialises a backend of the given kind (not AUTO). */
SiBackend *si_backend_new (SiBackendKind kind,
    const SiContextOptions *options, GError **error);
void si_backend_free (SiBackend **be);

extern const SiBackendOps si_cpu_backend_ops;
#ifdef SI_HAVE_CUDA
extern const SiBackendOps si_cuda_backend_ops;
#endif

#endif /* SI_BACKEND_H */
