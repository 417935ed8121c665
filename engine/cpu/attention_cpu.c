/* attention_cpu.c: CPU reference of the attention-specific decoder ops:
 * the log-IoF box-relation bias (model-spec 6.3), the biased row softmax
 * of the multi-head self-attention (6.4), and the self-attention itself,
 * as those two and two GEMMs (self_attention.h).  The projections are
 * Linears in decoder_stage.c.
 */
#include "decoder_cpu.h"
#include "self_attention.h"
#include "si-math.h"

/* bias (Ha, N, N): row i = attending query, column j = attended key. */
void
si_iof_bias_cpu (SiBackend *be, const float *xyzr, const float *tau,
    float *bias, int n, int heads)
{
  SI_OMP (omp parallel for schedule (static) if (n >= 64))
  for (int i = 0; i < n; i++) {
    float bi[4];
    si_decode_box (xyzr + 4 * i, bi);
    for (int j = 0; j < n; j++) {
      float bj[4], lg;
      si_decode_box (xyzr + 4 * j, bj);
      lg = si_log_iof (bi, bj);
      for (int h = 0; h < heads; h++)
        bias[((size_t) h * n + i) * n + j] = lg * tau[h];
    }
  }
}

void
si_softmax_bias_cpu (
    SiBackend *be, float *logits, const float *bias, int rows, int n)
{
  SI_OMP (omp parallel for schedule (static) if ((long) rows * n > 16384))
  for (int i = 0; i < rows; i++) {
    float *l = logits + (size_t) i * n;
    const float *b = bias + (size_t) i * n;
    float mx = -INFINITY, sum = 0.0f;
    for (int j = 0; j < n; j++) {
      l[j] += b[j];
      mx = fmaxf (mx, l[j]);
    }
    for (int j = 0; j < n; j++) {
      l[j] = expf (l[j] - mx);
      sum += l[j];
    }
    for (int j = 0; j < n; j++)
      l[j] /= sum;
  }
}

void
si_self_attention_cpu (SiBackend *be, const float *q, const float *k,
    const float *v, int ld, const float *xyzr, const float *tau, float *out,
    int ldo, int n, int heads, int hd, float *scratch)
{
  si_self_attention_composed (
      be, q, k, v, ld, xyzr, tau, out, ldo, n, heads, hd, scratch);
}
