/* self_attention.h: the decoder's biased multi-head self-attention
 * (model-spec 6.3, 6.4) spelled as four table ops: the log-IoF bias, the
 * per-head logits product, the biased softmax and the per-head product
 * with V.  It is the CPU's self_attention and the CUDA backend's fallback
 * where its fused kernel does not apply; header-only (host C, also read
 * by nvcc) because it only calls through be->ops.
 */
#ifndef SI_SELF_ATTENTION_H
#define SI_SELF_ATTENTION_H

#include "backend.h"

#include <math.h>

/* The self_attention op of backend.h with logits and bias (heads, N, N)
 * each in scratch. */
static inline void
si_self_attention_composed (SiBackend *be, const float *q, const float *k,
    const float *v, int ld, const float *xyzr, const float *tau, float *out,
    int ldo, int n, int heads, int hd, float *scratch)
{
  const SiBackendOps *ops = be->ops;
  long nn = (long) n * n;
  float *logits = scratch, *bias = scratch + heads * nn;

  ops->iof_bias (be, xyzr, tau, bias, n, heads);
  si_backend_product (be, heads, true, n, n, hd, 1.0f / sqrtf ((float) hd), q,
      ld, hd, k, ld, hd, logits, n, nn);
  ops->softmax_bias (be, logits, bias, heads * n, n);
  si_backend_product (
      be, heads, false, n, hd, n, 1.0f, logits, n, nn, v, ld, hd, out, ldo, hd);
}

#endif /* SI_SELF_ATTENTION_H */
