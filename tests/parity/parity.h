/* parity.h: the harness of the parity suite: a reference backend (the CPU
 * backend in its plain-loop reference mode) and a backend under test (the
 * CUDA backend) run the same op on the same inputs; outputs are compared
 * by normalized error against a per-op tolerance.  Without a CUDA device
 * the tests print "skipped: no CUDA device" and exit 77.  With
 * SI_PARITY_TWIN=cpu the backend under test is the CPU backend's fast path
 * (oneDNN, BLAS): a self-check of the harness that runs everywhere.
 */
#ifndef SI_PARITY_H
#define SI_PARITY_H

#include "backend.h"

#include <stdbool.h>
#include <stddef.h>

#define SI_SKIP 77

typedef struct
{
  SiBackend *be[2]; /* 0: reference (CPU), 1: under test */
  const char *name[2];
  int failures;
  int checks;
} SiParity;

/* One buffer on both backends. */
typedef struct
{
  void *p[2];
  size_t bytes;
} SiTwin;

/* Creates both backends (precision for the one under test); exits 77 when
 * there is no CUDA device or no CUDA backend, exits 1 on other errors. */
void si_parity_init (SiParity *pt, SiPrecision precision);
/* Prints the summary; returns the process exit status. */
int si_parity_finish (SiParity *pt);

/* Allocates bytes on both backends, uploads host (zeros when NULL). */
SiTwin si_twin_new (SiParity *pt, const void *host, size_t bytes);
void si_twin_free (SiParity *pt, SiTwin *t);
#define TF(t, i) ((float *) (t).p[i])
#define TB(t, i) ((uint8_t *) (t).p[i])
#define TI(t, i) ((int32_t *) (t).p[i])

/* Downloads both copies of a float twin and checks
 * nmse = sum (a - r)^2 / sum r^2 <= tol (and no NaN where the reference
 * has none); prints one line with how close it came. */
bool si_parity_check (
    SiParity *pt, const char *what, SiTwin *t, size_t n, double tol);
/* Exact comparison of bytes (uint8 images, int indices). */
bool si_parity_check_exact (SiParity *pt, const char *what, SiTwin *t);
/* Syncs both backends; a backend error fails the check. */
bool si_parity_sync (SiParity *pt, const char *what);
/* Records a failure with a message. */
void si_parity_fail (SiParity *pt, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

/* Random floats in [lo, hi) from a fixed-seed generator. */
float *si_parity_random (GRand *r, size_t n, float lo, float hi);

#endif /* SI_PARITY_H */
