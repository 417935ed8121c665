/* norm_cuda.cu: CUDA twin of norm_cpu.c: GroupNorm over an NHWC map with a
 * per-channel bias added first (the neck, model-spec 4).  Like the CPU:
 * per-channel sums of t and t^2 in double, combined per group, folded into
 * a per-channel scale and shift, then y = x * scale + shift.  The sums are
 * per pixel slice (one block each), added in a fixed order: the same frame
 * gives the same bits whatever order the blocks run in.
 */
#include "backend_cuda.h"

/* grid.x: pixel slices; each thread owns the channels threadIdx.x +
 * i*blockDim; slice b's sums go to row b of part_sum / part_sq
 * (slices, c) */
__global__ void
gn_stats_kernel (const float *x, int hw, int c, const float *bias,
    double *part_sum, double *part_sq)
{
  long b = blockIdx.x, n = gridDim.x;
  int p0 = (int) (b * hw / n), p1 = (int) ((b + 1) * hw / n);
  for (int k = threadIdx.x; k < c; k += blockDim.x) {
    double s = 0.0, q = 0.0;
    float bk = bias ? bias[k] : 0.0f;
    for (int p = p0; p < p1; p++) {
      double v = (double) x[(size_t) p * c + k] + bk;
      s += v;
      q += v * v;
    }
    part_sum[b * c + k] = s;
    part_sq[b * c + k] = q;
  }
}

#define GN_REDUCE_CH 32 /* channels of a block of gn_reduce_kernel */
#define GN_REDUCE_ROWS 8 /* its slice lanes */

/* grid.x: tiles of 32 channels; block (32, 8): thread (x, y) adds slices
 * y, y + 8, ... of channel 32 * blockIdx.x + x (a warp reads 32 adjacent
 * channels of one slice), then row 0 adds the 8 lanes in order */
__global__ void
gn_reduce_kernel (const double *part_sum, const double *part_sq, int slices,
    int c, double *sum, double *sq)
{
  __shared__ double lane_sum[GN_REDUCE_ROWS][GN_REDUCE_CH];
  __shared__ double lane_sq[GN_REDUCE_ROWS][GN_REDUCE_CH];
  int x = threadIdx.x, y = threadIdx.y;
  int k = blockIdx.x * GN_REDUCE_CH + x;
  double s = 0.0, q = 0.0;

  if (k < c)
    for (int b = y; b < slices; b += GN_REDUCE_ROWS) {
      s += part_sum[(size_t) b * c + k];
      q += part_sq[(size_t) b * c + k];
    }
  lane_sum[y][x] = s;
  lane_sq[y][x] = q;
  __syncthreads ();
  if (y == 0 && k < c) {
    for (int r = 1; r < GN_REDUCE_ROWS; r++) {
      s += lane_sum[r][x];
      q += lane_sq[r][x];
    }
    sum[k] = s;
    sq[k] = q;
  }
}

__global__ void
gn_affine_kernel (const double *sum, const double *sq, int hw, int c,
    int groups, const float *bias, const float *gamma, const float *beta,
    float eps, float *scale, float *shift)
{
  int k = blockIdx.x * blockDim.x + threadIdx.x;
  if (k >= c)
    return;
  int cg = c / groups, g = k / cg;
  double s = 0.0, q = 0.0, n = (double) cg * hw;
  for (int j = g * cg; j < (g + 1) * cg; j++) {
    s += sum[j];
    q += sq[j];
  }
  double mean = s / n;
  double var = q / n - mean * mean;
  if (var < 0.0)
    var = 0.0;
  double rstd = 1.0 / sqrt (var + eps);
  double gk = gamma ? gamma[k] : 1.0;
  double bk = beta ? beta[k] : 0.0;
  double b = bias ? bias[k] : 0.0;
  scale[k] = (float) (rstd * gk);
  shift[k] = (float) ((b - mean) * rstd * gk + bk);
}

__global__ void
gn_apply_kernel (const float *x, long total, int c, const float *scale,
    const float *shift, float *y)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= total)
    return;
  int k = (int) (t % c);
  y[t] = x[t] * scale[k] + shift[k];
}

void
si_group_norm_cuda (SiBackend *be, const float *x, int hw, int c, int groups,
    const float *bias, const float *gamma, const float *beta, float eps,
    float *y)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  double *part_sum = (double *) cu->gn_stats;
  double *part_sq = part_sum + SI_CUDA_GN_PARTIALS;
  double *sum = part_sq + SI_CUDA_GN_PARTIALS, *sq = sum + cu->gn_max_c;
  float *scale = (float *) (sq + cu->gn_max_c), *shift = scale + cu->gn_max_c;
  int slices;

  if (hw <= 0 || c <= 0)
    return;
  if (c > cu->gn_max_c || groups <= 0 || c % groups != 0) {
    if (cu->deferred == NULL)
      g_set_error (&cu->deferred, SI_ERROR, SI_ERROR_UNSUPPORTED,
          "group_norm: %d channels in %d groups (CUDA limit %d channels)", c,
          groups, cu->gn_max_c);
    return;
  }
  slices = MIN (MIN (hw, SI_CUDA_GN_MAX_SLICES), SI_CUDA_GN_PARTIALS / c);
  gn_stats_kernel<<<slices, 256, 0, cu->stream>>> (
      x, hw, c, bias, part_sum, part_sq);
  SI_CUDA_LAUNCHED (be, "gn_stats_kernel");
  gn_reduce_kernel<<<si_cuda_blocks (c, GN_REDUCE_CH),
      dim3 (GN_REDUCE_CH, GN_REDUCE_ROWS), 0, cu->stream>>> (
      part_sum, part_sq, slices, c, sum, sq);
  SI_CUDA_LAUNCHED (be, "gn_reduce_kernel");
  gn_affine_kernel<<<si_cuda_blocks (c, 256), 256, 0, cu->stream>>> (
      sum, sq, hw, c, groups, bias, gamma, beta, eps, scale, shift);
  SI_CUDA_LAUNCHED (be, "gn_affine_kernel");
  gn_apply_kernel<<<si_cuda_blocks ((long) hw * c, 256), 256, 0, cu->stream>>> (
      x, (long) hw * c, c, scale, shift, y);
  SI_CUDA_LAUNCHED (be, "gn_apply_kernel");
}
