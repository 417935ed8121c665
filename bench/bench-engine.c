/* bench-engine.c: times the whole engine per part (SiTimings: preprocess,
 * backbone, neck, decoder = query init + stages, post-processing, total;
 * min and median over the runs after one warm-up) and the peak RSS, for
 * the golden tiny model and full-size R-50 models with 100 and 300 queries
 * on an 800x1333 frame.  The full-size models get RANDOM weights written at
 * bench time by make-random-model.py into a temporary directory and
 * deleted afterwards.  Each model runs in a child process so that its
 * peak RSS (getrusage) is its own.  Not part of `meson test`.
 *
 * usage: bench-engine [--runs N] [--threads T] [--only tiny|r50-100q|r50-300q]
 *        [--golden DIR] [--model FILE --width W --height H]  (child mode)
 */
#include "si-engine.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

enum
{
  P_PRE,
  P_BACKBONE,
  P_NECK,
  P_DECODER,
  P_POST,
  P_TOTAL,
  N_PARTS
};
static const char *part_names[N_PARTS] = { "preprocess", "backbone", "neck",
  "decoder", "postprocess", "total" };

static int opt_runs = 5;
static int opt_threads = 0;
static char *opt_only = NULL;
static char *opt_golden = NULL;
static char *opt_model = NULL;
static int opt_width = 1333, opt_height = 800;
static gboolean opt_keep_weights;

static GOptionEntry entries[] = {
  { "runs", 0, 0, G_OPTION_ARG_INT, &opt_runs, "timed runs per model", "N" },
  { "threads", 0, 0, G_OPTION_ARG_INT, &opt_threads, "CPU threads (0: all)",
      "T" },
  { "only", 0, 0, G_OPTION_ARG_STRING, &opt_only, "tiny, r50-100q or r50-300q",
      "NAME" },
  { "golden", 0, 0, G_OPTION_ARG_FILENAME, &opt_golden,
      "golden tiny case directory", "DIR" },
  { "model", 0, 0, G_OPTION_ARG_FILENAME, &opt_model,
      "child mode: bench this model file", "FILE" },
  { "width", 0, 0, G_OPTION_ARG_INT, &opt_width, "child: frame width", "W" },
  { "height", 0, 0, G_OPTION_ARG_INT, &opt_height, "child: frame height", "H" },
  { "keep-weights", 0, 0, G_OPTION_ARG_NONE, &opt_keep_weights,
      "keep the decoder's weight pages mapped between stages "
      "(release_weights FALSE)",
      NULL },
  { NULL },
};

static int
cmp_double (const void *a, const void *b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

/* Smooth gradients plus a little noise: an RGB frame (H, W, 3). */
static uint8_t *
synthetic_frame (int w, int h)
{
  uint8_t *p = g_malloc ((size_t) w * h * 3);
  GRand *r = g_rand_new_with_seed (1);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      uint8_t *o = &p[((size_t) y * w + x) * 3];
      o[0] =
          (uint8_t) ((x * 255 / MAX (w - 1, 1) + g_rand_int_range (r, 0, 9)) &
              255);
      o[1] =
          (uint8_t) ((y * 255 / MAX (h - 1, 1) + g_rand_int_range (r, 0, 9)) &
              255);
      o[2] = (uint8_t) (((x + y) * 3 + g_rand_int_range (r, 0, 9)) & 255);
    }
  g_rand_free (r);
  return p;
}

/* Current resident set (VmRSS) in MiB, -1 when unknown. */
static double
rss_now_mib (void)
{
  char *text = NULL;
  double mib = -1.0;
  if (g_file_get_contents ("/proc/self/status", &text, NULL, NULL)) {
    const char *p = strstr (text, "VmRSS:");
    long kb;
    if (p && sscanf (p + 6, "%ld", &kb) == 1)
      mib = kb / 1024.0;
  }
  g_free (text);
  return mib;
}

/* Child: load, warm up, time opt_runs frames, print "T part min median"
 * lines and "RSS kb". */
static int
run_child (void)
{
  GError *error = NULL;
  SiModel *model;
  SiContext *ctx;
  SiContextOptions opts;
  SiRunParams params;
  SiFrame frame = { 0 };
  uint8_t *pix = synthetic_frame (opt_width, opt_height);
  double *t[N_PARTS];
  struct rusage ru, ru0;

  model = si_model_load (opt_model, &error);
  if (model == NULL) {
    g_printerr ("load %s: %s\n", opt_model, error->message);
    return 1;
  }
  printf ("M after-load %.1f\n", rss_now_mib ());
  si_context_options_init (&opts);
  opts.backend = SI_BACKEND_CPU;
  opts.num_threads = opt_threads;
  opts.release_weights = !opt_keep_weights;
  opts.part_timings = TRUE;
  opts.max_width = MAX (opt_width, 64);
  opts.max_height = MAX (opt_height, 64);
  ctx = si_context_new (model, &opts, &error);
  if (ctx == NULL) {
    g_printerr ("context: %s\n", error->message);
    return 1;
  }
  printf ("M after-context %.1f\n", rss_now_mib ());
  si_run_params_init (&params);
  frame.format = SI_FORMAT_RGB;
  frame.width = opt_width;
  frame.height = opt_height;
  frame.planes[0] = pix;
  frame.strides[0] = (size_t) opt_width * 3;

  for (int p = 0; p < N_PARTS; p++)
    t[p] = g_new0 (double, opt_runs);
  for (int i = -1; i < opt_runs; i++) {
    if (i == 0) {
      getrusage (RUSAGE_SELF, &ru0);
      printf ("M after-first-frame %.1f\n", rss_now_mib ());
    }
    SiTimings tm;
    if (!si_context_run (ctx, &frame, &params, &error)) {
      g_printerr ("run: %s\n", error->message);
      return 1;
    }
    if (i < 0)
      continue; /* warm-up: oneDNN primitives are created here */
    si_context_get_timings (ctx, &tm);
    t[P_PRE][i] = tm.preprocess;
    t[P_BACKBONE][i] = tm.backbone;
    t[P_NECK][i] = tm.neck;
    t[P_DECODER][i] = tm.query_init;
    for (int s = 0; s < tm.num_stages; s++)
      t[P_DECODER][i] += tm.stage[s];
    t[P_POST][i] = tm.postprocess;
    t[P_TOTAL][i] = tm.total;
  }
  for (int p = 0; p < N_PARTS; p++) {
    qsort (t[p], opt_runs, sizeof (double), cmp_double);
    printf ("T %s %.3f %.3f\n", part_names[p], t[p][0], t[p][opt_runs / 2]);
    g_free (t[p]);
  }
  getrusage (RUSAGE_SELF, &ru);
  printf ("RSS %ld\n", ru.ru_maxrss);
  /* CPU time (user + system, all threads) per frame: with other load on
   * the machine, wall time / this shows how much of the cores we got */
  printf ("CPU %.3f\n",
      ((ru.ru_utime.tv_sec - ru0.ru_utime.tv_sec) * 1e3 +
          (ru.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e3 +
          (ru.ru_stime.tv_sec - ru0.ru_stime.tv_sec) * 1e3 +
          (ru.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e3) /
          opt_runs);
  si_context_free (&ctx);
  si_model_unref (model);
  g_free (pix);
  return 0;
}

typedef struct
{
  const char *name;
  int queries; /* 0: the golden tiny model */
  int width, height;
  gboolean ok;
  double min[N_PARTS], median[N_PARTS];
  long rss_kb;
  double cpu_ms;
  double rss_stage[3]; /* MiB after load, context, first frame */
} Config;

static gboolean
spawn_child (const char *self, const char *model, Config *c)
{
  GError *error = NULL;
  char *out = NULL, *err = NULL;
  int status = 0;
  char runs[16], threads[16], w[16], h[16];
  const char *argv[] = { self, "--model", model, "--runs", runs, "--threads",
    threads, "--width", w, "--height", h,
    opt_keep_weights ? "--keep-weights" : NULL, NULL };

  g_snprintf (runs, sizeof (runs), "%d", opt_runs);
  g_snprintf (threads, sizeof (threads), "%d", opt_threads);
  g_snprintf (w, sizeof (w), "%d", c->width);
  g_snprintf (h, sizeof (h), "%d", c->height);
  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
          &out, &err, &status, &error) ||
      !g_spawn_check_wait_status (status, &error)) {
    g_printerr ("%s: %s\n%s", c->name, error->message, err ? err : "");
    g_clear_error (&error);
    g_free (out);
    g_free (err);
    return FALSE;
  }
  {
    char **lines = g_strsplit (out, "\n", -1);
    for (char **l = lines; *l; l++) {
      char name[32];
      double mn, md;
      long kb;
      if (sscanf (*l, "T %31s %lf %lf", name, &mn, &md) == 3) {
        for (int p = 0; p < N_PARTS; p++)
          if (strcmp (name, part_names[p]) == 0) {
            c->min[p] = mn;
            c->median[p] = md;
          }
      } else if (sscanf (*l, "RSS %ld", &kb) == 1) {
        c->rss_kb = kb;
      } else if (sscanf (*l, "M %31s %lf", name, &mn) == 2) {
        int k = strcmp (name, "after-load") == 0  ? 0
            : strcmp (name, "after-context") == 0 ? 1
                                                  : 2;
        c->rss_stage[k] = mn;
      } else if (sscanf (*l, "CPU %lf", &mn) == 1) {
        c->cpu_ms = mn;
      }
    }
    g_strfreev (lines);
  }
  g_free (out);
  g_free (err);
  return TRUE;
}

static char *
make_model (const char *tmpdir, int queries)
{
  GError *error = NULL;
  char *path = g_strdup_printf ("%s/r50-%dq.safetensors", tmpdir, queries);
  char q[16], *golden = g_build_filename (opt_golden, "tiny", NULL);
  char *spec =
      g_build_filename (opt_golden, "..", "docs", "model-spec.md", NULL);
  int status = 0;
  const char *argv[] = { "/usr/bin/python3",
    SI_BENCH_DIR "/make-random-model.py", "--out", path, "--queries", q,
    "--golden", golden, "--spec", spec, NULL };

  g_snprintf (q, sizeof (q), "%d", queries);
  if (!g_spawn_sync (NULL, (char **) argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
          NULL, NULL, &status, &error) ||
      !g_spawn_check_wait_status (status, &error)) {
    g_printerr ("make-random-model.py: %s\n", error->message);
    g_clear_error (&error);
    g_clear_pointer (&path, g_free);
  }
  g_free (golden);
  g_free (spec);
  return path;
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  GOptionContext *oc = g_option_context_new ("- engine benchmark");
  Config configs[] = {
    { .name = "tiny (golden)", .queries = 0, .width = 150, .height = 110 },
    { .name = "r50-100q", .queries = 100, .width = 1333, .height = 800 },
    { .name = "r50-300q", .queries = 300, .width = 1333, .height = 800 },
  };
  char *tmpdir;

  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &error)) {
    g_printerr ("%s\n", error->message);
    return 2;
  }
  g_option_context_free (oc);
  if (opt_runs < 1)
    opt_runs = 1;
  if (opt_model)
    return run_child ();
  if (opt_golden == NULL)
    opt_golden = g_strdup (SI_GOLDEN_DIR);

  tmpdir = g_dir_make_tmp ("si-bench-XXXXXX", &error);
  if (tmpdir == NULL) {
    g_printerr ("%s\n", error->message);
    return 1;
  }
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++) {
    Config *c = &configs[i];
    char *model;
    if (opt_only && !g_str_has_prefix (c->name, opt_only))
      continue;
    if (c->queries == 0)
      model = g_build_filename (opt_golden, "tiny", "model.safetensors", NULL);
    else
      model = make_model (tmpdir, c->queries);
    if (model) {
      g_printerr ("running %s ...\n", c->name);
      c->ok = spawn_child (argv[0], model, c);
      if (c->queries)
        g_unlink (model);
    }
    g_free (model);
  }
  g_rmdir (tmpdir);
  g_free (tmpdir);

  printf ("\nengine benchmark, CPU backend, %d runs after 1 warm-up, "
          "threads %d (0 = all), ms min / median\n",
      opt_runs, opt_threads);
  printf ("%-12s", "part");
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    if (configs[i].ok)
      printf (" | %20s", configs[i].name);
  printf ("\n");
  for (int p = 0; p < N_PARTS; p++) {
    printf ("%-12s", part_names[p]);
    for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
      if (configs[i].ok)
        printf (" | %9.1f / %8.1f", configs[i].min[p], configs[i].median[p]);
    printf ("\n");
  }
  printf ("%-12s", "cpu/frame");
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    if (configs[i].ok)
      printf (" | %17.1f ms", configs[i].cpu_ms);
  printf ("\n");
  printf ("%-12s", "peak RSS");
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    if (configs[i].ok)
      printf (" | %16.3f GiB", configs[i].rss_kb / 1048576.0);
  printf ("\n");
  printf ("%-12s", "RSS stages");
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    if (configs[i].ok)
      printf (" | %5.0f/%5.0f/%5.0f MiB", configs[i].rss_stage[0],
          configs[i].rss_stage[1], configs[i].rss_stage[2]);
  printf ("   (after load / context / first frame)\n");
  {
    double load[3];
    if (getloadavg (load, 3) == 3)
      printf ("machine load average at the end: %.2f %.2f %.2f on %u cores\n",
          load[0], load[1], load[2], g_get_num_processors ());
  }
  for (guint i = 0; i < G_N_ELEMENTS (configs); i++)
    if (!configs[i].ok &&
        (!opt_only || g_str_has_prefix (configs[i].name, opt_only)))
      printf ("%s: FAILED\n", configs[i].name);
  return 0;
}
