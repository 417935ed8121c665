/* test-decoder-golden.c: the query side against the golden case (suite
 * golden): the golden neck.0..3 go into the decoder, every init.*,
 * stage*.* and det_* tensor it dumps is compared by name with
 * io.safetensors (relative L2 <= 1e-3), and each golden detection must
 * have a twin.  Also small hand-computed cases of the decoder ops.
 * Usage: test-decoder-golden [GOLDEN_CASE_DIR] (default: SI_GOLDEN_TINY).
 */
#include "backend.h"
#include "decoder.h"
#include "postprocess.h"
#include "cpu/decoder_cpu.h"
#include "safetensors.h"
#include "si-math.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define REL_L2_LIMIT 1e-3

static const char *case_dir;

typedef struct
{
  int64_t shape[SI_TENSOR_MAX_DIMS];
  int ndim;
  size_t count;
  float *data;
} Dumped;

static void
dumped_free (gpointer p)
{
  Dumped *d = p;
  g_free (d->data);
  g_free (d);
}

static void
collect (const char *name, const int64_t *shape, int ndim, const float *data,
    void *user_data)
{
  GHashTable *table = user_data;
  Dumped *d = g_new0 (Dumped, 1);

  d->ndim = ndim;
  d->count = 1;
  for (int i = 0; i < ndim; i++) {
    d->shape[i] = shape[i];
    d->count *= (size_t) shape[i];
  }
  d->data = g_memdup2 (data, d->count * sizeof (float));
  g_hash_table_replace (table, g_strdup (name), d);
}

/* A golden tensor as float32 (F32 or I64). */
static float *
golden_floats (const SiTensorInfo *t)
{
  float *out = g_new (float, MAX (t->numel, 1));
  for (int64_t i = 0; i < t->numel; i++) {
    if (t->dtype == SI_DTYPE_F32) {
      memcpy (&out[i], (const char *) t->data + 4 * i, 4);
    } else {
      int64_t v;
      g_assert_cmpint (t->dtype, ==, SI_DTYPE_I64);
      memcpy (&v, (const char *) t->data + 8 * i, 8);
      out[i] = (float) v;
    }
  }
  return out;
}

typedef struct
{
  SiModel *model;
  SiSafetensors *io;
  SiImageInfo info;
  GHashTable *dumps;
  const SiDetection *dets;
  size_t n_dets;
} Run;

static void
read_info (SiImageInfo *info)
{
  g_autofree char *path = g_build_filename (case_dir, "case.json", NULL);
  g_autoptr (JsonParser) parser = json_parser_new ();
  GError *error = NULL;
  JsonObject *o;
  JsonArray *a;

  g_assert_true (json_parser_load_from_file (parser, path, &error));
  g_assert_no_error (error);
  o = json_node_get_object (json_parser_get_root (parser));
  a = json_object_get_array_member (o, "ori_shape");
  info->height = json_array_get_int_element (a, 0);
  info->width = json_array_get_int_element (a, 1);
  a = json_object_get_array_member (o, "img_shape");
  info->new_h = json_array_get_int_element (a, 0);
  info->new_w = json_array_get_int_element (a, 1);
  a = json_object_get_array_member (o, "pad_shape");
  info->pad_h = json_array_get_int_element (a, 0);
  info->pad_w = json_array_get_int_element (a, 1);
  a = json_object_get_array_member (o, "scale_factor");
  for (int i = 0; i < 4; i++)
    info->scale_factor[i] = (float) json_array_get_double_element (a, i);
}

/* Runs the decoder on the golden neck outputs; fills run. */
static void
run_golden (Run *run)
{
  g_autofree char *model_path =
      g_build_filename (case_dir, "model.safetensors", NULL);
  g_autofree char *io_path =
      g_build_filename (case_dir, "io.safetensors", NULL);
  GError *error = NULL;
  SiBackend *be;
  SiDecoder *dec;
  float *levels[SI_NUM_LEVELS];
  int h[SI_NUM_LEVELS], w[SI_NUM_LEVELS];
  SiRunParams params = { .threshold = 0.0f, .max_detections = 0 };
  SiTimings timings = { 0 };

  run->model = si_model_load (model_path, &error);
  g_assert_no_error (error);
  run->io = si_safetensors_open (io_path, &error);
  g_assert_no_error (error);
  read_info (&run->info);
  run->dumps =
      g_hash_table_new_full (g_str_hash, g_str_equal, g_free, dumped_free);

  be = si_backend_new (SI_BACKEND_CPU, NULL, &error);
  g_assert_no_error (error);
  /* neck.l (1, D, H, W) NCHW -> NHWC backend memory */
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    g_autofree char *name = g_strdup_printf ("neck.%d", l);
    const SiTensorInfo *t = si_safetensors_find (run->io, name);
    g_autofree float *src = NULL, *nhwc = NULL;
    int d;

    g_assert_nonnull (t);
    g_assert_cmpint (t->ndim, ==, 4);
    d = (int) t->shape[1];
    h[l] = (int) t->shape[2];
    w[l] = (int) t->shape[3];
    src = golden_floats (t);
    nhwc = g_new (float, t->numel);
    for (int c = 0; c < d; c++)
      for (int p = 0; p < h[l] * w[l]; p++)
        nhwc[(size_t) p * d + c] = src[(size_t) c * h[l] * w[l] + p];
    levels[l] = be->ops->alloc (be, t->numel * sizeof (float), &error);
    g_assert_no_error (error);
    g_assert_true (be->ops->upload (
        be, levels[l], nhwc, t->numel * sizeof (float), &error));
  }

  dec = si_decoder_new (be, run->model, &error);
  g_assert_no_error (error);
  g_assert_true (si_decoder_run (dec, (const float *const *) levels, h, w,
      &run->info, &timings, collect, run->dumps, &error));
  g_assert_no_error (error);
  g_assert_true (si_decoder_postprocess (dec, &run->info, &params, &timings,
      collect, run->dumps, &run->dets, &run->n_dets, &error));
  g_assert_no_error (error);
  g_assert_cmpint (timings.num_stages, ==, run->model->num_stages);
  g_test_message ("query init %.2f ms, stage 0 %.2f ms, postprocess %.2f ms",
      timings.query_init, timings.stage[0], timings.postprocess);

  /* keep the detections: the decoder owns them */
  run->dets = g_memdup2 (run->dets, run->n_dets * sizeof (SiDetection));
  si_decoder_free (&dec);
  g_assert_null (dec);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    be->ops->free (be, levels[l]);
  si_backend_free (&be);
}

static void
run_clear (Run *run)
{
  g_hash_table_unref (run->dumps);
  g_free ((gpointer) run->dets);
  si_safetensors_close (&run->io);
  si_model_unref (run->model);
}

static gboolean
is_decoder_tensor (const char *name)
{
  return g_str_has_prefix (name, "init.") || g_str_has_prefix (name, "stage") ||
      g_str_has_prefix (name, "det_");
}

static void
test_golden_tensors (void)
{
  Run run = { 0 };
  int compared = 0, failed = 0;

  run_golden (&run);
  for (guint i = 0; i < si_safetensors_n_tensors (run.io); i++) {
    const SiTensorInfo *t = si_safetensors_get (run.io, i);
    Dumped *d;
    g_autofree float *ref = NULL;
    double num = 0.0, den = 0.0, err;

    if (!is_decoder_tensor (t->name))
      continue;
    d = g_hash_table_lookup (run.dumps, t->name);
    if (d == NULL) {
      g_printerr ("%-24s never dumped\n", t->name);
      failed++;
      continue;
    }
    if (d->ndim != t->ndim ||
        memcmp (d->shape, t->shape, t->ndim * sizeof (int64_t)) != 0) {
      g_printerr ("%-24s shape differs\n", t->name);
      failed++;
      continue;
    }
    ref = golden_floats (t);
    for (size_t j = 0; j < d->count; j++) {
      double e = (double) d->data[j] - ref[j];
      num += e * e;
      den += (double) ref[j] * ref[j];
    }
    err = sqrt (num) / MAX (sqrt (den), 1e-12);
    g_printerr ("%-24s rel L2 %.3e  (%.3f of the limit)%s\n", t->name, err,
        err / REL_L2_LIMIT, err <= REL_L2_LIMIT ? "" : "  FAIL");
    compared++;
    if (!(err <= REL_L2_LIMIT))
      failed++;
  }
  g_assert_cmpint (compared, >, 0);
  g_assert_cmpint (failed, ==, 0);
  run_clear (&run);
}

/* Each golden detection has a twin: same label, score within 1e-3, box
 * within 0.05 px. */
static void
test_golden_detections (void)
{
  Run run = { 0 };
  const SiTensorInfo *tb, *ts, *tl;
  g_autofree float *boxes = NULL, *scores = NULL, *labels = NULL;

  run_golden (&run);
  tb = si_safetensors_find (run.io, "det_boxes");
  ts = si_safetensors_find (run.io, "det_scores");
  tl = si_safetensors_find (run.io, "det_labels");
  g_assert_true (tb && ts && tl);
  boxes = golden_floats (tb);
  scores = golden_floats (ts);
  labels = golden_floats (tl);
  g_assert_cmpint (run.n_dets, ==,
      MIN (run.model->max_per_img,
          run.model->num_query * run.model->num_classes));
  for (int64_t i = 0; i < ts->numel; i++) {
    gboolean found = FALSE;
    for (size_t j = 0; j < run.n_dets && !found; j++) {
      const SiDetection *d = &run.dets[j];
      gboolean box_ok = TRUE;
      for (int c = 0; c < 4; c++)
        box_ok = box_ok && fabsf (d->box[c] - boxes[4 * i + c]) <= 0.05f;
      found = d->class_id == (int) labels[i] &&
          fabsf (d->score - scores[i]) <= 1e-3f && box_ok;
    }
    if (!found)
      g_printerr ("golden detection %d (label %d, score %.5f) has no twin\n",
          (int) i, (int) labels[i], scores[i]);
    g_assert_true (found);
  }
  /* sorted by score, labels named */
  for (size_t j = 1; j < run.n_dets; j++)
    g_assert_cmpfloat (run.dets[j - 1].score, >=, run.dets[j].score);
  g_assert_cmpstr (
      run.dets[0].label, ==, run.model->classes[run.dets[0].class_id]);
  run_clear (&run);
}

/* ---- small hand-computed cases of the ops (CPU backend) ---- */

static void
test_iof_bias (void)
{
  /* box 0: 0..2 x 0..2 (z = 1, r = 0); box 1: 10..12 x 0..2 (disjoint);
   * box 2: 1..3 x 0..2 (overlaps half of box 0) */
  const float xyzr[] = { 1, 1, 1, 0, 11, 1, 1, 0, 2, 1, 1, 0 };
  const float tau[] = { 1.0f, 2.0f };
  float bias[2 * 3 * 3];

  si_iof_bias_cpu (NULL, xyzr, tau, bias, 3, 2);
  g_assert_cmpfloat_with_epsilon (bias[0 * 3 + 0], logf (1.0f + 1e-7f), 1e-6);
  g_assert_cmpfloat_with_epsilon (bias[0 * 3 + 1], logf (1e-7f), 1e-4);
  g_assert_cmpfloat_with_epsilon (bias[9 + 0 * 3 + 1], 2 * logf (1e-7f), 1e-4);
  g_assert_cmpfloat_with_epsilon (bias[0 * 3 + 2], logf (0.5f + 1e-7f), 1e-6);
  g_assert_cmpfloat_with_epsilon (bias[2 * 3 + 0], logf (0.5f + 1e-7f), 1e-6);
}

static void
test_topk_ties (void)
{
  /* equal logits: lower flat index first */
  const float logits[] = { 0.0f, 2.0f, 1.0f, 2.0f, -1.0f, 1.0f };
  float scores[4];
  int32_t idx[4];
  guint64 scratch[6];
  const int32_t want[] = { 1, 3, 2, 5 };

  si_topk_sigmoid_cpu (NULL, logits, 6, 4, scores, idx, scratch);
  for (int i = 0; i < 4; i++)
    g_assert_cmpint (idx[i], ==, want[i]);
  g_assert_cmpfloat_with_epsilon (
      scores[0], 1.0f / (1.0f + expf (-2.0f)), 1e-7);
}

static void
test_ln2d (void)
{
  /* two 2x2 matrices, per-row bias on the second: LN over all 4 values */
  float x[8] = { 1, 2, 3, 4, 0, 0, 0, 0 };
  const float bias[4] = { 0, 0, 1, -1 };
  float r = 1.0f / sqrtf (1.25f + 1e-5f);

  si_ln2d_bias_relu_cpu (NULL, x, bias, 2, TRUE, 2, 2, 2);
  /* first: bias (0, 0) per row, mean 2.5, var 1.25 */
  g_assert_cmpfloat_with_epsilon (x[0], 0.0f, 1e-6);
  g_assert_cmpfloat_with_epsilon (x[3], 1.5f * r, 1e-5);
  /* second: rows (1, 1), (-1, -1): mean 0, var 1 */
  g_assert_cmpfloat_with_epsilon (x[4], 1.0f / sqrtf (1.0f + 1e-5f), 1e-6);
  g_assert_cmpfloat_with_epsilon (x[6], 0.0f, 1e-6);
}

static void
test_gate_mix (void)
{
  const float old[4] = { 1, 1, 1, 1 }, nw[4] = { 0, 0, 0, 0 };
  const float rg[2] = { 1.0f, 0.5f }, cg[2] = { 1.0f, 0.0f };
  float out[4];

  si_gate_mix_cpu (NULL, old, 4, nw, 4, rg, 2, 1, cg, 2, 1, out, 1, 2, 2);
  /* row gate picks old (1) or half; column gate 0 falls back to new */
  g_assert_cmpfloat (out[0], ==, 1.0f);
  g_assert_cmpfloat (out[1], ==, 0.0f);
  g_assert_cmpfloat (out[2], ==, 0.5f);
  g_assert_cmpfloat (out[3], ==, 0.0f);
}

static void
test_sample_features (void)
{
  /* one 2x2 level of stride 4 (8x8 px), 1 channel; a point at the centre
   * of pixel (1, 0) with Z = 3 + 0 reads level 0 mostly; the other levels
   * are zero maps.  u = X/4 - 0.5. */
  float l0[4] = { 1, 2, 3, 4 }, zero[4] = { 0 };
  const float *levels[4] = { l0, zero, zero, zero };
  const int h[4] = { 2, 2, 2, 2 }, w[4] = { 2, 2, 2, 2 };
  const int strides[4] = { 4, 8, 16, 32 };
  const float pts[2 * 3] = { 6, 2, 3, 4, 4, 3 }; /* (1.0, 0.0) and (0.5, 0.5) */
  float wl[4], out[2];

  si_level_weights (3.0f, wl);
  si_sample_features_cpu (NULL, pts, levels, h, w, strides, 1, 1, 2, 1, out);
  g_assert_cmpfloat_with_epsilon (out[0], 2.0f * wl[0], 1e-6);
  g_assert_cmpfloat_with_epsilon (out[1], 2.5f * wl[0], 1e-6);
  g_assert_cmpfloat_with_epsilon (wl[0] + wl[1] + wl[2] + wl[3], 1.0f, 1e-6);
  g_assert_cmpfloat (wl[0], >, wl[1]);
}

static void
test_posenc (void)
{
  /* x = 1000 -> v = 1: block x is sin/cos (1 / dim_t[j]); y = 0 gives
   * sin 0 = 0, cos 0 = 1; dim_t[0] = 1, dim_t[2] = 10000^(2/NF) */
  const int c = 16, nf = 4;
  const float xyzr[4] = { 1000.0f, 0.0f, 0.5f, -2.0f };
  float q[16] = { 0 }, a[16];
  float d2 = powf (10000.0f, 2.0f / nf);

  si_posenc_add_cpu (NULL, xyzr, q, a, 1, c);
  g_assert_cmpfloat_with_epsilon (a[0], sinf (1.0f), 1e-6);
  g_assert_cmpfloat_with_epsilon (a[1], cosf (1.0f), 1e-6);
  g_assert_cmpfloat_with_epsilon (a[2], sinf (1.0f / d2), 1e-6);
  g_assert_cmpfloat_with_epsilon (a[3], cosf (1.0f / d2), 1e-6);
  g_assert_cmpfloat_with_epsilon (a[nf + 0], 0.0f, 1e-7);
  g_assert_cmpfloat_with_epsilon (a[nf + 1], 1.0f, 1e-7);
  /* z and r are not divided by 1000 */
  g_assert_cmpfloat_with_epsilon (a[2 * nf], sinf (0.5f), 1e-6);
  g_assert_cmpfloat_with_epsilon (a[3 * nf + 1], cosf (-2.0f), 1e-6);
}

static void
test_boxes (void)
{
  /* init box of a 200 x 100 image: centre, z = log2 sqrt (wh), r = log2
   * (h / w) */
  const float cxcywh[4] = { 0.5f, 0.5f, 1.0f, 1.0f };
  const float delta[4] = { 0.5f, -0.25f, 1.0f, 0.0f };
  float xyzr[4], xyxy[4], out[4];

  si_init_boxes_cpu (NULL, cxcywh, 1, 200.0f, 100.0f, xyzr, xyxy);
  g_assert_cmpfloat_with_epsilon (xyzr[0], 100.0f, 1e-5);
  g_assert_cmpfloat_with_epsilon (xyzr[1], 50.0f, 1e-5);
  g_assert_cmpfloat_with_epsilon (xyzr[2], log2f (sqrtf (20000.0f)), 1e-5);
  g_assert_cmpfloat_with_epsilon (xyzr[3], -1.0f, 1e-6);
  g_assert_cmpfloat_with_epsilon (xyxy[0], 0.0f, 1e-4);
  g_assert_cmpfloat_with_epsilon (xyxy[3], 100.0f, 1e-4);
  /* dx in widths, dy in heights; z doubles the size */
  si_refine_boxes_cpu (NULL, xyzr, delta, out, xyxy, 1);
  g_assert_cmpfloat_with_epsilon (out[0], 200.0f, 1e-4);
  g_assert_cmpfloat_with_epsilon (out[1], 25.0f, 1e-4);
  g_assert_cmpfloat_with_epsilon (xyxy[2] - xyxy[0], 400.0f, 1e-3);
  g_assert_cmpfloat_with_epsilon (xyxy[3] - xyxy[1], 200.0f, 1e-3);
}

static void
test_select (void)
{
  SiDetection d[4] = { { .score = 0.9f }, { .score = 0.5f }, { .score = 0.3f },
    { .score = 0.1f } };
  SiRunParams p = { .threshold = 0.3f, .max_detections = 0 };

  g_assert_cmpuint (si_postprocess_select (d, 4, &p), ==, 3);
  p.max_detections = 2;
  g_assert_cmpuint (si_postprocess_select (d, 4, &p), ==, 2);
  p.threshold = 0.0f;
  p.max_detections = 0;
  g_assert_cmpuint (si_postprocess_select (d, 4, &p), ==, 4);
  p.threshold = 0.95f;
  g_assert_cmpuint (si_postprocess_select (d, 4, &p), ==, 0);
}

/* Configurations the stage code does not implement are refused. */
static void
test_unsupported (void)
{
  g_autofree char *path =
      g_build_filename (case_dir, "model.safetensors", NULL);
  GError *error = NULL;
  SiModel *model = si_model_load (path, &error);
  SiBackend *be = si_backend_new (SI_BACKEND_CPU, NULL, &error);
  SiDecoder *dec;
  int s = model->num_stages - 1;

  g_assert_no_error (error);
  g_assert_true (model->stages[s].reuse);
  model->stages[s].lim = 2;
  dec = si_decoder_new (be, model, &error);
  g_assert_null (dec);
  g_assert_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED);
  g_assert_nonnull (strstr (error->message, "lim 2"));
  g_clear_error (&error);
  model->stages[s].lim = 1;
  dec = si_decoder_new (be, model, &error);
  g_assert_no_error (error);
  si_decoder_free (&dec);
  si_backend_free (&be);
  si_model_unref (model);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  case_dir = argc > 1 ? argv[1] : SI_GOLDEN_TINY;

  g_test_add_func ("/decoder/ops/iof-bias", test_iof_bias);
  g_test_add_func ("/decoder/ops/topk-ties", test_topk_ties);
  g_test_add_func ("/decoder/ops/ln2d", test_ln2d);
  g_test_add_func ("/decoder/ops/gate-mix", test_gate_mix);
  g_test_add_func ("/decoder/ops/sample-features", test_sample_features);
  g_test_add_func ("/decoder/ops/posenc", test_posenc);
  g_test_add_func ("/decoder/ops/boxes", test_boxes);
  g_test_add_func ("/decoder/postprocess/select", test_select);
  g_test_add_func ("/decoder/unsupported", test_unsupported);
  g_test_add_func ("/decoder/golden/tensors", test_golden_tensors);
  g_test_add_func ("/decoder/golden/detections", test_golden_detections);
  return g_test_run ();
}
