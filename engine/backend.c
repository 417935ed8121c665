/* backend.c: creation and destruction of a backend from its op table
 * (backend.h).  The backends themselves live in engine/cpu/ and
 * engine/cuda/.
 */
#include "si-config.h"

#include "backend.h"

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
#ifdef SI_HAVE_CUDA
      ops = &si_cuda_backend_ops;
#endif
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
