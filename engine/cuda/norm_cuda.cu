/* norm_cuda.cu: CUDA twin of norm_cpu.c: GroupNorm over an NHWC map with a
 * per-channel bias added first (the neck, model-spec 4).  Like the CPU:
 * sums of t and t^2 in double, combined per group, folded into a
 * per-channel scale and shift, then y = x * scale + shift: three kernels
 * (per-slice sums; per group their total and the affine; the apply).  The
 * sums are per pixel slice (one block each), added in a fixed order: the
 * same frame gives the same bits whatever order the blocks run in.
 */
#include "backend_cuda.h"
#include "reduce.cuh"

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

#define GN_GROUP_THREADS 256

/* One block per group: the slices' sums of its channels (thread t adds
 * the (slice, channel) pairs t, t + blockDim, ..., then the block's fixed
 * tree: the same bits whatever order the blocks run in), the group's mean
 * and variance, folded into its channels' scale and shift. */
__global__ void
gn_group_affine_kernel (const double *part_sum, const double *part_sq,
    int slices, int hw, int c, int groups, const float *bias,
    const float *gamma, const float *beta, float eps, float *scale,
    float *shift)
{
  int g = blockIdx.x, cg = c / groups;
  long pairs = (long) slices * cg;
  double s = 0.0, q = 0.0, n = (double) cg * hw, mean, var, rstd;

  for (long e = threadIdx.x; e < pairs; e += blockDim.x) {
    size_t at = (size_t) (e / cg) * c + g * cg + (int) (e % cg);
    s += part_sum[at];
    q += part_sq[at];
  }
  s = si_block_sum (s);
  q = si_block_sum (q);
  mean = s / n;
  var = q / n - mean * mean;
  if (var < 0.0)
    var = 0.0;
  rstd = 1.0 / sqrt (var + eps);
  for (int k = g * cg + threadIdx.x; k < (g + 1) * cg; k += blockDim.x) {
    double gk = gamma ? gamma[k] : 1.0;
    double bk = beta ? beta[k] : 0.0;
    double b = bias ? bias[k] : 0.0;
    scale[k] = (float) (rstd * gk);
    shift[k] = (float) ((b - mean) * rstd * gk + bk);
  }
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
  float *scale = (float *) (part_sq + SI_CUDA_GN_PARTIALS);
  float *shift = scale + cu->gn_max_c;
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
  gn_group_affine_kernel<<<groups, GN_GROUP_THREADS, 0, cu->stream>>> (
      part_sum, part_sq, slices, hw, c, groups, bias, gamma, beta, eps, scale,
      shift);
  SI_CUDA_LAUNCHED (be, "gn_group_affine_kernel");
  gn_apply_kernel<<<si_cuda_blocks ((long) hw * c, 256), 256, 0, cu->stream>>> (
      x, (long) hw * c, c, scale, shift, y);
  SI_CUDA_LAUNCHED (be, "gn_apply_kernel");
}
