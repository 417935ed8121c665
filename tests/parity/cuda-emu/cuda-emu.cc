/* cuda-emu.cc: host implementation of the emulated CUDA runtime and cuBLAS
 * (cuda_runtime.h, cublas_v2.h in this directory).  Kernels: the first
 * block of a launch runs its threads as fibers (ucontext); if none of them
 * reached a barrier, the other blocks run their threads as plain calls,
 * otherwise as fibers too.  SI_EMU_SCHEDULE (forward | reverse | shuffle)
 * sets the order of the blocks and of the threads between two barriers, so
 * that a kernel whose result depends on it (a missing barrier, a block
 * reading another block's output) fails its parity test in some order.
 * cuBLAS: column-major loops with the argument checks of the cuBLAS
 * documentation.  Device memory is malloc'ed, so ASan / valgrind see
 * out-of-bounds kernel accesses.
 */
#include "cublasLt.h"
#include "cublas_v2.h"
#include "cuda_fp16.h"
#include "cuda_runtime.h"

#include <algorithm>
#include <map>
#include <random>
#include <string.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <ucontext.h>
#include <vector>
#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#include <sanitizer/common_interface_defs.h>
#endif

struct SiEmuStream
{
  bool capturing, invalidated;
  std::vector<std::function<void ()>> recording;
  /* a failure of replayed work, reported by the next synchronisation */
  cudaError_t async_error;
};
struct SiEmuEvent
{
  unsigned int flags;
  bool recorded;
  double ms; /* host clock at the record: the work before it has run */
};
struct SiEmuGraph
{
  std::vector<std::function<void ()>> work;
};

/* A fault's error once a kernel has faulted (cudaSuccess before): as on a
 * device, the context is lost and every later call fails with it, until
 * si_emu_recover (a new process, for the tests). */
static cudaError_t context_lost = cudaSuccess;

/* Runs work now, or records it when the stream is capturing; nothing runs
 * on a lost context. */
static void
submit (cudaStream_t s, const std::function<void ()> &work)
{
  if (s && s->capturing)
    s->recording.push_back (work);
  else if (context_lost == cudaSuccess)
    work ();
}

static bool
capturing (cudaStream_t s)
{
  return s && s->capturing;
}

static bool any_capture; /* a capture is in progress on some stream */

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

static cudaError_t last_error = cudaSuccess;
static int device_count = 1;
static int fail_after = -1;
static int malloc_calls;
static int fail_launch_after = -1;
static cudaError_t launch_error = cudaErrorLaunchOutOfResources;
static int launches;
static size_t device_bytes;
static int fail_captures, fail_captures_at_begin;
static int graph_launches;
/* the stream whose graph is being replayed: launch failures there are
 * asynchronous, as on a device (the replay itself succeeds) */
static cudaStream_t replaying;
static std::map<void *, size_t> allocations;
static std::map<const char *, size_t> pinned; /* cudaHostAlloc'ed */
static SiEmuCounts counts;

/* ---- schedule ---- */

enum Schedule
{
  SCHEDULE_FORWARD,
  SCHEDULE_REVERSE,
  SCHEDULE_SHUFFLE,
};

static int schedule_override = -1; /* si_emu_set_schedule */

/* A schedule by its name (SI_EMU_SCHEDULE's values); -1 for another. */
static int
schedule_named (const char *name)
{
  if (strcmp (name, "forward") == 0)
    return SCHEDULE_FORWARD;
  if (strcmp (name, "reverse") == 0)
    return SCHEDULE_REVERSE;
  if (strcmp (name, "shuffle") == 0)
    return SCHEDULE_SHUFFLE;
  return -1;
}

static Schedule
schedule (void)
{
  static int cached = -1;

  if (schedule_override >= 0)
    return (Schedule) schedule_override;
  if (cached < 0) {
    const char *v = getenv ("SI_EMU_SCHEDULE");

    cached = v == NULL || *v == '\0' ? SCHEDULE_FORWARD : schedule_named (v);
    if (cached < 0) {
      fprintf (stderr,
          "cuda-emu: SI_EMU_SCHEDULE=%s: expected forward, reverse or "
          "shuffle\n",
          v);
      abort ();
    }
    if (cached != SCHEDULE_FORWARD)
      fprintf (stderr, "cuda-emu: schedule %s\n", v);
  }
  return (Schedule) cached;
}

/* A fixed seed: a failure under shuffle repeats from run to run. */
static std::mt19937 shuffle_rng (20231002u);

/* order[0, n): the indices 0..n-1 in the order the schedule runs them. */
static void
schedule_order (std::vector<unsigned int> &order, unsigned int n)
{
  order.resize (n);
  for (unsigned int i = 0; i < n; i++)
    order[i] = i;
  if (schedule () == SCHEDULE_REVERSE)
    std::reverse (order.begin (), order.end ());
  else if (schedule () == SCHEDULE_SHUFFLE)
    std::shuffle (order.begin (), order.end (), shuffle_rng);
}

/* ---- fibers ---- */

#define FIBER_STACK (256 * 1024)

struct Fiber
{
  ucontext_t ctx;
  std::vector<char> stack;
  uint3 tid;
  bool done, waiting, started;
  unsigned int phase; /* shuffle buffer toggle */
  jmp_buf jb;         /* where the fiber waits at a barrier */
  void *fake_stack;   /* AddressSanitizer's, while the fiber waits */
};

static std::vector<Fiber> fibers;
/* A fiber starts with swapcontext (one signal-mask syscall) and switches
 * with _setjmp / _longjmp afterwards (none), at barriers and between the
 * threads it runs. */
static ucontext_t sched_ctx;
static jmp_buf sched_jb;
static int current = -1; /* fiber running, -1: direct mode */
static bool barrier_hit;
static const std::function<void ()> *running_body;

/* AddressSanitizer follows a jump to another stack only when told of it
 * (its fiber interface).  Its swapcontext interceptor, the other way, clears
 * the shadow of the whole target stack at every switch: that made the
 * emulated tests 30 to 50 times slower under ASan than without it. */
#if defined(__SANITIZE_ADDRESS__)
static const void *sched_stack_bottom;
static size_t sched_stack_size;
static void *sched_fake_stack;

static void
switch_to_fiber_begin (Fiber *f)
{
  __sanitizer_start_switch_fiber (
      &sched_fake_stack, f->stack.data (), f->stack.size ());
}

static void
switch_to_fiber_end (Fiber *f)
{
  __sanitizer_finish_switch_fiber (
      f->fake_stack, &sched_stack_bottom, &sched_stack_size);
}

static void
switch_to_scheduler_begin (Fiber *f)
{
  __sanitizer_start_switch_fiber (
      &f->fake_stack, sched_stack_bottom, sched_stack_size);
}

static void
switch_to_scheduler_end (void)
{
  __sanitizer_finish_switch_fiber (sched_fake_stack, NULL, NULL);
}
#else
static void
switch_to_fiber_begin (Fiber *)
{
}
static void
switch_to_fiber_end (Fiber *)
{
}
static void
switch_to_scheduler_begin (Fiber *)
{
}
static void
switch_to_scheduler_end (void)
{
}
#endif

/* ASan's _longjmp unpoisons the stack it leaves and asks the kernel for the
 * signal stack (a syscall) at every jump.  Between fibers whose frames all
 * come back, and whose switches ASan has been told of above, neither is
 * needed, and the two were most of the emulation's time under ASan: this
 * calls libc's own.  Not declared noreturn, for the same reason: ASan calls
 * __asan_handle_no_return before every call of a noreturn function. */
static void
jump (jmp_buf to)
{
#if defined(__SANITIZE_ADDRESS__)
  typedef void (*LongjmpFn) (jmp_buf, int);
  static LongjmpFn libc_longjmp;
  if (libc_longjmp == NULL) {
    void *libc = dlopen ("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (libc != NULL)
      libc_longjmp = (LongjmpFn) dlsym (libc, "_longjmp");
    if (libc_longjmp == NULL)
      libc_longjmp = _longjmp;
  }
  libc_longjmp (to, 1);
#else
  _longjmp (to, 1);
#endif
}

/* A fiber is made once per slot (one makecontext) and then runs one thread
 * of a block after another, parked at the end of each until a later block
 * hands it the next: no frame of it is ever left behind by a jump. */
static void
fiber_entry (void)
{
  for (;;) {
    switch_to_fiber_end (&fibers[current]);
    (*running_body) ();
    Fiber *f = &fibers[current];
    f->done = true;
    switch_to_scheduler_begin (f);
    if (_setjmp (f->jb) == 0)
      jump (sched_jb);
  }
}

/* Runs fiber i until it waits at a barrier or ends.  Not inlined: nothing
 * of the caller may live across the _setjmp. */
static void __attribute__ ((noinline)) resume (unsigned int i)
{
  current = (int) i;
  threadIdx = fibers[i].tid;
  switch_to_fiber_begin (&fibers[i]);
  if (_setjmp (sched_jb) == 0) {
    if (!fibers[i].started) {
      fibers[i].started = true;
      swapcontext (&sched_ctx, &fibers[i].ctx); /* never returns here */
    } else {
      jump (fibers[i].jb);
    }
  }
  switch_to_scheduler_end ();
  current = -1;
}

/* Once per fiber slot (getcontext is a syscall, and returns twice). */
static void __attribute__ ((noinline)) fiber_slot_init (Fiber *f)
{
  f->stack.resize (FIBER_STACK);
  getcontext (&f->ctx);
  f->ctx.uc_stack.ss_sp = f->stack.data ();
  f->ctx.uc_stack.ss_size = f->stack.size ();
  f->ctx.uc_link = NULL; /* fibers never return */
  makecontext (&f->ctx, fiber_entry, 0);
  /* makecontext has set the stack pointer; without a stack here, ASan's
   * swapcontext leaves the shadow alone (see switch_to_fiber_begin) */
  f->ctx.uc_stack.ss_sp = NULL;
  f->ctx.uc_stack.ss_size = 0;
  f->fake_stack = NULL;
  f->started = false;
}

static void
run_block_fibers (unsigned int n)
{
  /* ucontext_t points into itself: the slots must never move */
  if (fibers.capacity () < 1024)
    fibers.reserve (1024);
  if (fibers.size () < n)
    fibers.resize (n);
  for (unsigned int i = 0; i < n; i++) {
    Fiber &f = fibers[i];
    if (f.stack.empty ())
      fiber_slot_init (&f);
    f.tid.x = i % blockDim.x;
    f.tid.y = (i / blockDim.x) % blockDim.y;
    f.tid.z = i / (blockDim.x * blockDim.y);
    f.done = false;
    f.waiting = false;
    f.phase = 0;
  }
  for (;;) {
    bool any_live = false;
    /* a new order for every stretch between two barriers */
    static std::vector<unsigned int> order;
    bool forward = schedule () == SCHEDULE_FORWARD;
    if (!forward)
      schedule_order (order, n);
    for (unsigned int k = 0; k < n; k++) {
      unsigned int i = forward ? k : order[k];
      Fiber &f = fibers[i];
      if (f.done || f.waiting)
        continue;
      resume (i);
    }
    for (unsigned int i = 0; i < n; i++)
      if (!fibers[i].done) {
        any_live = true;
        fibers[i].waiting = false; /* everyone reached the barrier */
      }
    if (!any_live)
      break;
  }
}

void
__syncthreads (void)
{
  if (current < 0) {
    fprintf (stderr,
        "cuda-emu: __syncthreads outside fiber mode: the "
        "barrier is not reached by every thread of a block\n");
    abort ();
  }
  barrier_hit = true;
  fibers[current].waiting = true;
  switch_to_scheduler_begin (&fibers[current]);
  if (_setjmp (fibers[current].jb) == 0)
    jump (sched_jb);
  switch_to_fiber_end (&fibers[current]);
}

unsigned int
si_emu_shfl_phase (void)
{
  if (current < 0)
    return 0;
  fibers[current].phase ^= 1u;
  return fibers[current].phase;
}

static void launch_now (
    const SiEmuConfig &cfg, const std::function<void ()> &body);

/* The errors of a kernel's fault, which lose the context on a device
 * (the others are refusals: the launch alone fails).  The device's side of
 * the list engine/cuda/backend_cuda.c keeps (cuda_error_is_sticky), kept
 * apart on purpose: the emulation stands for the device, and a mistake in
 * the backend's list must not be copied into it. */
static bool
error_is_fault (cudaError_t e)
{
  switch (e) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorMisalignedAddress:
    case cudaErrorIllegalInstruction:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorHardwareStackError:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
      return true;
    default:
      return false;
  }
}

/* A direct launch's failure is the thread's last error (the launch check
 * after it reads it); a replayed one's is the stream's, reported by the
 * next cudaStreamSynchronize.  A fault also loses the context. */
static void
launch_failed (cudaError_t e)
{
  if (replaying == NULL)
    last_error = e;
  else if (replaying->async_error == cudaSuccess)
    replaying->async_error = e;
  if (error_is_fault (e) && context_lost == cudaSuccess)
    context_lost = e;
}

void
si_emu_launch (const SiEmuConfig &cfg, const std::function<void ()> &body)
{
  if (capturing (cfg.stream) && context_lost == cudaSuccess) {
    SiEmuConfig c = cfg;
    std::function<void ()> b = body; /* the arguments, as captured */
    cfg.stream->recording.push_back ([c, b] () { launch_now (c, b); });
    return;
  }
  launch_now (cfg, body);
}

/* Blocks run since the start: which block a shared variable was last
 * poisoned for (si_emu_shared_poison). */
static unsigned long block_epoch;

void
si_emu_shared_poison (void *var, size_t bytes)
{
  static std::map<void *, unsigned long> poisoned;
  unsigned long &last = poisoned[var];

  if (last == block_epoch)
    return; /* an earlier thread of this block got here first */
  last = block_epoch;
  memset (var, 0xff, bytes);
}

/* One block of the launch in progress: as fibers while the launch's
 * first block reached a barrier, else its threads as plain calls in order
 * (NULL: 0, 1, ...). */
static void
run_block (bool *fiber_mode, unsigned int threads,
    const std::vector<unsigned int> *order)
{
  block_epoch++;
  if (*fiber_mode) {
    run_block_fibers (threads);
    if (!barrier_hit)
      *fiber_mode = false;
    return;
  }
  for (unsigned int k = 0; k < threads; k++) {
    unsigned int t = order != NULL ? (*order)[k] : k;
    threadIdx.x = t % blockDim.x;
    threadIdx.y = (t / blockDim.x) % blockDim.y;
    threadIdx.z = t / (blockDim.x * blockDim.y);
    (*running_body) ();
  }
}

static void
launch_now (const SiEmuConfig &cfg, const std::function<void ()> &body)
{
  unsigned long threads =
      (unsigned long) cfg.block.x * cfg.block.y * cfg.block.z;
  bool fiber_mode;

  if (threads == 0 || threads > 1024 || cfg.block.z > 64 || cfg.grid.x == 0 ||
      cfg.grid.y == 0 || cfg.grid.z == 0 || cfg.grid.y > 65535 ||
      cfg.grid.z > 65535 || cfg.smem > 48 * 1024 || (threads % 32) != 0) {
    /* a block size that is not a warp multiple is legal CUDA, but the
     * kernels here use full-warp shuffles: reject it loudly */
    fprintf (stderr,
        "cuda-emu: bad launch grid (%u, %u, %u) block (%u, %u, "
        "%u) smem %zu\n",
        cfg.grid.x, cfg.grid.y, cfg.grid.z, cfg.block.x, cfg.block.y,
        cfg.block.z, cfg.smem);
    launch_failed (cudaErrorInvalidConfiguration);
    return;
  }
  if (context_lost != cudaSuccess) {
    launch_failed (context_lost);
    return;
  }
  if (launches == fail_launch_after) {
    launches++;
    launch_failed (launch_error);
    return;
  }
  launches++;
  gridDim = cfg.grid;
  blockDim = cfg.block;
  running_body = &body;
  barrier_hit = false;
  fiber_mode = true; /* the first block run decides */
  bool forward = schedule () == SCHEDULE_FORWARD;
  unsigned long nb = (unsigned long) cfg.grid.x * cfg.grid.y * cfg.grid.z;
  std::vector<unsigned int> blocks, thread_order;
  if (!forward)
    schedule_order (blocks, (unsigned int) nb);
  for (unsigned long k = 0; k < nb; k++) {
    unsigned long b = forward ? k : blocks[k];
    blockIdx.x = (unsigned int) (b % cfg.grid.x);
    blockIdx.y = (unsigned int) ((b / cfg.grid.x) % cfg.grid.y);
    blockIdx.z = (unsigned int) (b / ((unsigned long) cfg.grid.x * cfg.grid.y));
    if (!forward)
      schedule_order (thread_order, (unsigned int) threads);
    run_block (
        &fiber_mode, (unsigned int) threads, forward ? NULL : &thread_order);
  }
  running_body = NULL;
}

/* ---- runtime ---- */

extern "C" {

void
si_emu_set_device_count (int count)
{
  device_count = count;
}

void
si_emu_fail_malloc_after (int calls)
{
  fail_after = calls;
  malloc_calls = 0;
}

int
si_emu_set_schedule (const char *name)
{
  int s = name == NULL ? -1 : schedule_named (name);

  if (name != NULL && s < 0)
    return -1;
  schedule_override = s;
  return 0;
}

void
si_emu_set_launch_error (cudaError_t error)
{
  launch_error = error;
}

void
si_emu_recover (void)
{
  context_lost = cudaSuccess;
  last_error = cudaSuccess;
}

int
si_emu_context_lost (void)
{
  return context_lost != cudaSuccess;
}

void
si_emu_fail_launch_after (int n)
{
  fail_launch_after = n;
  launches = 0;
}

int
si_emu_launches (void)
{
  return launches;
}

size_t
si_emu_device_bytes (void)
{
  return device_bytes;
}

void
si_emu_fail_captures (int n, int at_begin)
{
  fail_captures = n;
  fail_captures_at_begin = at_begin;
}

int
si_emu_graph_launches (void)
{
  return graph_launches;
}

int
si_emu_malloc_calls (void)
{
  return malloc_calls;
}

void
si_emu_counts (SiEmuCounts *out)
{
  *out = counts;
}

/* Whether [p, p + bytes) lies in one cudaHostAlloc'ed block. */
static bool
is_pinned (const void *p, size_t bytes)
{
  const char *c = (const char *) p;
  auto it = pinned.upper_bound (c);
  if (it == pinned.begin ())
    return false;
  --it;
  return c + bytes <= it->first + it->second;
}

/* Counts a copy of @kind; for host <-> device ones, whether the host side
 * ([src or dst, + bytes)) is pinned. */
static void
count_copy (cudaMemcpyKind kind, const void *dst, const void *src, size_t bytes)
{
  if (kind == cudaMemcpyHostToDevice) {
    counts.h2d++;
    counts.h2d_pageable += !is_pinned (src, bytes);
    counts.last_h2d_src = src;
    counts.last_h2d_bytes = bytes;
  } else if (kind == cudaMemcpyDeviceToHost) {
    counts.d2h++;
    counts.d2h_pageable += !is_pinned (dst, bytes);
  }
}

static cudaError_t
fail (cudaError_t e)
{
  last_error = e;
  return e;
}

/* Every call on a lost context fails with the fault's error; the calls
 * that release something still release it (the leak checks stay
 * meaningful; a device keeps it until the process ends). */
#define RETURN_IF_LOST()                                                       \
  do {                                                                         \
    if (context_lost != cudaSuccess)                                           \
      return fail (context_lost);                                              \
  } while (0)
#define LOST_OR_SUCCESS()                                                      \
  (context_lost != cudaSuccess ? fail (context_lost) : cudaSuccess)

cudaError_t
cudaGetDeviceCount (int *count)
{
  *count = 0;
  RETURN_IF_LOST ();
  *count = device_count;
  return device_count > 0 ? cudaSuccess : cudaErrorNoDevice;
}

cudaError_t
cudaSetDevice (int device)
{
  RETURN_IF_LOST ();
  return device >= 0 && device < device_count ? cudaSuccess
                                              : cudaErrorInvalidDevice;
}

static int cc_major = 9, cc_minor = 0;

void
si_emu_set_compute_capability (int major, int minor)
{
  cc_major = major;
  cc_minor = minor;
}

cudaError_t
cudaGetDeviceProperties (struct cudaDeviceProp *prop, int device)
{
  memset (prop, 0, sizeof (*prop));
  RETURN_IF_LOST ();
  snprintf (prop->name, sizeof (prop->name), "cuda-emu (host) #%d", device);
  prop->major = cc_major;
  prop->minor = cc_minor;
  prop->totalGlobalMem = (size_t) 8 << 30;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}

/* (a fault's error is never cleared) */
cudaError_t
cudaGetLastError (void)
{
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return context_lost != cudaSuccess ? context_lost : e;
}

cudaError_t
cudaPeekAtLastError (void)
{
  return context_lost != cudaSuccess ? context_lost : last_error;
}

const char *
cudaGetErrorName (cudaError_t error)
{
  switch (error) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorLaunchOutOfResources:
      return "cudaErrorLaunchOutOfResources";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorInvalidResourceHandle:
      return "cudaErrorInvalidResourceHandle";
    case cudaErrorStreamCaptureUnsupported:
      return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated:
      return "cudaErrorStreamCaptureInvalidated";
    default:
      return "cudaErrorUnknown";
  }
}

const char *
cudaGetErrorString (cudaError_t error)
{
  switch (error) {
    case cudaSuccess:
      return "no error";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidConfiguration:
      return "invalid configuration argument";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    case cudaErrorLaunchFailure:
      return "unspecified launch failure";
    case cudaErrorLaunchOutOfResources:
      return "too many resources requested for launch";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorStreamCaptureUnsupported:
      return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated:
      return "operation failed due to a previous error during capture";
    default:
      return "emulated CUDA error";
  }
}

cudaError_t
cudaMalloc (void **ptr, size_t bytes)
{
  RETURN_IF_LOST ();
  if (any_capture)
    return fail (cudaErrorStreamCaptureUnsupported);
  malloc_calls++;
  counts.mallocs++;
  if (fail_after >= 0 && malloc_calls > fail_after)
    return fail (cudaErrorMemoryAllocation);
  *ptr = malloc (bytes ? bytes : 1);
  if (*ptr == NULL)
    return fail (cudaErrorMemoryAllocation);
  /* garbage, as fresh device memory: a read before write shows (0xff:
   * NaN in float and half, -1 in integers) */
  memset (*ptr, 0xff, bytes);
  allocations[*ptr] = bytes;
  device_bytes += bytes;
  return cudaSuccess;
}

cudaError_t
cudaFree (void *ptr)
{
  if (ptr == NULL)
    return cudaSuccess;
  counts.frees++;
  auto it = allocations.find (ptr);
  if (it == allocations.end ())
    return fail (cudaErrorInvalidValue);
  device_bytes -= it->second;
  allocations.erase (it);
  free (ptr);
  return LOST_OR_SUCCESS ();
}

cudaError_t
cudaHostAlloc (void **ptr, size_t bytes, unsigned int flags)
{
  RETURN_IF_LOST ();
  (void) flags;
  counts.host_allocs++;
  *ptr = malloc (bytes ? bytes : 1);
  if (*ptr == NULL)
    return fail (cudaErrorMemoryAllocation);
  pinned[(const char *) *ptr] = bytes;
  return cudaSuccess;
}

cudaError_t
cudaFreeHost (void *ptr)
{
  if (ptr == NULL)
    return cudaSuccess;
  counts.host_frees++;
  pinned.erase ((const char *) ptr);
  free (ptr);
  return LOST_OR_SUCCESS ();
}

cudaError_t
cudaMemcpyAsync (void *dst, const void *src, size_t bytes, cudaMemcpyKind kind,
    cudaStream_t stream)
{
  (void) kind;
  (void) stream;
  if (bytes && (dst == NULL || src == NULL))
    return fail (cudaErrorInvalidValue);
  count_copy (kind, dst, src, bytes); /* (tried, on a lost context too) */
  RETURN_IF_LOST ();
  if (capturing (stream) && kind != cudaMemcpyDeviceToDevice) {
    /* host memory in a graph: the backend never records it */
    stream->invalidated = true;
    return fail (cudaErrorStreamCaptureUnsupported);
  }
  if (bytes)
    submit (stream, [=] () { memmove (dst, src, bytes); });
  return cudaSuccess;
}

cudaError_t
cudaMemcpy2DAsync (void *dst, size_t dpitch, const void *src, size_t spitch,
    size_t width, size_t height, cudaMemcpyKind kind, cudaStream_t stream)
{
  if (width > dpitch || width > spitch)
    return fail (cudaErrorInvalidValue);
  if (height > 0) /* (the host side's extent, by its pitch) */
    count_copy (kind, dst, src,
        (height - 1) * (kind == cudaMemcpyHostToDevice ? spitch : dpitch) +
            width);
  RETURN_IF_LOST ();
  submit (stream, [=] () {
    for (size_t r = 0; r < height; r++)
      memmove (
          (char *) dst + r * dpitch, (const char *) src + r * spitch, width);
  });
  return cudaSuccess;
}

cudaError_t
cudaMemsetAsync (void *ptr, int value, size_t bytes, cudaStream_t stream)
{
  RETURN_IF_LOST ();
  submit (stream, [=] () { memset (ptr, value, bytes); });
  return cudaSuccess;
}


cudaError_t
cudaStreamCreateWithFlags (cudaStream_t *stream, unsigned int flags)
{
  (void) flags;
  RETURN_IF_LOST ();
  *stream = new SiEmuStream ();
  return cudaSuccess;
}

cudaError_t
cudaStreamDestroy (cudaStream_t stream)
{
  delete stream;
  return LOST_OR_SUCCESS ();
}

cudaError_t
cudaStreamSynchronize (cudaStream_t stream)
{
  if (capturing (stream)) {
    stream->invalidated = true;
    return fail (cudaErrorStreamCaptureUnsupported);
  }
  counts.syncs++;
  RETURN_IF_LOST ();
  if (stream && stream->async_error != cudaSuccess) {
    cudaError_t e = stream->async_error;
    stream->async_error = cudaSuccess;
    return fail (e);
  }
  return cudaSuccess;
}

cudaError_t
cudaStreamBeginCapture (cudaStream_t stream, enum cudaStreamCaptureMode mode)
{
  (void) mode;
  RETURN_IF_LOST ();
  if (stream == NULL || stream->capturing)
    return fail (cudaErrorInvalidValue);
  if (fail_captures > 0 && fail_captures_at_begin) {
    fail_captures--;
    return fail (cudaErrorStreamCaptureUnsupported);
  }
  stream->capturing = true;
  stream->invalidated = false;
  stream->recording.clear ();
  any_capture = true;
  return cudaSuccess;
}

cudaError_t
cudaStreamEndCapture (cudaStream_t stream, cudaGraph_t *graph)
{
  *graph = NULL;
  if (stream == NULL || !stream->capturing)
    return fail (cudaErrorInvalidValue);
  stream->capturing = false;
  any_capture = false;
  if (context_lost != cudaSuccess) {
    stream->recording.clear ();
    return fail (context_lost);
  }
  if (fail_captures > 0 && !fail_captures_at_begin) {
    fail_captures--;
    stream->invalidated = true;
  }
  if (stream->invalidated) {
    stream->recording.clear ();
    return fail (cudaErrorStreamCaptureInvalidated);
  }
  *graph = new SiEmuGraph ();
  (*graph)->work.swap (stream->recording);
  return cudaSuccess;
}

cudaError_t
cudaGraphInstantiate (
    cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags)
{
  (void) flags;
  RETURN_IF_LOST ();
  *exec = new SiEmuGraph (*graph);
  return cudaSuccess;
}

cudaError_t
cudaGraphLaunch (cudaGraphExec_t exec, cudaStream_t stream)
{
  RETURN_IF_LOST ();
  if (exec == NULL)
    return fail (cudaErrorInvalidValue);
  graph_launches++;
  replaying = stream;
  for (auto &w : exec->work)
    submit (stream, w);
  replaying = NULL;
  return cudaSuccess;
}

cudaError_t
cudaGraphExecDestroy (cudaGraphExec_t exec)
{
  delete exec;
  return LOST_OR_SUCCESS ();
}

cudaError_t
cudaGraphDestroy (cudaGraph_t graph)
{
  delete graph;
  return LOST_OR_SUCCESS ();
}

cudaError_t
cudaEventCreateWithFlags (cudaEvent_t *event, unsigned int flags)
{
  RETURN_IF_LOST ();
  *event = new SiEmuEvent ();
  (*event)->flags = flags;
  return cudaSuccess;
}

cudaError_t
cudaEventDestroy (cudaEvent_t event)
{
  delete event;
  return LOST_OR_SUCCESS ();
}

cudaError_t
cudaEventRecord (cudaEvent_t event, cudaStream_t stream)
{
  struct timespec ts;
  (void) stream;
  if (event && !any_capture) {
    clock_gettime (CLOCK_MONOTONIC, &ts);
    event->recorded = true;
    event->ms = ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
  }
  return LOST_OR_SUCCESS ();
}

/* As a device: both recorded, both timing events. */
cudaError_t
cudaEventElapsedTime (float *ms, cudaEvent_t start, cudaEvent_t end)
{
  RETURN_IF_LOST ();
  if (start == NULL || end == NULL || !start->recorded || !end->recorded ||
      ((start->flags | end->flags) & cudaEventDisableTiming))
    return fail (cudaErrorInvalidResourceHandle);
  *ms = (float) (end->ms - start->ms);
  return cudaSuccess;
}

cudaError_t
cudaEventSynchronize (cudaEvent_t event)
{
  if (any_capture)
    return fail (cudaErrorStreamCaptureUnsupported);
  RETURN_IF_LOST ();
  if (event && (event->flags & cudaEventBlockingSync))
    counts.blocking_waits++;
  return cudaSuccess;
}

/* ---- cuBLAS ---- */

/* cuBLAS's answer to work on a lost context. */
#define CUBLAS_FAIL_IF_LOST()                                                  \
  do {                                                                         \
    if (context_lost != cudaSuccess)                                           \
      return CUBLAS_STATUS_EXECUTION_FAILED;                                   \
  } while (0)

struct SiEmuCublas
{
  cudaStream_t stream;
  cublasMath_t math;
};

cublasStatus_t
cublasCreate (cublasHandle_t *handle)
{
  if (context_lost != cudaSuccess)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new SiEmuCublas ();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasDestroy (cublasHandle_t handle)
{
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetStream (cublasHandle_t handle, cudaStream_t stream)
{
  handle->stream = stream;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetMathMode (cublasHandle_t handle, cublasMath_t mode)
{
  /* a base mode (default, tensor op, pedantic, TF32) and flag 16 */
  unsigned int m = (unsigned int) mode;
  if ((m & 0xf) > CUBLAS_TF32_TENSOR_OP_MATH ||
      (m & ~0xfu & ~(unsigned int) CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION))
    return CUBLAS_STATUS_INVALID_VALUE;
  handle->math = mode;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSetWorkspace (cublasHandle_t handle, void *workspace, size_t bytes)
{
  (void) handle;
  return workspace || bytes == 0 ? CUBLAS_STATUS_SUCCESS
                                 : CUBLAS_STATUS_INVALID_VALUE;
}

const char *
cublasGetStatusName (cublasStatus_t status)
{
  switch (status) {
    case CUBLAS_STATUS_SUCCESS:
      return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_INVALID_VALUE:
      return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ALLOC_FAILED:
      return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED:
      return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_NOT_INITIALIZED:
      return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_EXECUTION_FAILED:
      return "CUBLAS_STATUS_EXECUTION_FAILED";
    default:
      return "CUBLAS_STATUS_OTHER";
  }
}

const char *
cublasGetStatusString (cublasStatus_t status)
{
  return status == CUBLAS_STATUS_SUCCESS ? "success"
                                         : "emulated cuBLAS failure";
}

/* C (m, n) = alpha op(A) op(B) + beta C, column-major, cuBLAS's checks. */
static bool
gemm_args_ok (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    int lda, int ldb, int ldc)
{
  if (m < 0 || n < 0 || k < 0 ||
      lda < (ta == CUBLAS_OP_N ? max (1, m) : max (1, k)) ||
      ldb < (tb == CUBLAS_OP_N ? max (1, k) : max (1, n)) || ldc < max (1, m)) {
    fprintf (stderr,
        "cuda-emu: cublas gemm invalid: %c%c m %d n %d k %d lda %d ldb %d "
        "ldc %d\n",
        ta == CUBLAS_OP_N ? 'N' : 'T', tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k,
        lda, ldb, ldc);
    return false;
  }
  return true;
}

static cublasStatus_t
gemm_cm (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    float alpha, const float *A, int lda, const float *B, int ldb, float beta,
    float *C, int ldc)
{
  if (m < 0 || n < 0 || k < 0 ||
      lda < (ta == CUBLAS_OP_N ? max (1, m) : max (1, k)) ||
      ldb < (tb == CUBLAS_OP_N ? max (1, k) : max (1, n)) || ldc < max (1, m)) {
    fprintf (stderr,
        "cuda-emu: cublas gemm invalid: %c%c m %d n %d k %d "
        "lda %d ldb %d ldc %d\n",
        ta == CUBLAS_OP_N ? 'N' : 'T', tb == CUBLAS_OP_N ? 'N' : 'T', m, n, k,
        lda, ldb, ldc);
    return CUBLAS_STATUS_INVALID_VALUE;
  }
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      float acc = 0.0f;
      for (int p = 0; p < k; p++) {
        float a = ta == CUBLAS_OP_N ? A[i + (size_t) p * lda]
                                    : A[p + (size_t) i * lda];
        float b = tb == CUBLAS_OP_N ? B[p + (size_t) j * ldb]
                                    : B[j + (size_t) p * ldb];
        acc += a * b;
      }
      float *c = &C[i + (size_t) j * ldc];
      *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
    }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSgemm (cublasHandle_t handle, cublasOperation_t transa,
    cublasOperation_t transb, int m, int n, int k, const float *alpha,
    const float *A, int lda, const float *B, int ldb, const float *beta,
    float *C, int ldc)
{
  float a = *alpha, b = *beta;
  CUBLAS_FAIL_IF_LOST ();
  if (!gemm_args_ok (transa, transb, m, n, k, lda, ldb, ldc))
    return CUBLAS_STATUS_INVALID_VALUE;
  submit (handle->stream, [=] () {
    gemm_cm (transa, transb, m, n, k, a, A, lda, B, ldb, b, C, ldc);
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasSgemmStridedBatched (cublasHandle_t handle, cublasOperation_t transa,
    cublasOperation_t transb, int m, int n, int k, const float *alpha,
    const float *A, int lda, long long strideA, const float *B, int ldb,
    long long strideB, const float *beta, float *C, int ldc, long long strideC,
    int batchCount)
{
  float al = *alpha, be = *beta;
  CUBLAS_FAIL_IF_LOST ();
  if (batchCount < 0 || !gemm_args_ok (transa, transb, m, n, k, lda, ldb, ldc))
    return CUBLAS_STATUS_INVALID_VALUE;
  submit (handle->stream, [=] () {
    for (int b = 0; b < batchCount; b++)
      gemm_cm (transa, transb, m, n, k, al, A + b * strideA, lda,
          B + b * strideB, ldb, be, C + b * strideC, ldc);
  });
  return CUBLAS_STATUS_SUCCESS;
}

/* fp16 compute: operands rounded to 11 significant bits (fp16 mantissa),
 * fp32 accumulation, as CUBLAS_COMPUTE_32F_FAST_16F does. */
static float
round_fp16 (float x)
{
#ifdef __FLT16_MAX__
  return (float) (_Float16) x; /* IEEE half: range, subnormals, rounding */
#else
  if (x == 0.0f || !isfinite (x))
    return x;
  int e;
  float m = frexpf (x, &e);
  return ldexpf (rintf (m * 2048.0f) / 2048.0f, e);
#endif
}

static cublasStatus_t
gemm_ex_check (
    cudaDataType a, cudaDataType b, cudaDataType c, cublasComputeType_t ct)
{
  bool fp32 = a == CUDA_R_32F && b == CUDA_R_32F &&
      (ct == CUBLAS_COMPUTE_32F || ct == CUBLAS_COMPUTE_32F_FAST_16F);
  bool fp16 = a == CUDA_R_16F && b == CUDA_R_16F && ct == CUBLAS_COMPUTE_32F;
  /* a half C only with half operands, as in cuBLAS's table */
  if (!(c == CUDA_R_32F || (fp16 && c == CUDA_R_16F)) || !(fp32 || fp16))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  return CUBLAS_STATUS_SUCCESS;
}

/* Elements of the column-major operands of op(A) (m, k) op(B) (k, n) up
 * to the last one read. */
static void
operand_spans (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    int lda, int ldb, size_t *na, size_t *nb)
{
  int cols_a = ta == CUBLAS_OP_N ? k : m, rows_a = ta == CUBLAS_OP_N ? m : k;
  int cols_b = tb == CUBLAS_OP_N ? n : k, rows_b = tb == CUBLAS_OP_N ? k : n;
  *na = cols_a ? (size_t) lda * (cols_a - 1) + rows_a : 0;
  *nb = cols_b ? (size_t) ldb * (cols_b - 1) + rows_b : 0;
}

/* (overloads and a template: C++ linkage inside this extern "C" block) */
extern "C++" {

static float
widen (float x, bool round)
{
  return round ? round_fp16 (x) : x;
}

static float
widen (__half x, bool)
{
  return __half2float (x);
}

/* op(A) op(B) on float copies of the operands (only the parts the product
 * reads): fp32 ones rounded to half when @round (FAST_16F), half ones
 * widened exactly; fp32 accumulation. */
template <typename T>
static cublasStatus_t
gemm_ex_one (cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
    float alpha, const T *A, int lda, const T *B, int ldb, float beta, float *C,
    int ldc, bool round)
{
  size_t na, nb;
  operand_spans (ta, tb, m, n, k, lda, ldb, &na, &nb);
  std::vector<float> a (na), b (nb);
  for (size_t i = 0; i < na; i++)
    a[i] = widen (A[i], round);
  for (size_t i = 0; i < nb; i++)
    b[i] = widen (B[i], round);
  return gemm_cm (
      ta, tb, m, n, k, alpha, a.data (), lda, b.data (), ldb, beta, C, ldc);
}

/* Runs fn on an fp32 C (m, n, ld): C itself, or for a half C a float copy
 * that is rounded back to half (nearest even) once fn has accumulated into
 * it, as the device rounds its fp32 result. */
template <typename F>
static void
with_float_c (cudaDataType type, void *C, int m, int n, int ld, F fn)
{
  if (type == CUDA_R_32F) {
    fn ((float *) C);
    return;
  }
  __half *h = (__half *) C;
  std::vector<float> f ((size_t) ld * n);
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++)
      f[(size_t) j * ld + i] = __half2float (h[(size_t) j * ld + i]);
  fn (f.data ());
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++)
      h[(size_t) j * ld + i] = __float2half (f[(size_t) j * ld + i]);
}

/* C (fp32) = alpha op(A) op(B) + beta C with the operands as the call
 * gave them: half ones (@half) widened exactly, fp32 ones rounded to half
 * first under CUBLAS_COMPUTE_32F_FAST_16F (@round), else plain fp32. */
static void
gemm_ex_product (bool half, bool round, cublasOperation_t ta,
    cublasOperation_t tb, int m, int n, int k, float alpha, const void *A,
    int lda, const void *B, int ldb, float beta, float *C, int ldc)
{
  if (half)
    gemm_ex_one (ta, tb, m, n, k, alpha, (const __half *) A, lda,
        (const __half *) B, ldb, beta, C, ldc, false);
  else if (round)
    gemm_ex_one (ta, tb, m, n, k, alpha, (const float *) A, lda,
        (const float *) B, ldb, beta, C, ldc, true);
  else
    gemm_cm (ta, tb, m, n, k, alpha, (const float *) A, lda, (const float *) B,
        ldb, beta, C, ldc);
}

} /* extern "C++" */

cublasStatus_t
cublasGemmEx (cublasHandle_t handle, cublasOperation_t transa,
    cublasOperation_t transb, int m, int n, int k, const void *alpha,
    const void *A, cudaDataType Atype, int lda, const void *B,
    cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype,
    int ldc, cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
  (void) algo;
  CUBLAS_FAIL_IF_LOST ();
  cublasStatus_t st = gemm_ex_check (Atype, Btype, Ctype, computeType);
  if (st != CUBLAS_STATUS_SUCCESS)
    return st;
  if (!gemm_args_ok (transa, transb, m, n, k, lda, ldb, ldc))
    return CUBLAS_STATUS_INVALID_VALUE;
  float al = *(const float *) alpha, be = *(const float *) beta;
  bool half = Atype == CUDA_R_16F;
  bool round = computeType == CUBLAS_COMPUTE_32F_FAST_16F;
  submit (handle->stream, [=] () {
    with_float_c (Ctype, C, m, n, ldc, [&] (float *c) {
      gemm_ex_product (
          half, round, transa, transb, m, n, k, al, A, lda, B, ldb, be, c, ldc);
    });
  });
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasGemmStridedBatchedEx (cublasHandle_t handle, cublasOperation_t transa,
    cublasOperation_t transb, int m, int n, int k, const void *alpha,
    const void *A, cudaDataType Atype, int lda, long long strideA,
    const void *B, cudaDataType Btype, int ldb, long long strideB,
    const void *beta, void *C, cudaDataType Ctype, int ldc, long long strideC,
    int batchCount, cublasComputeType_t computeType, cublasGemmAlgo_t algo)
{
  (void) algo;
  CUBLAS_FAIL_IF_LOST ();
  if (Atype == CUDA_R_16F) /* (engine/cuda/ batches fp32 operands only) */
    return CUBLAS_STATUS_NOT_SUPPORTED;
  cublasStatus_t st = gemm_ex_check (Atype, Btype, Ctype, computeType);
  if (st != CUBLAS_STATUS_SUCCESS)
    return st;
  if (batchCount < 0 || !gemm_args_ok (transa, transb, m, n, k, lda, ldb, ldc))
    return CUBLAS_STATUS_INVALID_VALUE;
  float al = *(const float *) alpha, be = *(const float *) beta;
  bool round = computeType == CUBLAS_COMPUTE_32F_FAST_16F;
  submit (handle->stream, [=] () {
    for (int b = 0; b < batchCount; b++)
      gemm_ex_product (false, round, transa, transb, m, n, k, al,
          (const float *) A + b * strideA, lda, (const float *) B + b * strideB,
          ldb, be, (float *) C + b * strideC, ldc);
  });
  return CUBLAS_STATUS_SUCCESS;
}

/* ---- cuBLASLt ---- */

struct SiEmuLt
{
  int unused;
};

struct SiEmuLtDesc
{
  cublasComputeType_t compute;
  cublasOperation_t ta, tb;
  cublasLtEpilogue_t epilogue;
  const void *bias; /* D's type */
};

struct SiEmuLtLayout
{
  cudaDataType type;
  uint64_t rows, cols;
  int64_t ld;
};

struct SiEmuLtPref
{
  uint64_t workspace;
};

static int lt_no_algo, lt_matmuls, lt_heuristics;

void
si_emu_lt_no_algo (int none)
{
  lt_no_algo = none;
}

int
si_emu_lt_matmuls (void)
{
  return lt_matmuls;
}

int
si_emu_lt_heuristics (void)
{
  return lt_heuristics;
}

cublasStatus_t
cublasLtCreate (cublasLtHandle_t *handle)
{
  if (context_lost != cudaSuccess)
    return CUBLAS_STATUS_NOT_INITIALIZED;
  *handle = new SiEmuLt ();
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtDestroy (cublasLtHandle_t handle)
{
  delete handle;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescCreate (
    cublasLtMatmulDesc_t *desc, cublasComputeType_t compute, cudaDataType scale)
{
  if (scale != CUDA_R_32F ||
      (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16F))
    return CUBLAS_STATUS_NOT_SUPPORTED;
  *desc = new SiEmuLtDesc{ compute, CUBLAS_OP_N, CUBLAS_OP_N,
    CUBLASLT_EPILOGUE_DEFAULT, NULL };
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescDestroy (cublasLtMatmulDesc_t desc)
{
  delete desc;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulDescSetAttribute (cublasLtMatmulDesc_t desc,
    cublasLtMatmulDescAttributes_t attr, const void *buf, size_t size)
{
  switch (attr) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
    {
      int32_t op;
      if (size != sizeof (op))
        return CUBLAS_STATUS_INVALID_VALUE;
      memcpy (&op, buf, sizeof (op));
      if (op != CUBLAS_OP_N && op != CUBLAS_OP_T)
        return CUBLAS_STATUS_INVALID_VALUE;
      (attr == CUBLASLT_MATMUL_DESC_TRANSA ? desc->ta : desc->tb) =
          (cublasOperation_t) op;
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
    {
      uint32_t e;
      if (size != sizeof (e))
        return CUBLAS_STATUS_INVALID_VALUE;
      memcpy (&e, buf, sizeof (e));
      if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_RELU &&
          e != CUBLASLT_EPILOGUE_BIAS && e != CUBLASLT_EPILOGUE_RELU_BIAS)
        return CUBLAS_STATUS_NOT_SUPPORTED;
      desc->epilogue = (cublasLtEpilogue_t) e;
      return CUBLAS_STATUS_SUCCESS;
    }
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
      if (size != sizeof (void *))
        return CUBLAS_STATUS_INVALID_VALUE;
      memcpy (&desc->bias, buf, sizeof (void *));
      return CUBLAS_STATUS_SUCCESS;
  }
  return CUBLAS_STATUS_INVALID_VALUE;
}

cublasStatus_t
cublasLtMatrixLayoutCreate (cublasLtMatrixLayout_t *layout, cudaDataType type,
    uint64_t rows, uint64_t cols, int64_t ld)
{
  if ((type != CUDA_R_32F && type != CUDA_R_16F) || ld < 1 ||
      (uint64_t) ld < rows)
    return CUBLAS_STATUS_INVALID_VALUE;
  *layout = new SiEmuLtLayout{ type, rows, cols, ld };
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatrixLayoutDestroy (cublasLtMatrixLayout_t layout)
{
  delete layout;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceCreate (cublasLtMatmulPreference_t *pref)
{
  *pref = new SiEmuLtPref{ 0 };
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceDestroy (cublasLtMatmulPreference_t pref)
{
  delete pref;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmulPreferenceSetAttribute (cublasLtMatmulPreference_t pref,
    cublasLtMatmulPreferenceAttributes_t attr, const void *buf, size_t size)
{
  if (attr == CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES) {
    if (size != sizeof (uint64_t))
      return CUBLAS_STATUS_INVALID_VALUE;
    memcpy (&pref->workspace, buf, size);
    return CUBLAS_STATUS_SUCCESS;
  }
  if (attr == CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK) {
    /* the emulation always sums in fp32, the compute type */
    uint32_t mask;
    if (size != sizeof (uint32_t))
      return CUBLAS_STATUS_INVALID_VALUE;
    memcpy (&mask, buf, size);
    return (mask & ~(uint32_t) CUBLASLT_REDUCTION_SCHEME_MASK) == 0
        ? CUBLAS_STATUS_SUCCESS
        : CUBLAS_STATUS_INVALID_VALUE;
  }
  if (attr >= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES &&
      attr <= CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES)
    return size == sizeof (uint32_t) ? CUBLAS_STATUS_SUCCESS
                                     : CUBLAS_STATUS_INVALID_VALUE;
  return CUBLAS_STATUS_INVALID_VALUE;
}

/* The problem's m, n, k from the layouts, or false when they disagree. */
static bool
lt_shape (const SiEmuLtDesc *desc, const SiEmuLtLayout *a,
    const SiEmuLtLayout *b, const SiEmuLtLayout *c, const SiEmuLtLayout *d,
    int *m, int *n, int *k)
{
  uint64_t am = desc->ta == CUBLAS_OP_N ? a->rows : a->cols;
  uint64_t ak = desc->ta == CUBLAS_OP_N ? a->cols : a->rows;
  uint64_t bk = desc->tb == CUBLAS_OP_N ? b->rows : b->cols;
  uint64_t bn = desc->tb == CUBLAS_OP_N ? b->cols : b->rows;
  if (ak != bk || d->rows != am || d->cols != bn || c->rows != d->rows ||
      c->cols != d->cols || c->ld != d->ld || a->type != b->type ||
      c->type != d->type ||
      (d->type != CUDA_R_32F &&
          !(d->type == CUDA_R_16F && a->type == CUDA_R_16F)) ||
      (a->type == CUDA_R_16F && desc->compute != CUBLAS_COMPUTE_32F))
    return false;
  *m = (int) am;
  *n = (int) bn;
  *k = (int) ak;
  return true;
}

cublasStatus_t
cublasLtMatmulAlgoGetHeuristic (cublasLtHandle_t handle,
    cublasLtMatmulDesc_t desc, cublasLtMatrixLayout_t a,
    cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c,
    cublasLtMatrixLayout_t d, cublasLtMatmulPreference_t pref, int requested,
    cublasLtMatmulHeuristicResult_t results[], int *returned)
{
  int m, n, k;
  (void) handle;
  (void) pref;
  lt_heuristics++;
  *returned = 0;
  if (requested < 1 || !lt_shape (desc, a, b, c, d, &m, &n, &k))
    return CUBLAS_STATUS_INVALID_VALUE;
  if (lt_no_algo)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  memset (&results[0], 0, sizeof (results[0]));
  results[0].state = CUBLAS_STATUS_SUCCESS;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t
cublasLtMatmul (cublasLtHandle_t handle, cublasLtMatmulDesc_t desc,
    const void *alpha, const void *A, cublasLtMatrixLayout_t a, const void *B,
    cublasLtMatrixLayout_t b, const void *beta, const void *C,
    cublasLtMatrixLayout_t c, void *D, cublasLtMatrixLayout_t d,
    const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes,
    cudaStream_t stream)
{
  int m, n, k;
  CUBLAS_FAIL_IF_LOST ();
  (void) handle;
  (void) algo;
  (void) workspace;
  (void) workspace_bytes;
  if (!lt_shape (desc, a, b, c, d, &m, &n, &k))
    return CUBLAS_STATUS_INVALID_VALUE;
  bool bias = desc->epilogue == CUBLASLT_EPILOGUE_BIAS ||
      desc->epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  bool relu = desc->epilogue == CUBLASLT_EPILOGUE_RELU ||
      desc->epilogue == CUBLASLT_EPILOGUE_RELU_BIAS;
  if (bias && desc->bias == NULL)
    return CUBLAS_STATUS_INVALID_VALUE;
  float al = *(const float *) alpha, be = *(const float *) beta;
  cublasOperation_t ta = desc->ta, tb = desc->tb;
  bool half = a->type == CUDA_R_16F;
  bool round = desc->compute == CUBLAS_COMPUTE_32F_FAST_16F;
  int lda = (int) a->ld, ldb = (int) b->ld, ldd = (int) d->ld;
  const void *bv = desc->bias;
  cudaDataType dt = d->type;
  size_t esz = dt == CUDA_R_16F ? sizeof (__half) : sizeof (float);
  lt_matmuls++;
  submit (stream, [=] () {
    /* D = C first, then the product accumulates onto it (beta) */
    if (C != D)
      for (int j = 0; j < n; j++)
        memmove ((char *) D + (size_t) j * ldd * esz,
            (const char *) C + (size_t) j * ldd * esz, (size_t) m * esz);
    /* the epilogue in fp32; a half D is rounded once, at the end */
    with_float_c (dt, D, m, n, ldd, [&] (float *out) {
      gemm_ex_product (
          half, round, ta, tb, m, n, k, al, A, lda, B, ldb, be, out, ldd);
      for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
          float b = !bias        ? 0.0f
              : dt == CUDA_R_16F ? __half2float (((const __half *) bv)[i])
                                 : ((const float *) bv)[i];
          float v = out[(size_t) j * ldd + i] + b;
          /* max (v, 0) as the device's epilogue: NaN comes out 0 */
          out[(size_t) j * ldd + i] = relu && !(v > 0.0f) ? 0.0f : v;
        }
    });
  });
  return CUBLAS_STATUS_SUCCESS;
}

} /* extern "C" */
