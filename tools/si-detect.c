/* si-detect.c: runs the StageInteractor engine on one still image and prints
 * the detections as one JSON object on stdout:
 *   {"width":W,"height":H,"detections":[{"class_id":I,"label":"...",
 *    "score":S,"box":[x1,y1,x2,y2]},...]}
 * --dump FILE also writes every intermediate tensor the engine reports
 * (golden names and shapes) into a safetensors file.
 */
#include "image-io.h"
#include "safetensors.h"
#include "si-engine.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct
{
  char *model;
  char *image;
  char *backend;
  char *precision;
  double threshold;
  int max_detections;
  int threads;
  char *dump;
  gboolean version;
  gboolean timings;
} Args;

static void
dump_cb (const char *name, const int64_t *shape, int ndim, const float *data,
    void *user_data)
{
  si_safetensors_writer_add_f32 (user_data, name, shape, ndim, data);
}

/* JSON string literal with the escapes RFC 8259 requires. */
static void
print_json_string (GString *out, const char *s)
{
  g_string_append_c (out, '"');
  for (const unsigned char *p = (const unsigned char *) (s ? s : ""); *p; p++) {
    if (*p == '"' || *p == '\\')
      g_string_append_printf (out, "\\%c", *p);
    else if (*p < 0x20)
      g_string_append_printf (out, "\\u%04x", *p);
    else
      g_string_append_c (out, (char) *p);
  }
  g_string_append_c (out, '"');
}

static void
print_number (GString *out, const char *fmt, double v)
{
  if (isfinite (v))
    g_string_append_printf (out, fmt, v);
  else
    g_string_append (out, "null");
}

typedef struct
{
  const SiDetection *d;
  int nc;
} Sorted;

static int
det_cmp (const void *a, const void *b)
{
  const Sorted *x = a, *y = b;
  if (x->d->score != y->d->score)
    return x->d->score > y->d->score ? -1 : 1;
  gint64 fx = (gint64) x->d->query_index * x->nc + x->d->class_id;
  gint64 fy = (gint64) y->d->query_index * y->nc + y->d->class_id;
  return fx < fy ? -1 : fx > fy;
}

static char *
detections_json (
    const SiImage *img, const SiDetection *dets, size_t n, int num_classes)
{
  GString *out = g_string_new (NULL);
  Sorted *order = g_new (Sorted, n > 0 ? n : 1);

  for (size_t i = 0; i < n; i++) {
    order[i].d = &dets[i];
    order[i].nc = num_classes;
  }
  qsort (order, n, sizeof (Sorted), det_cmp);
  g_string_append_printf (out, "{\"width\":%d,\"height\":%d,\"detections\":[",
      img->width, img->height);
  for (size_t i = 0; i < n; i++) {
    const SiDetection *d = order[i].d;
    g_string_append_printf (
        out, "%s{\"class_id\":%d,\"label\":", i ? "," : "", d->class_id);
    print_json_string (out, d->label);
    g_string_append (out, ",\"score\":");
    print_number (out, "%.6g", d->score);
    g_string_append (out, ",\"box\":[");
    for (int k = 0; k < 4; k++) {
      if (k)
        g_string_append_c (out, ',');
      print_number (out, "%.4f", d->box[k]);
    }
    g_string_append (out, "]}");
  }
  g_string_append (out, "]}\n");
  g_free (order);
  return g_string_free (out, FALSE);
}

static gboolean
parse_backend (const char *s, SiBackendKind *kind, GError **error)
{
  if (s == NULL || strcmp (s, "auto") == 0)
    *kind = SI_BACKEND_AUTO;
  else if (strcmp (s, "cpu") == 0)
    *kind = SI_BACKEND_CPU;
  else if (strcmp (s, "cuda") == 0)
    *kind = SI_BACKEND_CUDA;
  else {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "unknown backend \"%s\" (auto, cpu or cuda)", s);
    return FALSE;
  }
  return TRUE;
}

static gboolean
parse_precision (const char *s, SiPrecision *precision, GError **error)
{
  if (s == NULL || strcmp (s, "fp32") == 0)
    *precision = SI_PRECISION_FP32;
  else if (strcmp (s, "fp16") == 0)
    *precision = SI_PRECISION_FP16;
  else {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "unknown precision \"%s\" (fp32 or fp16)", s);
    return FALSE;
  }
  return TRUE;
}

static void
print_timings (const SiContext *ctx)
{
  SiTimings t;
  si_context_get_timings (ctx, &t);
  fprintf (stderr,
      "timings (ms): preprocess %.2f backbone %.2f neck %.2f query_init %.2f",
      t.preprocess, t.backbone, t.neck, t.query_init);
  for (int s = 0; s < t.num_stages && s < SI_MAX_STAGES; s++)
    fprintf (stderr, " stage%d %.2f", s, t.stage[s]);
  fprintf (stderr, " postprocess %.2f total %.2f\n", t.postprocess, t.total);
}

static gboolean
run (const Args *a, GError **error)
{
  SiImage img = { 0 };
  SiModel *model = NULL;
  SiContext *ctx = NULL;
  SiSafetensorsWriter *writer = NULL;
  SiContextOptions opts;
  SiRunParams params;
  gboolean ok = FALSE;

  si_context_options_init (&opts);
  if (!parse_backend (a->backend, &opts.backend, error) ||
      !parse_precision (a->precision, &opts.precision, error))
    return FALSE;
  opts.num_threads = a->threads;
  opts.part_timings = a->timings;
  if (!si_image_load (a->image, &img, error))
    return FALSE;
  model = si_model_load (a->model, error);
  if (model == NULL)
    goto out;
  opts.max_width = img.width;
  opts.max_height = img.height;
  ctx = si_context_new (model, &opts, error);
  if (ctx == NULL)
    goto out;
  if (a->dump != NULL) {
    writer = si_safetensors_writer_new ();
    si_context_set_dump (ctx, dump_cb, writer);
  }

  SiFrame frame = { 0 };
  frame.format = SI_FORMAT_RGB;
  frame.width = img.width;
  frame.height = img.height;
  frame.planes[0] = img.rgb;
  frame.strides[0] = (size_t) img.width * 3;
  si_run_params_init (&params);
  params.threshold = (float) a->threshold;
  params.max_detections = a->max_detections;
  if (!si_context_run (ctx, &frame, &params, error))
    goto out;
  if (a->timings)
    print_timings (ctx);

  size_t n = 0;
  const SiDetection *dets = si_context_get_detections (ctx, &n);
  char *json =
      detections_json (&img, dets, n, si_model_get_num_classes (model));
  fputs (json, stdout);
  g_free (json);
  if (fflush (stdout) != 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO, "cannot write to stdout");
    goto out;
  }

  if (writer != NULL) {
    si_context_set_dump (ctx, NULL, NULL);
    si_safetensors_writer_add_metadata (writer, "model", a->model);
    si_safetensors_writer_add_metadata (writer, "image", a->image);
    if (!si_safetensors_writer_save (writer, a->dump, error))
      goto out;
  }
  ok = TRUE;
out:
  si_safetensors_writer_free (&writer);
  si_context_free (&ctx);
  si_model_clear (&model);
  si_image_clear (&img);
  return ok;
}

int
main (int argc, char **argv)
{
  Args a = { 0 };
  GError *error = NULL;
  a.threshold = 0.3;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &a.model,
        "Model file (.safetensors)", "FILE" },
    { "image", 'i', 0, G_OPTION_ARG_FILENAME, &a.image,
        "Image file (PPM, PNG or JPEG)", "FILE" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &a.backend,
        "auto (default), cpu or cuda", "NAME" },
    { "precision", 'p', 0, G_OPTION_ARG_STRING, &a.precision,
        "fp32 (default) or fp16 (CUDA: tensor-core GEMMs, half maps; the "
        "CPU computes in fp32 either way)",
        "P" },
    { "threshold", 't', 0, G_OPTION_ARG_DOUBLE, &a.threshold,
        "Minimum score (default 0.3; 0 keeps all top max_per_img)", "T" },
    { "max-detections", 'n', 0, G_OPTION_ARG_INT, &a.max_detections,
        "At most N detections (default 0 = no limit)", "N" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &a.threads,
        "CPU threads (default 0 = all cores)", "N" },
    { "dump", 0, 0, G_OPTION_ARG_FILENAME, &a.dump,
        "Write every intermediate tensor to this safetensors file", "FILE" },
    { "timings", 0, 0, G_OPTION_ARG_NONE, &a.timings,
        "Print per-part timings to stderr", NULL },
    { "version", 0, 0, G_OPTION_ARG_NONE, &a.version,
        "Print the version and the built backends", NULL },
    { NULL },
  };
  GOptionContext *oc = g_option_context_new ("- StageInteractor detector");
  int rc = 0;

  g_option_context_add_main_entries (oc, entries, NULL);
  if (!g_option_context_parse (oc, &argc, &argv, &error)) {
    fprintf (stderr, "si-detect: %s\n", error->message);
    rc = 2;
    goto out;
  }
  if (a.version) {
    printf ("si-detect %s\nbackends: %s\n", si_engine_version (),
        si_engine_backends ());
    goto out;
  }
  if (a.model == NULL || a.image == NULL || argc > 1) {
    fprintf (stderr, "si-detect: %s\n",
        argc > 1 ? "unexpected arguments" : "--model and --image are required");
    fprintf (stderr,
        "usage: si-detect --model FILE --image FILE "
        "[--backend auto|cpu|cuda] [--precision fp32|fp16] [--threshold T] "
        "[--max-detections N] [--dump FILE] [--version]\n");
    rc = 2;
    goto out;
  }
  if (!isfinite (a.threshold) || a.max_detections < 0 || a.threads < 0) {
    fprintf (stderr,
        "si-detect: bad --threshold, --max-detections or "
        "--threads value\n");
    rc = 2;
    goto out;
  }
  if (!run (&a, &error)) {
    fprintf (stderr, "si-detect: %s\n", error->message);
    rc = 1;
  }
out:
  g_clear_error (&error);
  g_option_context_free (oc);
  g_free (a.model);
  g_free (a.image);
  g_free (a.backend);
  g_free (a.precision);
  g_free (a.dump);
  return rc;
}
