/* vector_math.h: glibc's vector math (libmvec) for the CPU loops bound by
 * erff or expf calls (GELU, softmax): the two are declared with the simd
 * attribute, so that GCC calls their vector variants (<= 2 ulp) in
 * `omp simd` loops; math.h declares them so only under -ffast-math.
 * Without libmvec (SI_HAVE_MVEC undefined) the scalar functions are called.
 */
#ifndef SI_VECTOR_MATH_H
#define SI_VECTOR_MATH_H

#include <math.h>

#include "si-config.h"

#ifdef SI_HAVE_MVEC
float erff (float) __attribute__ ((__simd__ ("notinbranch")));
float expf (float) __attribute__ ((__simd__ ("notinbranch")));
#endif

#endif /* SI_VECTOR_MATH_H */
