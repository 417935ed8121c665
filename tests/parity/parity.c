/* parity.c: the parity harness (parity.h): backend pair creation with the
 * skip rule, twin buffers, normalized-error comparison and reporting.
 */
#include "si-config.h"

#include "parity.h"

#include "cpu/backend_cpu.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
skip (const char *why)
{
  printf ("skipped: no CUDA device (%s)\n", why);
  fflush (stdout);
  exit (SI_SKIP);
}

void
si_parity_init (SiParity *pt, SiPrecision precision)
{
  SiContextOptions o;
  GError *error = NULL;
  const char *twin = g_getenv ("SI_PARITY_TWIN");
  bool cpu_twin = twin != NULL && g_strcmp0 (twin, "cpu") == 0;

  memset (pt, 0, sizeof (*pt));
  si_context_options_init (&o);
  o.max_width = 1024;
  o.max_height = 1024;
  o.precision = precision;

#ifndef SI_HAVE_CUDA
  if (!cpu_twin)
    skip ("the CUDA backend is not built");
#endif
  if (!cpu_twin) {
    pt->be[1] = si_backend_new (SI_BACKEND_CUDA, &o, &error);
    if (pt->be[1] == NULL) {
      if (g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE))
        skip (error->message);
      fprintf (
          stderr, "FAIL: cannot create the CUDA backend: %s\n", error->message);
      exit (1);
    }
    pt->name[1] = "cuda";
  } else {
    pt->be[1] = si_backend_new (SI_BACKEND_CPU, &o, &error);
    if (pt->be[1] == NULL) {
      fprintf (stderr, "FAIL: CPU backend: %s\n", error->message);
      exit (1);
    }
    si_cpu_backend_set_reference (pt->be[1], false);
    pt->name[1] = "cpu-fast";
  }
  pt->be[0] = si_backend_new (SI_BACKEND_CPU, &o, &error);
  if (pt->be[0] == NULL) {
    fprintf (stderr, "FAIL: CPU backend: %s\n", error->message);
    exit (1);
  }
  si_cpu_backend_set_reference (pt->be[0], true);
  pt->name[0] = "cpu-ref";
  printf ("parity: %s against %s%s\n", pt->name[1], pt->name[0],
      precision == SI_PRECISION_FP16 ? " (fp16)" : "");
}

int
si_parity_finish (SiParity *pt)
{
  si_backend_free (&pt->be[1]);
  si_backend_free (&pt->be[0]);
  printf ("%d checks, %d failed\n", pt->checks, pt->failures);
  return pt->failures ? 1 : 0;
}

SiTwin
si_twin_new (SiParity *pt, const void *host, size_t bytes)
{
  SiTwin t = { { NULL, NULL }, bytes };
  GError *error = NULL;
  void *zeros = host ? NULL : g_malloc0 (MAX (bytes, 1));

  for (int i = 0; i < 2; i++) {
    SiBackend *be = pt->be[i];
    t.p[i] = be->ops->alloc (be, bytes, &error);
    if (t.p[i] == NULL ||
        !be->ops->upload (be, t.p[i], host ? host : zeros, bytes, &error)) {
      fprintf (stderr, "FAIL: %s: cannot allocate / upload %zu bytes: %s\n",
          pt->name[i], bytes, error ? error->message : "?");
      exit (1);
    }
  }
  g_free (zeros);
  return t;
}

void
si_twin_free (SiParity *pt, SiTwin *t)
{
  for (int i = 0; i < 2; i++) {
    if (t->p[i])
      pt->be[i]->ops->free (pt->be[i], t->p[i]);
    t->p[i] = NULL;
  }
}

void
si_parity_fail (SiParity *pt, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  printf ("FAIL: ");
  vprintf (fmt, ap);
  printf ("\n");
  va_end (ap);
  pt->failures++;
}

bool
si_parity_sync (SiParity *pt, const char *what)
{
  bool ok = true;

  for (int i = 0; i < 2; i++) {
    GError *error = NULL;
    if (!pt->be[i]->ops->sync (pt->be[i], &error)) {
      si_parity_fail (
          pt, "%s: %s backend error: %s", what, pt->name[i], error->message);
      g_error_free (error);
      ok = false;
    }
  }
  return ok;
}

static bool
download_both (SiParity *pt, const char *what, SiTwin *t, void *h[2])
{
  for (int i = 0; i < 2; i++) {
    GError *error = NULL;
    h[i] = g_malloc (MAX (t->bytes, 1));
    if (!pt->be[i]->ops->download (
            pt->be[i], h[i], t->p[i], t->bytes, &error)) {
      si_parity_fail (
          pt, "%s: %s download: %s", what, pt->name[i], error->message);
      g_error_free (error);
      g_free (h[0]);
      g_free (h[1]);
      h[0] = h[1] = NULL;
      return false;
    }
  }
  return true;
}

bool
si_parity_check (
    SiParity *pt, const char *what, SiTwin *t, size_t n, double tol)
{
  void *h[2] = { NULL, NULL };
  const float *r, *a;
  double num = 0.0, den = 0.0, maxd = 0.0, nmse;
  size_t bad_nan = 0;
  bool ok;

  pt->checks++;
  if (!download_both (pt, what, t, h))
    return false;
  r = h[0];
  a = h[1];
  for (size_t i = 0; i < n; i++) {
    double d;
    if (isnan (a[i]) != isnan (r[i]) || isinf (a[i]) != isinf (r[i])) {
      bad_nan++;
      continue;
    }
    if (!isfinite (r[i]))
      continue;
    d = (double) a[i] - r[i];
    num += d * d;
    den += (double) r[i] * r[i];
    maxd = MAX (maxd, fabs (d));
  }
  nmse = den > 0.0 ? num / den : num;
  ok = bad_nan == 0 && nmse <= tol;
  printf ("%s %-40s nmse %.3e (tol %.0e, %5.1f%% of it) max|d| %.3e\n",
      ok ? "ok  " : "FAIL", what, nmse, tol, tol > 0 ? 100.0 * nmse / tol : 0,
      maxd);
  if (bad_nan)
    printf ("     %zu values non-finite on one side only\n", bad_nan);
  if (!ok)
    pt->failures++;
  g_free (h[0]);
  g_free (h[1]);
  return ok;
}

bool
si_parity_check_exact (SiParity *pt, const char *what, SiTwin *t)
{
  void *h[2] = { NULL, NULL };
  size_t diff = 0, first = 0;
  bool ok;

  pt->checks++;
  if (!download_both (pt, what, t, h))
    return false;
  for (size_t i = 0; i < t->bytes; i++)
    if (((uint8_t *) h[0])[i] != ((uint8_t *) h[1])[i]) {
      if (diff++ == 0)
        first = i;
    }
  ok = diff == 0;
  printf ("%s %-40s %zu of %zu bytes differ", ok ? "ok  " : "FAIL", what, diff,
      t->bytes);
  if (diff)
    printf (" (first at byte %zu: %u vs %u)", first, ((uint8_t *) h[0])[first],
        ((uint8_t *) h[1])[first]);
  printf ("\n");
  if (!ok)
    pt->failures++;
  g_free (h[0]);
  g_free (h[1]);
  return ok;
}

float *
si_parity_random (GRand *r, size_t n, float lo, float hi)
{
  float *p = g_new (float, MAX (n, 1));
  for (size_t i = 0; i < n; i++)
    p[i] = (float) g_rand_double_range (r, lo, hi);
  return p;
}
