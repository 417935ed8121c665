/* linked_cuda.c: for programs that link the CUDA backend's code into
 * themselves instead of loading its module (the CUDA parity tests call
 * its ops directly): hands that copy's table to the engine before main()
 * so the engine and the program share one copy of the backend.
 */
#include "si-config.h"

#include "backend.h"

__attribute__ ((constructor)) static void
si_cuda_use_linked_copy (void)
{
  si_backend_use_linked_cuda (&si_cuda_backend_ops);
}
