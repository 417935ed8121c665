/* uploads.h: weights as backend pointers for the modules that run on the
 * backend table (the decoder, the Swin backbone): on the CPU the host
 * memory itself (weights stay in the model's mapping, model-spec 10),
 * elsewhere a copy uploaded into backend memory that the module owns
 * and frees with si_uploads_clear.  Internal to engine/.
 */
#ifndef SI_UPLOADS_H
#define SI_UPLOADS_H

#include "backend.h"
#include "model.h"

typedef struct
{
  SiBackend *be;
  GPtrArray *owned; /* backend allocations, freed by si_uploads_clear */
  /* optional: told of each host range used in place (CPU backend) */
  void (*note_host) (gpointer user_data, const void *p, size_t bytes);
  gpointer user_data;
} SiUploads;

void si_uploads_init (SiUploads *u, SiBackend *be);
/* Frees every allocation; u may be zeroed (never initialised). */
void si_uploads_clear (SiUploads *u);

/* Backend memory of count floats, freed with u. */
float *si_uploads_alloc (SiUploads *u, size_t count, GError **error);

/* *w (count floats, NULL: nothing) becomes a backend pointer. */
gboolean si_uploads_weight (
    SiUploads *u, const float **w, size_t count, GError **error);
gboolean si_uploads_linear (SiUploads *u, SiLinear *l, GError **error);
/* The n Linears lins (those with out 0 skipped) as backend pointers.
 * Where weights are uploaded and all of them have a bias and one input
 * width, back to back: their weights, then their biases, in one
 * allocation each, described by *stack (out the sum of theirs), so that
 * one GEMM makes all their columns; each Linear's own pointers then point
 * into the stack.  Else one by one, *stack zeroed (w NULL). */
gboolean si_uploads_linears_stacked (SiUploads *u, SiLinear *const *lins, int n,
    SiLinear *stack, GError **error);
gboolean si_uploads_norm (SiUploads *u, SiNorm *n, GError **error);

#endif /* SI_UPLOADS_H */
