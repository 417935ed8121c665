/* module_cuda.c: the entry point of the CUDA backend's shared module
 * (libsi-engine-cuda.so, loaded by engine/backend.c): checks that the
 * loading engine was built from the same sources and hands over the op
 * table.  The module carries its own copy of the few engine helpers the
 * backend calls, hidden, so it needs nothing from the process.
 */
#include "si-config.h"

#include "backend_cuda.h"

#include <stdio.h>

GQuark
si_error_quark (void)
{
  return g_quark_from_static_string (SI_ERROR_QUARK_NAME);
}

__attribute__ ((visibility ("default"))) const SiBackendOps *
si_cuda_module_ops (
    const SiCudaModuleAbi *engine_abi, char *why, size_t why_size)
{
  static const SiCudaModuleAbi abi = SI_CUDA_MODULE_ABI_INIT;

  if (engine_abi == NULL || g_strcmp0 (engine_abi->version, abi.version) ||
      engine_abi->ops_size != abi.ops_size ||
      engine_abi->backend_size != abi.backend_size ||
      engine_abi->model_size != abi.model_size ||
      engine_abi->stage_size != abi.stage_size) {
    snprintf (why, why_size,
        "module built for engine %s, loaded by engine %s (or their internal "
        "structures differ)",
        abi.version, engine_abi ? engine_abi->version : "(none)");
    return NULL;
  }
  return &si_cuda_backend_ops;
}
