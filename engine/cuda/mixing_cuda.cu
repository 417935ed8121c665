/* mixing_cuda.cu: CUDA twin of mixing_cpu.c: the cascade dynamic mixing
 * ops that are not GEMMs (model-spec 6.6): per-matrix LayerNorm (LN2D)
 * with bias and ReLU (alone, or writing the static layers' transposed
 * input too), the axis transpose, the cascade residual and the gated
 * interpolation of reused filters.
 */
#include "backend_cuda.h"
#include "reduce.cuh"
#include "si-math.h"

#define SI_LN2D_THREADS 256

/* One block per matrix X_b (rows, cols): + bias, then ReLU (LN2D); with
 * swapped, rows = p * k and the result also goes to swapped (B, K, P,
 * cols). */
__global__ void
ln2d_bias_relu_kernel (float *x, const float *bias, long bias_stride,
    bool per_row, int rows, int cols, float *swapped, int p, int k)
{
  size_t sz = (size_t) rows * cols;
  float *xb = x + blockIdx.x * sz;
  const float *bb = bias + blockIdx.x * bias_stride;
  double sum = 0.0, sq = 0.0;
  float mean, rstd;

  for (size_t t = threadIdx.x; t < sz; t += blockDim.x) {
    int i = (int) (t / cols), j = (int) (t % cols);
    float v = xb[t] + (per_row ? bb[i] : bb[j]);
    xb[t] = v;
    sum += v;
  }
  mean = (float) (si_block_sum (sum) / sz);
  for (size_t t = threadIdx.x; t < sz; t += blockDim.x) {
    double dv = xb[t] - mean;
    sq += dv * dv;
  }
  rstd = (float) (1.0 / sqrt (si_block_sum (sq) / sz + 1e-5));
  for (size_t t = threadIdx.x; t < sz; t += blockDim.x) {
    float v = si_relu ((xb[t] - mean) * rstd);
    xb[t] = v;
    if (swapped) {
      int i = (int) (t / cols), j = (int) (t % cols);
      int pp = i / k, kk = i % k;
      swapped[blockIdx.x * sz + ((size_t) kk * p + pp) * cols + j] = v;
    }
  }
}

void
si_ln2d_bias_relu_cuda (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int rows, int cols)
{
  if (batch <= 0 || rows <= 0 || cols <= 0)
    return;
  ln2d_bias_relu_kernel<<<batch, SI_LN2D_THREADS, 0,
      si_cuda_priv (be)->stream>>> (
      x, bias, bias_stride, per_row, rows, cols, NULL, rows, 1);
  SI_CUDA_LAUNCHED (be, "ln2d_bias_relu_kernel");
}

void
si_ln2d_bias_relu_swap_cuda (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int p, int k, int cols,
    float *swapped)
{
  if (batch <= 0 || p <= 0 || k <= 0 || cols <= 0)
    return;
  ln2d_bias_relu_kernel<<<batch, SI_LN2D_THREADS, 0,
      si_cuda_priv (be)->stream>>> (
      x, bias, bias_stride, per_row, p * k, cols, swapped, p, k);
  SI_CUDA_LAUNCHED (be, "ln2d_bias_relu_kernel + swap");
}

/* dst (B, Y, X, Z) = src (B, X, Y, Z): one thread per destination element. */
__global__ void
swap_axes_kernel (const float *src, float *dst, int batch, int x, int y, int z)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  long total = (long) batch * x * y * z;
  if (t >= total)
    return;
  int c = (int) (t % z);
  long r = t / z;
  int i = (int) (r % x); /* dst row order: (b, j, i) */
  r /= x;
  int j = (int) (r % y);
  long b = r / y;
  dst[t] = src[((b * x + i) * y + j) * z + c];
}

void
si_swap_axes_cuda (
    SiBackend *be, const float *src, float *dst, int batch, int x, int y, int z)
{
  long total = (long) batch * x * y * z;
  if (total <= 0)
    return;
  swap_axes_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (src, dst, batch, x, y, z);
  SI_CUDA_LAUNCHED (be, "swap_axes_kernel");
}

/* u (B, P, K, Dg) = (lc + axt^T) + res, axt (B, K, P, Dg); u may alias res. */
__global__ void
cascade_residual_kernel (const float *lc, const float *axt, const float *res,
    float *u, int batch, int p, int k, int dg)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  long total = (long) batch * p * k * dg;
  if (t >= total)
    return;
  int c = (int) (t % dg);
  long r = t / dg;
  int j = (int) (r % k);
  r /= k;
  int i = (int) (r % p);
  long b = r / p;
  u[t] = (lc[t] + axt[((b * k + j) * p + i) * dg + c]) + res[t];
}

void
si_cascade_residual_cuda (SiBackend *be, const float *lc, const float *axt,
    const float *res, float *u, int batch, int p, int k, int dg)
{
  long total = (long) batch * p * k * dg;
  if (total <= 0)
    return;
  cascade_residual_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (lc, axt, res, u, batch, p, k, dg);
  SI_CUDA_LAUNCHED (be, "cascade_residual_kernel");
}

/* out (batch, rows, cols): t = a rg + n (1 - rg); out = t cg + n (1 - cg). */
__global__ void
gate_mix_kernel (const float *old, long old_stride, const float *new_,
    long new_stride, const float *rowgate, long rg_stride, int rg_inc,
    const float *colgate, long cg_stride, int cg_inc, float *out, int batch,
    int rows, int cols)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  long total = (long) batch * rows * cols;
  if (t >= total)
    return;
  int j = (int) (t % cols);
  long r = t / cols;
  int i = (int) (r % rows);
  long b = r / rows;
  size_t e = (size_t) i * cols + j;
  float rg = rowgate[b * rg_stride + (size_t) i * rg_inc];
  float cg = colgate[b * cg_stride + (size_t) j * cg_inc];
  float nv = new_[b * new_stride + e];
  float tv = old[b * old_stride + e] * rg + nv * (1.0f - rg);
  out[t] = tv * cg + nv * (1.0f - cg);
}

void
si_gate_mix_cuda (SiBackend *be, const float *old, long old_stride,
    const float *new_, long new_stride, const float *rowgate, long rg_stride,
    int rg_inc, const float *colgate, long cg_stride, int cg_inc, float *out,
    int batch, int rows, int cols)
{
  long total = (long) batch * rows * cols;
  if (total <= 0)
    return;
  gate_mix_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (old, old_stride, new_, new_stride, rowgate,
      rg_stride, rg_inc, colgate, cg_stride, cg_inc, out, batch, rows, cols);
  SI_CUDA_LAUNCHED (be, "gate_mix_kernel");
}
