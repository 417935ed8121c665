/* layout_cpu.c: copies and layout changes on the CPU (reference, plain
 * loops): memory copy, the 2-D transpose used for NCHW (C, HW) <-> NHWC
 * (HW, C), and blocked maps (C/16, H, W, 16) of the oneDNN path <-> NHWC.
 */
#include "backend_cpu.h"

#include <string.h>

void
si_copy_cpu (SiBackend *be, void *dst, const void *src, size_t bytes)
{
  if (bytes && dst != src)
    memmove (dst, src, bytes);
}

#define TILE 32

void
si_transpose_cpu (
    SiBackend *be, const float *src, int rows, int cols, float *dst)
{
  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (int r0 = 0; r0 < rows; r0 += TILE) {
    for (int c0 = 0; c0 < cols; c0 += TILE) {
      int r1 = r0 + TILE < rows ? r0 + TILE : rows;
      int c1 = c0 + TILE < cols ? c0 + TILE : cols;
      for (int r = r0; r < r1; r++)
        for (int c = c0; c < c1; c++)
          dst[(size_t) c * rows + r] = src[(size_t) r * cols + c];
    }
  }
}

/* Blocked (C/16, HW, 16) <-> NHWC (HW, C); a copy for NHWC maps. */
static void
map_convert (SiBackend *be, const float *src, int h, int w, int c, float *dst,
    bool to_nhwc)
{
  size_t hw = (size_t) h * w;

  if (!si_cpu_map_blocked (be, c)) {
    si_copy_cpu (be, dst, src, hw * c * sizeof (float));
    return;
  }
#pragma omp parallel for schedule(static)
  for (size_t p = 0; p < hw; p++) {
    for (int b = 0; b < c / 16; b++) {
      size_t nhwc = p * c + (size_t) b * 16;
      size_t blocked = ((size_t) b * hw + p) * 16;
      const float *s = src + (to_nhwc ? blocked : nhwc);
      float *o = dst + (to_nhwc ? nhwc : blocked);
#pragma omp simd
      for (int j = 0; j < 16; j++)
        o[j] = s[j];
    }
  }
}

void
si_map_to_nhwc_cpu (
    SiBackend *be, const float *src, int h, int w, int c, float *dst)
{
  map_convert (be, src, h, w, c, dst, true);
}

void
si_map_from_nhwc_cpu (
    SiBackend *be, const float *src, int h, int w, int c, float *dst)
{
  map_convert (be, src, h, w, c, dst, false);
}
