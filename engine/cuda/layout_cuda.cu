/* layout_cuda.cu: CUDA twin of layout_cpu.c: the 2-D transpose used for
 * NCHW (C, HW) <-> NHWC (HW, C), through 32x32 shared-memory tiles so that
 * reads and writes are both coalesced.
 */
#include "backend_cuda.h"

#define TILE 32

/* block (32, 8): each thread moves 4 elements of the tile */
__global__ void
transpose_kernel (const float *src, int rows, int cols, float *dst)
{
  __shared__ float tile[TILE][TILE + 1];
  int c = blockIdx.x * TILE + threadIdx.x;
  int r0 = blockIdx.y * TILE;

  for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
    int r = r0 + i;
    if (r < rows && c < cols)
      tile[i][threadIdx.x] = src[(size_t) r * cols + c];
  }
  __syncthreads ();
  int r = r0 + threadIdx.x;
  for (int i = threadIdx.y; i < TILE; i += blockDim.y) {
    int cc = blockIdx.x * TILE + i;
    if (r < rows && cc < cols)
      dst[(size_t) cc * rows + r] = tile[threadIdx.x][i];
  }
}

void
si_transpose_cuda (
    SiBackend *be, const float *src, int rows, int cols, float *dst)
{
  if (rows <= 0 || cols <= 0)
    return;
  dim3 grid (si_cuda_blocks (cols, TILE), si_cuda_blocks (rows, TILE));
  transpose_kernel<<<grid, dim3 (TILE, 8), 0, si_cuda_priv (be)->stream>>> (
      src, rows, cols, dst);
  SI_CUDA_LAUNCHED (be, "transpose_kernel");
}
