/* bench-cuda.c: times the CUDA engine, frame in (host RGB 1333x800) to
 * detections out, for R-50 with 100 and 300 queries, fp32 and fp16:
 * ms per part (SiTimings, with part_timings: the engine waits for the
 * stream between parts) and frames per second at batch 1, then batch 1
 * without part timings (the parts back to back on the stream, as the
 * element runs them), then the aggregate frames per second of several
 * streams (one context and one thread per stream, frames in flight
 * concurrently, no part timings).  Batch-1 lines also give the host CPU
 * time per frame (all threads): the engine's waits sleep on a blocking
 * event, SI_CUDA_SPIN_WAIT=1 makes them spin.  Full-size models get
 * RANDOM weights from make-random-model.py (like bench-engine).  Without a CUDA device it
 * prints "skipped: no CUDA device" and exits 77.  Not part of meson test.
 *
 * With --frame-memory the frames lie in frame memory (si_frame_memory_alloc:
 * pinned, what stageinteractor's pool gives upstream), which the engine
 * uploads from without its host copy into the staging.
 *
 * usage: bench-cuda [--runs N] [--streams S] [--only r50-100q|r50-300q]
 *        [--precision fp32|fp16] [--model FILE] [--golden DIR]
 *        [--frame-memory]
 */
#include "si-config.h"

#include "si-engine.h"

#include <cuda_runtime.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int opt_runs = 50;
static int opt_streams = 4;
static char *opt_only = NULL;
static char *opt_precision = NULL;
static char *opt_model = NULL;
static char *opt_golden = NULL;
static gboolean opt_frame_memory = FALSE;

static GOptionEntry entries[] = {
  { "runs", 0, 0, G_OPTION_ARG_INT, &opt_runs, "timed frames per case", "N" },
  { "streams", 0, 0, G_OPTION_ARG_INT, &opt_streams,
      "concurrent streams for the multi-stream case", "S" },
  { "only", 0, 0, G_OPTION_ARG_STRING, &opt_only, "r50-100q or r50-300q",
      "NAME" },
  { "precision", 0, 0, G_OPTION_ARG_STRING, &opt_precision, "fp32 or fp16",
      "P" },
  { "model", 0, 0, G_OPTION_ARG_FILENAME, &opt_model,
      "bench this model file instead", "FILE" },
  { "golden", 0, 0, G_OPTION_ARG_FILENAME, &opt_golden,
      "golden tiny case directory (metadata for the random models)", "DIR" },
  { "frame-memory", 0, 0, G_OPTION_ARG_NONE, &opt_frame_memory,
      "frames in frame memory (pinned) instead of plain host memory", NULL },
  { NULL },
};

#define W 1333
#define H 800

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

static double
median (double *v, int n)
{
  qsort (v, n, sizeof (double), cmp_double);
  return n ? v[n / 2] : 0.0;
}

static uint8_t *
synthetic_frame (void)
{
  GError *error = NULL;
  uint8_t *p = opt_frame_memory
      ? si_frame_memory_alloc (SI_BACKEND_CUDA, (size_t) W * H * 3, &error)
      : g_malloc ((size_t) W * H * 3);

  if (p == NULL) {
    fprintf (stderr, "no frame memory: %s\n", error->message);
    g_error_free (error);
    return NULL;
  }
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      uint8_t *o = &p[((size_t) y * W + x) * 3];
      o[0] = (uint8_t) (x * 255 / (W - 1));
      o[1] = (uint8_t) (y * 255 / (H - 1));
      o[2] = (uint8_t) ((x + y) * 3);
    }
  return p;
}

static SiContext *
make_context (SiModel *model, SiPrecision precision, gboolean part_timings)
{
  SiContextOptions o;
  GError *error = NULL;
  SiContext *ctx;

  si_context_options_init (&o);
  o.backend = SI_BACKEND_CUDA;
  o.precision = precision;
  o.max_width = W;
  o.max_height = H;
  o.part_timings = part_timings;
  ctx = si_context_new (model, &o, &error);
  if (ctx == NULL) {
    fprintf (stderr, "cannot create a CUDA context: %s\n", error->message);
    g_error_free (error);
  }
  return ctx;
}

static SiFrame
frame_of (const uint8_t *rgb)
{
  SiFrame f;
  memset (&f, 0, sizeof (f));
  f.format = SI_FORMAT_RGB;
  f.width = W;
  f.height = H;
  f.planes[0] = rgb;
  f.strides[0] = (size_t) W * 3;
  return f;
}

/* The process's CPU time (every thread), ms. */
static double
cpu_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* Batch 1: median ms per part (with part timings; else the wall time
 * alone, frame in to detections out) and frames per second. */
static gboolean
bench_single (SiModel *model, SiPrecision precision, const uint8_t *rgb,
    const char *label, gboolean part_timings)
{
  SiContext *ctx = make_context (model, precision, part_timings);
  SiFrame f = frame_of (rgb);
  SiRunParams params;
  GError *error = NULL;
  enum
  {
    PRE,
    BB,
    NECK,
    DEC,
    POST,
    TOT,
    WALL,
    N
  };
  static const char *names[N] = { "preprocess", "backbone", "neck", "decoder",
    "postprocess", "total", "wall" };
  double *t[N];
  double cpu0 = 0.0, cpu;
  gboolean graph = FALSE;

  if (ctx == NULL)
    return FALSE;
  si_run_params_init (&params);
  for (int i = 0; i < N; i++)
    t[i] = g_new0 (double, opt_runs);
  for (int r = -3; r < opt_runs; r++) {
    SiTimings tm;
    gint64 t0;
    if (r == 0)
      cpu0 = cpu_ms ();
    t0 = g_get_monotonic_time ();
    if (!si_context_run (ctx, &f, &params, &error)) {
      fprintf (stderr, "%s: run failed: %s\n", label, error->message);
      g_error_free (error);
      si_context_free (&ctx);
      return FALSE;
    }
    if (r < 0)
      continue; /* warm-up */
    si_context_get_timings (ctx, &tm);
    t[WALL][r] = (g_get_monotonic_time () - t0) / 1000.0;
    t[PRE][r] = tm.preprocess;
    t[BB][r] = tm.backbone;
    t[NECK][r] = tm.neck;
    /* A replayed decoder graph reports itself as query_init with no
     * stages (SiTimings), so the decoder is timed as one part.  With
     * graphs on, the backbone and the neck are replays too (a failed
     * recording would have printed a warning). */
    graph = tm.num_stages == 0;
    t[DEC][r] = tm.query_init;
    for (int s = 0; s < tm.num_stages; s++)
      t[DEC][r] += tm.stage[s];
    t[POST][r] = tm.postprocess;
    t[TOT][r] = tm.total;
  }
  /* host CPU per frame: the waits spin a core unless they sleep
   * (SI_CUDA_SPIN_WAIT=1 makes them spin) */
  cpu = (cpu_ms () - cpu0) / MAX (opt_runs, 1);
  printf ("%-28s batch 1  ", label);
  if (part_timings)
    for (int i = 0; i < N; i++)
      printf (" %s %.3f", names[i], median (t[i], opt_runs));
  else
    printf (" no part timings: wall %.3f", median (t[WALL], opt_runs));
  printf (" ms, host cpu %.3f ms  -> %.1f frames/s%s\n", cpu,
      1000.0 / median (t[WALL], opt_runs),
      graph && part_timings
          ? "  (CUDA graphs: backbone, neck, decoder replayed)"
          : "");
  for (int i = 0; i < N; i++)
    g_free (t[i]);
  si_context_free (&ctx);
  return TRUE;
}

typedef struct
{
  SiContext *ctx;
  const uint8_t *rgb;
  int frames;
  gboolean ok;
} StreamJob;

static gpointer
stream_thread (gpointer data)
{
  StreamJob *j = data;
  SiFrame f = frame_of (j->rgb);
  SiRunParams params;
  GError *error = NULL;

  si_run_params_init (&params);
  j->ok = TRUE;
  for (int r = 0; r < j->frames; r++)
    if (!si_context_run (j->ctx, &f, &params, &error)) {
      fprintf (stderr, "stream run failed: %s\n", error->message);
      g_clear_error (&error);
      j->ok = FALSE;
      break;
    }
  return NULL;
}

/* S streams, one context and thread each: aggregate frames per second. */
static gboolean
bench_streams (SiModel *model, SiPrecision precision, const uint8_t *rgb,
    const char *label)
{
  int s = MAX (opt_streams, 1);
  StreamJob *jobs = g_new0 (StreamJob, s);
  GThread **th = g_new0 (GThread *, s);
  gboolean ok = TRUE;
  gint64 t0;
  double wall;

  for (int i = 0; i < s; i++) {
    jobs[i].ctx = make_context (model, precision, FALSE);
    jobs[i].rgb = rgb;
    jobs[i].frames = 2; /* warm-up */
    if (jobs[i].ctx == NULL)
      ok = FALSE;
  }
  for (int pass = 0; ok && pass < 2; pass++) {
    t0 = g_get_monotonic_time ();
    for (int i = 0; i < s; i++) {
      jobs[i].frames = pass ? opt_runs : 2;
      th[i] = g_thread_new ("stream", stream_thread, &jobs[i]);
    }
    for (int i = 0; i < s; i++) {
      g_thread_join (th[i]);
      ok = ok && jobs[i].ok;
    }
    wall = (g_get_monotonic_time () - t0) / 1e6;
    if (pass && ok)
      printf ("%-28s %d streams: %d frames in %.3f s -> %.1f frames/s "
              "aggregate\n",
          label, s, s * opt_runs, wall, s * opt_runs / wall);
  }
  for (int i = 0; i < s; i++)
    si_context_free (&jobs[i].ctx);
  g_free (jobs);
  g_free (th);
  return ok;
}

/* Writes a random full-size model with make-random-model.py. */
static char *
make_model (const char *dir, int queries)
{
  char *out = g_strdup_printf ("%s/r50-%dq.safetensors", dir, queries);
  char *script = g_build_filename (SI_BENCH_DIR, "make-random-model.py", NULL);
  char *q = g_strdup_printf ("%d", queries);
  const char *argv[] = { "/usr/bin/python3", script, "--out", out, "--queries",
    q, "--golden", opt_golden ? opt_golden : SI_GOLDEN_TINY, NULL };
  GError *error = NULL;
  int status = 0;

  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
          NULL, NULL, &status, &error) ||
      !g_spawn_check_wait_status (status, &error)) {
    fprintf (stderr, "make-random-model.py failed: %s\n", error->message);
    g_error_free (error);
    g_free (out);
    out = NULL;
  }
  g_free (script);
  g_free (q);
  return out;
}

int
main (int argc, char **argv)
{
  GOptionContext *oc = g_option_context_new ("- CUDA engine benchmark");
  GError *error = NULL;
  struct cudaDeviceProp prop;
  const char *names[2] = { "r50-100q", "r50-300q" };
  int queries[2] = { 100, 300 };
  char *tmp = NULL;
  uint8_t *rgb;
  int status = 0;

  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &error)) {
    fprintf (stderr, "%s\n", error->message);
    return 2;
  }
  g_option_context_free (oc);
  if (!si_backend_available (SI_BACKEND_CUDA, &error)) {
    printf ("skipped: no CUDA device (%s)\n", error->message);
    return 77;
  }
  if (cudaGetDeviceProperties (&prop, 0) == cudaSuccess)
    printf ("device: %s (sm_%d%d, %.1f GiB)\n", prop.name, prop.major,
        prop.minor, prop.totalGlobalMem / 1073741824.0);
  printf ("frame %dx%d RGB %s -> detections; %d timed runs (median)\n", W, H,
      opt_frame_memory ? "frame memory (pinned)" : "host memory", opt_runs);
  if ((rgb = synthetic_frame ()) == NULL)
    return 1;
  if (!opt_model)
    tmp = g_dir_make_tmp ("bench-cuda-XXXXXX", NULL);

  for (int m = 0; m < 2; m++) {
    char *path;
    SiModel *model;
    if (opt_model && m > 0)
      break;
    if (!opt_model && opt_only && g_strcmp0 (opt_only, names[m]) != 0)
      continue;
    path = opt_model ? g_strdup (opt_model) : make_model (tmp, queries[m]);
    if (path == NULL || !(model = si_model_load (path, &error))) {
      fprintf (stderr, "cannot load the model: %s\n",
          error ? error->message : "not written");
      g_clear_error (&error);
      g_free (path);
      status = 1;
      continue;
    }
    for (int p = 0; p < 2; p++) {
      SiPrecision prec = p ? SI_PRECISION_FP16 : SI_PRECISION_FP32;
      char label[64];
      if (opt_precision && g_strcmp0 (opt_precision, p ? "fp16" : "fp32"))
        continue;
      snprintf (label, sizeof (label), "%s %s", opt_model ? "model" : names[m],
          p ? "fp16" : "fp32");
      if (!bench_single (model, prec, rgb, label, TRUE) ||
          !bench_single (model, prec, rgb, label, FALSE) ||
          !bench_streams (model, prec, rgb, label))
        status = 1;
    }
    si_model_unref (model);
    if (!opt_model)
      g_unlink (path);
    g_free (path);
  }
  if (tmp) {
    g_rmdir (tmp);
    g_free (tmp);
  }
  if (opt_frame_memory)
    si_frame_memory_free (rgb);
  else
    g_free (rgb);
  return status;
}
