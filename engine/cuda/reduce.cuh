/* reduce.cuh: block-wide sum / max reductions shared by the CUDA kernels
 * (layer norms, group norm, softmax).  Every thread of the block must call
 * them; the result is returned to all threads.  Up to 1024 threads.
 */
#ifndef SI_REDUCE_CUH
#define SI_REDUCE_CUH

template <typename T>
__device__ __forceinline__ T
si_warp_sum (T v)
{
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync (0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float
si_warp_max (float v)
{
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf (v, __shfl_xor_sync (0xffffffffu, v, o));
  return v;
}

template <typename T>
__device__ __forceinline__ T
si_block_sum (T v)
{
  __shared__ T part[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int nwarps = (blockDim.x + 31) >> 5;

  v = si_warp_sum (v);
  __syncthreads (); /* part[] may still be read by a previous call */
  if (lane == 0)
    part[warp] = v;
  __syncthreads ();
  v = lane < nwarps ? part[lane] : (T) 0;
  return si_warp_sum (v);
}

__device__ __forceinline__ float
si_block_max (float v)
{
  __shared__ float part[32];
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int nwarps = (blockDim.x + 31) >> 5;

  v = si_warp_max (v);
  __syncthreads ();
  if (lane == 0)
    part[warp] = v;
  __syncthreads ();
  v = lane < nwarps ? part[lane] : -INFINITY;
  return si_warp_max (v);
}

#endif /* SI_REDUCE_CUH */
