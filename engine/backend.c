/* backend.c: creation and destruction of a backend from its op table
 * (backend.h), and the loading of the CUDA backend's module.  The
 * backends themselves live in engine/cpu/ and engine/cuda/.
 */
#include "si-config.h"

#include "backend.h"

#include <stdlib.h>

#ifdef SI_HAVE_CUDA
#include <dlfcn.h>
#endif

static const SiBackendOps *linked_cuda_ops;

void
si_backend_use_linked_cuda (const SiBackendOps *ops)
{
  linked_cuda_ops = ops;
}

#ifdef SI_HAVE_CUDA

/* The module stays loaded for the life of the process: the CUDA runtime
 * does not support being unloaded while contexts may exist. */
static GMutex cuda_module_lock;
static const SiBackendOps *cuda_module_ops;

static const SiBackendOps *
open_cuda_module (const char *path, GError **error)
{
  static const SiCudaModuleAbi abi = SI_CUDA_MODULE_ABI_INIT;
  char why[256] = "";
  SiCudaModuleEntry entry;
  const SiBackendOps *ops;
  void *handle;

  /* RTLD_LOCAL: cudart's and cuBLAS's symbols stay out of the process's
   * global namespace */
  handle = dlopen (path, RTLD_NOW | RTLD_LOCAL);
  if (handle == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_DEVICE,
        "cannot load the CUDA backend module %s: %s", path, dlerror ());
    return NULL;
  }
  entry = (SiCudaModuleEntry) dlsym (handle, SI_CUDA_MODULE_ENTRY);
  if (entry == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_BACKEND,
        "%s is not a CUDA backend module of this engine (no %s)", path,
        SI_CUDA_MODULE_ENTRY);
    dlclose (handle);
    return NULL;
  }
  ops = entry (&abi, why, sizeof (why));
  if (ops == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_BACKEND,
        "the CUDA backend module %s does not match this engine: %s", path, why);
    dlclose (handle);
    return NULL;
  }
  return ops;
}

static const SiBackendOps *
load_cuda_module (GError **error)
{
  const char *env = g_getenv ("SI_CUDA_MODULE");
  const char *candidates[2] = { SI_CUDA_MODULE_BUILD_PATH,
    SI_CUDA_MODULE_INSTALL_PATH };
  const SiBackendOps *ops = NULL;
  GString *tried;
  guint i;

  g_mutex_lock (&cuda_module_lock);
  if (cuda_module_ops != NULL) {
    ops = cuda_module_ops;
    goto out;
  }
  if (env != NULL && *env != '\0') {
    ops = open_cuda_module (env, error);
    goto out;
  }
  /* the first candidate that exists is the answer, loaded or not */
  tried = g_string_new (NULL);
  for (i = 0; i < G_N_ELEMENTS (candidates); i++) {
    g_string_append_printf (tried, "%s%s", i ? ", " : "", candidates[i]);
    if (g_file_test (candidates[i], G_FILE_TEST_EXISTS)) {
      ops = open_cuda_module (candidates[i], error);
      break;
    }
  }
  if (i == G_N_ELEMENTS (candidates))
    g_set_error (error, SI_ERROR, SI_ERROR_NO_DEVICE,
        "the CUDA backend module is not installed (looked for %s; "
        "SI_CUDA_MODULE=FILE names another)",
        tried->str);
  g_string_free (tried, TRUE);
out:
  cuda_module_ops = ops;
  g_mutex_unlock (&cuda_module_lock);
  return ops;
}

#endif /* SI_HAVE_CUDA */

static const SiBackendOps *
cuda_ops (GError **error)
{
  if (linked_cuda_ops != NULL)
    return linked_cuda_ops;
#ifdef SI_HAVE_CUDA
  return load_cuda_module (error);
#else
  g_set_error_literal (error, SI_ERROR, SI_ERROR_NO_DEVICE,
      "the CUDA backend is not built in (built backends: " SI_BACKENDS ")");
  return NULL;
#endif
}

SiBackend *
si_backend_new (
    SiBackendKind kind, const SiContextOptions *options, GError **error)
{
  const SiBackendOps *ops = NULL;
  SiBackend *be;

  switch (kind) {
    case SI_BACKEND_CPU:
      ops = &si_cpu_backend_ops;
      break;
    case SI_BACKEND_CUDA:
      ops = cuda_ops (error);
      if (ops == NULL)
        return NULL;
      break;
    default:
      break;
  }
  if (ops == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_DEVICE,
        "backend %d is not available in this build", (int) kind);
    return NULL;
  }

  be = g_new0 (SiBackend, 1);
  be->ops = ops;
  be->kind = kind;
  if (!ops->init (be, options, error)) {
    g_free (be);
    return NULL;
  }
  return be;
}

void
si_backend_free (SiBackend **be)
{
  if (be == NULL || *be == NULL)
    return;
  if ((*be)->ops->destroy)
    (*be)->ops->destroy (*be);
  g_free (*be);
  *be = NULL;
}

/* The CUDA table if it is in the process already (linked in or loaded). */
static const SiBackendOps *
loaded_cuda_ops (void)
{
  const SiBackendOps *ops = linked_cuda_ops;

#ifdef SI_HAVE_CUDA
  if (ops == NULL) {
    g_mutex_lock (&cuda_module_lock);
    ops = cuda_module_ops;
    g_mutex_unlock (&cuda_module_lock);
  }
#endif
  return ops;
}

void *
si_backend_frame_memory_alloc (SiBackendKind kind, size_t bytes, GError **error)
{
  const SiBackendOps *ops = NULL;
  void *mem = NULL;

  if (bytes == 0 || bytes > G_MAXSIZE / 2) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame memory of %zu bytes requested", bytes);
    return NULL;
  }
  switch (kind) {
    case SI_BACKEND_CPU:
      break;
    case SI_BACKEND_CUDA:
      if ((ops = cuda_ops (error)) == NULL)
        return NULL;
      break;
    case SI_BACKEND_AUTO:
      ops = cuda_ops (NULL);
      break;
    default:
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "unknown backend kind %d", (int) kind);
      return NULL;
  }
  if (ops != NULL && ops->frame_memory_alloc != NULL) {
    /* auto: no message (a lost context's first report is someone
     * else's to make) */
    mem =
        ops->frame_memory_alloc (bytes, kind == SI_BACKEND_AUTO ? NULL : error);
    if (mem != NULL || kind != SI_BACKEND_AUTO)
      return mem;
    /* auto without a device: plain memory, as the CPU backend takes */
  }
  if (posix_memalign (&mem, 64, bytes) != 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "cannot allocate %zu bytes of frame memory", bytes);
    return NULL;
  }
  return mem;
}

void
si_backend_frame_memory_free (void *mem)
{
  const SiBackendOps *ops;

  if (mem == NULL)
    return;
  ops = loaded_cuda_ops ();
  if (ops != NULL && ops->frame_memory_free != NULL &&
      ops->frame_memory_free (mem))
    return;
  free (mem);
}

gboolean
si_backend_lap (SiBackend *be, gint64 *t0, double *ms, GError **error)
{
  gint64 t;

  if (ms == NULL)
    return TRUE;
  if (!be->ops->sync (be, error))
    return FALSE;
  t = g_get_monotonic_time ();
  *ms = (t - *t0) / 1000.0;
  *t0 = t;
  return TRUE;
}
