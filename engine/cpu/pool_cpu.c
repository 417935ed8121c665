/* pool_cpu.c: max pooling on the CPU (reference, plain loops): the ResNet
 * stem's 3x3 / stride 2 / pad 1 pool on NHWC maps, or on blocked maps
 * (C/16, H, W, 16) as C/16 NHWC maps of 16 channels; padding never wins.
 */
#include "backend_cpu.h"

#include <float.h>

static void
maxpool_nhwc (const float *x, int h, int w, int c, float *y)
{
  int ho = (h + 2 - 3) / 2 + 1, wo = (w + 2 - 3) / 2 + 1;

#pragma omp parallel for schedule(static)
  for (int oy = 0; oy < ho; oy++) {
    for (int ox = 0; ox < wo; ox++) {
      float *o = y + ((size_t) oy * wo + ox) * c;
#pragma omp simd
      for (int k = 0; k < c; k++)
        o[k] = -FLT_MAX;
      for (int ky = 0; ky < 3; ky++) {
        int iy = oy * 2 - 1 + ky;
        if (iy < 0 || iy >= h)
          continue;
        for (int kx = 0; kx < 3; kx++) {
          int ix = ox * 2 - 1 + kx;
          if (ix < 0 || ix >= w)
            continue;
          const float *s = x + ((size_t) iy * w + ix) * c;
#pragma omp simd
          for (int k = 0; k < c; k++)
            o[k] = s[k] > o[k] ? s[k] : o[k];
        }
      }
    }
  }
}

void
si_maxpool3x3s2_cpu (
    SiBackend *be, const float *x, int h, int w, int c, float *y)
{
  int ho = (h + 2 - 3) / 2 + 1, wo = (w + 2 - 3) / 2 + 1;

  if (!si_cpu_map_blocked (be, c)) {
    maxpool_nhwc (x, h, w, c, y);
    return;
  }
  for (int b = 0; b < c / 16; b++)
    maxpool_nhwc (
        x + (size_t) b * h * w * 16, h, w, 16, y + (size_t) b * ho * wo * 16);
}
