/* backend_cpu.c: the CPU backend's table: lifetime (threads, the oneDNN
 * engine and stream), memory (64-byte aligned host memory; upload and
 * download are memcpy) and the ops gathered from the other files of
 * engine/cpu/.  The CPU backend is the reference of every op.
 */
#include "si-config.h"

#include "backend_cpu.h"
#include "decoder_cpu.h"
#include "decoder_cpu.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef SI_HAVE_DNNL
#include <dnnl.h>
#endif
#ifdef SI_HAVE_BLAS
#include <cblas.h>
#endif

#define SI_CPU_ALIGN 64

void
si_cpu_backend_set_reference (SiBackend *be, bool reference)
{
  si_cpu_priv (be)->reference = reference;
}

void
si_cpu_backend_set_nhwc_maps (SiBackend *be, bool nhwc)
{
  si_cpu_priv (be)->nhwc_maps = nhwc;
}

void
si_cpu_apply_threads (SiBackend *be)
{
#ifdef _OPENMP
  int n = si_cpu_priv (be)->num_threads;
  if (omp_get_max_threads () != n)
    omp_set_num_threads (n);
#endif
}

bool
si_cpu_map_blocked (SiBackend *be, int c)
{
#ifdef SI_HAVE_DNNL
  SiCpuBackend *cpu = si_cpu_priv (be);
  return !cpu->reference && !cpu->nhwc_maps && c % 16 == 0;
#else
  return false;
#endif
}

static gboolean
cpu_init (SiBackend *be, const SiContextOptions *options, GError **error)
{
  SiCpuBackend *cpu = g_new0 (SiCpuBackend, 1);
  const char *env;
  int n = options ? options->num_threads : 0;

  if (n <= 0)
    n = (int) g_get_num_processors ();
  cpu->num_threads = n;
  env = g_getenv ("SI_CPU_REFERENCE");
  cpu->reference = env != NULL && env[0] != '\0' && env[0] != '0';
  env = g_getenv ("SI_CPU_NHWC_MAPS");
  cpu->nhwc_maps = env != NULL && env[0] != '\0' && env[0] != '0';
  env = g_getenv ("SI_CPU_WINOGRAD");
  cpu->winograd = env == NULL || env[0] != '0';
  env = g_getenv ("SI_CPU_WINOGRAD_MAX_CC");
  cpu->winograd_max_cc = env ? g_ascii_strtoll (env, NULL, 10) : 256 * 256;
#ifdef _OPENMP
  omp_set_num_threads (n);
#endif
#if defined(SI_HAVE_BLAS) && defined(OPENBLAS_VERSION)
  openblas_set_num_threads (n);
#endif
#ifdef SI_HAVE_DNNL
  {
    dnnl_engine_t engine = NULL;
    dnnl_stream_t stream = NULL;
    if (dnnl_engine_create (&engine, dnnl_cpu, 0) != dnnl_success ||
        dnnl_stream_create (&stream, engine, dnnl_stream_default_flags) !=
            dnnl_success) {
      if (engine)
        dnnl_engine_destroy (engine);
      g_free (cpu);
      g_set_error (error, SI_ERROR, SI_ERROR_BACKEND,
          "cannot create the oneDNN CPU engine");
      return FALSE;
    }
    cpu->dnnl_engine = engine;
    cpu->dnnl_stream = stream;
  }
#endif
  be->priv = cpu;
  return TRUE;
}

static void
cpu_destroy (SiBackend *be)
{
  SiCpuBackend *cpu = si_cpu_priv (be);

  if (cpu == NULL)
    return;
#ifdef SI_HAVE_DNNL
  if (cpu->dnnl_stream)
    dnnl_stream_destroy ((dnnl_stream_t) cpu->dnnl_stream);
  if (cpu->dnnl_engine)
    dnnl_engine_destroy ((dnnl_engine_t) cpu->dnnl_engine);
#endif
  free (cpu->scratch);
  g_free (cpu);
  be->priv = NULL;
}

static void *
cpu_alloc (SiBackend *be, size_t bytes, GError **error)
{
  void *p = NULL;

  if (bytes == 0)
    bytes = SI_CPU_ALIGN;
  bytes = (bytes + SI_CPU_ALIGN - 1) / SI_CPU_ALIGN * SI_CPU_ALIGN;
  if (posix_memalign (&p, SI_CPU_ALIGN, bytes) != 0 || p == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "cannot allocate %zu bytes of host memory", bytes);
    return NULL;
  }
  return p;
}

static void
cpu_free (SiBackend *be, void *ptr)
{
  free (ptr);
}

static gboolean
cpu_upload (
    SiBackend *be, void *dst, const void *src, size_t bytes, GError **error)
{
  if (bytes)
    memcpy (dst, src, bytes);
  return TRUE;
}

static gboolean
cpu_download (
    SiBackend *be, void *dst, const void *src, size_t bytes, GError **error)
{
  if (bytes)
    memcpy (dst, src, bytes);
  return TRUE;
}

static gboolean
cpu_sync (SiBackend *be, GError **error)
{
  return TRUE;
}

const SiBackendOps si_cpu_backend_ops = {
  .name = "cpu",
  .init = cpu_init,
  .destroy = cpu_destroy,
  .alloc = cpu_alloc,
  .free = cpu_free,
  .upload = cpu_upload,
  .download = cpu_download,
  .sync = cpu_sync,

  /* GEMM family */
  .gemm = si_gemm_cpu,
  .gemm_batched = si_gemm_batched_cpu,
  .gemm_bias_act = si_gemm_bias_act_cpu,

  /* image side */
  .resize_frame = si_resize_frame_cpu,
  .normalize_pad = si_normalize_pad_cpu,
  .conv_prepare = si_conv_prepare_cpu,
  .conv_release = si_conv_release_cpu,
  .conv2d = si_conv2d_cpu,
  .maxpool3x3s2 = si_maxpool3x3s2_cpu,
  .group_norm = si_group_norm_cpu,
  .map_to_nhwc = si_map_to_nhwc_cpu,
  .map_from_nhwc = si_map_from_nhwc_cpu,
  .copy = si_copy_cpu,
  .transpose = si_transpose_cpu,
  .deform_im2col = si_deform_im2col_cpu,
  .window_partition = si_window_partition_cpu,
  .window_merge_add = si_window_merge_add_cpu,
  .window_softmax = si_window_softmax_cpu,
  .patch_merge = si_patch_merge_cpu,
  .bias_gelu = si_bias_gelu_cpu,

  /* decoder side (decoder_cpu.h) */
  SI_CPU_DECODER_OPS,
};
