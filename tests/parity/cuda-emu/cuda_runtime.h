/* cuda_runtime.h (emulation): the subset of the CUDA runtime that
 * engine/cuda/ uses, implemented on the host (cuda-emu.cc) so that the
 * CUDA backend's own code, host side and kernels, runs on the CPU in the
 * parity suite.  Device memory is host memory, streams are synchronous,
 * kernels run block by block, the threads of a block as fibers (barriers
 * and warp shuffles are block-wide), in the order SI_EMU_SCHEDULE sets
 * (cuda-emu.cc).  Not CUDA: no timing, no concurrency,
 * device libm is the host's.  Compiled as C (backend_cuda.c) and C++
 * (the .cu files after cu2cpp.py).
 */
#ifndef SI_CUDA_EMU_RUNTIME_H
#define SI_CUDA_EMU_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum
{
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevice = 101,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorECCUncorrectable = 214,
  cudaErrorNvlinkUncorrectable = 220,
  cudaErrorContained = 226,
  cudaErrorTensorMemoryLeak = 721,
  cudaErrorMpsClientTerminated = 810,
  cudaErrorExternalDevice = 911,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchTimeout = 702,
  cudaErrorAssert = 710,
  cudaErrorHardwareStackError = 714,
  cudaErrorIllegalInstruction = 715,
  cudaErrorMisalignedAddress = 716,
  cudaErrorInvalidAddressSpace = 717,
  cudaErrorInvalidPc = 718,
  cudaErrorLaunchFailure = 719,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
} cudaError_t;

typedef enum
{
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
} cudaMemcpyKind;

#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01

typedef struct SiEmuStream *cudaStream_t;
typedef struct SiEmuEvent *cudaEvent_t;
typedef struct SiEmuGraph *cudaGraph_t;
typedef struct SiEmuGraph *cudaGraphExec_t;

enum cudaStreamCaptureMode
{
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};

struct cudaDeviceProp
{
  char name[256];
  int major, minor;
  size_t totalGlobalMem;
  int multiProcessorCount;
};

cudaError_t cudaGetDeviceCount (int *count);
cudaError_t cudaSetDevice (int device);
cudaError_t cudaGetDeviceProperties (struct cudaDeviceProp *prop, int device);
cudaError_t cudaGetLastError (void);
cudaError_t cudaPeekAtLastError (void);
const char *cudaGetErrorName (cudaError_t error);
const char *cudaGetErrorString (cudaError_t error);

cudaError_t cudaMalloc (void **ptr, size_t bytes);
cudaError_t cudaFree (void *ptr);
cudaError_t cudaHostAlloc (void **ptr, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost (void *ptr);
cudaError_t cudaMemcpyAsync (void *dst, const void *src, size_t bytes,
    cudaMemcpyKind kind, cudaStream_t stream);
cudaError_t cudaMemcpy2DAsync (void *dst, size_t dpitch, const void *src,
    size_t spitch, size_t width, size_t height, cudaMemcpyKind kind,
    cudaStream_t stream);
cudaError_t cudaMemsetAsync (
    void *ptr, int value, size_t bytes, cudaStream_t stream);

cudaError_t cudaStreamCreateWithFlags (
    cudaStream_t *stream, unsigned int flags);
cudaError_t cudaStreamDestroy (cudaStream_t stream);
cudaError_t cudaStreamSynchronize (cudaStream_t stream);
cudaError_t cudaEventCreateWithFlags (cudaEvent_t *event, unsigned int flags);
cudaError_t cudaEventDestroy (cudaEvent_t event);
cudaError_t cudaEventRecord (cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize (cudaEvent_t event);
cudaError_t cudaEventElapsedTime (
    float *ms, cudaEvent_t start, cudaEvent_t end);

/* Graphs: work submitted to a capturing stream is recorded as closures,
 * a launch replays them. */
cudaError_t cudaStreamBeginCapture (
    cudaStream_t stream, enum cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture (cudaStream_t stream, cudaGraph_t *graph);
cudaError_t cudaGraphInstantiate (
    cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags);
cudaError_t cudaGraphLaunch (cudaGraphExec_t exec, cudaStream_t stream);
cudaError_t cudaGraphExecDestroy (cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy (cudaGraph_t graph);

/* Test hooks: the device count reported (default 1) and the number of
 * cudaMalloc calls after which cudaMalloc fails (-1: never). */
void si_emu_set_device_count (int count);
/* What cudaGetDeviceProperties reports (default 9.0). */
void si_emu_set_compute_capability (int major, int minor);
void si_emu_fail_malloc_after (int calls);
/* Makes the kernel launch numbered @launches (counted from this call,
 * from 0) fail (-1: none), with the error of si_emu_set_launch_error
 * (default cudaErrorLaunchOutOfResources, a refusal: that launch alone
 * fails).  A fault's error (cudaErrorIllegalAddress, ...) loses the
 * context, as on a device: every later call fails with it (kernels and
 * copies do nothing, cuBLAS returns CUBLAS_STATUS_EXECUTION_FAILED, frees
 * still free) until si_emu_recover, which stands for a new process. */
void si_emu_fail_launch_after (int launches);
void si_emu_set_launch_error (cudaError_t error);
void si_emu_recover (void);
/* Whether a fault has lost the context (since the last si_emu_recover). */
int si_emu_context_lost (void);
/* The order of blocks and threads from now on: "forward", "reverse" or
 * "shuffle" (SI_EMU_SCHEDULE's values; NULL: back to SI_EMU_SCHEDULE).
 * -1 for another name. */
int si_emu_set_schedule (const char *name);
/* Kernel launches since the last si_emu_fail_launch_after (). */
int si_emu_launches (void);
/* Bytes currently allocated with cudaMalloc, and the number of calls. */
size_t si_emu_device_bytes (void);
int si_emu_malloc_calls (void);
/* Makes the next @n stream captures fail: at cudaStreamBeginCapture
 * (at_begin) or at cudaStreamEndCapture (cudaErrorStreamCaptureInvalidated,
 * the work recorded is dropped). */
void si_emu_fail_captures (int n, int at_begin);
/* Graphs replayed (cudaGraphLaunch calls) since the start. */
int si_emu_graph_launches (void);
/* Calls since the start: allocations and frees of device and of pinned
 * host memory, copies between host and device (cudaMemcpy*Async by kind,
 * on a lost context too),
 * and how many of those had a host side outside pinned memory; the source
 * and size of the last copy up; waits for a stream (cudaStreamSynchronize
 * outside a capture) and for an event made with cudaEventBlockingSync
 * (cudaEventSynchronize). */
typedef struct
{
  int mallocs, frees, host_allocs, host_frees;
  int h2d, d2h, h2d_pageable, d2h_pageable;
  const void *last_h2d_src;
  size_t last_h2d_bytes;
  int syncs, blocking_waits;
} SiEmuCounts;
void si_emu_counts (SiEmuCounts *counts);

#ifdef __cplusplus
}

/* ---- device side (C++ only: the kernels) ---- */

#include <functional>
#include <math.h>
#include <string.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct uint3
{
  unsigned int x, y, z;
};

struct dim3
{
  unsigned int x, y, z;
  dim3 (unsigned int a = 1, unsigned int b = 1, unsigned int c = 1)
      : x (a), y (b), z (c)
  {
  }
};

extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

struct SiEmuConfig
{
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
};

static inline SiEmuConfig
si_emu_cfg (dim3 grid, dim3 block, size_t smem = 0, cudaStream_t s = NULL)
{
  SiEmuConfig c = { grid, block, smem, s };
  return c;
}

/* Runs body once per (block, thread) and sets the last error on a bad
 * configuration (as a launch would). */
void si_emu_launch (const SiEmuConfig &cfg, const std::function<void ()> &body);

void __syncthreads (void);
/* A warp barrier as the block's: every thread of the block must get there
 * (the kernels that use it call it in uniform control flow). */
static inline void
__syncwarp (unsigned int mask = 0xffffffffu)
{
  (void) mask;
  __syncthreads ();
}
/* Per-thread toggle between two exchange buffers, so that one barrier per
 * shuffle suffices. */
unsigned int si_emu_shfl_phase (void);
/* After each __shared__ declaration (cu2cpp.py): the variable's bytes
 * become NaN (0xff) the first time a thread of a new block gets there,
 * as a block's shared memory starts as garbage on a device. */
void si_emu_shared_poison (void *var, size_t bytes);

/* Warp shuffles as a block-wide exchange: every thread of the block must
 * take part (true of the block reductions of engine/cuda/reduce.cuh). */
template <typename T>
static inline T
__shfl_xor_sync (unsigned int mask, T v, int offset)
{
  static T slots[2][1024];
  unsigned int tid =
      threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  unsigned int ph = si_emu_shfl_phase ();
  (void) mask;
  slots[ph][tid] = v;
  __syncthreads ();
  return slots[ph][(tid & ~31u) | ((tid & 31u) ^ (unsigned int) offset)];
}

template <typename T>
static inline T
atomicAdd (T *p, T v)
{
  T old = *p; /* fibers of one OS thread: nothing runs in between */
  *p = old + v;
  return old;
}

static inline unsigned int
__float_as_uint (float f)
{
  unsigned int u;
  memcpy (&u, &f, 4);
  return u;
}

static inline float
__uint_as_float (unsigned int u)
{
  float f;
  memcpy (&f, &u, 4);
  return f;
}

static inline int
min (int a, int b)
{
  return a < b ? a : b;
}

static inline int
max (int a, int b)
{
  return a > b ? a : b;
}

#endif /* __cplusplus */

#endif /* SI_CUDA_EMU_RUNTIME_H */
