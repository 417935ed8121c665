/* pool_cuda.cu: CUDA twin of pool_cpu.c: the ResNet stem's 3x3 / stride 2
 * / pad 1 max pool on NHWC maps, fp32 or half (si_cuda_map_half: the max
 * of halves is exact either way); padding never wins.  One thread per
 * output element, consecutive threads on consecutive channels.
 */
#include "backend_cuda.h"
#include "half.cuh"

#include <cuda_fp16.h>
#include <float.h>

template <typename T>
static __device__ __forceinline__ void
maxpool3x3s2_thread (const T *x, int h, int w, int c, int ho, int wo, T *y)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) ho * wo * c)
    return;
  int k = (int) (t % c);
  long p = t / c;
  int ox = (int) (p % wo), oy = (int) (p / wo);
  float m = -FLT_MAX;
  for (int ky = 0; ky < 3; ky++) {
    int iy = oy * 2 - 1 + ky;
    if (iy < 0 || iy >= h)
      continue;
    for (int kx = 0; kx < 3; kx++) {
      int ix = ox * 2 - 1 + kx;
      if (ix < 0 || ix >= w)
        continue;
      float v = si_to_float (x[((size_t) iy * w + ix) * c + k]);
      m = v > m ? v : m;
    }
  }
  si_store (&y[t], m); /* exact: m is one of the values read */
}

__global__ void
maxpool3x3s2_kernel (
    const float *x, int h, int w, int c, int ho, int wo, float *y)
{
  maxpool3x3s2_thread (x, h, w, c, ho, wo, y);
}

__global__ void
maxpool3x3s2_half_kernel (
    const __half *x, int h, int w, int c, int ho, int wo, __half *y)
{
  maxpool3x3s2_thread (x, h, w, c, ho, wo, y);
}

void
si_maxpool3x3s2_cuda (
    SiBackend *be, const float *x, int h, int w, int c, float *y)
{
  int ho = (h + 2 - 3) / 2 + 1, wo = (w + 2 - 3) / 2 + 1;
  long total = (long) ho * wo * c;
  if (total <= 0)
    return;
  if (si_cuda_map_half (si_cuda_priv (be), c)) {
    maxpool3x3s2_half_kernel<<<si_cuda_blocks (total, 256), 256, 0,
        si_cuda_priv (be)->stream>>> (
        (const __half *) x, h, w, c, ho, wo, (__half *) y);
    SI_CUDA_LAUNCHED (be, "maxpool3x3s2_half_kernel");
    return;
  }
  maxpool3x3s2_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (x, h, w, c, ho, wo, y);
  SI_CUDA_LAUNCHED (be, "maxpool3x3s2_kernel");
}
