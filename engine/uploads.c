/* uploads.c: weights as backend pointers (see uploads.h): used in place
 * on the CPU, uploaded elsewhere into memory freed with the SiUploads.
 */
#include "uploads.h"

#include <string.h>

void
si_uploads_init (SiUploads *u, SiBackend *be)
{
  *u = (SiUploads){ .be = be, .owned = g_ptr_array_new () };
}

void
si_uploads_clear (SiUploads *u)
{
  if (u->owned == NULL)
    return;
  for (guint i = 0; i < u->owned->len; i++)
    u->be->ops->free (u->be, g_ptr_array_index (u->owned, i));
  g_ptr_array_unref (u->owned);
  u->owned = NULL;
}

static gboolean
in_place (const SiUploads *u)
{
  return u->be->kind == SI_BACKEND_CPU;
}

float *
si_uploads_alloc (SiUploads *u, size_t count, GError **error)
{
  float *p = u->be->ops->alloc (u->be, count * sizeof (float), error);
  if (p != NULL)
    g_ptr_array_add (u->owned, p);
  return p;
}

gboolean
si_uploads_weight (SiUploads *u, const float **w, size_t count, GError **error)
{
  float *p;

  if (*w == NULL)
    return TRUE;
  if (in_place (u)) {
    if (u->note_host != NULL)
      u->note_host (u->user_data, *w, count * sizeof (float));
    return TRUE;
  }
  if (!(p = si_uploads_alloc (u, count, error)) ||
      !u->be->ops->upload (u->be, p, *w, count * sizeof (float), error))
    return FALSE;
  *w = p;
  return TRUE;
}

gboolean
si_uploads_linear (SiUploads *u, SiLinear *l, GError **error)
{
  return si_uploads_weight (u, &l->w, (size_t) l->out * l->in, error) &&
      si_uploads_weight (u, &l->b, l->out, error);
}

gboolean
si_uploads_norm (SiUploads *u, SiNorm *n, GError **error)
{
  return si_uploads_weight (u, &n->gamma, n->n, error) &&
      si_uploads_weight (u, &n->beta, n->n, error);
}

gboolean
si_uploads_linears_stacked (
    SiUploads *u, SiLinear *const *lins, int n, SiLinear *stack, GError **error)
{
  size_t rows = 0, row = 0;
  int in = 0;
  float *w, *b;

  memset (stack, 0, sizeof (*stack));
  for (int i = 0; i < n && !in_place (u); i++) {
    if (lins[i]->out == 0)
      continue;
    if (lins[i]->b == NULL || (in != 0 && lins[i]->in != in)) {
      rows = 0;
      break;
    }
    in = lins[i]->in;
    rows += lins[i]->out;
  }
  if (rows == 0) {
    for (int i = 0; i < n; i++)
      if (!si_uploads_linear (u, lins[i], error))
        return FALSE;
    return TRUE;
  }
  if (!(w = si_uploads_alloc (u, rows * in, error)) ||
      !(b = si_uploads_alloc (u, rows, error)))
    return FALSE;
  for (int i = 0; i < n; i++) {
    SiLinear *l = lins[i];
    size_t out = l->out;
    if (out == 0)
      continue;
    if (!u->be->ops->upload (
            u->be, w + row * in, l->w, out * in * sizeof (float), error) ||
        !u->be->ops->upload (u->be, b + row, l->b, out * sizeof (float), error))
      return FALSE;
    l->w = w + row * in;
    l->b = b + row;
    row += out;
  }
  *stack = (SiLinear){ .w = w, .b = b, .out = (int) rows, .in = in };
  return TRUE;
}
