/* cuda_fp16.h (emulation): the half type and the conversions engine/cuda/
 * uses, on the host compiler's IEEE binary16 (_Float16), so that rounding
 * (to nearest even), range and subnormals are those of the device.
 * C++ only, like the .cu files it serves.
 */
#ifndef SI_CUDA_EMU_FP16_H
#define SI_CUDA_EMU_FP16_H

#ifndef __FLT16_MAX__
#error "the CUDA emulation needs the compiler's _Float16 (GCC >= 12 on x86-64)"
#endif

struct __half
{
  _Float16 v;
};

static inline __half
__float2half (float f)
{
  __half h;
  h.v = (_Float16) f;
  return h;
}

static inline float
__half2float (__half h)
{
  return (float) h.v;
}

#endif /* SI_CUDA_EMU_FP16_H */
