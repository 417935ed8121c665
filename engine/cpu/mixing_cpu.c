/* mixing_cpu.c: CPU reference of the cascade dynamic mixing ops that are
 * not GEMMs (model-spec 6.6): per-matrix LayerNorm (LN2D) with bias and
 * ReLU (alone or with the axis transpose of the static layers), the axis
 * transpose, the cascade residual and
 * the gated interpolation of reused channel / spatial filters.  Plain
 * loops, threaded over the (query, group) matrices.
 */
#include "decoder_cpu.h"
#include "si-math.h"

#include <string.h>

/* One matrix x (rows, cols): bias, LN over all values, ReLU. */
static void
ln2d_one (float *x, const float *bias, bool per_row, int rows, int cols)
{
  size_t sz = (size_t) rows * cols;
  float mean, rstd;

  for (int i = 0; i < rows; i++) {
    float *xi = x + (size_t) i * cols;
    if (per_row) {
      float bi = bias[i];
      SI_OMP (omp simd)
      for (int j = 0; j < cols; j++)
        xi[j] += bi;
    } else {
      SI_OMP (omp simd)
      for (int j = 0; j < cols; j++)
        xi[j] += bias[j];
    }
  }
  si_cpu_mean_rstd (x, sz, &mean, &rstd);
  SI_OMP (omp simd)
  for (size_t t = 0; t < sz; t++)
    x[t] = si_relu ((x[t] - mean) * rstd);
}

void
si_ln2d_bias_relu_cpu (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int rows, int cols)
{
  SI_OMP (omp parallel for schedule (static))
  for (int b = 0; b < batch; b++)
    ln2d_one (x + (size_t) b * rows * cols, bias + b * bias_stride, per_row,
        rows, cols);
}

void
si_ln2d_bias_relu_swap_cpu (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int p, int k, int cols,
    float *swapped)
{
  si_ln2d_bias_relu_cpu (be, x, bias, bias_stride, per_row, batch, p * k, cols);
  si_swap_axes_cpu (be, x, swapped, batch, p, k, cols);
}

void
si_swap_axes_cpu (
    SiBackend *be, const float *src, float *dst, int batch, int x, int y, int z)
{
  SI_OMP (omp parallel for schedule (static))
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < x; i++)
      for (int j = 0; j < y; j++)
        memcpy (dst + (((size_t) b * y + j) * x + i) * z,
            src + (((size_t) b * x + i) * y + j) * z, z * sizeof (float));
}

void
si_cascade_residual_cpu (SiBackend *be, const float *lc, const float *axt,
    const float *res, float *u, int batch, int p, int k, int dg)
{
  SI_OMP (omp parallel for schedule (static))
  for (int b = 0; b < batch; b++)
    for (int i = 0; i < p; i++)
      for (int j = 0; j < k; j++) {
        size_t o = (((size_t) b * p + i) * k + j) * dg;
        const float *a = axt + (((size_t) b * k + j) * p + i) * dg;
        SI_OMP (omp simd)
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
  SI_OMP (omp parallel for schedule (static))
  for (int b = 0; b < batch; b++) {
    const float *a = old + b * old_stride;
    const float *nw = new_ + b * new_stride;
    const float *rg = rowgate + b * rg_stride;
    const float *cg = colgate + b * cg_stride;
    float *o = out + (size_t) b * rows * cols;
    float cgv[cols];

    for (int j = 0; j < cols; j++)
      cgv[j] = cg[(size_t) j * cg_inc];
    for (int i = 0; i < rows; i++) {
      float r = rg[(size_t) i * rg_inc];
      const float *ai = a + (size_t) i * cols, *ni = nw + (size_t) i * cols;
      float *oi = o + (size_t) i * cols;
      SI_OMP (omp simd)
      for (int j = 0; j < cols; j++) {
        float t = ai[j] * r + ni[j] * (1.0f - r);
        oi[j] = t * cgv[j] + ni[j] * (1.0f - cgv[j]);
      }
    }
  }
}
