/* layout_cpu.c: copies and layout changes on the CPU (reference, plain
 * loops): memory copy and the 2-D transpose used for NCHW (C, HW) <-> NHWC
 * (HW, C).
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
