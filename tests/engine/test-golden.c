/* test-golden.c: the whole engine against a golden case of the official
 * implementation (suite golden).  Everything is read from the case
 * directory (case.json, model.safetensors, io.safetensors, the image), so
 * any case works, not only "tiny":
 *   /golden/from-input   io.safetensors "input" through si_net_run_input():
 *                        every dumped tensor vs io.safetensors by name
 *                        (relative L2 <= 1e-3), every golden detection has
 *                        a twin;
 *   /golden/from-image   the image through si_context_run(): "input" within
 *                        1e-2, the top detections keep labels and order;
 *                        RGB/BGR/BGRX/XBGR frames give identical results;
 *   /golden/si-detect    the built si-detect with --dump: its JSON and its
 *                        dump vs the golden data.
 * Usage: test-golden CASE_DIR [SI_DETECT_PATH]
 */
#include "image-io.h"
#include "net.h"
#include "safetensors.h"
#include "si-engine.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

#define REL_L2_LIMIT 1e-3
#define INPUT_LIMIT_FROM_IMAGE 1e-2
#define SCORE_TOL 1e-3
#define BOX_TOL 0.05

static const char *case_dir;
static const char *si_detect_path;

typedef struct
{
  JsonParser *parser;
  JsonObject *root;
  SiSafetensors *io;
  char *model_path;
  char *image_path;
  SiImageInfo info;
} Case;

/* ---- case data ---- */

static int
json_int_at (JsonObject *o, const char *key, guint i)
{
  JsonArray *a = json_object_get_array_member (o, key);
  g_assert_nonnull (a);
  return (int) json_array_get_int_element (a, i);
}

static void
case_load (Case *c)
{
  GError *error = NULL;
  char *json = g_build_filename (case_dir, "case.json", NULL);
  c->parser = json_parser_new ();
  if (!json_parser_load_from_file (c->parser, json, &error))
    g_error ("golden case %s: %s", json, error->message);
  c->root = json_node_get_object (json_parser_get_root (c->parser));
  g_free (json);

  char *io = g_build_filename (case_dir, "io.safetensors", NULL);
  c->io = si_safetensors_open (io, &error);
  g_assert_no_error (error);
  g_free (io);
  c->model_path = g_build_filename (case_dir, "model.safetensors", NULL);
  JsonObject *img = json_object_get_object_member (c->root, "image");
  g_assert_nonnull (img);
  c->image_path = g_build_filename (
      case_dir, json_object_get_string_member (img, "file"), NULL);

  /* geometry from case.json: shapes are (h, w, 3) */
  SiImageInfo *in = &c->info;
  in->height = json_int_at (c->root, "ori_shape", 0);
  in->width = json_int_at (c->root, "ori_shape", 1);
  in->new_h = json_int_at (c->root, "img_shape", 0);
  in->new_w = json_int_at (c->root, "img_shape", 1);
  in->pad_h = json_int_at (c->root, "pad_shape", 0);
  in->pad_w = json_int_at (c->root, "pad_shape", 1);
  JsonArray *sf = json_object_get_array_member (c->root, "scale_factor");
  for (int i = 0; i < 4; i++)
    in->scale_factor[i] = (float) json_array_get_double_element (sf, i);
}

static void
case_clear (Case *c)
{
  si_safetensors_close (&c->io);
  g_object_unref (c->parser);
  g_free (c->model_path);
  g_free (c->image_path);
}

static SiModel *
load_model (const Case *c)
{
  GError *error = NULL;
  SiModel *m = si_model_load (c->model_path, &error);
  g_assert_no_error (error);
  return m;
}

/* ---- dump collection and comparison ---- */

typedef struct
{
  int64_t shape[SI_TENSOR_MAX_DIMS];
  int ndim;
  int64_t numel;
  float *data;
} Tensor;

static void
tensor_free (gpointer p)
{
  Tensor *t = p;
  g_free (t->data);
  g_free (t);
}

static GHashTable *
tensor_table_new (void)
{
  return g_hash_table_new_full (g_str_hash, g_str_equal, g_free, tensor_free);
}

static void
collect (const char *name, const int64_t *shape, int ndim, const float *data,
    void *user_data)
{
  Tensor *t = g_new0 (Tensor, 1);
  t->ndim = ndim;
  t->numel = 1;
  for (int i = 0; i < ndim; i++) {
    t->shape[i] = shape[i];
    t->numel *= shape[i];
  }
  t->data = g_memdup2 (data, (gsize) MAX (t->numel, 1) * sizeof (float));
  g_hash_table_replace (user_data, g_strdup (name), t);
}

/* A stored tensor as float64 (F32, F16-free golden data or I64 labels). */
static double *
stored_values (const SiTensorInfo *t)
{
  double *v = g_new (double, MAX (t->numel, 1));
  const guint8 *p = t->data;
  for (int64_t i = 0; i < t->numel; i++) {
    if (t->dtype == SI_DTYPE_F32) {
      float f;
      memcpy (&f, p + 4 * i, 4);
      v[i] = f;
    } else if (t->dtype == SI_DTYPE_I64) {
      gint64 k;
      memcpy (&k, p + 8 * i, 8);
      v[i] = (double) k;
    } else {
      g_error ("golden tensor %s has unexpected dtype %s", t->name,
          si_dtype_name (t->dtype));
    }
  }
  return v;
}

/* Relative L2 error ||a - b|| / max (||b||, 1e-12); -1 on shape mismatch. */
static double
rel_l2 (const Tensor *a, const SiTensorInfo *b)
{
  if (a->ndim != b->ndim)
    return -1;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i])
      return -1;
  double *ref = stored_values (b);
  double num = 0, den = 0;
  for (int64_t i = 0; i < b->numel; i++) {
    double d = (double) a->data[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  g_free (ref);
  if (!isfinite (num))
    return INFINITY;
  return sqrt (num) / MAX (sqrt (den), 1e-12);
}

/* Compares every collected tensor that io also has; fails on any error
 * above the limit, a shape mismatch, or a required tensor of case.json
 * "tensors" that was never dumped (except those in skip). */
static void
compare_by_name (
    const Case *c, GHashTable *ours, double limit, const char *const *skip)
{
  int compared = 0, failed = 0;
  for (guint i = 0; i < si_safetensors_n_tensors (c->io); i++) {
    const SiTensorInfo *g = si_safetensors_get (c->io, i);
    const Tensor *t = g_hash_table_lookup (ours, g->name);
    if (t == NULL)
      continue;
    double e = rel_l2 (t, g);
    compared++;
    if (e < 0) {
      g_printerr ("  %-28s SHAPE MISMATCH\n", g->name);
      failed++;
      continue;
    }
    gboolean bad = !(e <= limit);
    g_printerr ("  %-28s rel L2 %.3e  (%5.1f%% of limit)%s\n", g->name, e,
        100.0 * e / limit, bad ? "  FAIL" : "");
    failed += bad;
  }
  JsonObject *req = json_object_get_object_member (c->root, "tensors");
  GList *names = json_object_get_members (req);
  for (GList *l = names; l != NULL; l = l->next) {
    gboolean skipped = FALSE;
    for (int k = 0; skip != NULL && skip[k] != NULL; k++)
      skipped |= strcmp (skip[k], l->data) == 0;
    if (!skipped && !g_hash_table_contains (ours, l->data)) {
      g_printerr (
          "  %-28s required but never dumped  FAIL\n", (const char *) l->data);
      failed++;
    }
  }
  g_list_free (names);
  g_printerr ("  %d tensors compared, %d failed\n", compared, failed);
  g_assert_cmpint (compared, >, 0);
  g_assert_cmpint (failed, ==, 0);
}

/* ---- detections ---- */

typedef struct
{
  int label;
  double score;
  double box[4];
} Det;

static Det *
golden_dets (const Case *c, int *n)
{
  const SiTensorInfo *b = si_safetensors_find (c->io, "det_boxes");
  const SiTensorInfo *s = si_safetensors_find (c->io, "det_scores");
  const SiTensorInfo *l = si_safetensors_find (c->io, "det_labels");
  g_assert_nonnull (b);
  g_assert_nonnull (s);
  g_assert_nonnull (l);
  *n = (int) s->numel;
  g_assert_cmpint (b->numel, ==, 4 * *n);
  g_assert_cmpint (l->numel, ==, *n);
  double *bv = stored_values (b), *sv = stored_values (s),
         *lv = stored_values (l);
  Det *d = g_new0 (Det, MAX (*n, 1));
  for (int i = 0; i < *n; i++) {
    d[i].label = (int) lv[i];
    d[i].score = sv[i];
    for (int k = 0; k < 4; k++)
      d[i].box[k] = bv[4 * i + k];
  }
  g_free (bv);
  g_free (sv);
  g_free (lv);
  return d;
}

static Det *
engine_dets (const SiDetection *src, size_t n)
{
  Det *d = g_new0 (Det, MAX (n, 1));
  for (size_t i = 0; i < n; i++) {
    d[i].label = src[i].class_id;
    d[i].score = src[i].score;
    for (int k = 0; k < 4; k++)
      d[i].box[k] = src[i].box[k];
  }
  return d;
}

/* Every golden detection has its own twin among ours: same label, score
 * within SCORE_TOL, every box coordinate within BOX_TOL pixels. */
static void
check_twins (const Det *gold, int ng, const Det *ours, int no)
{
  gboolean *used = g_new0 (gboolean, MAX (no, 1));
  int missing = 0;
  g_assert_cmpint (no, ==, ng);
  for (int i = 0; i < ng; i++) {
    int found = -1;
    double best = INFINITY;
    for (int j = 0; j < no; j++) {
      if (used[j] || ours[j].label != gold[i].label ||
          fabs (ours[j].score - gold[i].score) > SCORE_TOL)
        continue;
      double worst = 0;
      for (int k = 0; k < 4; k++)
        worst = MAX (worst, fabs (ours[j].box[k] - gold[i].box[k]));
      if (worst <= BOX_TOL && worst < best) {
        best = worst;
        found = j;
      }
    }
    if (found < 0) {
      g_printerr ("  golden detection %d (label %d, score %.6f, box %.3f "
                  "%.3f %.3f %.3f) has no twin\n",
          i, gold[i].label, gold[i].score, gold[i].box[0], gold[i].box[1],
          gold[i].box[2], gold[i].box[3]);
      missing++;
    } else {
      used[found] = TRUE;
    }
  }
  g_printerr ("  %d golden detections, %d without a twin\n", ng, missing);
  g_free (used);
  g_assert_cmpint (missing, ==, 0);
}

/* The first k detections keep labels and order, except where golden
 * scores tie (within SCORE_TOL) and the order is not meaningful. */
static void
check_top_order (const Det *gold, int ng, const Det *ours, int no, int k)
{
  k = MIN (k, MIN (ng, no));
  g_assert_cmpint (k, >, 0);
  for (int i = 0; i < k; i++) {
    gboolean tie = (i > 0 && gold[i - 1].score - gold[i].score < SCORE_TOL) ||
        (i + 1 < ng && gold[i].score - gold[i + 1].score < SCORE_TOL);
    if (tie)
      continue;
    if (ours[i].label != gold[i].label ||
        fabs (ours[i].score - gold[i].score) > SCORE_TOL)
      g_error ("detection %d: ours label %d score %.6f, golden label %d "
               "score %.6f",
          i, ours[i].label, ours[i].score, gold[i].label, gold[i].score);
  }
}

/* ---- tests ---- */

static void
test_from_input (void)
{
  Case c = { 0 };
  GError *error = NULL;
  case_load (&c);
  SiModel *m = load_model (&c);

  /* net.c's geometry must agree with the case */
  SiImageInfo info;
  si_image_info_compute (m, c.info.width, c.info.height, &info);
  g_assert_cmpint (info.new_w, ==, c.info.new_w);
  g_assert_cmpint (info.new_h, ==, c.info.new_h);
  g_assert_cmpint (info.pad_w, ==, c.info.pad_w);
  g_assert_cmpint (info.pad_h, ==, c.info.pad_h);
  for (int i = 0; i < 4; i++)
    g_assert_cmpfloat (info.scale_factor[i], ==, c.info.scale_factor[i]);

  SiContextOptions opts;
  si_context_options_init (&opts);
  opts.backend = SI_BACKEND_CPU;
  opts.max_width = c.info.width;
  opts.max_height = c.info.height;
  SiNet *net = si_net_new (m, &opts, &error);
  g_assert_no_error (error);
  GHashTable *ours = tensor_table_new ();
  si_net_set_dump (net, collect, ours);

  const SiTensorInfo *in = si_safetensors_find (c.io, "input");
  g_assert_nonnull (in);
  g_assert_cmpint (in->ndim, ==, 4);
  g_assert_cmpint (in->shape[2], ==, c.info.pad_h);
  g_assert_cmpint (in->shape[3], ==, c.info.pad_w);
  double *in64 = stored_values (in);
  float *input = g_new (float, in->numel);
  for (int64_t i = 0; i < in->numel; i++)
    input[i] = (float) in64[i];
  g_free (in64);
  SiRunParams params;
  si_run_params_init (&params);
  params.threshold = 0.0f;
  const SiDetection *out = NULL;
  size_t n = 0;
  g_assert_true (
      si_net_run_input (net, input, &c.info, &params, &out, &n, &error));
  g_assert_no_error (error);
  g_free (input);

  g_printerr ("from input (%s):\n", case_dir);
  const char *skip[] = { "input", NULL };
  compare_by_name (&c, ours, REL_L2_LIMIT, skip);
  g_assert_cmpuint (n, ==, (size_t) m->max_per_img);

  int ng;
  Det *gold = golden_dets (&c, &ng);
  Det *mine = engine_dets (out, n);
  check_twins (gold, ng, mine, (int) n);
  g_free (gold);
  g_free (mine);
  g_hash_table_unref (ours);
  si_net_free (&net);
  si_model_clear (&m);
  case_clear (&c);
}

/* Packs the RGB image into format (3 or 4 bytes per pixel, X = 0xff). */
static guint8 *
pack (const SiImage *img, SiPixelFormat fmt, size_t *stride)
{
  int bpp = (fmt == SI_FORMAT_RGB || fmt == SI_FORMAT_BGR) ? 3 : 4;
  /* channel order: index of R, G, B in the pixel, -1 for padding */
  int r, g, b;
  switch (fmt) {
    case SI_FORMAT_RGB:
      r = 0, g = 1, b = 2;
      break;
    case SI_FORMAT_BGR:
    case SI_FORMAT_BGRX:
      r = 2, g = 1, b = 0;
      break;
    case SI_FORMAT_XBGR:
      r = 3, g = 2, b = 1;
      break;
    default:
      g_assert_not_reached ();
  }
  *stride = (size_t) img->width * bpp + 8; /* padded rows */
  guint8 *p = g_malloc0 (*stride * img->height);
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++) {
      const guint8 *s = img->rgb + ((size_t) y * img->width + x) * 3;
      guint8 *d = p + (size_t) y * *stride + (size_t) x * bpp;
      if (bpp == 4)
        memset (d, 0xff, 4);
      d[r] = s[0];
      d[g] = s[1];
      d[b] = s[2];
    }
  return p;
}

static void
test_from_image (void)
{
  Case c = { 0 };
  GError *error = NULL;
  SiImage img;
  case_load (&c);
  g_assert_true (si_image_load (c.image_path, &img, &error));
  g_assert_no_error (error);
  g_assert_cmpint (img.width, ==, c.info.width);
  g_assert_cmpint (img.height, ==, c.info.height);

  SiModel *m = load_model (&c);
  SiContextOptions opts;
  si_context_options_init (&opts);
  opts.backend = SI_BACKEND_CPU;
  opts.max_width = img.width;
  opts.max_height = img.height;
  SiContext *ctx = si_context_new (m, &opts, &error);
  g_assert_no_error (error);
  GHashTable *ours = tensor_table_new ();
  si_context_set_dump (ctx, collect, ours);

  SiRunParams params;
  si_run_params_init (&params);
  params.threshold = 0.0f;
  SiFrame f = { 0 };
  f.format = SI_FORMAT_RGB;
  f.width = img.width;
  f.height = img.height;
  f.planes[0] = img.rgb;
  f.strides[0] = (size_t) img.width * 3;
  g_assert_true (si_context_run (ctx, &f, &params, &error));
  g_assert_no_error (error);
  si_context_set_dump (ctx, NULL, NULL);

  const Tensor *t = g_hash_table_lookup (ours, "input");
  g_assert_nonnull (t);
  double e = rel_l2 (t, si_safetensors_find (c.io, "input"));
  g_printerr ("from image (%s): input rel L2 %.3e (limit %.0e)\n", case_dir, e,
      INPUT_LIMIT_FROM_IMAGE);
  g_assert_cmpfloat (e, >=, 0.0);
  g_assert_cmpfloat (e, <=, INPUT_LIMIT_FROM_IMAGE);

  size_t n = 0;
  const SiDetection *out = si_context_get_detections (ctx, &n);
  g_assert_cmpuint (n, ==, (size_t) m->max_per_img);
  int ng;
  Det *gold = golden_dets (&c, &ng);
  Det *mine = engine_dets (out, n);
  check_top_order (gold, ng, mine, (int) n, 5);

  /* the same pixels in other packed layouts give the same detections */
  const SiPixelFormat fmts[] = { SI_FORMAT_BGR, SI_FORMAT_BGRX,
    SI_FORMAT_XBGR };
  for (size_t i = 0; i < G_N_ELEMENTS (fmts); i++) {
    SiFrame g = f;
    g.format = fmts[i];
    guint8 *buf = pack (&img, fmts[i], &g.strides[0]);
    g.planes[0] = buf;
    g_assert_true (si_context_run (ctx, &g, &params, &error));
    g_assert_no_error (error);
    size_t n2 = 0;
    const SiDetection *o2 = si_context_get_detections (ctx, &n2);
    g_assert_cmpuint (n2, ==, n);
    for (size_t j = 0; j < n; j++) {
      g_assert_cmpint (o2[j].class_id, ==, mine[j].label);
      g_assert_cmpfloat (o2[j].score, ==, (float) mine[j].score);
      for (int k = 0; k < 4; k++)
        g_assert_cmpfloat (o2[j].box[k], ==, (float) mine[j].box[k]);
    }
    g_free (buf);
  }

  g_free (gold);
  g_free (mine);
  g_hash_table_unref (ours);
  si_context_free (&ctx);
  si_model_clear (&m);
  si_image_clear (&img);
  case_clear (&c);
}

static void
test_si_detect (void)
{
  Case c = { 0 };
  GError *error = NULL;
  if (si_detect_path == NULL) {
    g_test_skip ("no si-detect path given");
    return;
  }
  case_load (&c);
  char *tmpdir = g_dir_make_tmp ("si-golden-XXXXXX", NULL);
  char *dump = g_build_filename (tmpdir, "dump.safetensors", NULL);
  char *argv[] = { (char *) si_detect_path, "--model", c.model_path, "--image",
    c.image_path, "--backend", "cpu", "--threshold", "0", "--dump", dump,
    NULL };
  char *out = NULL, *err = NULL;
  int status = 0;
  g_assert_true (g_spawn_sync (NULL, argv, NULL, G_SPAWN_DEFAULT, NULL, NULL,
      &out, &err, &status, &error));
  g_assert_no_error (error);
  if (!g_spawn_check_wait_status (status, &error))
    g_error ("si-detect failed: %s\nstderr: %s", error->message, err);

  /* stdout: one JSON object */
  JsonParser *p = json_parser_new ();
  if (!json_parser_load_from_data (p, out, -1, &error))
    g_error ("si-detect printed invalid JSON (%s): %s", error->message, out);
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_assert_nonnull (o);
  g_assert_cmpint (json_object_get_int_member (o, "width"), ==, c.info.width);
  g_assert_cmpint (json_object_get_int_member (o, "height"), ==, c.info.height);
  JsonArray *dets = json_object_get_array_member (o, "detections");
  g_assert_nonnull (dets);
  int no = (int) json_array_get_length (dets);
  Det *mine = g_new0 (Det, MAX (no, 1));
  for (int i = 0; i < no; i++) {
    JsonObject *d = json_array_get_object_element (dets, i);
    mine[i].label = (int) json_object_get_int_member (d, "class_id");
    mine[i].score = json_object_get_double_member (d, "score");
    g_assert_nonnull (json_object_get_string_member (d, "label"));
    JsonArray *b = json_object_get_array_member (d, "box");
    g_assert_cmpuint (json_array_get_length (b), ==, 4);
    for (int k = 0; k < 4; k++)
      mine[i].box[k] = json_array_get_double_element (b, k);
    if (i > 0)
      g_assert_cmpfloat (mine[i].score, <=, mine[i - 1].score);
  }
  int ng;
  Det *gold = golden_dets (&c, &ng);
  g_printerr ("si-detect (%s):\n", case_dir);
  check_twins (gold, ng, mine, no);
  check_top_order (gold, ng, mine, no, 5);

  /* the dump: same names and shapes as io.safetensors */
  SiSafetensors *d = si_safetensors_open (dump, &error);
  g_assert_no_error (error);
  GHashTable *ours = tensor_table_new ();
  for (guint i = 0; i < si_safetensors_n_tensors (d); i++) {
    const SiTensorInfo *t = si_safetensors_get (d, i);
    g_assert_cmpint (t->dtype, ==, SI_DTYPE_F32);
    float *v = g_malloc (MAX (t->nbytes, 4));
    memcpy (v, t->data, t->nbytes);
    collect (t->name, t->shape, t->ndim, v, ours);
    g_free (v);
  }
  /* from the image: the preprocessing is part of what is checked here */
  compare_by_name (&c, ours, REL_L2_LIMIT, NULL);
  g_hash_table_unref (ours);
  si_safetensors_close (&d);

  g_unlink (dump);
  g_rmdir (tmpdir);
  g_free (dump);
  g_free (tmpdir);
  g_free (gold);
  g_free (mine);
  g_object_unref (p);
  g_free (out);
  g_free (err);
  case_clear (&c);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (argc < 2)
    g_error ("usage: test-golden CASE_DIR [SI_DETECT_PATH]");
  case_dir = argv[1];
  si_detect_path = argc > 2 ? argv[2] : NULL;
  char *cj = g_build_filename (case_dir, "case.json", NULL);
  if (!g_file_test (cj, G_FILE_TEST_EXISTS))
    g_error ("golden case %s is missing (set -Dgolden_dir)", cj);
  g_free (cj);

  g_test_add_func ("/golden/from-input", test_from_input);
  g_test_add_func ("/golden/from-image", test_from_image);
  g_test_add_func ("/golden/si-detect", test_si_detect);
  return g_test_run ();
}
