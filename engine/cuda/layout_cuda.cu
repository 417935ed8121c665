/* layout_cuda.cu: CUDA twin of layout_cpu.c: the 2-D transpose used for
 * NCHW (C, HW) <-> NHWC (HW, C), through 32x32 shared-memory tiles so that
 * reads and writes are both coalesced; and maps in the backend's layout
 * (NHWC, fp32 or half: si_cuda_map_half) <-> NHWC fp32.
 */
#include "backend_cuda.h"
#include "half.cuh"

#include <cuda_fp16.h>

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

template <typename S, typename D>
static __device__ __forceinline__ void
convert_thread (const S *src, long n, D *dst)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t < n)
    si_store (&dst[t], si_to_float (src[t]));
}

__global__ void
half_to_float_kernel (const __half *src, long n, float *dst)
{
  convert_thread (src, n, dst);
}

__global__ void
float_to_half_kernel (const float *src, long n, __half *dst)
{
  convert_thread (src, n, dst);
}

/* Half map <-> NHWC fp32; a copy for fp32 maps. */
static void
map_convert (SiBackend *be, const float *src, int h, int w, int c,
    float *dst, bool to_nhwc)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  long n = (long) h * w * c;

  if (n <= 0)
    return;
  if (!si_cuda_map_half (cu, c)) {
    be->ops->copy (be, dst, src, (size_t) n * sizeof (float));
    return;
  }
  if (to_nhwc) {
    half_to_float_kernel<<<si_cuda_blocks (n, 256), 256, 0, cu->stream>>> (
        (const __half *) src, n, dst);
    SI_CUDA_LAUNCHED (be, "half_to_float_kernel");
  } else {
    float_to_half_kernel<<<si_cuda_blocks (n, 256), 256, 0, cu->stream>>> (
        src, n, (__half *) dst);
    SI_CUDA_LAUNCHED (be, "float_to_half_kernel");
  }
}

void
si_map_to_nhwc_cuda (
    SiBackend *be, const float *src, int h, int w, int c, float *dst)
{
  map_convert (be, src, h, w, c, dst, true);
}

void
si_map_from_nhwc_cuda (
    SiBackend *be, const float *src, int h, int w, int c, float *dst)
{
  map_convert (be, src, h, w, c, dst, false);
}
