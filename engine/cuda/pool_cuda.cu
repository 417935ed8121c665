/* pool_cuda.cu: CUDA twin of pool_cpu.c: the ResNet stem's 3x3 / stride 2
 * / pad 1 max pool on NHWC maps; padding never wins.  One thread per
 * output element, consecutive threads on consecutive channels.
 */
#include "backend_cuda.h"

#include <float.h>

__global__ void
maxpool3x3s2_kernel (
    const float *x, int h, int w, int c, int ho, int wo, float *y)
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
      float v = x[((size_t) iy * w + ix) * c + k];
      m = v > m ? v : m;
    }
  }
  y[t] = m;
}

void
si_maxpool3x3s2_cuda (
    SiBackend *be, const float *x, int h, int w, int c, float *y)
{
  int ho = (h + 2 - 3) / 2 + 1, wo = (w + 2 - 3) / 2 + 1;
  long total = (long) ho * wo * c;
  if (total <= 0)
    return;
  maxpool3x3s2_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (x, h, w, c, ho, wo, y);
  SI_CUDA_LAUNCHED (be, "maxpool3x3s2_kernel");
}
