/* profile_cuda.c: SI_CUDA_PROFILE=1 in the environment at a context's
 * creation: the stream time of each op, by name (GEMMs by name and shape),
 * printed to stderr when the context is destroyed (the 60 largest).  An
 * event is recorded on the stream after every op launched outside a
 * capture; at each wait the time from one event to the next is the later
 * op's.  A replayed graph is one op, "graph #N" (numbered in the order
 * recorded: backbone, neck, decoder); a size's first frame runs op by op
 * beside them, so SI_CUDA_GRAPHS=0 gives the table of one frame's ops.
 * Small ops also count the time in which the device waited for the host
 * to launch them: what CUDA graphs remove.  Without the variable nothing
 * here runs.
 */
#include "backend_cuda.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* events in one wait's window; a frame of R-50 has ~300 ops */
#define SI_CUDA_PROFILE_EVENTS 4096
#define SI_CUDA_PROFILE_ROWS 60

typedef struct
{
  const char *name; /* interned */
  long calls;
  double ms;
} SiProfileOp;

struct _SiCudaProfile
{
  cudaEvent_t events[SI_CUDA_PROFILE_EVENTS];
  const char *names[SI_CUDA_PROFILE_EVENTS]; /* interned; [0]: the anchor */
  int created;                               /* events[0 .. created) exist */
  int used;     /* events[0 .. used) recorded since the last wait */
  long dropped; /* ops past SI_CUDA_PROFILE_EVENTS in one window */
  long frames;
  GHashTable *ops; /* name -> SiProfileOp */
};

SiCudaProfile *
si_cuda_profile_new (void)
{
  SiCudaProfile *p;

  if (g_strcmp0 (g_getenv ("SI_CUDA_PROFILE"), "1") != 0)
    return NULL;
  p = g_new0 (SiCudaProfile, 1);
  p->ops = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  return p;
}

/* Records the next event of the window; FALSE when it cannot. */
static gboolean
record (SiCudaBackend *cu, const char *name)
{
  SiCudaProfile *p = cu->profile;

  if (p->used == SI_CUDA_PROFILE_EVENTS) {
    p->dropped++;
    return FALSE;
  }
  if (p->used == p->created) {
    if (cudaEventCreateWithFlags (&p->events[p->created], cudaEventDefault) !=
        cudaSuccess) {
      cudaGetLastError (); /* a profile's failure is not the frame's */
      return FALSE;
    }
    p->created++;
  }
  if (cudaEventRecord (p->events[p->used], cu->stream) != cudaSuccess) {
    cudaGetLastError ();
    return FALSE;
  }
  p->names[p->used++] = name;
  return TRUE;
}

void
si_cuda_profile_begin_frame (SiCudaBackend *cu)
{
  if (cu->profile == NULL || cu->capturing)
    return;
  cu->profile->frames++;
  if (cu->profile->used == 0)
    record (cu, NULL);
}

void
si_cuda_profile_mark (SiBackend *be, const char *fmt, ...)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  va_list ap;
  char *name;

  if (cu->profile == NULL || cu->capturing)
    return;
  /* the first op after a wait has no start: an anchor is recorded now,
   * and that op is not counted (frames start with their upload, which
   * begin_frame anchors) */
  if (cu->profile->used == 0) {
    record (cu, NULL);
    return;
  }
  va_start (ap, fmt);
  name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  record (cu, g_intern_string (name));
  g_free (name);
}

void
si_cuda_profile_collect (SiCudaBackend *cu)
{
  SiCudaProfile *p = cu->profile;

  if (p == NULL)
    return;
  for (int i = 1; i < p->used; i++) {
    float ms = 0.0f;
    SiProfileOp *op;
    if (cudaEventElapsedTime (&ms, p->events[i - 1], p->events[i]) !=
        cudaSuccess) {
      cudaGetLastError ();
      continue;
    }
    op = g_hash_table_lookup (p->ops, p->names[i]);
    if (op == NULL) {
      op = g_new0 (SiProfileOp, 1);
      op->name = p->names[i];
      g_hash_table_insert (p->ops, (gpointer) op->name, op);
    }
    op->calls++;
    op->ms += ms;
  }
  p->used = 0;
}

static int
by_time_desc (const void *a, const void *b)
{
  const SiProfileOp *x = *(SiProfileOp *const *) a,
                    *y = *(SiProfileOp *const *) b;
  if (x->ms != y->ms)
    return x->ms > y->ms ? -1 : 1;
  return strcmp (x->name, y->name);
}

void
si_cuda_profile_free (SiCudaBackend *cu)
{
  SiCudaProfile *p = cu->profile;
  GPtrArray *rows;
  double total = 0.0, per = 1.0;
  long calls = 0;
  GHashTableIter it;
  gpointer value;

  if (p == NULL)
    return;
  if (g_hash_table_size (p->ops) == 0)
    goto out;
  rows = g_ptr_array_new ();
  g_hash_table_iter_init (&it, p->ops);
  while (g_hash_table_iter_next (&it, NULL, &value)) {
    g_ptr_array_add (rows, value);
    total += ((SiProfileOp *) value)->ms;
    calls += ((SiProfileOp *) value)->calls;
  }
  qsort (rows->pdata, rows->len, sizeof (gpointer), by_time_desc);
  /* frames: ms per frame; ops run without a frame (tests): totals */
  if (p->frames > 0)
    per = 1.0 / p->frames;
  /* the op count a frame is its launches (kernels and library calls):
   * what a batch-1 frame pays for besides its arithmetic */
  fprintf (stderr,
      "cuda profile: %s, %s, %ld frames, %.3f ms of stream time %s, %.0f "
      "ops (%ld ops not timed: window full)\n",
      cu->device_name, cu->precision == SI_PRECISION_FP16 ? "fp16" : "fp32",
      p->frames, total * per, p->frames ? "a frame" : "in all", calls * per,
      p->dropped);
  fprintf (stderr, "cuda profile: %10s %6s %9s %9s  %s\n",
      p->frames ? "ms/frame" : "ms", "share", "calls", "us/call", "op");
  for (guint i = 0; i < rows->len; i++) {
    const SiProfileOp *op = rows->pdata[i];
    if (i == SI_CUDA_PROFILE_ROWS) {
      double rest = 0.0;
      long rest_calls = 0;
      for (guint j = i; j < rows->len; j++) {
        rest += ((const SiProfileOp *) rows->pdata[j])->ms;
        rest_calls += ((const SiProfileOp *) rows->pdata[j])->calls;
      }
      fprintf (stderr, "cuda profile: %10.4f %5.1f%% %9ld %9s  (%u others)\n",
          rest * per, 100.0 * rest / MAX (total, 1e-30), rest_calls, "",
          rows->len - i);
      break;
    }
    fprintf (stderr, "cuda profile: %10.4f %5.1f%% %9ld %9.2f  %s\n",
        op->ms * per, 100.0 * op->ms / MAX (total, 1e-30), op->calls,
        1e3 * op->ms / op->calls, op->name);
  }
  g_ptr_array_free (rows, TRUE);
out:
  for (int i = 0; i < p->created; i++)
    cudaEventDestroy (p->events[i]);
  cudaGetLastError ();
  g_hash_table_destroy (p->ops);
  g_free (p);
  cu->profile = NULL;
}
