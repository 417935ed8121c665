/* half.cuh: the element conversions the kernels that read or write either
 * float or __half share (half maps, im2col columns, the conv fallback's
 * bias pass): si_to_float widens, si_store stores a float as the
 * destination's type (__float2half: round to nearest even) or a half as
 * it is.
 */
#ifndef SI_HALF_CUH
#define SI_HALF_CUH

#include <cuda_fp16.h>

static __device__ __forceinline__ float
si_to_float (float v)
{
  return v;
}

static __device__ __forceinline__ float
si_to_float (__half v)
{
  return __half2float (v);
}

static __device__ __forceinline__ void
si_store (float *p, float v)
{
  *p = v;
}

static __device__ __forceinline__ void
si_store (__half *p, float v)
{
  *p = __float2half (v);
}

static __device__ __forceinline__ void
si_store (__half *p, __half v)
{
  *p = v;
}

#endif /* SI_HALF_CUH */
