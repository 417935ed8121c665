/* test-parity-decoder-graph.c: the real decoder recorded as one CUDA graph:
 * the query init (LayerNorm of the embedding, initial boxes) and every
 * si_decoder_stage_run() between si_cuda_capture_begin and
 * si_cuda_capture_end, then replayed; and si_decoder_run() with its own
 * recordings (decoder.c, graph_cache.c).  Both must reproduce
 * si_decoder_run()'s direct path (graphs.enabled off) bit for bit in logits
 * and boxes, frame after frame, on new neck features.  si_decoder_run()
 * runs a key op by op first (its warm-up), records it on its second frame
 * and replays it after that; two frames with another image size (new_w,
 * new_h: a new key) make it record again, and going back replays the
 * first recording.  Prints the
 * time of each path (meaningful on a GPU only).  Skips (77) without a
 * CUDA device.  Usage: test-parity-decoder-graph CASE_DIR
 */
#include "si-config.h"

#include "backend_cuda.h"
#include "decoder_stage.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void
die (const char *what, GError *error)
{
  printf ("FAIL: %s: %s\n", what, error ? error->message : "?");
  exit (1);
}

static float *
fetch (SiBackend *be, const void *d, size_t n)
{
  GError *error = NULL;
  float *h = g_new (float, n);
  if (!be->ops->download (be, h, d, n * sizeof (float), &error))
    die ("download", error);
  return h;
}

int
main (int argc, char **argv)
{
  SiContextOptions opts;
  GError *error = NULL;
  SiModel *model;
  SiBackend *be;
  SiDecoder *dec;
  SiImageInfo info, other;
  SiCudaGraph *graph;
  float *levels[SI_NUM_LEVELS];
  int lh[SI_NUM_LEVELS], lw[SI_NUM_LEVELS];
  char *path;
  int n, c, nc, failures = 0;
  GRand *r = g_rand_new_with_seed (11);

  if (argc < 2) {
    fprintf (stderr, "usage: %s CASE_DIR\n", argv[0]);
    return 2;
  }
  si_context_options_init (&opts);
  opts.max_width = 256;
  opts.max_height = 256;
  be = si_backend_new (SI_BACKEND_CUDA, &opts, &error);
  if (be == NULL) {
    if (g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE)) {
      printf ("skipped: no CUDA device (%s)\n", error->message);
      g_error_free (error);
      g_rand_free (r);
      return 77;
    }
    die ("CUDA backend", error);
  }
  path = g_build_filename (argv[1], "model.safetensors", NULL);
  if (!(model = si_model_load (path, &error)))
    die ("model", error);
  if (!(dec = si_decoder_new (be, model, &error)))
    die ("decoder", error);
  n = model->num_query;
  c = model->content_dim;
  nc = model->num_classes;
  si_image_info_compute (model, 150, 110, &info);
  /* the same padded size (the same levels), another image size */
  si_image_info_compute (model, 120, 110, &other);
  if (other.pad_w != info.pad_w || other.pad_h != info.pad_h ||
      other.new_w == info.new_w)
    die ("frame geometry", NULL);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    lh[l] = info.pad_h / model->featmap_strides[l];
    lw[l] = info.pad_w / model->featmap_strides[l];
    levels[l] = be->ops->alloc (be, (size_t) lh[l] * lw[l] * c * 4, &error);
    if (levels[l] == NULL)
      die ("alloc", error);
  }

  /* record: the query init as decoder.c does it, then every stage */
  if (!si_cuda_capture_begin (be, &error))
    die ("capture_begin", error);
  be->ops->layer_norm (
      be, dec->init_content, NULL, NULL, NULL, dec->q, n, c, false);
  be->ops->init_boxes (be, dec->init_boxes, n, (float) info.new_w,
      (float) info.new_h, dec->xyzr, dec->xyxy);
  for (int s = 0; s < dec->n_stages; s++)
    if (!si_decoder_stage_run (
            dec, s, (const float *const *) levels, lh, lw, NULL, NULL, &error))
      die ("stage under capture", error);
  if (!(graph = si_cuda_capture_end (be, &error)))
    die ("capture_end", error);

  /* frames 0-2: info (si_decoder_run: warm-up, record, replay), 3-4: other
   * (a new key: warm-up, record), 5: info again (the kept recording) */
  for (int frame = 0; frame < 6; frame++) {
    const SiImageInfo *fi = frame == 3 || frame == 4 ? &other : &info;
    float *cls[3], *box[3];
    double ms[3];
    bool same[3] = { true, true, true };

    for (int l = 0; l < SI_NUM_LEVELS; l++) {
      size_t cnt = (size_t) lh[l] * lw[l] * c;
      float *h = g_new (float, cnt);
      for (size_t i = 0; i < cnt; i++)
        h[i] = (float) g_rand_double_range (r, -2, 2);
      if (!be->ops->upload (be, levels[l], h, cnt * 4, &error))
        die ("upload", error);
      g_free (h);
    }
    /* 0: direct, 1: this test's recording (made for info only),
     * 2: si_decoder_run's own recordings */
    for (int path_i = 0; path_i < 3; path_i++) {
      gint64 t0;
      cls[path_i] = box[path_i] = NULL;
      ms[path_i] = 0.0;
      if (path_i == 1 && fi != &info)
        continue;
      if (!be->ops->sync (be, &error))
        die ("sync", error);
      t0 = g_get_monotonic_time ();
      dec->graphs.enabled = path_i == 2;
      if (path_i != 1) {
        if (!si_decoder_run (dec, (const float *const *) levels, lh, lw, fi,
                NULL, NULL, NULL, &error))
          die ("si_decoder_run", error);
      } else if (!si_cuda_graph_launch (be, graph, &error)) {
        die ("graph_launch", error);
      }
      if (!be->ops->sync (be, &error))
        die ("sync", error);
      ms[path_i] = (g_get_monotonic_time () - t0) / 1000.0;
      cls[path_i] = fetch (be, dec->cls, (size_t) n * nc);
      box[path_i] = fetch (be, dec->xyxy, (size_t) n * 4);
      if (path_i > 0)
        same[path_i] = memcmp (cls[0], cls[path_i], (size_t) n * nc * 4) == 0 &&
            memcmp (box[0], box[path_i], (size_t) n * 4 * 4) == 0;
    }
    printf ("%s frame %d (image %dx%d): test's graph %s, si_decoder_run's "
            "graph %s si_decoder_run direct (direct %.3f ms, graphs %.3f, "
            "%.3f ms, %d stages)\n",
        same[1] && same[2] ? "ok  " : "FAIL", frame, fi->new_w, fi->new_h,
        cls[1] == NULL ? "not run"
            : same[1]  ? "identical"
                       : "DIFFERS",
        same[2] ? "identical to" : "DIFFERS from", ms[0], ms[1], ms[2],
        dec->n_stages);
    if (!same[1] || !same[2])
      failures++;
    for (int i = 0; i < 3; i++) {
      g_free (cls[i]);
      g_free (box[i]);
    }
  }
  {
    int kept = si_graph_cache_count (&dec->graphs);
    printf ("%s si_decoder_run kept %d recordings for 2 image sizes\n",
        kept == 2 ? "ok  " : "FAIL", kept);
    if (kept != 2)
      failures++;
  }

  si_cuda_graph_free (be, graph);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    be->ops->free (be, levels[l]);
  si_decoder_free (&dec);
  si_model_unref (model);
  si_backend_free (&be);
  g_free (path);
  g_rand_free (r);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
