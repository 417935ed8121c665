/* backend_cuda.c: the CUDA backend's table: lifetime (device, one
 * non-blocking stream, the cuBLAS handle), memory (one arena of
 * cudaMalloc'ed chunks, filled at load and at context creation, never per
 * frame; pinned staging for the frame upload and the result download),
 * the error helpers behind the check macros, and the ops gathered from the
 * other files of engine/cuda/.  Every op is stream-ordered; sync() and
 * download() report the first failure of the void ops.
 */
#include "si-config.h"

#include "backend_cuda.h"

#include <string.h>

#define SI_CUDA_ALIGN 256
#define SI_CUDA_CHUNK (64u << 20)      /* 64 MiB, or one bigger allocation */
#define SI_CUDA_STAGING_OUT (1u << 20) /* results: detections, dumps */
#define SI_CUDA_CONV_WS_MIB 64 /* im2col workspace (SI_CUDA_IM2COL_MIB) */
#define SI_CUDA_CONV_WS_MIB_MAX 1024
#define SI_CUDA_GN_MAX_C 4096
#define SI_CUDA_CUBLAS_WS (32u << 20) /* cuBLAS's recommendation (Hopper) */
#define SI_CUDA_DEFAULT_MAX_PIXELS (1920 * 1088)

/* The im2col workspace's size in MiB: SI_CUDA_IM2COL_MIB, else the
 * default.  Smaller slices of columns may stay in the L2 cache between
 * im2col's write and the GEMM's read (to be measured on a device: the
 * gpu-suite compare stage); a bad value fails the context. */
static gboolean
conv_workspace_mib (unsigned *mib, GError **error)
{
  const char *env = g_getenv ("SI_CUDA_IM2COL_MIB");
  guint64 value;

  *mib = SI_CUDA_CONV_WS_MIB;
  if (env == NULL)
    return TRUE;
  if (!g_ascii_string_to_unsigned (
          env, 10, 1, SI_CUDA_CONV_WS_MIB_MAX, &value, NULL)) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "SI_CUDA_IM2COL_MIB must be a whole number of MiB from 1 to %d, "
        "not '%s'",
        SI_CUDA_CONV_WS_MIB_MAX, env);
    return FALSE;
  }
  *mib = (unsigned) value;
  return TRUE;
}

/* ---- errors ---- */

static int
cuda_error_code (cudaError_t status)
{
  switch (status) {
    case cudaErrorMemoryAllocation:
      return SI_ERROR_NO_MEMORY;
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInvalidDevice:
      return SI_ERROR_NO_DEVICE;
    default:
      return SI_ERROR_BACKEND;
  }
}

/* Errors after which the device context is unusable: every later CUDA
 * call of the process fails with them, whatever it is, until the process
 * ends (a kernel's fault, not a refusal). */
static bool
cuda_error_is_sticky (cudaError_t status)
{
  switch (status) {
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
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContained:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorMpsClientTerminated:
    case cudaErrorExternalDevice:
      return true;
    default:
      return false;
  }
}

void
si_cuda_set_error (GError **error, cudaError_t status, const char *what,
    const char *file, int line)
{
  /* the first such error reported is the one to read; the ones after it
   * only repeat it wherever the process next called CUDA (one flag for
   * the process: with several devices, the earlier loss may have been
   * another device's) */
  static gint sticky_reported;
  bool sticky = cuda_error_is_sticky (status);
  const char *note = "";

  if (error != NULL && sticky)
    note = g_atomic_int_exchange (&sticky_reported, 1)
        ? "; a device context of this process was lost earlier (see the "
          "first such error): restart the process"
        : "; a device reports a fault late, so the faulting kernel is this "
          "one or one queued before it (compute-sanitizer finds it); the "
          "device's context is lost: CUDA on it fails from now on in this "
          "process, restart it";
  g_set_error (error, SI_ERROR, cuda_error_code (status),
      "CUDA error %s: %s (%s %s, %s:%d)%s", cudaGetErrorName (status),
      cudaGetErrorString (status), sticky ? "seen in" : "in", what, file, line,
      note);
  /* a failed runtime call is also the thread's last error: reported now,
   * it must not come back from the next launch check (a sticky error
   * stays anyway) */
  cudaGetLastError ();
}

void
si_cublas_set_error (GError **error, cublasStatus_t status, const char *what,
    const char *file, int line)
{
  g_set_error (error, SI_ERROR,
      status == CUBLAS_STATUS_ALLOC_FAILED ? SI_ERROR_NO_MEMORY
                                           : SI_ERROR_BACKEND,
      "cuBLAS error %s: %s (in %s, %s:%d)", cublasGetStatusName (status),
      cublasGetStatusString (status), what, file, line);
}

void
si_cuda_defer (SiBackend *be, cudaError_t status, const char *what,
    const char *file, int line)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (cu->deferred == NULL) {
    si_cuda_set_error (&cu->deferred, status, what, file, line);
    cu->deferred_lost = cuda_error_is_sticky (status);
  }
}

void
si_cublas_defer (SiBackend *be, cublasStatus_t status, const char *what,
    const char *file, int line)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  /* a launch of cuBLAS's that failed leaves the runtime's error set: it
   * is this call's (the next kernel's launch check would report it under
   * its own name) */
  cudaError_t runtime = cudaGetLastError ();

  if (cu->deferred != NULL)
    return;
  si_cublas_set_error (&cu->deferred, status, what, file, line);
  if (runtime != cudaSuccess) {
    char *msg =
        g_strdup_printf ("%s (CUDA runtime: %s: %s)", cu->deferred->message,
            cudaGetErrorName (runtime), cudaGetErrorString (runtime));
    g_free (cu->deferred->message);
    cu->deferred->message = msg;
  }
}

/* Calls that cannot be recorded fail cleanly during a capture. */
static gboolean
cuda_not_capturing (SiCudaBackend *cu, const char *what, GError **error)
{
  if (!cu->capturing)
    return TRUE;
  g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
      "%s is not allowed during a CUDA graph capture", what);
  return FALSE;
}

gboolean
si_cuda_take_deferred (SiCudaBackend *cu, GError **error)
{
  if (cu->deferred == NULL)
    return TRUE;
  g_propagate_error (error, cu->deferred);
  cu->deferred = NULL;
  cu->deferred_lost = false;
  return FALSE;
}

void
si_cuda_fail (SiCudaBackend *cu, cudaError_t st, const char *what,
    const char *file, int line, GError **error)
{
  cudaGetLastError ();
  if (cu->deferred == NULL ||
      (cuda_error_is_sticky (st) && !cu->deferred_lost)) {
    g_clear_error (&cu->deferred);
    cu->deferred_lost = false;
    si_cuda_set_error (error, st, what, file, line);
  } else {
    si_cuda_take_deferred (cu, error);
  }
}

/* ---- lifetime ---- */

static void
cuda_destroy (SiBackend *be)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (cu == NULL)
    return;
  /* the context may be freed from another thread than the one it ran on */
  cudaSetDevice (cu->device);
  if (cu->capturing) {
    cudaGraph_t g = NULL;
    cudaStreamEndCapture (cu->stream, &g);
    if (g)
      cudaGraphDestroy (g);
  }
  if (cu->stream)
    cudaStreamSynchronize (cu->stream);
  si_cuda_profile_free (cu);
  if (cu->cublas)
    cublasDestroy (cu->cublas);
  if (cu->lt_plans)
    g_hash_table_destroy (cu->lt_plans);
  if (cu->lt)
    cublasLtDestroy (cu->lt);
  if (cu->chunks) {
    for (guint i = 0; i < cu->chunks->len; i++)
      cudaFree (g_array_index (cu->chunks, SiCudaChunk, i).base);
    g_array_free (cu->chunks, TRUE);
  }
  if (cu->staging_in_free)
    cudaEventDestroy (cu->staging_in_free);
  if (cu->wait_event)
    cudaEventDestroy (cu->wait_event);
  if (cu->staging_in)
    cudaFreeHost (cu->staging_in);
  if (cu->staging_out)
    cudaFreeHost (cu->staging_out);
  if (cu->stream)
    cudaStreamDestroy (cu->stream);
  g_clear_error (&cu->deferred);
  /* leave no sticky error behind for the next context of this thread */
  cudaGetLastError ();
  g_free (cu);
  be->priv = NULL;
}

static gboolean
cuda_init_resources (
    SiBackend *be, const SiContextOptions *options, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  struct cudaDeviceProp prop;
  long max_pixels = SI_CUDA_DEFAULT_MAX_PIXELS;
  unsigned conv_ws_mib;

  if (!conv_workspace_mib (&conv_ws_mib, error))
    return FALSE;
  SI_CUDA_TRY (cudaSetDevice (cu->device), error, FALSE);
  SI_CUDA_TRY (cudaGetDeviceProperties (&prop, cu->device), error, FALSE);
  g_strlcpy (cu->device_name, prop.name, sizeof (cu->device_name));
  /* the module has sm_80 and sm_90 code and compute_90 PTX: an older
   * device would fail every kernel; refused here, backend=auto falls back */
  if (prop.major < 8) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_DEVICE,
        "no usable CUDA device: device %d (%s) has compute capability "
        "%d.%d; the CUDA backend needs 8.0 or newer",
        cu->device, prop.name, prop.major, prop.minor);
    return FALSE;
  }
  SI_CUDA_TRY (cudaStreamCreateWithFlags (&cu->stream, cudaStreamNonBlocking),
      error, FALSE);
  SI_CUBLAS_TRY (cublasCreate (&cu->cublas), error, FALSE);
  SI_CUBLAS_TRY (cublasSetStream (cu->cublas, cu->stream), error, FALSE);
  /* fp32 is the parity mode: no TF32.  fp16 picks its compute type per
   * call (gemm_cuda.c); a half C must not make cuBLAS add split-K partial
   * sums in half (allowed by default): the accumulation stays fp32. */
  SI_CUBLAS_TRY (cublasSetMathMode (cu->cublas,
                     (cublasMath_t) (CUBLAS_DEFAULT_MATH |
                         CUBLAS_MATH_DISALLOW_REDUCED_PRECISION_REDUCTION)),
      error, FALSE);
  SI_CUBLAS_TRY (cublasLtCreate (&cu->lt), error, FALSE);
  cu->lt_plans = si_lt_plans_new ();
  cu->profile = si_cuda_profile_new ();
  cu->fused_epilogue =
      g_strcmp0 (g_getenv ("SI_CUDA_FUSED_EPILOGUE"), "0") != 0;
  cu->fused_attention =
      g_strcmp0 (g_getenv ("SI_CUDA_FUSED_ATTENTION"), "0") != 0;

  /* staging for the largest frame: 4 bytes per pixel covers every format */
  if (options && options->max_width > 0 && options->max_height > 0)
    max_pixels = (long) options->max_width * options->max_height;
  cu->staging_in_size = (size_t) max_pixels * 4;
  SI_CUDA_TRY (cudaHostAlloc ((void **) &cu->staging_in, cu->staging_in_size,
                   cudaHostAllocDefault),
      error, FALSE);
  SI_CUDA_TRY (
      cudaEventCreateWithFlags (&cu->staging_in_free, cudaEventDisableTiming),
      error, FALSE);
  if (g_strcmp0 (g_getenv ("SI_CUDA_SPIN_WAIT"), "1") != 0)
    SI_CUDA_TRY (cudaEventCreateWithFlags (&cu->wait_event,
                     cudaEventDisableTiming | cudaEventBlockingSync),
        error, FALSE);
  cu->staging_out_size = SI_CUDA_STAGING_OUT;
  SI_CUDA_TRY (cudaHostAlloc ((void **) &cu->staging_out, cu->staging_out_size,
                   cudaHostAllocDefault),
      error, FALSE);

  cu->frame_dev = si_cuda_alloc (be, cu->staging_in_size, error);
  if (cu->frame_dev == NULL)
    return FALSE;
  cu->frame_dev_size = cu->staging_in_size;
  cu->conv_ws_floats = ((size_t) conv_ws_mib << 20) / sizeof (float);
  cu->conv_ws = si_cuda_alloc (be, cu->conv_ws_floats * sizeof (float), error);
  if (cu->conv_ws == NULL)
    return FALSE;
  cu->cublas_ws_size = SI_CUDA_CUBLAS_WS;
  cu->cublas_ws = si_cuda_alloc (be, cu->cublas_ws_size, error);
  if (cu->cublas_ws == NULL)
    return FALSE;
  SI_CUBLAS_TRY (
      cublasSetWorkspace (cu->cublas, cu->cublas_ws, cu->cublas_ws_size), error,
      FALSE);
  cu->gn_max_c = SI_CUDA_GN_MAX_C;
  cu->gn_stats = si_cuda_alloc (be,
      2 *
          (SI_CUDA_GN_PARTIALS * sizeof (double) +
              (size_t) cu->gn_max_c * sizeof (float)),
      error);
  return cu->gn_stats != NULL;
}

static gboolean
cuda_init (SiBackend *be, const SiContextOptions *options, GError **error)
{
  SiCudaBackend *cu;
  cudaError_t status;
  int count = 0;
  int device = options ? options->device_id : 0;

  status = cudaGetDeviceCount (&count);
  if (cuda_error_is_sticky (status)) {
    /* not "no device": the process lost a context earlier */
    si_cuda_set_error (error, status, "cudaGetDeviceCount", __FILE__, __LINE__);
    return FALSE;
  }
  if (status != cudaSuccess || count == 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_DEVICE, "no CUDA device: %s",
        status != cudaSuccess ? cudaGetErrorString (status)
                              : "the driver reports 0 devices");
    cudaGetLastError ();
    return FALSE;
  }
  if (device < 0 || device >= count) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_DEVICE,
        "no CUDA device %d (this machine has %d)", device, count);
    return FALSE;
  }

  cu = g_new0 (SiCudaBackend, 1);
  cu->device = device;
  cu->precision = options ? options->precision : SI_PRECISION_FP32;
  cu->half_maps = cu->precision == SI_PRECISION_FP16 &&
      g_strcmp0 (g_getenv ("SI_CUDA_HALF_MAPS"), "0") != 0;
  cu->chunks = g_array_new (FALSE, FALSE, sizeof (SiCudaChunk));
  be->priv = cu;
  if (!cuda_init_resources (be, options, error)) {
    cuda_destroy (be);
    return FALSE;
  }
  return TRUE;
}

const char *
si_cuda_backend_device_name (SiBackend *be)
{
  return si_cuda_priv (be)->device_name;
}

/* ---- memory: the arena ---- */

void *
si_cuda_alloc (SiBackend *be, size_t bytes, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  size_t need =
      (MAX (bytes, 1) + SI_CUDA_ALIGN - 1) / SI_CUDA_ALIGN * SI_CUDA_ALIGN;
  SiCudaChunk chunk = { 0 };

  if (!cuda_not_capturing (cu, "alloc", error))
    return NULL;
  for (guint i = 0; i < cu->chunks->len; i++) {
    SiCudaChunk *c = &g_array_index (cu->chunks, SiCudaChunk, i);
    if (c->size - c->used >= need) {
      void *p = c->base + c->used;
      c->used += need;
      c->live++;
      return p;
    }
  }
  SI_CUDA_TRY (cudaSetDevice (cu->device), error, NULL);
  chunk.size = MAX (need, (size_t) SI_CUDA_CHUNK);
  SI_CUDA_TRY (cudaMalloc ((void **) &chunk.base, chunk.size), error, NULL);
  chunk.used = need;
  chunk.live = 1;
  g_array_append_val (cu->chunks, chunk);
  return chunk.base;
}

void
si_cuda_free (SiBackend *be, void *ptr)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  uint8_t *p = ptr;

  if (p == NULL)
    return;
  for (guint i = 0; i < cu->chunks->len; i++) {
    SiCudaChunk *c = &g_array_index (cu->chunks, SiCudaChunk, i);
    if (p >= c->base && p < c->base + c->size) {
      if (--c->live == 0)
        c->used = 0; /* the whole chunk is free again */
      return;
    }
  }
}

static void *
cuda_alloc (SiBackend *be, size_t bytes, GError **error)
{
  return si_cuda_alloc (be, bytes, error);
}

static void
cuda_free (SiBackend *be, void *ptr)
{
  si_cuda_free (be, ptr);
}

static gboolean cuda_wait (SiCudaBackend *cu, GError **error);

/* Weights and inputs, from the caller's memory: blocking, so that src may
 * go away when it returns. */
static gboolean
cuda_upload (
    SiBackend *be, void *dst, const void *src, size_t bytes, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (bytes == 0)
    return TRUE;
  if (!cuda_not_capturing (cu, "upload", error))
    return FALSE;
  SI_CUDA_TRY_FRAME (cu, cudaSetDevice (cu->device), error, FALSE);
  SI_CUDA_TRY_FRAME (cu,
      cudaMemcpyAsync (dst, src, bytes, cudaMemcpyHostToDevice, cu->stream),
      error, FALSE);
  si_cuda_profile_mark (be, "upload");
  /* from pageable memory an async copy may still read src after it
   * returns on some systems (CUDA promises nothing more); only weights at
   * creation and si_net_run_input's tensor come this way */
  return cuda_wait (cu, error);
}

/* Waits for the stream, then reports the first failure: a void op's
 * (deferred) or one of the queued work itself (a replayed graph's kernel,
 * which only the wait sees).  The runtime also keeps the latter as the
 * thread's last error: it is cleared, so that the next op's launch check
 * does not report it a second time, and the frame after a failure runs
 * clean. */
static gboolean
cuda_wait (SiCudaBackend *cu, GError **error)
{
  cudaError_t st, asleep = cudaSuccess;

  /* Sleep until the stream is done rather than spin (the default
   * scheduling spins a core per waiting thread, for a whole frame without
   * part timings); the stream's own wait then returns at once and reports
   * the errors.  A failure of the event calls is the device's (the wait
   * below reports it) or a spin wait instead: not left behind as the
   * thread's last error. */
  if (cu->wait_event != NULL &&
      (cudaEventRecord (cu->wait_event, cu->stream) != cudaSuccess ||
          (asleep = cudaEventSynchronize (cu->wait_event)) != cudaSuccess))
    cudaGetLastError ();
  st = cudaStreamSynchronize (cu->stream);
  /* the sleep may have been told of the work's failure alone */
  if (st == cudaSuccess)
    st = asleep;

  if (st != cudaSuccess) {
    si_cuda_fail (cu, st, "cudaStreamSynchronize (the stream)", __FILE__,
        __LINE__, error);
    return FALSE;
  }
  si_cuda_profile_collect (cu);
  return si_cuda_take_deferred (cu, error);
}

/* Blocking: waits for the stream, then reports any deferred failure. */
static gboolean
cuda_download (
    SiBackend *be, void *dst, const void *src, size_t bytes, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  bool staged = bytes <= cu->staging_out_size;

  if (!cuda_not_capturing (cu, "download", error))
    return FALSE;
  SI_CUDA_TRY_FRAME (cu, cudaSetDevice (cu->device), error, FALSE);
  if (bytes)
    SI_CUDA_TRY_FRAME (cu,
        cudaMemcpyAsync (staged ? (void *) cu->staging_out : dst, src, bytes,
            cudaMemcpyDeviceToHost, cu->stream),
        error, FALSE);
  si_cuda_profile_mark (be, "download");
  if (!cuda_wait (cu, error))
    return FALSE;
  if (bytes && staged)
    memcpy (dst, cu->staging_out, bytes);
  return TRUE;
}

static gboolean
cuda_sync (SiBackend *be, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (!cuda_not_capturing (cu, "sync", error))
    return FALSE;
  SI_CUDA_TRY_FRAME (cu, cudaSetDevice (cu->device), error, FALSE);
  return cuda_wait (cu, error);
}

/* Device-to-device, stream-ordered. */
static void
cuda_copy (SiBackend *be, void *dst, const void *src, size_t bytes)
{
  if (bytes == 0 || dst == src)
    return;
  SI_CUDA_DEFER (be,
      cudaMemcpyAsync (dst, src, bytes, cudaMemcpyDeviceToDevice,
          si_cuda_priv (be)->stream));
  si_cuda_profile_mark (be, "copy");
}

/* ---- frame memory: pinned blocks that frames are uploaded from ---- */

typedef struct
{
  const uint8_t *base;
  size_t size;
} FrameBlock;

/* Every live block of si_frame_memory_alloc, by base address, so that an
 * upload can tell whether a frame lies in one. */
static GMutex frame_blocks_lock;
static GTree *frame_blocks;

static int
frame_block_order (gconstpointer a, gconstpointer b, gpointer unused)
{
  const uint8_t *x = ((const FrameBlock *) a)->base;
  const uint8_t *y = ((const FrameBlock *) b)->base;

  (void) unused;
  return x < y ? -1 : x > y;
}

/* 0 when the range (a FrameBlock) lies in the block of @key. */
static int
frame_block_search (gconstpointer key, gconstpointer range)
{
  const FrameBlock *k = key, *r = range;

  if (r->base < k->base)
    return -1;
  if (r->base >= k->base + k->size)
    return 1;
  return r->size <= (size_t) (k->base + k->size - r->base) ? 0 : 1;
}

static void *
cuda_frame_memory_alloc (size_t bytes, GError **error)
{
  FrameBlock *block;
  void *mem = NULL;

  /* portable: pinned for every device's contexts */
  cudaError_t status = cudaHostAlloc (&mem, bytes, cudaHostAllocPortable);

  if (status != cudaSuccess) {
    /* not this thread's next cudaGetLastError: a caller may fall back */
    cudaGetLastError ();
    si_cuda_set_error (
        error, status, "cudaHostAlloc (frame memory)", __FILE__, __LINE__);
    return NULL;
  }
  block = g_new (FrameBlock, 1);
  block->base = mem;
  block->size = bytes;
  g_mutex_lock (&frame_blocks_lock);
  if (frame_blocks == NULL)
    frame_blocks = g_tree_new_full (frame_block_order, NULL, g_free, NULL);
  g_tree_insert (frame_blocks, block, block);
  g_mutex_unlock (&frame_blocks_lock);
  return mem;
}

static gboolean
cuda_frame_memory_free (void *mem)
{
  FrameBlock key = { mem, 1 };
  gboolean ours;

  g_mutex_lock (&frame_blocks_lock);
  ours = frame_blocks != NULL && g_tree_remove (frame_blocks, &key);
  g_mutex_unlock (&frame_blocks_lock);
  if (ours && cudaFreeHost (mem) != cudaSuccess)
    cudaGetLastError (); /* nothing to report it to; keep it off kernels */
  return ours;
}

/* Whether [p, p + bytes) lies in one live block. */
static bool
in_frame_memory (const uint8_t *p, size_t bytes)
{
  FrameBlock range = { p, bytes };
  bool found;

  g_mutex_lock (&frame_blocks_lock);
  found = frame_blocks != NULL &&
      g_tree_search (frame_blocks, frame_block_search, &range) != NULL;
  g_mutex_unlock (&frame_blocks_lock);
  return found;
}

/* ---- the frame upload ---- */

const uint8_t *
si_cuda_upload_frame (SiBackend *be, const uint8_t *const *src,
    const size_t *bytes, int n_planes, size_t *offset, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  const uint8_t *lo = src[0], *hi = src[0] + bytes[0];
  size_t total = 0;
  cudaError_t st;

  if (!cuda_not_capturing (cu, "a frame upload", error))
    return NULL;
  /* a new frame: a failed runtime call of someone else on this thread (a
   * refusal, not sticky) is not ours to report from our launch checks */
  cudaGetLastError ();
  for (int i = 0; i < n_planes; i++) {
    total += bytes[i];
    lo = MIN (lo, src[i]);
    hi = MAX (hi, src[i] + bytes[i]);
  }
  SI_CUDA_TRY_FRAME (cu, cudaSetDevice (cu->device), error, NULL);
  /* planes in one pinned block go up as they lie, gaps included */
  if ((size_t) (hi - lo) <= cu->frame_dev_size &&
      in_frame_memory (lo, (size_t) (hi - lo))) {
    for (int i = 0; i < n_planes; i++)
      offset[i] = (size_t) (src[i] - lo);
    si_cuda_profile_begin_frame (cu);
    SI_CUDA_TRY_FRAME (cu,
        cudaMemcpyAsync (cu->frame_dev, lo, (size_t) (hi - lo),
            cudaMemcpyHostToDevice, cu->stream),
        error, NULL);
    si_cuda_profile_mark (be, "frame upload (frame memory)");
    return cu->frame_dev;
  }
  if (total > cu->staging_in_size) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame of %zu bytes is larger than this context's maximum (%zu "
        "bytes: max-width x max-height x 4)",
        total, cu->staging_in_size);
    return NULL;
  }
  /* the previous frame's copy must have read the staging buffer */
  SI_CUDA_TRY_FRAME (
      cu, cudaEventSynchronize (cu->staging_in_free), error, NULL);
  for (int i = 0; i < n_planes; i++) {
    offset[i] = i ? offset[i - 1] + bytes[i - 1] : 0;
    memcpy (cu->staging_in + offset[i], src[i], bytes[i]);
  }
  si_cuda_profile_begin_frame (cu);
  SI_CUDA_TRY_FRAME (cu,
      cudaMemcpyAsync (cu->frame_dev, cu->staging_in, total,
          cudaMemcpyHostToDevice, cu->stream),
      error, NULL);
  si_cuda_profile_mark (be, "frame upload (staged)");
  st = cudaEventRecord (cu->staging_in_free, cu->stream);
  if (st != cudaSuccess) {
    si_cuda_fail (cu, st, "cudaEventRecord (cu->staging_in_free, cu->stream)",
        __FILE__, __LINE__, error);
    /* the copy may still read the staging, and the next frame's wait
     * would be on an older record */
    cudaStreamSynchronize (cu->stream);
    cudaGetLastError ();
    return NULL;
  }
  return cu->frame_dev;
}

/* ---- record and replay ---- */

struct _SiCudaGraph
{
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  int number; /* in the order of recording, for the op profile */
};

gboolean
si_cuda_capture_begin (SiBackend *be, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (cu->capturing) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "CUDA graph capture already in progress");
    return FALSE;
  }
  /* earlier failures belong to the caller, not to the recording */
  if (!si_cuda_take_deferred (cu, error))
    return FALSE;
  SI_CUDA_TRY (cudaSetDevice (cu->device), error, FALSE);
  SI_CUDA_TRY (
      cudaStreamBeginCapture (cu->stream, cudaStreamCaptureModeThreadLocal),
      error, FALSE);
  cu->capturing = true;
  return TRUE;
}

SiCudaGraph *
si_cuda_capture_end (SiBackend *be, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  SiCudaGraph *g;
  cudaGraph_t graph = NULL;
  cudaError_t st;

  if (!cu->capturing) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "no CUDA graph capture in progress");
    return NULL;
  }
  cu->capturing = false;
  st = cudaStreamEndCapture (cu->stream, &graph);
  if (st != cudaSuccess || cu->deferred) {
    if (graph)
      cudaGraphDestroy (graph);
    if (cu->deferred) {
      /* the capture's own failure is the thread's last error too: clear
       * it, or the next launch check on the direct path reports it */
      cudaGetLastError ();
      si_cuda_take_deferred (cu, error);
      return NULL;
    }
    si_cuda_set_error (error, st, "cudaStreamEndCapture", __FILE__, __LINE__);
    return NULL;
  }
  g = g_new0 (SiCudaGraph, 1);
  g->graph = graph;
  g->number = ++cu->graphs_recorded;
  st = cudaGraphInstantiate (&g->exec, graph, 0);
  if (st != cudaSuccess) {
    si_cuda_set_error (error, st, "cudaGraphInstantiate", __FILE__, __LINE__);
    si_cuda_graph_free (be, g);
    return NULL;
  }
  return g;
}

gboolean
si_cuda_graph_launch (SiBackend *be, SiCudaGraph *graph, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (graph == NULL || graph->exec == NULL) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT, "no CUDA graph to launch");
    return FALSE;
  }
  if (!cuda_not_capturing (cu, "a graph launch", error))
    return FALSE;
  SI_CUDA_TRY_FRAME (cu, cudaSetDevice (cu->device), error, FALSE);
  SI_CUDA_TRY_FRAME (
      cu, cudaGraphLaunch (graph->exec, cu->stream), error, FALSE);
  si_cuda_profile_mark (be, "graph #%d", graph->number);
  return TRUE;
}

void
si_cuda_graph_free (SiBackend *be, SiCudaGraph *graph)
{
  if (graph == NULL)
    return;
  if (graph->exec)
    cudaGraphExecDestroy (graph->exec);
  if (graph->graph)
    cudaGraphDestroy (graph->graph);
  g_free (graph);
}

/* The table's untyped entries (backend.h) over the functions above. */
static void *
cuda_capture_end (SiBackend *be, GError **error)
{
  return si_cuda_capture_end (be, error);
}

static gboolean
cuda_graph_launch (SiBackend *be, void *graph, GError **error)
{
  return si_cuda_graph_launch (be, graph, error);
}

static void
cuda_graph_free (SiBackend *be, void *graph)
{
  si_cuda_graph_free (be, graph);
}

static size_t
cuda_map_bytes (SiBackend *be, int h, int w, int c)
{
  return (size_t) h * w * c *
      (si_cuda_map_half (si_cuda_priv (be), c) ? 2 : sizeof (float));
}

/* ---- the table ---- */

const SiBackendOps si_cuda_backend_ops = {
  .name = "cuda",
  .init = cuda_init,
  .destroy = cuda_destroy,
  .alloc = cuda_alloc,
  .free = cuda_free,
  .upload = cuda_upload,
  .download = cuda_download,
  .sync = cuda_sync,
  .frame_memory_alloc = cuda_frame_memory_alloc,
  .frame_memory_free = cuda_frame_memory_free,

  .gemm = si_gemm_cuda,
  .gemm_batched = si_gemm_batched_cuda,
  .gemm_bias_act = si_gemm_bias_act_cuda,

  .resize_frame = si_resize_frame_cuda,
  .normalize_pad = si_normalize_pad_cuda,
  .conv_prepare = si_conv_prepare_cuda,
  .conv_release = si_conv_release_cuda,
  .conv2d = si_conv2d_cuda,
  .maxpool3x3s2 = si_maxpool3x3s2_cuda,
  .group_norm = si_group_norm_cuda,
  .map_to_nhwc = si_map_to_nhwc_cuda, /* NHWC, fp32 or half */
  .map_from_nhwc = si_map_from_nhwc_cuda,
  .map_bytes = cuda_map_bytes,
  .copy = cuda_copy,
  .transpose = si_transpose_cuda,
  .deform_im2col = si_deform_im2col_cuda,
  .window_partition = si_window_partition_cuda,
  .window_merge_add = si_window_merge_add_cuda,
  .window_softmax = si_window_softmax_cuda,
  .patch_merge = si_patch_merge_cuda,
  .bias_gelu = si_bias_gelu_cuda,

  .layer_norm = si_layer_norm_cuda,
  .bias_act = si_bias_act_cuda,
  .sigmoid = si_sigmoid_cuda,
  .split_columns = si_split_columns_cuda,
  .copy_batched = si_copy_batched_cuda,
  .init_boxes = si_init_boxes_cuda,
  .posenc_add = si_posenc_add_cuda,
  .iof_bias = si_iof_bias_cuda,
  .softmax_bias = si_softmax_bias_cuda,
  .self_attention = si_self_attention_cuda,
  .sample_points = si_sample_points_cuda,
  .sample_features = si_sample_features_cuda,
  .ln2d_bias_relu = si_ln2d_bias_relu_cuda,
  .ln2d_bias_relu_swap = si_ln2d_bias_relu_swap_cuda,
  .swap_axes = si_swap_axes_cuda,
  .cascade_residual = si_cascade_residual_cuda,
  .gate_mix = si_gate_mix_cuda,
  .refine_boxes = si_refine_boxes_cuda,
  .topk_sigmoid = si_topk_sigmoid_cuda,

  .capture_begin = si_cuda_capture_begin,
  .capture_end = cuda_capture_end,
  .graph_launch = cuda_graph_launch,
  .graph_free = cuda_graph_free,
};
