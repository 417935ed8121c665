/* test-parity-detector.c: the whole detector on the backend under test
 * (CUDA) against the CPU engine on a golden case (suite parity):
 *   from-input  io.safetensors "input" through si_net_run_input() on both:
 *               every dumped tensor within relative L2 1e-3 of the golden
 *               tensor (the CPU engine's own tolerance) and of the CPU
 *               dump; detections: same labels and queries, scores within
 *               1e-3, boxes within 0.05 px;
 *   from-image  image.ppm as RGB and as NV12 through si_context_run():
 *               "input" bit-identical, detections as above; the RGB
 *               frame run again on the device context gives the same
 *               detections bit for bit (under the emulation, once with
 *               the blocks and threads in reverse order and once
 *               shuffled: no op's result may depend on the order in
 *               which a GPU runs its blocks, atomics included).
 * With "fp16": the top 10 detections of the CPU (fp32) must be found on
 * the device with the same label and query, box within 1 px, score within
 * 1e-2.  Usage: test-parity-detector CASE_DIR [fp16].  Without a CUDA
 * device: "skipped: no CUDA device", exit 77; SI_PARITY_TWIN=cpu runs the
 * CPU engine on both sides (harness self-check).
 */
#include "si-config.h"

#include "image-io.h"
#include "net.h"
#include "safetensors.h"
#include "si-engine.h"

#ifdef SI_PARITY_EMU
#include "cuda_runtime.h"
#endif

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REL_L2_LIMIT 1e-3
#define SCORE_TOL 1e-3
#define BOX_TOL 0.05
#define FP16_SCORE_TOL 1e-2
#define FP16_BOX_TOL 1.0
#define FP16_TOP 10

typedef struct
{
  int ndim;
  int64_t shape[SI_TENSOR_MAX_DIMS];
  size_t n;
  float *data;
} Dumped;

static int failures;
static bool fp16, cpu_twin;

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
  Dumped *d = g_new0 (Dumped, 1);
  d->ndim = MIN (ndim, SI_TENSOR_MAX_DIMS);
  d->n = 1;
  for (int i = 0; i < d->ndim; i++) {
    d->shape[i] = shape[i];
    d->n *= (size_t) shape[i];
  }
  d->data = g_memdup2 (data, d->n * sizeof (float));
  g_hash_table_replace (user_data, g_strdup (name), d);
}

static void
fail (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  printf ("FAIL: ");
  vprintf (fmt, ap);
  printf ("\n");
  va_end (ap);
  failures++;
}

static double
rel_l2 (const float *a, const float *ref, size_t n)
{
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; i++) {
    double d = (double) a[i] - ref[i];
    num += d * d;
    den += (double) ref[i] * ref[i];
  }
  if (isnan (num))
    return INFINITY;
  return sqrt (num) / MAX (sqrt (den), 1e-12);
}

static void
skip (const char *why)
{
  printf ("skipped: no CUDA device (%s)\n", why);
  exit (77);
}

static void
options_for (SiContextOptions *o, bool dut)
{
  si_context_options_init (o);
  o->backend = dut && !cpu_twin ? SI_BACKEND_CUDA : SI_BACKEND_CPU;
  o->precision = dut && fp16 ? SI_PRECISION_FP16 : SI_PRECISION_FP32;
  o->max_width = 640;
  o->max_height = 640;
}

/* Checks the device is there before anything else. */
static void
check_device (void)
{
  GError *error = NULL;

  if (cpu_twin)
    return;
#ifndef SI_HAVE_CUDA
  skip ("the CUDA backend is not built");
#endif
  if (!si_backend_available (SI_BACKEND_CUDA, &error)) {
    if (g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE))
      skip (error->message);
    printf ("FAIL: CUDA backend: %s\n", error->message);
    exit (1);
  }
}

/* Every tensor of dut against ref (and golden when given), by name. */
static void
compare_dumps (const char *label, GHashTable *dut, GHashTable *ref,
    const SiSafetensors *golden)
{
  GList *names =
      g_list_sort (g_hash_table_get_keys (ref), (GCompareFunc) g_strcmp0);

  for (GList *l = names; l; l = l->next) {
    const char *name = l->data;
    Dumped *r = g_hash_table_lookup (ref, name);
    Dumped *d = g_hash_table_lookup (dut, name);
    double e_ref, e_gold = -1.0;
    double limit = fp16 ? INFINITY : REL_L2_LIMIT;

    if (d == NULL || d->n != r->n) {
      fail ("%s: %s: missing on the device or shape differs", label, name);
      continue;
    }
    e_ref = rel_l2 (d->data, r->data, r->n);
    if (golden) {
      const SiTensorInfo *t = si_safetensors_find (golden, name);
      if (t && t->dtype == SI_DTYPE_F32 && (size_t) t->numel == d->n) {
        float *g = g_new (float, d->n);
        memcpy (g, t->data, d->n * sizeof (float));
        e_gold = rel_l2 (d->data, g, d->n);
        g_free (g);
      }
    }
    printf ("  %-26s vs cpu %.3e", name, e_ref);
    if (e_gold >= 0)
      printf ("  vs golden %.3e (%5.1f%% of limit)", e_gold,
          100.0 * e_gold / REL_L2_LIMIT);
    printf ("\n");
    if (!(e_ref <= limit) || (e_gold >= 0 && !(e_gold <= limit)))
      fail ("%s: %s above the limit %.0e", label, name, limit);
  }
  g_list_free (names);
}

static const SiDetection *
find_twin (const SiDetection *d, const SiDetection *dets, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (dets[i].query_index == d->query_index &&
        dets[i].class_id == d->class_id)
      return &dets[i];
  return NULL;
}

static void
compare_detections (const char *label, const SiDetection *dut, size_t n_dut,
    const SiDetection *ref, size_t n_ref)
{
  size_t n = fp16 ? MIN (n_ref, FP16_TOP) : n_ref;
  double stol = fp16 ? FP16_SCORE_TOL : SCORE_TOL;
  double btol = fp16 ? FP16_BOX_TOL : BOX_TOL;
  double worst_s = 0.0, worst_b = 0.0;

  if (!fp16 && n_dut != n_ref)
    fail ("%s: %zu detections on the device, %zu on the CPU", label, n_dut,
        n_ref);
  for (size_t i = 0; i < n; i++) {
    const SiDetection *t = find_twin (&ref[i], dut, n_dut);
    double ds, db = 0.0;
    if (t == NULL) {
      fail ("%s: CPU detection %zu (query %d, class %d, score %.4f) has no "
            "twin on the device",
          label, i, ref[i].query_index, ref[i].class_id, ref[i].score);
      continue;
    }
    ds = fabs (t->score - ref[i].score);
    for (int k = 0; k < 4; k++)
      db = MAX (db, fabs (t->box[k] - ref[i].box[k]));
    worst_s = MAX (worst_s, ds);
    worst_b = MAX (worst_b, db);
    if (ds > stol || db > btol)
      fail ("%s: detection %zu (query %d, class %d): score %.5f vs %.5f, "
            "box off by %.3f px",
          label, i, ref[i].query_index, ref[i].class_id, t->score, ref[i].score,
          db);
  }
  printf ("  %s: %zu detections compared, worst score diff %.2e (tol %.0e), "
          "worst box diff %.3f px (tol %.2f)\n",
      label, n, worst_s, stol, worst_b, btol);
}

/* Copies of the detections (owned by the net / context). */
static SiDetection *
dup_dets (const SiDetection *d, size_t n)
{
  return g_memdup2 (d, MAX (n, 1) * sizeof (SiDetection));
}

static void
from_input (SiModel *model, const char *case_dir)
{
  char *io_path = g_build_filename (case_dir, "io.safetensors", NULL);
  GError *error = NULL;
  SiSafetensors *io = si_safetensors_open (io_path, &error);
  const SiTensorInfo *in;
  SiNet *net[2] = { NULL, NULL };
  GHashTable *dumps[2];
  SiDetection *dets[2] = { NULL, NULL };
  size_t n_dets[2] = { 0, 0 };
  SiImageInfo info;
  SiRunParams params;
  float *input;

  printf ("from-input:\n");
  if (io == NULL) {
    fail ("cannot open %s: %s", io_path, error->message);
    g_clear_error (&error);
    g_free (io_path);
    return;
  }
  in = si_safetensors_find (io, "input");
  if (in == NULL || in->ndim != 4 || in->dtype != SI_DTYPE_F32) {
    fail ("io.safetensors has no float32 (1, 3, H, W) \"input\"");
    si_safetensors_close (&io);
    g_free (io_path);
    return;
  }
  input = g_new (float, in->numel);
  memcpy (input, in->data, in->numel * sizeof (float));
  {
    /* the geometry from the golden resized image and the original size */
    const SiTensorInfo *rz = si_safetensors_find (io, "preproc.resized_rgb");
    SiImage img = { 0 };
    char *image_path = g_build_filename (case_dir, "image.ppm", NULL);
    if (rz == NULL || !si_image_load (image_path, &img, &error)) {
      fail ("cannot get the frame geometry of the case");
      g_clear_error (&error);
      g_free (image_path);
      goto done;
    }
    si_image_info_compute (model, img.width, img.height, &info);
    si_image_clear (&img);
    g_free (image_path);
  }
  si_run_params_init (&params);
  params.threshold = 0.0f;
  params.max_detections = 0;

  for (int i = 0; i < 2; i++) {
    SiContextOptions o;
    const SiDetection *out;
    options_for (&o, i == 1);
    dumps[i] =
        g_hash_table_new_full (g_str_hash, g_str_equal, g_free, dumped_free);
    net[i] = si_net_new (model, &o, &error);
    if (net[i] == NULL) {
      fail ("si_net_new (%s): %s", i ? "device" : "cpu", error->message);
      g_clear_error (&error);
      continue;
    }
    si_net_set_dump (net[i], collect, dumps[i]);
    if (!si_net_run_input (
            net[i], input, &info, &params, &out, &n_dets[i], &error)) {
      fail ("si_net_run_input (%s): %s", i ? "device" : "cpu", error->message);
      g_clear_error (&error);
      continue;
    }
    dets[i] = dup_dets (out, n_dets[i]);
  }
  if (dets[0] && dets[1]) {
    compare_dumps ("from-input", dumps[1], dumps[0], io);
    compare_detections ("from-input", dets[1], n_dets[1], dets[0], n_dets[0]);
  }
  for (int i = 0; i < 2; i++) {
    si_net_free (&net[i]);
    g_hash_table_unref (dumps[i]);
    g_free (dets[i]);
  }
done:
  g_free (input);
  si_safetensors_close (&io);
  g_free (io_path);
}

/* RGB (h, w, 3) -> NV12 with BT.601 limited range (for the frame path). */
static void
rgb_to_nv12 (const SiImage *img, uint8_t *y, uint8_t *uv)
{
  int w = img->width, h = img->height;
  for (int j = 0; j < h; j++)
    for (int i = 0; i < w; i++) {
      const uint8_t *p = img->rgb + ((size_t) j * w + i) * 3;
      y[(size_t) j * w + i] =
          (uint8_t) ((66 * p[0] + 129 * p[1] + 25 * p[2] + 128) / 256 + 16);
    }
  for (int j = 0; j < h; j += 2)
    for (int i = 0; i < w; i += 2) {
      const uint8_t *p = img->rgb + ((size_t) j * w + i) * 3;
      uint8_t *o = uv + (size_t) (j / 2) * ((w + 1) / 2) * 2 + (i / 2) * 2;
      o[0] =
          (uint8_t) ((-38 * p[0] - 74 * p[1] + 112 * p[2] + 128 * 256 + 128) /
              256);
      o[1] = (uint8_t) ((112 * p[0] - 94 * p[1] - 18 * p[2] + 128 * 256 + 128) /
          256);
    }
}

/* @frame again on the device context @ctx: detections bit for bit @dets
 * (in other block orders under the emulation). */
static void
run_again (SiContext *ctx, const SiFrame *frame, const SiRunParams *params,
    const SiDetection *dets, size_t n_dets, const char *label)
{
#ifdef SI_PARITY_EMU
  static const char *orders[] = { "reverse", "shuffle" };
#else
  static const char *orders[] = { "the same device" };
#endif
  GError *error = NULL;

  for (size_t k = 0; k < G_N_ELEMENTS (orders); k++) {
    const SiDetection *again;
    size_t n = 0;
#ifdef SI_PARITY_EMU
    si_emu_set_schedule (orders[k]);
#endif
    if (!si_context_run (ctx, frame, params, &error)) {
      fail ("%s again (%s): %s", label, orders[k], error->message);
      g_clear_error (&error);
      continue;
    }
    again = si_context_get_detections (ctx, &n);
    if (n == n_dets && memcmp (again, dets, n * sizeof (SiDetection)) == 0)
      printf (
          "  %s again (%s): %zu detections bit for bit\n", label, orders[k], n);
    else
      fail ("%s again (%s): the detections differ from the first run", label,
          orders[k]);
  }
#ifdef SI_PARITY_EMU
  si_emu_set_schedule (NULL);
#endif
}

static void
from_image (SiModel *model, const char *case_dir)
{
  char *image_path = g_build_filename (case_dir, "image.ppm", NULL);
  GError *error = NULL;
  SiImage img = { 0 };
  SiFrame frames[2];
  uint8_t *yplane = NULL, *uvplane = NULL;
  const char *frame_names[2] = { "RGB", "NV12" };

  printf ("from-image:\n");
  if (!si_image_load (image_path, &img, &error)) {
    fail ("cannot read %s: %s", image_path, error->message);
    g_clear_error (&error);
    g_free (image_path);
    return;
  }
  memset (frames, 0, sizeof (frames));
  frames[0].format = SI_FORMAT_RGB;
  frames[0].width = img.width;
  frames[0].height = img.height;
  frames[0].planes[0] = img.rgb;
  frames[0].strides[0] = (size_t) img.width * 3;
  yplane = g_malloc ((size_t) img.width * img.height);
  uvplane =
      g_malloc ((size_t) (img.width + 1) / 2 * 2 * ((img.height + 1) / 2));
  rgb_to_nv12 (&img, yplane, uvplane);
  frames[1].format = SI_FORMAT_NV12;
  frames[1].width = img.width;
  frames[1].height = img.height;
  frames[1].planes[0] = yplane;
  frames[1].planes[1] = uvplane;
  frames[1].strides[0] = img.width;
  frames[1].strides[1] = (size_t) (img.width + 1) / 2 * 2;

  for (int f = 0; f < 2; f++) {
    SiContext *ctx[2] = { NULL, NULL };
    GHashTable *dumps[2];
    SiDetection *dets[2] = { NULL, NULL };
    size_t n_dets[2] = { 0, 0 };
    SiRunParams params;
    char label[64];

    si_run_params_init (&params);
    params.threshold = 0.0f;
    snprintf (label, sizeof (label), "from-image %s", frame_names[f]);
    for (int i = 0; i < 2; i++) {
      SiContextOptions o;
      const SiDetection *out;
      options_for (&o, i == 1);
      dumps[i] =
          g_hash_table_new_full (g_str_hash, g_str_equal, g_free, dumped_free);
      ctx[i] = si_context_new (model, &o, &error);
      if (ctx[i] == NULL) {
        fail ("%s: si_context_new: %s", label, error->message);
        g_clear_error (&error);
        continue;
      }
      si_context_set_dump (ctx[i], collect, dumps[i]);
      if (!si_context_run (ctx[i], &frames[f], &params, &error)) {
        fail ("%s: si_context_run (%s): %s", label, i ? "device" : "cpu",
            error->message);
        g_clear_error (&error);
        continue;
      }
      out = si_context_get_detections (ctx[i], &n_dets[i]);
      dets[i] = dup_dets (out, n_dets[i]);
      if (i == 1 && f == 0 && !cpu_twin)
        run_again (ctx[i], &frames[f], &params, dets[i], n_dets[i], label);
    }
    if (dets[0] && dets[1]) {
      Dumped *a = g_hash_table_lookup (dumps[1], "input");
      Dumped *b = g_hash_table_lookup (dumps[0], "input");
      if (a && b && a->n == b->n &&
          memcmp (a->data, b->data, a->n * sizeof (float)) == 0)
        printf ("  %s: input bit-identical\n", label);
      else
        fail ("%s: the preprocessed input differs", label);
      compare_detections (label, dets[1], n_dets[1], dets[0], n_dets[0]);
    }
    for (int i = 0; i < 2; i++) {
      si_context_free (&ctx[i]);
      g_hash_table_unref (dumps[i]);
      g_free (dets[i]);
    }
  }
  g_free (yplane);
  g_free (uvplane);
  si_image_clear (&img);
  g_free (image_path);
}

int
main (int argc, char **argv)
{
  const char *twin = g_getenv ("SI_PARITY_TWIN");
  GError *error = NULL;
  SiModel *model;
  char *model_path;

  if (argc < 2) {
    fprintf (stderr, "usage: %s CASE_DIR [fp16]\n", argv[0]);
    return 2;
  }
  fp16 = argc > 2 && g_strcmp0 (argv[2], "fp16") == 0;
  cpu_twin = g_strcmp0 (twin, "cpu") == 0;
  check_device ();

  model_path = g_build_filename (argv[1], "model.safetensors", NULL);
  model = si_model_load (model_path, &error);
  if (model == NULL) {
    printf ("FAIL: cannot load %s: %s\n", model_path, error->message);
    return 1;
  }
  printf ("parity-detector: %s against cpu on %s%s\n",
      cpu_twin ? "cpu" : "cuda", argv[1], fp16 ? " (fp16)" : "");
  from_input (model, argv[1]);
  from_image (model, argv[1]);
  si_model_unref (model);
  g_free (model_path);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
