/* test-release-weights.c: SiContextOptions.release_weights (CPU backend).
 * With it the decoder gives each stage's weight pages back after the
 * stage: the model mapping's resident size after a frame drops by about
 * the decoder's weights, and the detections stay bit-identical, frame
 * after frame, to a context that keeps the pages.
 *
 * usage: test-release-weights GOLDEN_TINY_DIR
 */
#include "si-engine.h"

#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *golden_dir;

/* Resident kB of the mappings of @path in /proc/self/smaps; -1 when the
 * kernel does not say. */
static long
mapping_rss_kb (const char *path)
{
  char *text = NULL, **lines;
  gboolean in_file = FALSE;
  long total = -1;

  if (!g_file_get_contents ("/proc/self/smaps", &text, NULL, NULL))
    return -1;
  lines = g_strsplit (text, "\n", -1);
  for (char **l = lines; *l; l++) {
    long kb;
    unsigned long start, end;
    /* a mapping's header line: "start-end perms offset dev inode path" */
    if (sscanf (*l, "%lx-%lx ", &start, &end) == 2) {
      in_file = g_str_has_suffix (*l, path);
      continue;
    }
    if (in_file && sscanf (*l, "Rss: %ld kB", &kb) == 1)
      total = (total < 0 ? 0 : total) + kb;
  }
  g_strfreev (lines);
  g_free (text);
  return total;
}

static uint8_t *
test_frame (int w, int h)
{
  uint8_t *p = g_malloc ((size_t) w * h * 3);
  GRand *r = g_rand_new_with_seed (7);
  for (size_t i = 0; i < (size_t) w * h * 3; i++)
    p[i] = (uint8_t) g_rand_int_range (r, 0, 256);
  g_rand_free (r);
  return p;
}

typedef struct
{
  SiDetection *dets;
  size_t n;
  long mapping_kb;
} Run;

static void
run_frames (
    SiModel *model, const char *path, gboolean release, int frames, Run *out)
{
  SiContextOptions opts;
  SiRunParams params;
  SiFrame frame = { 0 };
  GError *error = NULL;
  SiContext *ctx;
  uint8_t *pix = test_frame (150, 110);

  si_context_options_init (&opts);
  g_assert_true (opts.release_weights); /* the default */
  opts.backend = SI_BACKEND_CPU;
  opts.num_threads = 1;
  opts.max_width = 150;
  opts.max_height = 110;
  opts.release_weights = release;
  ctx = si_context_new (model, &opts, &error);
  g_assert_no_error (error);
  si_run_params_init (&params);
  params.threshold = 0.0f;
  frame.format = SI_FORMAT_RGB;
  frame.width = 150;
  frame.height = 110;
  frame.planes[0] = pix;
  frame.strides[0] = 150 * 3;
  for (int f = 0; f < frames; f++) {
    const SiDetection *d;
    g_assert_true (si_context_run (ctx, &frame, &params, &error));
    g_assert_no_error (error);
    d = si_context_get_detections (ctx, &out[f].n);
    g_assert_cmpuint (out[f].n, >, 0);
    out[f].dets = g_memdup2 (d, out[f].n * sizeof (SiDetection));
    out[f].mapping_kb = mapping_rss_kb (path);
  }
  si_context_free (&ctx);
  g_free (pix);
}

static void
assert_same (const Run *a, const Run *b)
{
  g_assert_cmpuint (a->n, ==, b->n);
  for (size_t i = 0; i < a->n; i++) {
    g_assert_cmpint (a->dets[i].class_id, ==, b->dets[i].class_id);
    g_assert_cmpint (a->dets[i].query_index, ==, b->dets[i].query_index);
    g_assert_true (
        memcmp (&a->dets[i].score, &b->dets[i].score, sizeof (float)) == 0);
    g_assert_true (
        memcmp (a->dets[i].box, b->dets[i].box, sizeof (float) * 4) == 0);
  }
}

static void
test_release (void)
{
  char *path = g_build_filename (golden_dir, "model.safetensors", NULL);
  char *real = realpath (path, NULL);
  GError *error = NULL;
  SiModel *model = si_model_load (path, &error);
  Run keep[2], rel[3];

  g_assert_no_error (error);
  g_assert_nonnull (real);
  run_frames (model, real, FALSE, 2, keep);
  run_frames (model, real, TRUE, 3, rel);

  assert_same (&keep[0], &keep[1]);
  for (int f = 0; f < 3; f++)
    assert_same (&keep[0], &rel[f]);

  if (keep[1].mapping_kb < 0 || rel[2].mapping_kb < 0) {
    g_test_skip ("no Rss in /proc/self/smaps");
  } else {
    g_test_message ("model mapping resident after a frame: %ld kB kept, "
                    "%ld kB released",
        keep[1].mapping_kb, rel[2].mapping_kb);
    /* the decoder is most of the tiny model's 28 MB; with release only its
     * last stage's pages, the small tensors and the header may remain */
    g_assert_cmpint (rel[2].mapping_kb, <, keep[1].mapping_kb / 2);
    g_assert_cmpint (keep[1].mapping_kb, >, 10 * 1024);
  }

  for (int f = 0; f < 2; f++)
    g_free (keep[f].dets);
  for (int f = 0; f < 3; f++)
    g_free (rel[f].dets);
  si_model_unref (model);
  free (real);
  g_free (path);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (argc < 2) {
    fprintf (stderr, "usage: %s GOLDEN_TINY_DIR\n", argv[0]);
    return 1;
  }
  golden_dir = argv[1];
  if (!g_file_test (golden_dir, G_FILE_TEST_IS_DIR)) {
    fprintf (stderr, "golden case missing: %s\n", golden_dir);
    return 1;
  }
  g_test_add_func ("/engine/release-weights", test_release);
  return g_test_run ();
}
