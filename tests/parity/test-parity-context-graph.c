/* test-parity-context-graph.c: the decoder's record and replay (CUDA
 * graphs, engine/decoder.c) through the public API.  Two CUDA contexts run
 * the same frames: one with graphs (the default), one created with
 * SI_CUDA_GRAPHS=0 (op by op).  Their detections must agree bit for bit
 * on frames of different content, on a new frame size (a new recording),
 * back on the first size (a replay of the kept recording) and on a third
 * size; the timings must show one decoder figure with graphs and the
 * per-stage figures without.  Built for the device (skips with "skipped:
 * no CUDA device") and for the emulation (SI_PARITY_EMU), where it also
 * checks the replay count and that a failed recording (at the capture's
 * begin or end) falls back to the direct path with one g_warning and the
 * same detections.  Usage: test-parity-context-graph CASE_DIR
 */
#include "si-config.h"

#include "image-io.h"
#include "si-engine.h"

#ifdef SI_PARITY_EMU
#include "cuda_runtime.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int failures;
static int warnings;

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      printf ("FAIL (%s:%d): ", __FILE__, __LINE__);                           \
      printf (__VA_ARGS__);                                                    \
      printf ("\n");                                                           \
      failures++;                                                              \
    }                                                                          \
  } while (0)

static void
count_warning (const gchar *domain, GLogLevelFlags level, const gchar *message,
    gpointer user_data)
{
  (void) domain;
  (void) level;
  (void) user_data;
  printf ("  warning: %s\n", message);
  warnings++;
}

/* A CUDA context; graphs off when @graphs is FALSE (SI_CUDA_GRAPHS=0 at
 * creation, the switch docs/cuda.md gives).  NULL and exit 77 without a
 * device. */
static SiContext *
context (SiModel *model, gboolean graphs)
{
  SiContextOptions o;
  GError *error = NULL;
  SiContext *ctx;

  si_context_options_init (&o);
  o.backend = SI_BACKEND_CUDA;
  o.max_width = 320;
  o.max_height = 320;
  if (!graphs)
    g_setenv ("SI_CUDA_GRAPHS", "0", TRUE);
  ctx = si_context_new (model, &o, &error);
  g_unsetenv ("SI_CUDA_GRAPHS");
  if (ctx == NULL) {
    if (g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE)) {
      printf ("skipped: no CUDA device (%s)\n", error->message);
      exit (77);
    }
    printf ("FAIL: CUDA context: %s\n", error->message);
    exit (1);
  }
  return ctx;
}

/* Frame @k of w x h: the case image resampled, shifted by k and
 * brightened, so that every frame has other content. */
static uint8_t *
make_frame (const SiImage *img, int w, int h, int k)
{
  uint8_t *rgb = g_malloc ((size_t) w * h * 3);

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int sx = ((long) x * img->width / w + 7 * k) % img->width;
      int sy = ((long) y * img->height / h + 3 * k) % img->height;
      const uint8_t *s = img->rgb + ((size_t) sy * img->width + sx) * 3;
      uint8_t *d = rgb + ((size_t) y * w + x) * 3;
      for (int c = 0; c < 3; c++)
        d[c] = (uint8_t) MIN (255, s[c] + 13 * k);
    }
  return rgb;
}

static SiFrame
frame_of (const uint8_t *rgb, int w, int h)
{
  SiFrame f;
  memset (&f, 0, sizeof (f));
  f.format = SI_FORMAT_RGB;
  f.width = w;
  f.height = h;
  f.planes[0] = rgb;
  f.strides[0] = (size_t) w * 3;
  return f;
}

/* Runs @f on @ctx; a copy of the detections in *dets (free it). */
static gboolean
run (SiContext *ctx, const SiFrame *f, SiDetection **dets, size_t *n,
    SiTimings *t, const char *what)
{
  SiRunParams params;
  GError *error = NULL;
  const SiDetection *d;

  si_run_params_init (&params);
  params.threshold = 0.0f; /* every one of the top max_per_img */
  *dets = NULL;
  *n = 0;
  if (!si_context_run (ctx, f, &params, &error)) {
    CHECK (FALSE, "%s: si_context_run: %s", what, error->message);
    g_error_free (error);
    return FALSE;
  }
  d = si_context_get_detections (ctx, n);
  *dets = g_memdup2 (d, MAX (*n, 1) * sizeof (SiDetection));
  si_context_get_timings (ctx, t);
  return TRUE;
}

static gboolean
same_detections (
    const SiDetection *a, size_t na, const SiDetection *b, size_t nb)
{
  return na == nb && memcmp (a, b, na * sizeof (SiDetection)) == 0;
}

/* The frames: record, replay on new content, a new size (recorded), the
 * first size again (the kept recording), a third size.  The direct
 * path's detections are kept for the recording-failure checks. */
static const int sizes[][2] = {
  { 150, 110 },
  { 150, 110 },
  { 200, 96 },
  { 150, 110 },
  { 96, 180 },
};
#define N_FRAMES ((int) G_N_ELEMENTS (sizes))
static SiDetection *direct_dets[N_FRAMES];
static size_t direct_n[N_FRAMES];

/* Runs frame k on ctx (dets: free them). */
static gboolean
run_frame (SiContext *ctx, const SiImage *img, int k, SiDetection **dets,
    size_t *n, SiTimings *t, const char *what)
{
  uint8_t *rgb = make_frame (img, sizes[k][0], sizes[k][1], k);
  SiFrame f = frame_of (rgb, sizes[k][0], sizes[k][1]);
  gboolean ok = run (ctx, &f, dets, n, t, what);

  g_free (rgb);
  return ok;
}

/* The frames through both contexts: detections bit for bit, timings. */
static void
test_replay (SiModel *model, const SiImage *img)
{
  SiContext *graph = context (model, TRUE);
  SiContext *direct = context (model, FALSE);
  int stages = si_model_get_num_stages (model);
#ifdef SI_PARITY_EMU
  int replays = si_emu_graph_launches ();
#endif

  for (int k = 0; k < N_FRAMES; k++) {
    SiDetection *dets = NULL;
    size_t n = 0;
    SiTimings t[2];
    char what[64];

    g_snprintf (
        what, sizeof (what), "frame %d (%dx%d)", k, sizes[k][0], sizes[k][1]);
    if (run_frame (graph, img, k, &dets, &n, &t[0], what) &&
        run_frame (
            direct, img, k, &direct_dets[k], &direct_n[k], &t[1], what)) {
      gboolean same = same_detections (dets, n, direct_dets[k], direct_n[k]);
      printf ("%s %s: %zu detections, graph replay %s the direct path "
              "(decoder %.3f ms as one figure, %d stages op by op)\n",
          same ? "ok  " : "FAIL", what, n,
          same ? "identical to" : "differs from", t[0].query_init,
          t[1].num_stages);
      CHECK (same, "%s: detections differ", what);
      CHECK (n > 0, "%s: no detections to compare", what);
      CHECK (t[0].num_stages == 0 && t[0].stage[0] == 0.0,
          "%s: graph path reports %d stage timings", what, t[0].num_stages);
      CHECK (t[1].num_stages == stages,
          "%s: direct path reports %d stage timings, not %d", what,
          t[1].num_stages, stages);
    }
    g_free (dets);
  }
#ifdef SI_PARITY_EMU
  replays = si_emu_graph_launches () - replays;
  printf ("graph launches: %d for %d frames\n", replays, N_FRAMES);
  CHECK (replays == N_FRAMES, "%d graph launches, expected one per frame",
      replays);
#endif
  CHECK (warnings == 0, "%d warnings", warnings);
  si_context_free (&graph);
  si_context_free (&direct);
}

#ifdef SI_PARITY_EMU
/* A recording that fails: one warning, then the direct path, with the
 * direct context's detections, on this frame and on a frame of another
 * size (which records nothing: graphs stay off). */
static void
test_failed_recording (SiModel *model, const SiImage *img, int at_begin)
{
  const char *where = at_begin ? "begin" : "end";
  SiContext *graph = context (model, TRUE);
  int launches = si_emu_graph_launches ();
  const int frames[] = { 0, 2 };

  warnings = 0;
  si_emu_fail_captures (1, at_begin);
  /* (the second frame only once: the emulation is slow under ASan) */
  for (int i = 0; i < (at_begin ? 1 : 2); i++) {
    int k = frames[i];
    SiDetection *dets = NULL;
    size_t n = 0;
    SiTimings t;
    char what[64];

    g_snprintf (
        what, sizeof (what), "capture failing at its %s, frame %d", where, k);
    if (run_frame (graph, img, k, &dets, &n, &t, what) && direct_dets[k]) {
      gboolean same = same_detections (dets, n, direct_dets[k], direct_n[k]);
      printf ("%s %s: fell back to the direct path, detections %s\n",
          same ? "ok  " : "FAIL", what, same ? "identical" : "differ");
      CHECK (same, "%s: detections differ", what);
      CHECK (t.num_stages == si_model_get_num_stages (model),
          "%s: not the direct path (%d stage timings)", what, t.num_stages);
    }
    g_free (dets);
  }
  si_emu_fail_captures (0, 0);
  CHECK (warnings == 1, "capture failing at its %s: %d warnings, expected 1",
      where, warnings);
  CHECK (si_emu_graph_launches () == launches,
      "capture failing at its %s: a graph was launched", where);
  warnings = 0;
  si_context_free (&graph);
}
#endif

int
main (int argc, char **argv)
{
  GError *error = NULL;
  SiModel *model;
  SiImage img = { 0 };
  char *path, *image_path;

  if (argc < 2) {
    fprintf (stderr, "usage: %s CASE_DIR\n", argv[0]);
    return 2;
  }
  g_unsetenv ("SI_CUDA_GRAPHS");
  g_log_set_handler (NULL, G_LOG_LEVEL_WARNING, count_warning, NULL);
  path = g_build_filename (argv[1], "model.safetensors", NULL);
  image_path = g_build_filename (argv[1], "image.ppm", NULL);
  if (!(model = si_model_load (path, &error)) ||
      !si_image_load (image_path, &img, &error)) {
    printf ("FAIL: %s\n", error->message);
    return 1;
  }
  test_replay (model, &img);
#ifdef SI_PARITY_EMU
  test_failed_recording (model, &img, TRUE);
  test_failed_recording (model, &img, FALSE);
#endif
  for (int k = 0; k < N_FRAMES; k++)
    g_free (direct_dets[k]);
  si_image_clear (&img);
  si_model_unref (model);
  g_free (path);
  g_free (image_path);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
