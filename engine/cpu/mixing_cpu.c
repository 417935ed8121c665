/* mixing_cpu.c: CPU reference of the cascade dynamic mixing ops that are
 * not GEMMs (model-spec 6.6): per-matrix LayerNorm (LN2D) with bias and
 * ReLU, the axis transpose of the static layers, the cascade residual and
 * the gated interpolation of reused channel / spatial filters.
 */
#include "decoder_cpu.h"
#include "si-math.h"

void
si_ln2d_bias_relu_cpu (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int rows, int cols)
{
  size_t sz = (size_t) rows * cols;

  for (int b = 0; b < batch; b++) {
    float *xb = x + b * sz;
    const float *bb = bias + b * bias_stride;
    double sum = 0.0, sq = 0.0;
    float mean, rstd;

    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        float v = xb[(size_t) i * cols + j] + (per_row ? bb[i] : bb[j]);
        xb[(size_t) i * cols + j] = v;
        sum += v;
      }
    mean = (float) (sum / sz);
    for (size_t t = 0; t < sz; t++) {
      double dv = xb[t] - mean;
      sq += dv * dv;
    }
    rstd = (float) (1.0 / sqrt (sq / sz + 1e-5));
    for (size_t t = 0; t < sz; t++)
      xb[t] = si_relu ((xb[t] - mean) * rstd);
  }
}

void
si_swap_axes_cpu (
    SiBackend *be, const float *src, float *dst, int batch, int x, int y, int z)
{
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < x; i++)
      for (int j = 0; j < y; j++) {
        const float *s = src + (((size_t) b * x + i) * y + j) * z;
        float *d = dst + (((size_t) b * y + j) * x + i) * z;
        for (int c = 0; c < z; c++)
          d[c] = s[c];
      }
}

void
si_cascade_residual_cpu (SiBackend *be, const float *lc, const float *axt,
    const float *res, float *u, int batch, int p, int k, int dg)
{
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < p; i++)
      for (int j = 0; j < k; j++) {
        size_t o = (((size_t) b * p + i) * k + j) * dg;
        const float *a = axt + (((size_t) b * k + j) * p + i) * dg;
        for (int c = 0; c < dg; c++)
          u[o + c] = (lc[o + c] + a[c]) + res[o + c];
      }
}

void
si_gate_mix_cpu (SiBackend *be, const float *old, long old_stride,
    const float *new_, long new_stride, const float *rowgate, long rg_stride,
    int rg_inc, const float *colgate, long cg_stride, int cg_inc, float *out,
    int batch, int rows, int cols)
{
  for (int b = 0; b < batch; b++) {
    const float *a = old + b * old_stride;
    const float *nw = new_ + b * new_stride;
    const float *rg = rowgate + b * rg_stride;
    const float *cg = colgate + b * cg_stride;
    float *o = out + (size_t) b * rows * cols;
    for (int i = 0; i < rows; i++) {
      float r = rg[(size_t) i * rg_inc];
      for (int j = 0; j < cols; j++) {
        float c = cg[(size_t) j * cg_inc];
        float nv = nw[(size_t) i * cols + j];
        float t = a[(size_t) i * cols + j] * r + nv * (1.0f - r);
        o[(size_t) i * cols + j] = t * c + nv * (1.0f - c);
      }
    }
  }
}
