/* test-engine-header.c: the public header compiles on its own (first and
 * only include, strict C99 and C++-compatible flags from meson) and its
 * basic calls link against the static library (suite unit).
 */
#include "si-engine.h"

int
main (void)
{
  SiContextOptions o;
  SiRunParams p;
  si_context_options_init (&o);
  si_run_params_init (&p);
  if (si_engine_version () == NULL || si_engine_backends () == NULL)
    return 1;
  if (o.backend != SI_BACKEND_AUTO || p.threshold <= 0.0f)
    return 1;
  return SI_ERROR != 0 ? 0 : 1;
}
