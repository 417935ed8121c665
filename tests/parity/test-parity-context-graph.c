/* test-parity-context-graph.c: record and replay (CUDA graphs,
 * engine/graph_cache.c) of the backbone, the neck and the decoder through
 * the public API.  Two CUDA contexts run the same frames: one with graphs
 * (the default), one created with SI_CUDA_GRAPHS=0 (op by op).  Their
 * detections must agree bit for bit on frames of different content: a
 * size's first frame (its warm-up, op by op), its second (recorded), a
 * new size (warm-up, recorded) and the first size again (a replay of the
 * kept recordings).  The graph context runs as the element does, without
 * part timings: its timings must hold the total alone; the direct one's
 * (with part timings) every stage's, and a context with graphs and part
 * timings one decoder figure for a replay.  Built for the device (skips
 * with "skipped: no CUDA device") and for the emulation (SI_PARITY_EMU),
 * where it also checks the replay count (three graphs a frame but the
 * warm-ups), the per-frame transfers (one copy up from pinned staging,
 * one copy down into it, no allocation: check_transfers), the waits for
 * the stream (without part timings one a frame, when the detections come
 * down, but before each recording: check_syncs), and that failed
 * recordings (at the capture's begin or end) fall back to the direct
 * path, one g_warning per failing part, with the same detections: the
 * backbone's alone (the neck and the decoder still replay), and all three
 * parts'.  Usage: test-parity-context-graph CASE_DIR
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

#include "../si-check.h"

static int warnings;

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
context (SiModel *model, gboolean graphs, gboolean part_timings)
{
  SiContextOptions o;
  GError *error = NULL;
  SiContext *ctx;

  si_context_options_init (&o);
  o.backend = SI_BACKEND_CUDA;
  o.max_width = 320;
  o.max_height = 320;
  o.part_timings = part_timings;
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

/* The frames: the warm-up (op by op), the recording, a new size (its
 * warm-up), its recording, then the first size again (the kept
 * recordings).  The second size is the first one turned (the levels'
 * aspect flips).  The direct path's detections are kept for the
 * recording-failure checks. */
static const int sizes[][2] = {
  { 150, 110 },
  { 150, 110 },
  { 96, 180 },
  { 96, 180 },
  { 150, 110 },
};
#define N_FRAMES ((int) G_N_ELEMENTS (sizes))
/* backbone, neck, decoder */
#define GRAPHS_PER_FRAME 3
static SiDetection *direct_dets[N_FRAMES];
static size_t direct_n[N_FRAMES];

/* How many frames before frame k had its size: a fresh context runs
 * frame k op by op as the size's warm-up (0), records it (1) or replays
 * the recordings (2 or more). */
static int
size_count_before (int k)
{
  int n = 0;

  for (int j = 0; j < k; j++)
    n += sizes[j][0] == sizes[k][0] && sizes[j][1] == sizes[k][1];
  return n;
}

static gboolean
size_seen_before (int k)
{
  return size_count_before (k) > 0;
}

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

#ifdef SI_PARITY_EMU
/* The per-frame contract of issue 4, from the emulation's counters around
 * one si_context_run: one copy of the frame up, from pinned staging, one
 * copy of the detections down, into pinned staging, and no allocation or
 * free of device or pinned memory, whether the frame records, replays or
 * runs op by op. */
static void
check_transfers (const SiEmuCounts *a, const SiEmuCounts *b, const char *what)
{
  int allocs = b->mallocs - a->mallocs, frees = b->frees - a->frees;
  int host =
      (b->host_allocs - a->host_allocs) + (b->host_frees - a->host_frees);
  int h2d = b->h2d - a->h2d, d2h = b->d2h - a->d2h;
  int pageable =
      (b->h2d_pageable - a->h2d_pageable) + (b->d2h_pageable - a->d2h_pageable);
  gboolean ok = allocs == 0 && frees == 0 && host == 0 && h2d == 1 &&
      d2h == 1 && pageable == 0;

  printf ("%s %s: %d copy up, %d copy down (%d not pinned), %d cudaMalloc, "
          "%d cudaFree, %d pinned allocations or frees\n",
      ok ? "ok  " : "FAIL", what, h2d, d2h, pageable, allocs, frees, host);
  CHECK (
      ok, "%s: the frame's transfers and allocations break the contract", what);
}

/* Waits for the stream during one si_context_run: @expected of them,
 * each asleep on a blocking-sync event first unless @spin. */
static void
check_syncs (const SiEmuCounts *a, const SiEmuCounts *b, int expected,
    gboolean spin, const char *what)
{
  int syncs = b->syncs - a->syncs;
  int asleep = b->blocking_waits - a->blocking_waits;
  gboolean ok = syncs == expected && asleep == (spin ? 0 : expected);

  printf ("%s %s: %d waits for the stream (%d asleep), expected %d (%s)\n",
      ok ? "ok  " : "FAIL", what, syncs, asleep, expected,
      spin ? "spinning" : "all asleep");
  CHECK (ok, "%s: %d waits for the stream, %d asleep, expected %d", what, syncs,
      asleep, expected);
}
#endif

/* The frames through both contexts: detections bit for bit, timings. */
static void
test_replay (SiModel *model, const SiImage *img)
{
  SiContext *graph = context (model, TRUE, FALSE);
  SiContext *direct;
  int stages = si_model_get_num_stages (model);
#ifdef SI_PARITY_EMU
  int replays = si_emu_graph_launches ();
#endif

  /* the direct context spins (SI_CUDA_SPIN_WAIT=1 at its creation) */
  g_setenv ("SI_CUDA_SPIN_WAIT", "1", TRUE);
  direct = context (model, FALSE, TRUE);
  g_unsetenv ("SI_CUDA_SPIN_WAIT");

  for (int k = 0; k < N_FRAMES; k++) {
    SiDetection *dets = NULL;
    size_t n = 0;
    SiTimings t[2];
    char what[64];

    gboolean ran[2];
#ifdef SI_PARITY_EMU
    SiEmuCounts c[3];
    char path[96];
#endif

    g_snprintf (
        what, sizeof (what), "frame %d (%dx%d)", k, sizes[k][0], sizes[k][1]);
#ifdef SI_PARITY_EMU
    si_emu_counts (&c[0]);
#endif
    ran[0] = run_frame (graph, img, k, &dets, &n, &t[0], what);
#ifdef SI_PARITY_EMU
    si_emu_counts (&c[1]);
#endif
    ran[1] =
        run_frame (direct, img, k, &direct_dets[k], &direct_n[k], &t[1], what);
#ifdef SI_PARITY_EMU
    si_emu_counts (&c[2]);
    g_snprintf (path, sizeof (path), "%s with graphs", what);
    check_transfers (&c[0], &c[1], path);
    g_snprintf (path, sizeof (path), "%s op by op", what);
    check_transfers (&c[1], &c[2], path);
    /* without part timings: the download's wait, and one before each
     * part's recording (graph_cache.c) */
    g_snprintf (path, sizeof (path), "%s with graphs, no part timings", what);
    check_syncs (&c[0], &c[1],
        1 + (size_count_before (k) == 1 ? GRAPHS_PER_FRAME : 0), FALSE, path);
    /* with: after the preprocessing, the backbone, the neck, the query
     * init and each stage, and the download's */
    g_snprintf (path, sizeof (path), "%s op by op, part timings", what);
    check_syncs (&c[1], &c[2], 5 + stages, TRUE, path);
#endif
    if (ran[0] && ran[1]) {
      gboolean same = same_detections (dets, n, direct_dets[k], direct_n[k]);
      gboolean replay = size_seen_before (k);
      gboolean total_only = t[0].total > 0.0 && t[0].preprocess == 0.0 &&
          t[0].backbone == 0.0 && t[0].neck == 0.0 && t[0].query_init == 0.0 &&
          t[0].num_stages == 0 && t[0].postprocess == 0.0;
      printf ("%s %s: %zu detections, %s identical to the direct path "
              "(total %.3f ms alone; %d stages op by op)\n",
          same ? "ok  " : "FAIL", what, n,
          replay ? "graph replay" : "warm-up run", t[0].total, t[1].num_stages);
      CHECK (same, "%s: detections differ", what);
      CHECK (n > 0, "%s: no detections to compare", what);
      CHECK (total_only,
          "%s: without part timings the timings hold more than the total",
          what);
      CHECK (t[1].num_stages == stages,
          "%s: direct path reports %d stage timings, not %d", what,
          t[1].num_stages, stages);
    }
    g_free (dets);
  }
#ifdef SI_PARITY_EMU
  {
    int expected = 0;
    for (int k = 0; k < N_FRAMES; k++)
      expected += size_seen_before (k) ? GRAPHS_PER_FRAME : 0;
    replays = si_emu_graph_launches () - replays;
    printf ("%s graph launches: %d for %d frames (%d per frame but the "
            "warm-ups: backbone, neck, decoder)\n",
        replays == expected ? "ok  " : "FAIL", replays, N_FRAMES,
        GRAPHS_PER_FRAME);
    CHECK (replays == expected, "%d graph launches, expected %d", replays,
        expected);
  }
#endif
  CHECK (warnings == 0, "%d warnings", warnings);
  si_context_free (&graph);
  si_context_free (&direct);
}

#ifndef SI_PARITY_EMU
/* Graphs with part timings (on the device; the emulation checks it in
 * test_failed_recording): a size's warm-up reports every stage, its
 * replay one decoder figure, the other parts their own, and the
 * detections are the direct path's. */
static void
test_replay_part_timings (SiModel *model, const SiImage *img)
{
  SiContext *ctx = context (model, TRUE, TRUE);
  int stages = si_model_get_num_stages (model);

  for (int k = 0; k < 3; k++) {
    SiDetection *dets = NULL;
    size_t n = 0;
    SiTimings t;
    char what[64];

    g_snprintf (what, sizeof (what), "graphs + part timings, frame %d", k);
    if (run_frame (ctx, img, 0, &dets, &n, &t, what)) {
      gboolean ok = same_detections (dets, n, direct_dets[0], direct_n[0]) &&
          (k == 2 ? t.num_stages == 0 && t.query_init > 0.0
                  : k == 1 || t.num_stages == stages) &&
          t.backbone > 0.0 && t.neck > 0.0 && t.postprocess > 0.0;
      printf ("%s %s: decoder %.3f ms over %d stage figures, backbone %.3f, "
              "neck %.3f, postprocess %.3f\n",
          ok ? "ok  " : "FAIL", what, t.query_init, t.num_stages, t.backbone,
          t.neck, t.postprocess);
      CHECK (ok, "%s: timings or detections wrong", what);
    }
    g_free (dets);
  }
  si_context_free (&ctx);
}
#endif

#ifdef SI_PARITY_EMU
/* Recordings that fail: the first @failing captures of a new context, in
 * the order backbone, neck, decoder, on frame 1 (frame 0 is the size's
 * warm-up, which records nothing).  One warning per failing part, each of
 * which then runs op by op, with the direct context's detections, on this
 * frame and (failing at the end) on both frames of another size, which
 * record nothing for the failed parts.  The parts that did not fail still
 * replay their recordings. */
static void
test_failed_recording (
    SiModel *model, const SiImage *img, int at_begin, int failing)
{
  const char *where = at_begin ? "begin" : "end";
  SiContext *graph = context (model, TRUE, TRUE);
  int launches = si_emu_graph_launches (), expected = 0;
  /* (fewer frames at the begin: the emulation is slow under ASan) */
  int n_frames = at_begin ? 2 : 4;
  gboolean decoder_fails = failing >= GRAPHS_PER_FRAME;

  warnings = 0;
  si_emu_fail_captures (failing, at_begin);
  for (int k = 0; k < n_frames; k++) {
    SiDetection *dets = NULL;
    size_t n = 0;
    SiTimings t;
    char what[96];
    gboolean direct = !size_seen_before (k) || decoder_fails;

    if (size_seen_before (k))
      expected += GRAPHS_PER_FRAME - failing;
    g_snprintf (what, sizeof (what),
        "%d capture(s) failing at the %s, frame %d", failing, where, k);
    if (run_frame (graph, img, k, &dets, &n, &t, what) && direct_dets[k]) {
      gboolean same = same_detections (dets, n, direct_dets[k], direct_n[k]);
      printf ("%s %s: detections %s the direct context's\n",
          same ? "ok  " : "FAIL", what, same ? "identical to" : "differ from");
      CHECK (same, "%s: detections differ", what);
      CHECK ((t.num_stages == si_model_get_num_stages (model)) == direct,
          "%s: the decoder ran %s (%d stage timings)", what,
          t.num_stages ? "op by op" : "as a graph", t.num_stages);
    }
    g_free (dets);
  }
  si_emu_fail_captures (0, 0);
  CHECK (warnings == failing,
      "%d capture(s) failing at the %s: %d warnings, expected %d", failing,
      where, warnings, failing);
  launches = si_emu_graph_launches () - launches;
  printf ("%s %d capture(s) failing at the %s: %d warning(s), %d graph "
          "launches\n",
      launches == expected ? "ok  " : "FAIL", failing, where, warnings,
      launches);
  CHECK (launches == expected,
      "%d capture(s) failing at the %s: %d graph launches, expected %d",
      failing, where, launches, expected);
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
  test_failed_recording (model, &img, TRUE, 1);
  test_failed_recording (model, &img, FALSE, GRAPHS_PER_FRAME);
#else
  test_replay_part_timings (model, &img);
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
