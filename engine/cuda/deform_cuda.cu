/* deform_cuda.cu: CUDA twin of deform_cpu.c: the deformable im2col of
 * DCNv1 (model-spec 3.2) on maps in the backend's layout (NHWC, fp32 or
 * half: si_cuda_map_half; the offsets too), with si-math.h's sampling
 * arithmetic.  One thread per column element (pixel, channel, tap), taps
 * fastest, so that the column writes are coalesced.
 */
#include "backend_cuda.h"
#include "half.cuh"
#include "si-math.h"

#include <cuda_fp16.h>

template <typename X, typename O>
static __device__ __forceinline__ void
deform_im2col_thread (const X *x, int h, int w, int c, const O *offset,
    int wo, int stride, int deform_groups, long p0, int np, float *cols)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) np * c * 9)
    return;
  int k = (int) (t % 9);
  int ci = (int) ((t / 9) % c);
  long p = p0 + t / ((long) 9 * c);
  int oy = (int) (p / wo), ox = (int) (p % wo);
  int g = ci / (c / deform_groups);
  const O *off = offset + p * (18 * deform_groups) + (g * 9 + k) * 2;
  int idx[4];
  float wt[4], v[4];

  si_dcn_taps (si_dcn_coord (oy, stride, k / 3, si_to_float (off[0])),
      si_dcn_coord (ox, stride, k % 3, si_to_float (off[1])), h, w, idx, wt);
  for (int q = 0; q < 4; q++)
    v[q] = idx[q] < 0 ? 0.0f : si_to_float (x[(size_t) idx[q] * c + ci]);
  cols[t] = si_dcn_mix (wt, v);
}

/* One kernel per (map, offsets) element type pair. */
#define DEFORM_IM2COL_KERNEL(name, X, O)                                       \
  __global__ void name (const X *x, int h, int w, int c, const O *offset,     \
      int wo, int stride, int deform_groups, long p0, int np, float *cols)    \
  {                                                                            \
    deform_im2col_thread (                                                     \
        x, h, w, c, offset, wo, stride, deform_groups, p0, np, cols);          \
  }

DEFORM_IM2COL_KERNEL (deform_im2col_kernel, float, float)
DEFORM_IM2COL_KERNEL (deform_im2col_half_kernel, __half, float)
DEFORM_IM2COL_KERNEL (deform_im2col_half_offset_kernel, __half, __half)
DEFORM_IM2COL_KERNEL (deform_im2col_float_half_offset_kernel, float, __half)

void
si_deform_im2col_cuda (SiBackend *be, const float *x, int h, int w, int c,
    const float *offset, int ho, int wo, int stride, int deform_groups,
    long p0, int np, float *cols)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  long total = (long) np * c * 9;
  bool x_half = si_cuda_map_half (cu, c);
  bool off_half = si_cuda_map_half (cu, 18 * deform_groups);
  unsigned int blocks = si_cuda_blocks (total, 256);

  if (total <= 0)
    return;
  if (x_half && off_half) {
    deform_im2col_half_offset_kernel<<<blocks, 256, 0, cu->stream>>> (
        (const __half *) x, h, w, c, (const __half *) offset, wo, stride,
        deform_groups, p0, np, cols);
    SI_CUDA_LAUNCHED (be, "deform_im2col_half_offset_kernel");
  } else if (x_half) {
    deform_im2col_half_kernel<<<blocks, 256, 0, cu->stream>>> (
        (const __half *) x, h, w, c, offset, wo, stride, deform_groups, p0,
        np, cols);
    SI_CUDA_LAUNCHED (be, "deform_im2col_half_kernel");
  } else if (off_half) {
    deform_im2col_float_half_offset_kernel<<<blocks, 256, 0, cu->stream>>> (
        x, h, w, c, (const __half *) offset, wo, stride, deform_groups, p0,
        np, cols);
    SI_CUDA_LAUNCHED (be, "deform_im2col_float_half_offset_kernel");
  } else {
    deform_im2col_kernel<<<blocks, 256, 0, cu->stream>>> (x, h, w, c, offset,
        wo, stride, deform_groups, p0, np, cols);
    SI_CUDA_LAUNCHED (be, "deform_im2col_kernel");
  }
}
