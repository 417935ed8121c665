/* norm_cpu.c: normalisation ops of the image side on the CPU (reference,
 * plain loops): GroupNorm over an NHWC map with a per-channel bias added
 * first (the neck: 1x1 conv bias + GroupNorm(32), model-spec 4).
 * Statistics are accumulated in double.
 */
#include "backend_cpu.h"

#include <math.h>
#include <string.h>

void
si_group_norm_cpu (SiBackend *be, const float *x, int hw, int c, int groups,
    const float *bias, const float *gamma, const float *beta, float eps,
    float *y)
{
  si_cpu_apply_threads (be);
  int cg = c / groups;
  double sum[c], sq[c];
  float scale[c], shift[c], bz[c];

  for (int k = 0; k < c; k++)
    bz[k] = bias ? bias[k] : 0.0f;
  memset (sum, 0, sizeof (sum));
  memset (sq, 0, sizeof (sq));
#pragma omp parallel
  {
    double ls[c], lq[c];
    memset (ls, 0, sizeof (ls));
    memset (lq, 0, sizeof (lq));
#pragma omp for schedule(static)
    for (int p = 0; p < hw; p++) {
      const float *s = x + (size_t) p * c;
#pragma omp simd
      for (int k = 0; k < c; k++) {
        double v = (double) s[k] + (double) bz[k];
        ls[k] += v;
        lq[k] += v * v;
      }
    }
#pragma omp critical
    for (int k = 0; k < c; k++) {
      sum[k] += ls[k];
      sq[k] += lq[k];
    }
  }

  for (int g = 0; g < groups; g++) {
    double s = 0.0, q = 0.0, n = (double) cg * hw;
    for (int k = g * cg; k < (g + 1) * cg; k++) {
      s += sum[k];
      q += sq[k];
    }
    double mean = s / n;
    double var = q / n - mean * mean;
    if (var < 0.0)
      var = 0.0;
    double rstd = 1.0 / sqrt (var + eps);
    for (int k = g * cg; k < (g + 1) * cg; k++) {
      double gk = gamma ? gamma[k] : 1.0;
      double bk = beta ? beta[k] : 0.0;
      double b = bias ? bias[k] : 0.0;
      scale[k] = (float) (rstd * gk);
      shift[k] = (float) ((b - mean) * rstd * gk + bk);
    }
  }

#pragma omp parallel for schedule(static)
  for (int p = 0; p < hw; p++) {
    const float *s = x + (size_t) p * c;
    float *o = y + (size_t) p * c;
    /* y may alias x element for element: no cross-iteration dependence */
#pragma omp simd
    for (int k = 0; k < c; k++)
      o[k] = s[k] * scale[k] + shift[k];
  }
}
