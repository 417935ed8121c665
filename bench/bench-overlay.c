/* bench-overlay.c: per-frame cost of the elements around inference on
 * 1920x1080 frames: stageoverlay with 10/100/300 labelled boxes on BGRx and
 * NV12 (plus a plain-Cairo drawing of the same scene for reference), and
 * stageinteractor on a frame its interval skips.  Prints min/median/mean ms.
 * Usage: bench-overlay [frames [only]] with only one of bgrx, nv12, cairo,
 * skip (GST_PLUGIN_PATH must hold the plugin; SI_BENCH_CPU_TIME=1 times
 * thread CPU time instead of wall clock).
 */
#include <gst/gst.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <cairo.h>
#include <pango/pangocairo.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <si-detection-meta.h>

#define W 1920
#define H 1080

static const gchar *labels[] = { "person", "bicycle", "car", "motorcycle",
  "airplane", "bus", "train", "truck", "boat", "traffic light", "fire hydrant",
  "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep",
  "cow" };

typedef struct
{
  gint cls;
  gfloat score, x1, y1, x2, y2;
} Box;

/* Wall clock, or with SI_BENCH_CPU_TIME=1 this thread's CPU time (robust
 * on a shared, loaded machine: preemption does not count). */
static gboolean use_cpu_time;

static gdouble
now_ms (void)
{
  struct timespec ts;

  clock_gettime (use_cpu_time ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int
cmp_double (const void *a, const void *b)
{
  gdouble x = *(const gdouble *) a, y = *(const gdouble *) b;

  return x < y ? -1 : x > y;
}

static void
report (const gchar *what, gdouble *t, gint n)
{
  gdouble sum = 0;
  gint i;

  qsort (t, n, sizeof (gdouble), cmp_double);
  for (i = 0; i < n; i++)
    sum += t[i];
  printf ("%-44s min %7.3f  median %7.3f  mean %7.3f ms  (%d frames)\n", what,
      t[0], t[n / 2], sum / n, n);
}

/* A reproducible scene of n boxes of 40..400 px. */
static void
make_boxes (Box *boxes, gint n)
{
  GRand *rand = g_rand_new_with_seed (42);
  gint i;

  for (i = 0; i < n; i++) {
    gfloat w = g_rand_double_range (rand, 40, 400);
    gfloat h = g_rand_double_range (rand, 40, 400);

    boxes[i].cls = g_rand_int_range (rand, 0, G_N_ELEMENTS (labels));
    boxes[i].score = g_rand_double_range (rand, 0.3, 1.0);
    boxes[i].x1 = g_rand_double_range (rand, 0, W - w);
    boxes[i].y1 = g_rand_double_range (rand, 0, H - h);
    boxes[i].x2 = boxes[i].x1 + w;
    boxes[i].y2 = boxes[i].y1 + h;
  }
  g_rand_free (rand);
}

static GstBuffer *
grey_frame (GstVideoInfo *info)
{
  GstBuffer *buf =
      gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (info), NULL);

  gst_buffer_memset (buf, 0, 110, GST_VIDEO_INFO_SIZE (info));
  return buf;
}

static void
bench_overlay (GstVideoFormat format, gint n_boxes, gint frames)
{
  GstHarness *h = gst_harness_new ("stageoverlay");
  GstVideoInfo info;
  GstBuffer *buf;
  SiDetectionMeta *meta;
  Box *boxes = g_new (Box, n_boxes);
  gdouble *t = g_new (gdouble, frames);
  gchar what[128];
  gint i;

  gst_video_info_set_format (&info, format, W, H);
  gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
  buf = grey_frame (&info);
  meta = si_buffer_add_detection_meta (buf, "bench", W, H);
  make_boxes (boxes, n_boxes);
  for (i = 0; i < n_boxes; i++)
    si_detection_meta_add (meta, boxes[i].cls, labels[boxes[i].cls],
        boxes[i].score, boxes[i].x1, boxes[i].y1, boxes[i].x2, boxes[i].y2);

  /* warm-up: text cache, layer allocation */
  for (i = 0; i < 10; i++)
    buf = gst_harness_push_and_pull (h, buf);
  for (i = 0; i < frames; i++) {
    gdouble t0 = now_ms ();

    /* the buffer stays writable (one ref): nothing is copied */
    buf = gst_harness_push_and_pull (h, buf);
    t[i] = now_ms () - t0;
  }
  g_snprintf (what, sizeof (what), "stageoverlay %s %d boxes",
      gst_video_format_to_string (format), n_boxes);
  report (what, t, frames);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
  g_free (boxes);
  g_free (t);
}

/* The same scene drawn the plain Cairo way (stroke + show_text per box). */
static void
bench_plain_cairo (gint n_boxes, gint frames)
{
  guint8 *data = g_malloc0 ((gsize) W * H * 4);
  Box *boxes = g_new (Box, n_boxes);
  gdouble *t = g_new (gdouble, frames + 10);
  gchar what[128], text[64];
  gint i, f;

  make_boxes (boxes, n_boxes);
  for (f = 0; f < frames + 10; f++) {
    gdouble t0 = now_ms ();
    cairo_surface_t *s = cairo_image_surface_create_for_data (
        data, CAIRO_FORMAT_RGB24, W, H, W * 4);
    cairo_t *cr = cairo_create (s);

    cairo_select_font_face (
        cr, "Sans", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size (cr, 13);
    cairo_set_line_width (cr, 2);
    for (i = 0; i < n_boxes; i++) {
      cairo_set_source_rgb (cr, 0.9, 0.3, 0.2);
      cairo_rectangle (cr, boxes[i].x1, boxes[i].y1, boxes[i].x2 - boxes[i].x1,
          boxes[i].y2 - boxes[i].y1);
      cairo_stroke (cr);
      cairo_rectangle (cr, boxes[i].x1, boxes[i].y1 - 18, 120, 18);
      cairo_fill (cr);
      cairo_set_source_rgb (cr, 1, 1, 1);
      cairo_move_to (cr, boxes[i].x1 + 2, boxes[i].y1 - 4);
      g_snprintf (
          text, sizeof (text), "%s %.2f", labels[boxes[i].cls], boxes[i].score);
      cairo_show_text (cr, text);
    }
    cairo_destroy (cr);
    cairo_surface_destroy (s);
    if (f >= 10)
      t[f - 10] = now_ms () - t0;
  }
  g_snprintf (
      what, sizeof (what), "plain cairo BGRx %d boxes (reference)", n_boxes);
  report (what, t, frames);
  g_free (data);
  g_free (boxes);
  g_free (t);
}

static void
bench_skipped_frame (const gchar *model, gboolean roi, gint frames)
{
  GstHarness *h;
  GstElement *det;
  GstVideoInfo info;
  GstBuffer *buf, *out;
  gdouble *t = g_new (gdouble, frames);
  SiDetectionMeta *meta;
  gchar what[128];
  guint n;
  gint i;

  det = gst_element_factory_make ("stageinteractor", NULL);
  if (det == NULL) {
    printf ("stageinteractor not found: set GST_PLUGIN_PATH\n");
    exit (1);
  }
  g_object_set (det, "model", model, "threshold", 0.0f, "interval", G_MAXINT,
      "attach-roi-meta", roi, NULL);
  h = gst_harness_new_with_element (det, "sink", "src");
  gst_object_unref (det);
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_BGRx, W, H);
  gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
  buf = grey_frame (&info);
  /* frame 0 runs the model; the rest are skipped */
  buf = gst_harness_push_and_pull (h, buf);
  for (i = 0; i < frames + 10; i++) {
    /* a new buffer on the same memory, without metas, like a source's */
    GstBuffer *in = gst_buffer_copy_region (buf, GST_BUFFER_COPY_MEMORY, 0, -1);
    gdouble t0;

    t0 = now_ms ();
    out = gst_harness_push_and_pull (h, in);
    if (i >= 10)
      t[i - 10] = now_ms () - t0;
    meta = si_buffer_get_detection_meta (out);
    if (!meta || !si_detection_meta_is_repeated (meta) ||
        si_detection_meta_get_count (meta) !=
            si_detection_meta_get_count (si_buffer_get_detection_meta (buf))) {
      printf ("skipped frame without the repeated detections\n");
      exit (1);
    }
    gst_buffer_unref (out);
  }
  meta = si_buffer_get_detection_meta (buf);
  n = meta ? si_detection_meta_get_count (meta) : 0;
  g_snprintf (what, sizeof (what), "stageinteractor skipped BGRx (%u dets%s)",
      n, roi ? " +ROI" : "");
  report (what, t, frames);
  gst_buffer_unref (buf);
  gst_harness_teardown (h);
  g_free (t);
}

int
main (int argc, char **argv)
{
  gint frames = argc > 1 ? atoi (argv[1]) : 200;
  const gchar *golden = g_getenv ("SI_GOLDEN_DIR");
  gchar *model = g_build_filename (
      golden ? golden : SI_GOLDEN_DIR, "tiny", "model.safetensors", NULL);
  const gchar *only = argc > 2 ? argv[2] : NULL;
  const gint counts[] = { 10, 100, 300 };
  guint c;

  gst_init (&argc, &argv);
  if (frames < 1)
    frames = 200;
  use_cpu_time = g_strcmp0 (g_getenv ("SI_BENCH_CPU_TIME"), "1") == 0;
  printf ("1920x1080, one thread, %d timed frames each, %s\n", frames,
      use_cpu_time ? "thread CPU time" : "wall clock");
  for (c = 0; c < G_N_ELEMENTS (counts); c++)
    if (!only || !strcmp (only, "bgrx"))
      bench_overlay (GST_VIDEO_FORMAT_BGRx, counts[c], frames);
  for (c = 0; c < G_N_ELEMENTS (counts); c++)
    if (!only || !strcmp (only, "nv12"))
      bench_overlay (GST_VIDEO_FORMAT_NV12, counts[c], frames);
  if (!only || !strcmp (only, "cairo"))
    bench_plain_cairo (100, frames);
  if (!only || !strcmp (only, "skip")) {
    bench_skipped_frame (model, TRUE, frames);
    bench_skipped_frame (model, FALSE, frames);
  }
  g_free (model);
  return 0;
}
