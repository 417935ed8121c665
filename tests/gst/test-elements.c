/* test-elements.c: GstHarness tests of the stageinteractor and stageoverlay
 * elements with the golden tiny model (random weights: run with threshold 0
 * to get boxes): detections equal the engine's, metas through
 * videoconvert/videoscale, ROI metas, overlay pixels on every format, caps,
 * bus errors, state cycles, properties changed while playing.
 */
#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <gst/video/video.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

#include <si-engine.h>
#include <si-detection-meta.h>
#include <si-overlay-render.h>

static gchar *model_path;
static GstVideoInfo golden_info; /* RGB 150x110 */
static GstBuffer *golden_rgb;

static const gchar *all_formats[] = { "RGB", "BGR", "RGBx", "BGRx", "xRGB",
  "xBGR", "RGBA", "BGRA", "ARGB", "ABGR", "NV12", "I420" };

/* Reads the golden P6 PPM into an RGB buffer with GStreamer strides. */
static GstBuffer *
load_ppm (const gchar *path, GstVideoInfo *info)
{
  gchar *data = NULL, *p;
  gsize len;
  gint w, h, maxval, y, n = 0;
  GstBuffer *buf;
  GstMapInfo map;

  /* runs before the tests: no fail_unless here */
  if (!g_file_get_contents (path, &data, &len, NULL) ||
      sscanf (data, "P6 %d %d %d%n", &w, &h, &maxval, &n) != 3 ||
      maxval != 255 || (gsize) n + 1 + (gsize) w * h * 3 > len) {
    g_printerr ("cannot read the golden image %s\n", path);
    exit (1);
  }
  p = data + n + 1;
  gst_video_info_set_format (info, GST_VIDEO_FORMAT_RGB, w, h);
  GST_VIDEO_INFO_FPS_N (info) = 30;
  GST_VIDEO_INFO_FPS_D (info) = 1;
  buf = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (info), NULL);
  gst_buffer_map (buf, &map, GST_MAP_WRITE);
  memset (map.data, 0, map.size); /* row padding too */
  for (y = 0; y < h; y++)
    memcpy (map.data + y * GST_VIDEO_INFO_PLANE_STRIDE (info, 0),
        p + (gsize) y * w * 3, (gsize) w * 3);
  gst_buffer_unmap (buf, &map);
  g_free (data);
  return buf;
}

/* Converts src (described by in) into a new buffer of format/size out. */
static GstBuffer *
convert_buffer (GstBuffer *src, const GstVideoInfo *in, GstVideoInfo *out)
{
  GstVideoConverter *conv;
  GstVideoFrame fin, fout;
  GstBuffer *dst =
      gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (out), NULL);

  gst_buffer_memset (dst, 0, 0, GST_VIDEO_INFO_SIZE (out)); /* padding */
  conv = gst_video_converter_new ((GstVideoInfo *) in, out, NULL);
  fail_unless (conv != NULL);
  fail_unless (
      gst_video_frame_map (&fin, (GstVideoInfo *) in, src, GST_MAP_READ));
  fail_unless (gst_video_frame_map (&fout, out, dst, GST_MAP_WRITE));
  gst_video_converter_frame (conv, &fin, &fout);
  gst_video_frame_unmap (&fout);
  gst_video_frame_unmap (&fin);
  gst_video_converter_free (conv);
  return dst;
}

static GstBuffer *
golden_in_format (GstVideoFormat format, GstVideoInfo *info)
{
  gst_video_info_set_format (info, format, GST_VIDEO_INFO_WIDTH (&golden_info),
      GST_VIDEO_INFO_HEIGHT (&golden_info));
  GST_VIDEO_INFO_FPS_N (info) = 30;
  GST_VIDEO_INFO_FPS_D (info) = 1;
  return convert_buffer (golden_rgb, &golden_info, info);
}

static GstHarness *
detector_harness (const gchar *extra, const GstVideoInfo *info)
{
  gchar *desc =
      g_strdup_printf ("stageinteractor name=det model=\"%s\" "
                       "threshold=0 max-detections=0 num-threads=1 %s",
          model_path, extra ? extra : "");
  GstHarness *h = gst_harness_new_parse (desc);
  GstCaps *caps = gst_video_info_to_caps ((GstVideoInfo *) info);

  g_free (desc);
  gst_harness_set_src_caps (h, caps);
  return h;
}

/* Runs the engine directly on buf: the reference detections. */
static SiDetection *
engine_detections (
    GstBuffer *buf, const GstVideoInfo *info, float threshold, size_t *n_out)
{
  GError *err = NULL;
  SiModel *model = si_model_load (model_path, &err);
  SiContextOptions opts;
  SiRunParams params;
  SiContext *ctx;
  SiFrame sf;
  GstVideoFrame frame;
  const SiDetection *dets;
  SiDetection *copy;
  size_t n = 0;

  fail_unless (model != NULL, "%s", err ? err->message : "");
  si_context_options_init (&opts);
  opts.backend = SI_BACKEND_AUTO;
  opts.num_threads = 1;
  opts.max_width = GST_VIDEO_INFO_WIDTH (info);
  opts.max_height = GST_VIDEO_INFO_HEIGHT (info);
  ctx = si_context_new (model, &opts, &err);
  fail_unless (ctx != NULL, "%s", err ? err->message : "");
  si_run_params_init (&params);
  params.threshold = threshold;
  params.max_detections = 0;
  fail_unless (
      gst_video_frame_map (&frame, (GstVideoInfo *) info, buf, GST_MAP_READ));
  memset (&sf, 0, sizeof (sf));
  fail_unless (GST_VIDEO_INFO_FORMAT (info) == GST_VIDEO_FORMAT_RGB);
  sf.format = SI_FORMAT_RGB;
  sf.width = GST_VIDEO_INFO_WIDTH (info);
  sf.height = GST_VIDEO_INFO_HEIGHT (info);
  sf.planes[0] = GST_VIDEO_FRAME_PLANE_DATA (&frame, 0);
  sf.strides[0] = GST_VIDEO_FRAME_PLANE_STRIDE (&frame, 0);
  fail_unless (
      si_context_run (ctx, &sf, &params, &err), "%s", err ? err->message : "");
  gst_video_frame_unmap (&frame);
  dets = si_context_get_detections (ctx, &n);
  copy = g_memdup2 (dets, MAX (n, 1) * sizeof (SiDetection));
  for (size_t i = 0; i < n; i++) /* labels die with the model */
    copy[i].label = g_intern_string (dets[i].label);
  si_context_free (&ctx);
  si_model_unref (model);
  *n_out = n;
  return copy;
}

/* The detector inside a harness bin (borrowed). */
static GstElement *
det_of (GstHarness *h)
{
  GstElement *det = gst_bin_get_by_name (GST_BIN (h->element), "det");

  fail_unless (det != NULL);
  gst_object_unref (det);
  return det;
}

static guint
count_metas (GstBuffer *buf, GType api)
{
  gpointer state = NULL;
  guint n = 0;

  while (gst_buffer_iterate_meta_filtered (buf, &state, api))
    n++;
  return n;
}

/* ---- detector ---- */

GST_START_TEST (test_detections_match_engine)
{
  GstHarness *h = detector_harness (NULL, &golden_info);
  GstBuffer *out;
  SiDetectionMeta *meta;
  SiDetection *ref;
  size_t n_ref, i;

  ref = engine_detections (golden_rgb, &golden_info, 0.0f, &n_ref);
  fail_unless (n_ref > 0, "the engine found nothing at threshold 0");

  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  fail_unless (out != NULL);
  meta = si_buffer_get_detection_meta (out);
  fail_unless (meta != NULL);
  fail_unless_equals_int (count_metas (out, SI_DETECTION_META_API_TYPE), 1);
  fail_unless_equals_int (si_detection_meta_get_count (meta), n_ref);
  fail_if (si_detection_meta_is_repeated (meta));
  fail_unless_equals_int (meta->width, 150);
  fail_unless_equals_int (meta->height, 110);
  fail_unless_equals_string (meta->model, "model");
  for (i = 0; i < n_ref; i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);

    fail_unless_equals_int (d->class_id, ref[i].class_id);
    fail_unless_equals_string (d->label, ref[i].label);
    fail_unless (d->score == ref[i].score, "score %u: %g vs %g", (guint) i,
        d->score, ref[i].score);
    fail_unless (d->x1 == ref[i].box[0] && d->y1 == ref[i].box[1] &&
            d->x2 == ref[i].box[2] && d->y2 == ref[i].box[3],
        "box %u differs", (guint) i);
  }
  /* the video passes through unchanged */
  {
    GstMapInfo a, b;

    gst_buffer_map (out, &a, GST_MAP_READ);
    gst_buffer_map (golden_rgb, &b, GST_MAP_READ);
    fail_unless (a.size == b.size && memcmp (a.data, b.data, a.size) == 0);
    gst_buffer_unmap (out, &a);
    gst_buffer_unmap (golden_rgb, &b);
  }
  gst_buffer_unref (out);
  g_free (ref);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_meta_survives_convert_and_scale)
{
  GstHarness *h;
  GstBuffer *out;
  SiDetectionMeta *meta;
  SiDetection *ref;
  size_t n_ref, i;
  gchar *desc = g_strdup_printf (
      "stageinteractor model=\"%s\" threshold=0 "
      "max-detections=0 num-threads=1 ! videoconvert ! videoscale ! "
      "video/x-raw,format=I420,width=300,height=330 ! queue ! tee ! queue",
      model_path);

  ref = engine_detections (golden_rgb, &golden_info, 0.0f, &n_ref);
  h = gst_harness_new_parse (desc);
  g_free (desc);
  gst_harness_set_src_caps (h, gst_video_info_to_caps (&golden_info));
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  fail_unless (out != NULL);
  fail_unless_equals_int (count_metas (out, SI_DETECTION_META_API_TYPE), 1);
  meta = si_buffer_get_detection_meta (out);
  fail_unless_equals_int (meta->width, 300);
  fail_unless_equals_int (meta->height, 330);
  fail_unless_equals_int (si_detection_meta_get_count (meta), n_ref);
  for (i = 0; i < n_ref; i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);

    fail_unless_equals_int (d->class_id, ref[i].class_id);
    fail_unless (fabsf (d->x1 - ref[i].box[0] * 2.0f) < 1e-3f);
    fail_unless (fabsf (d->x2 - ref[i].box[2] * 2.0f) < 1e-3f);
    fail_unless (fabsf (d->y1 - ref[i].box[1] * 3.0f) < 1e-3f);
    fail_unless (fabsf (d->y2 - ref[i].box[3] * 3.0f) < 1e-3f);
  }
  /* the ROI mirrors were scaled by GStreamer's own transform */
  fail_unless_equals_int (
      count_metas (out, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE), n_ref);
  for (i = 0; i < n_ref; i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);
    GstVideoRegionOfInterestMeta *roi =
        gst_buffer_get_video_region_of_interest_meta_id (out, d->roi_id);

    fail_unless (roi != NULL);
    fail_unless (abs ((gint) roi->x - (gint) CLAMP (d->x1, 0, 300)) <= 3,
        "roi x %u vs %g", roi->x, d->x1);
    fail_unless (
        abs ((gint) (roi->y + roi->h) - (gint) CLAMP (d->y2, 0, 330)) <= 4,
        "roi y2 %u vs %g", roi->y + roi->h, d->y2);
  }
  gst_buffer_unref (out);
  g_free (ref);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_roi_metas_match)
{
  GstHarness *h = detector_harness (NULL, &golden_info);
  GstBuffer *in = gst_buffer_copy (golden_rgb), *out;
  GstVideoRegionOfInterestMeta *foreign, *roi;
  SiDetectionMeta *meta;
  guint i, j, n;

  /* a ROI from someone else, id 7: ours must not reuse it */
  foreign =
      gst_buffer_add_video_region_of_interest_meta (in, "face", 1, 2, 3, 4);
  foreign->id = 7;
  out = gst_harness_push_and_pull (h, in);
  meta = si_buffer_get_detection_meta (out);
  n = si_detection_meta_get_count (meta);
  fail_unless (n > 0);
  fail_unless_equals_int (
      count_metas (out, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE), n + 1);
  for (i = 0; i < n; i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);
    GstStructure *s;
    gint label_id;
    gdouble conf;
    gint x1 = (gint) CLAMP (d->x1 + 0.5f, 0, 150);
    gint y1 = (gint) CLAMP (d->y1 + 0.5f, 0, 110);
    gint x2 = (gint) CLAMP (d->x2 + 0.5f, 0, 150);
    gint y2 = (gint) CLAMP (d->y2 + 0.5f, 0, 110);

    fail_unless (d->roi_id >= 0 && d->roi_id != 7);
    for (j = 0; j < i; j++)
      fail_unless (si_detection_meta_get (meta, j)->roi_id != d->roi_id);
    roi = gst_buffer_get_video_region_of_interest_meta_id (out, d->roi_id);
    fail_unless (roi != NULL);
    fail_unless_equals_string (g_quark_to_string (roi->roi_type), d->label);
    fail_unless (
        abs ((gint) roi->x - x1) <= 1 && abs ((gint) roi->y - y1) <= 1);
    fail_unless (abs ((gint) (roi->x + roi->w) - x2) <= 1);
    fail_unless (abs ((gint) (roi->y + roi->h) - y2) <= 1);
    s = gst_video_region_of_interest_meta_get_param (roi, "detection");
    fail_unless (s != NULL);
    fail_unless (gst_structure_get_int (s, "label_id", &label_id));
    fail_unless_equals_int (label_id, d->class_id);
    fail_unless (gst_structure_get_double (s, "confidence", &conf));
    fail_unless ((gfloat) conf == d->score);
    fail_unless_equals_string (gst_structure_get_string (s, "label"), d->label);
  }
  gst_buffer_unref (out);

  /* attach-roi-meta=false: only our meta */
  g_object_set (det_of (h), "attach-roi-meta", FALSE, NULL);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  fail_unless_equals_int (
      count_metas (out, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE), 0);
  meta = si_buffer_get_detection_meta (out);
  fail_unless (si_detection_meta_get_count (meta) > 0);
  fail_unless_equals_int (si_detection_meta_get (meta, 0)->roi_id, -1);
  gst_buffer_unref (out);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_every_format_negotiates_and_runs)
{
  guint f;

  for (f = 0; f < G_N_ELEMENTS (all_formats); f++) {
    GstVideoFormat fmt = gst_video_format_from_string (all_formats[f]);
    GstVideoInfo info;
    GstBuffer *in = golden_in_format (fmt, &info), *out;
    GstHarness *h;
    SiDetectionMeta *meta;
    gchar *desc = g_strdup_printf ("stageinteractor model=\"%s\" threshold=0 "
                                   "num-threads=1 ! stageoverlay",
        model_path);
    GstMapInfo a, b;

    h = gst_harness_new_parse (desc);
    g_free (desc);
    gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
    out = gst_harness_push_and_pull (h, gst_buffer_ref (in));
    fail_unless (out != NULL, "%s: no output", all_formats[f]);
    meta = si_buffer_get_detection_meta (out);
    fail_unless (meta != NULL && si_detection_meta_get_count (meta) > 0,
        "%s: no detections", all_formats[f]);
    /* the overlay drew something */
    gst_buffer_map (out, &a, GST_MAP_READ);
    gst_buffer_map (in, &b, GST_MAP_READ);
    fail_unless (a.size == b.size);
    fail_if (memcmp (a.data, b.data, a.size) == 0, "%s: nothing drawn",
        all_formats[f]);
    gst_buffer_unmap (out, &a);
    gst_buffer_unmap (in, &b);
    gst_buffer_unref (out);
    gst_buffer_unref (in);
    gst_harness_teardown (h);
  }
}

GST_END_TEST;

static GstMessage *
state_change_error (const gchar *model)
{
  GstElement *pipe, *det;
  GstBus *bus;
  GstMessage *msg;
  GstStateChangeReturn ret;

  pipe = gst_parse_launch ("videotestsrc num-buffers=1 ! stageinteractor "
                           "name=det ! fakesink",
      NULL);
  fail_unless (pipe != NULL);
  det = gst_bin_get_by_name (GST_BIN (pipe), "det");
  g_object_set (det, "model", model, NULL);
  gst_object_unref (det);
  ret = gst_element_set_state (pipe, GST_STATE_PAUSED);
  if (ret == GST_STATE_CHANGE_ASYNC)
    ret = gst_element_get_state (pipe, NULL, NULL, GST_CLOCK_TIME_NONE);
  fail_unless_equals_int (ret, GST_STATE_CHANGE_FAILURE);
  bus = gst_element_get_bus (pipe);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  gst_object_unref (bus);
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (pipe);
  fail_unless (msg != NULL, "no error on the bus");
  return msg;
}

GST_START_TEST (test_bad_model_gives_bus_error)
{
  const gchar *missing = "/nonexistent/dir/no-such-model.safetensors";
  gchar *corrupt = NULL;
  GstMessage *msg;
  GError *err = NULL;
  gint fd;

  msg = state_change_error (missing);
  gst_message_parse_error (msg, &err, NULL);
  fail_unless (g_strstr_len (err->message, -1, missing) != NULL,
      "error does not name the file: %s", err->message);
  GST_INFO ("missing model: %s", err->message);
  g_clear_error (&err);
  gst_message_unref (msg);

  fd = g_file_open_tmp ("si-bad-XXXXXX.safetensors", &corrupt, NULL);
  fail_unless (fd >= 0);
  fail_unless (
      write (fd, "\x10\x00\x00\x00\x00\x00\x00\x00{not json}", 18) == 18);
  close (fd);
  msg = state_change_error (corrupt);
  gst_message_parse_error (msg, &err, NULL);
  fail_unless (g_strstr_len (err->message, -1, corrupt) != NULL,
      "error does not name the file: %s", err->message);
  /* and says why: more than "could not load" */
  fail_unless (strlen (err->message) > strlen (corrupt) + 30);
  GST_INFO ("corrupt model: %s", err->message);
  g_clear_error (&err);
  gst_message_unref (msg);
  g_unlink (corrupt);
  g_free (corrupt);
}

GST_END_TEST;

GST_START_TEST (test_state_cycles)
{
  GstElement *pipe, *det, *src;
  gint i;

  pipe = gst_parse_launch (
      "videotestsrc name=src ! "
      "video/x-raw,width=64,height=48,framerate=30/1 ! stageinteractor "
      "name=det threshold=0 num-threads=1 ! stageoverlay ! fakesink",
      NULL);
  det = gst_bin_get_by_name (GST_BIN (pipe), "det");
  src = gst_bin_get_by_name (GST_BIN (pipe), "src");
  g_object_set (det, "model", model_path, NULL);
  for (i = 0; i < 50; i++) {
    /* every cycle loads and releases the engine; every 10th one also
     * pushes a frame through (inference is slow under valgrind) */
    g_object_set (src, "num-buffers", i % 10 == 0 ? 1 : 0, NULL);
    fail_unless (gst_element_set_state (pipe, GST_STATE_PLAYING) !=
        GST_STATE_CHANGE_FAILURE);
    fail_unless (gst_element_get_state (pipe, NULL, NULL,
                     GST_CLOCK_TIME_NONE) == GST_STATE_CHANGE_SUCCESS);
    fail_unless (gst_element_set_state (pipe, GST_STATE_NULL) ==
        GST_STATE_CHANGE_SUCCESS);
  }
  gst_object_unref (src);
  gst_object_unref (det);
  gst_object_unref (pipe);
}

GST_END_TEST;

typedef struct
{
  GstElement *element;
  volatile gint stop;
} FlipData;

static gpointer
flip_threshold (gpointer data)
{
  FlipData *fd = data;
  gint i = 0;

  while (!g_atomic_int_get (&fd->stop)) {
    g_object_set (
        fd->element, "threshold", (i++ & 1) ? 0.0f : 2.0f / 3.0f, NULL);
    g_usleep (100);
  }
  return NULL;
}

GST_START_TEST (test_threshold_change_while_playing)
{
  GstHarness *h = detector_harness (NULL, &golden_info);
  GstBuffer *out;
  SiDetectionMeta *meta;
  FlipData fd = { NULL, 0 };
  GThread *thread;
  guint n_all, n_high, n, k;

  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  n_all = si_detection_meta_get_count (si_buffer_get_detection_meta (out));
  fail_unless (n_all > 0);
  gst_buffer_unref (out);

  /* random weights: no score reaches 0.99 */
  g_object_set (det_of (h), "threshold", 0.99f, NULL);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  fail_unless_equals_int (
      si_detection_meta_get_count (si_buffer_get_detection_meta (out)), 0);
  gst_buffer_unref (out);

  g_object_set (det_of (h), "threshold", 0.0f, "max-detections", 3, NULL);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  fail_unless_equals_int (
      si_detection_meta_get_count (si_buffer_get_detection_meta (out)),
      MIN (3, n_all));
  gst_buffer_unref (out);

  /* a thread flips the threshold while frames flow: every frame sees one
   * consistent value */
  g_object_set (
      det_of (h), "max-detections", 0, "threshold", 2.0f / 3.0f, NULL);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  n_high = si_detection_meta_get_count (si_buffer_get_detection_meta (out));
  gst_buffer_unref (out);
  fd.element = det_of (h);
  thread = g_thread_new ("flip", flip_threshold, &fd);
  for (k = 0; k < 4; k++) {
    out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
    meta = si_buffer_get_detection_meta (out);
    n = si_detection_meta_get_count (meta);
    fail_unless (n == n_all || n == n_high, "%u detections", n);
    gst_buffer_unref (out);
  }
  g_atomic_int_set (&fd.stop, 1);
  g_thread_join (thread);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_model_change_while_playing)
{
  GstHarness *h = detector_harness (NULL, &golden_info);
  const gchar *missing = "/nonexistent/other-model.safetensors";
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GError *err = NULL;
  GstBuffer *out;
  guint n;

  gst_element_set_bus (h->element, bus);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  n = si_detection_meta_get_count (si_buffer_get_detection_meta (out));
  gst_buffer_unref (out);

  /* a bad model while playing: the next frame fails with a bus error */
  g_object_set (det_of (h), "model", missing, NULL);
  fail_unless_equals_int (
      gst_harness_push (h, gst_buffer_copy (golden_rgb)), GST_FLOW_ERROR);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  gst_message_parse_error (msg, &err, NULL);
  fail_unless (strstr (err->message, missing) != NULL, "%s", err->message);
  g_clear_error (&err);
  gst_message_unref (msg);

  /* and back: the engine reloads before the next frame */
  g_object_set (det_of (h), "model", model_path, NULL);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  fail_unless_equals_int (
      si_detection_meta_get_count (si_buffer_get_detection_meta (out)), n);
  gst_buffer_unref (out);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* The frame size changes mid-stream (new caps, smaller and larger than
 * the first): each frame's detections are the engine's on that frame, in
 * its own pixels: the boxes of an interval never cross a caps change. */
static void
check_matches_engine (GstBuffer *out, GstBuffer *in, const GstVideoInfo *info)
{
  SiDetectionMeta *meta = si_buffer_get_detection_meta (out);
  size_t n_ref;
  SiDetection *ref = engine_detections (in, info, 0.0f, &n_ref);

  fail_unless (meta != NULL);
  fail_if (si_detection_meta_is_repeated (meta));
  fail_unless_equals_int (meta->width, GST_VIDEO_INFO_WIDTH (info));
  fail_unless_equals_int (meta->height, GST_VIDEO_INFO_HEIGHT (info));
  fail_unless (n_ref > 0);
  fail_unless_equals_int (si_detection_meta_get_count (meta), n_ref);
  for (size_t i = 0; i < n_ref; i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);

    fail_unless (d->class_id == ref[i].class_id && d->score == ref[i].score &&
            d->x1 == ref[i].box[0] && d->y1 == ref[i].box[1] &&
            d->x2 == ref[i].box[2] && d->y2 == ref[i].box[3],
        "%dx%d: detection %u differs from the engine's",
        GST_VIDEO_INFO_WIDTH (info), GST_VIDEO_INFO_HEIGHT (info), (guint) i);
  }
  g_free (ref);
}

GST_START_TEST (test_frame_size_changes_mid_stream)
{
  GstHarness *h = detector_harness ("interval=2", &golden_info);
  static const int sizes[][2] = { { 150, 110 }, { 97, 71 }, { 300, 221 },
    { 150, 110 } };
  GstVideoInfo info;
  GstBuffer *in = NULL, *out;

  /* one frame per size: with interval 2, frames 1 and 3 would repeat the
   * boxes of the frame before, which was of another size */
  for (guint k = 0; k < G_N_ELEMENTS (sizes); k++) {
    gst_video_info_set_format (
        &info, GST_VIDEO_FORMAT_RGB, sizes[k][0], sizes[k][1]);
    GST_VIDEO_INFO_FPS_N (&info) = 30;
    GST_VIDEO_INFO_FPS_D (&info) = 1;
    if (in != NULL)
      gst_buffer_unref (in);
    in = convert_buffer (golden_rgb, &golden_info, &info);
    if (k > 0)
      gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
    out = gst_harness_push_and_pull (h, gst_buffer_ref (in));
    fail_unless (out != NULL);
    check_matches_engine (out, in, &info);
    gst_buffer_unref (out);
  }
  /* the interval counts from frame 3, the last one run: frame 4 (same
   * size) repeats it, frame 5 runs */
  out = gst_harness_push_and_pull (h, gst_buffer_ref (in));
  fail_unless (
      si_detection_meta_is_repeated (si_buffer_get_detection_meta (out)));
  fail_unless_equals_int (si_buffer_get_detection_meta (out)->source_frame, 3);
  gst_buffer_unref (out);
  out = gst_harness_push_and_pull (h, gst_buffer_ref (in));
  check_matches_engine (out, in, &info);
  gst_buffer_unref (out);
  gst_buffer_unref (in);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_interval_repeats_detections)
{
  GstHarness *h = detector_harness ("interval=3", &golden_info);
  SiDetectionMeta *m0 = NULL;
  GstBuffer *outs[5];
  guint f, i;

  for (f = 0; f < 5; f++) {
    SiDetectionMeta *m;

    outs[f] = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
    m = si_buffer_get_detection_meta (outs[f]);
    fail_unless (m != NULL);
    fail_unless_equals_int (m->frame, f);
    fail_unless_equals_int (si_detection_meta_is_repeated (m), f % 3 != 0);
    fail_unless_equals_int (m->source_frame, f - f % 3);
    if (f == 0)
      m0 = m;
    fail_unless_equals_int (
        si_detection_meta_get_count (m), si_detection_meta_get_count (m0));
    for (i = 0; i < si_detection_meta_get_count (m); i++) {
      const SiMetaDetection *a = &m0->detections[i], *b = &m->detections[i];

      fail_unless (a->class_id == b->class_id && a->label == b->label &&
          a->score == b->score && a->x1 == b->x1 && a->y1 == b->y1 &&
          a->x2 == b->x2 && a->y2 == b->y2);
    }
  }
  for (f = 0; f < 5; f++)
    gst_buffer_unref (outs[f]);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_classes_and_labels)
{
  GstHarness *h = detector_harness (NULL, &golden_info);
  GstBuffer *out;
  SiDetectionMeta *meta;
  const SiMetaDetection *d;
  gint want;
  gchar *labels_path = NULL, *ids;
  GString *labels = g_string_new (NULL);
  guint i;
  gint fd;

  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  d = si_detection_meta_get (si_buffer_get_detection_meta (out), 0);
  want = d->class_id;
  g_object_set (det_of (h), "classes", d->label, NULL);
  gst_buffer_unref (out);

  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  meta = si_buffer_get_detection_meta (out);
  fail_unless (si_detection_meta_get_count (meta) > 0);
  for (i = 0; i < si_detection_meta_get_count (meta); i++)
    fail_unless_equals_int (si_detection_meta_get (meta, i)->class_id, want);
  gst_buffer_unref (out);

  /* by id, and a labels file renaming every class */
  ids = g_strdup_printf (" %d ", want);
  for (i = 0; i < 80; i++)
    g_string_append_printf (labels, "thing%u\n", i);
  fd = g_file_open_tmp ("si-labels-XXXXXX.txt", &labels_path, NULL);
  fail_unless (write (fd, labels->str, labels->len) == (gssize) labels->len);
  close (fd);
  g_object_set (det_of (h), "classes", ids, "labels", labels_path, NULL);
  out = gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb));
  meta = si_buffer_get_detection_meta (out);
  fail_unless (si_detection_meta_get_count (meta) > 0);
  d = si_detection_meta_get (meta, 0);
  fail_unless_equals_int (d->class_id, want);
  {
    gchar *expect = g_strdup_printf ("thing%d", want);
    fail_unless_equals_string (d->label, expect);
    g_free (expect);
  }
  gst_buffer_unref (out);
  g_unlink (labels_path);
  g_free (labels_path);
  g_free (ids);
  g_string_free (labels, TRUE);
  gst_harness_teardown (h);
}

GST_END_TEST;

GST_START_TEST (test_stats)
{
  GstHarness *h =
      detector_harness ("interval=2 stats-interval=1", &golden_info);
  GstStructure *s = NULL;
  guint64 frames = 0, inferences = 0;
  gdouble ms = 0;
  GstMessage *msg;
  GstBus *bus = gst_bus_new ();
  gint f;

  gst_element_set_bus (h->element, bus);
  for (f = 0; f < 4; f++) {
    g_usleep (2000);
    gst_buffer_unref (
        gst_harness_push_and_pull (h, gst_buffer_copy (golden_rgb)));
  }
  g_object_get (det_of (h), "stats", &s, NULL);
  fail_unless (gst_structure_get_uint64 (s, "frames", &frames));
  fail_unless (gst_structure_get_uint64 (s, "inferences", &inferences));
  fail_unless (gst_structure_get_double (s, "mean-inference-ms", &ms));
  fail_unless_equals_int (frames, 4);
  fail_unless_equals_int (inferences, 2);
  fail_unless (ms > 0);
  /* backend=auto: the one it resolved to */
  fail_unless_equals_string (gst_structure_get_string (s, "backend"),
      si_backend_available (SI_BACKEND_CUDA, NULL) ? "cuda" : "cpu");
  gst_structure_free (s);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT);
  fail_unless (msg != NULL);
  fail_unless (gst_structure_has_name (
      gst_message_get_structure (msg), "stageinteractor-stats"));
  gst_message_unref (msg);
  gst_element_set_bus (h->element, NULL);
  gst_object_unref (bus);
  gst_harness_teardown (h);
}

GST_END_TEST;

static GstPadProbeReturn
count_buffers (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  g_atomic_int_inc ((gint *) data);
  return GST_PAD_PROBE_OK;
}

/* The live recipe of docs/plugin.md: a leaky queue before the detector and
 * an interval; the source keeps its frame rate however slow inference is. */
GST_START_TEST (test_live_source_never_stalls)
{
  GstElement *pipe, *det, *q;
  GstPad *pad;
  gint produced = 0, detected = 0;

  pipe = gst_parse_launch (
      "videotestsrc is-live=true ! "
      "video/x-raw,width=320,height=240,framerate=50/1 ! "
      "queue name=q leaky=downstream max-size-buffers=1 max-size-bytes=0 "
      "max-size-time=0 ! stageinteractor name=det threshold=0 interval=4 "
      "num-threads=1 ! fakesink sync=false",
      NULL);
  det = gst_bin_get_by_name (GST_BIN (pipe), "det");
  q = gst_bin_get_by_name (GST_BIN (pipe), "q");
  g_object_set (det, "model", model_path, NULL);
  pad = gst_element_get_static_pad (q, "sink");
  gst_pad_add_probe (
      pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffers, &produced, NULL);
  gst_object_unref (pad);
  pad = gst_element_get_static_pad (det, "src");
  gst_pad_add_probe (
      pad, GST_PAD_PROBE_TYPE_BUFFER, count_buffers, &detected, NULL);
  gst_object_unref (pad);
  fail_unless (gst_element_set_state (pipe, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  fail_unless (gst_element_get_state (pipe, NULL, NULL, 30 * GST_SECOND) ==
      GST_STATE_CHANGE_SUCCESS);
  g_usleep (2 * G_USEC_PER_SEC);
  gst_element_set_state (pipe, GST_STATE_NULL);
  GST_INFO ("source produced %d frames, detector passed %d",
      g_atomic_int_get (&produced), g_atomic_int_get (&detected));
  /* 2 s at 50 fps; generous for loaded machines and valgrind */
  fail_unless (g_atomic_int_get (&produced) >= 40, "source stalled: %d frames",
      g_atomic_int_get (&produced));
  fail_unless (g_atomic_int_get (&detected) > 0);
  gst_object_unref (q);
  gst_object_unref (det);
  gst_object_unref (pipe);
}

GST_END_TEST;

/* ---- overlay ---- */

#define OW 160
#define OH 120

/* A grey frame of format fmt with one detection box (24,40)-(100,90). */
static GstBuffer *
overlay_input (GstVideoFormat fmt, GstVideoInfo *info, gboolean roi_only)
{
  GstVideoInfo rgb;
  GstBuffer *src, *buf;
  GstMapInfo map;

  gst_video_info_set_format (&rgb, GST_VIDEO_FORMAT_RGB, OW, OH);
  GST_VIDEO_INFO_FPS_N (&rgb) = 30;
  GST_VIDEO_INFO_FPS_D (&rgb) = 1;
  src = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&rgb), NULL);
  gst_buffer_map (src, &map, GST_MAP_WRITE);
  memset (map.data, 100, map.size);
  gst_buffer_unmap (src, &map);
  gst_video_info_set_format (info, fmt, OW, OH);
  GST_VIDEO_INFO_FPS_N (info) = 30;
  GST_VIDEO_INFO_FPS_D (info) = 1;
  buf = convert_buffer (src, &rgb, info);
  gst_buffer_unref (src);
  if (roi_only) {
    GstVideoRegionOfInterestMeta *roi =
        gst_buffer_add_video_region_of_interest_meta (
            buf, "thing", 24, 40, 76, 50);
    gst_video_region_of_interest_meta_add_param (roi,
        gst_structure_new ("detection", "label_id", G_TYPE_INT, 5, "confidence",
            G_TYPE_DOUBLE, 0.5, NULL));
  } else {
    SiDetectionMeta *m = si_buffer_add_detection_meta (buf, "test", OW, OH);
    si_detection_meta_add (m, 5, "thing", 0.5f, 24.0f, 40.0f, 100.0f, 90.0f);
  }
  return buf;
}

/* RGB value of pixel (x, y) of buf (any format), via videoconvert. */
static void
pixel_rgb (
    GstBuffer *buf, const GstVideoInfo *info, gint x, gint y, guint8 rgb[3])
{
  GstVideoInfo out;
  GstBuffer *conv;
  GstMapInfo map;

  gst_video_info_set_format (&out, GST_VIDEO_FORMAT_RGB, OW, OH);
  GST_VIDEO_INFO_FPS_N (&out) = GST_VIDEO_INFO_FPS_N (info);
  GST_VIDEO_INFO_FPS_D (&out) = GST_VIDEO_INFO_FPS_D (info);
  conv = convert_buffer (buf, info, &out);
  gst_buffer_map (conv, &map, GST_MAP_READ);
  memcpy (rgb, map.data + y * GST_VIDEO_INFO_PLANE_STRIDE (&out, 0) + x * 3, 3);
  gst_buffer_unmap (conv, &map);
  gst_buffer_unref (conv);
}

/* Are all bytes of the frame at (x, y) (every plane) the same in a, b? */
static gboolean
same_pixel (
    GstBuffer *a, GstBuffer *b, const GstVideoInfo *info, gint x, gint y)
{
  GstVideoFrame fa, fb;
  gboolean same = TRUE;
  guint c;

  gst_video_frame_map (&fa, (GstVideoInfo *) info, a, GST_MAP_READ);
  gst_video_frame_map (&fb, (GstVideoInfo *) info, b, GST_MAP_READ);
  for (c = 0; c < GST_VIDEO_INFO_N_COMPONENTS (info); c++) {
    gint cx = GST_VIDEO_FORMAT_INFO_SCALE_WIDTH (info->finfo, c, x);
    gint cy = GST_VIDEO_FORMAT_INFO_SCALE_HEIGHT (info->finfo, c, y);
    guint8 *pa = GST_VIDEO_FRAME_COMP_DATA (&fa, c);
    guint8 *pb = GST_VIDEO_FRAME_COMP_DATA (&fb, c);
    gsize off = cy * GST_VIDEO_FRAME_COMP_STRIDE (&fa, c) +
        cx * GST_VIDEO_FRAME_COMP_PSTRIDE (&fa, c);

    if (pa[off] != pb[off])
      same = FALSE;
  }
  gst_video_frame_unmap (&fa);
  gst_video_frame_unmap (&fb);
  return same;
}

static void
check_overlay (GstVideoFormat fmt, gboolean roi_only)
{
  const gchar *name = gst_video_format_to_string (fmt);
  GstHarness *h = gst_harness_new_parse ("stageoverlay line-width=6");
  GstVideoInfo info;
  GstBuffer *in = overlay_input (fmt, &info, roi_only), *ref, *out;
  guint32 c = si_overlay_class_color (5);
  guint8 want[3] = { c >> 16, (c >> 8) & 255, c & 255 }, got[3];
  gint tol = GST_VIDEO_INFO_IS_YUV (&info) ? 8 : 0, i;
  /* far from the box and its tab */
  const gint far[][2] = { { 150, 110 }, { 2, 110 }, { 150, 2 }, { 60, 66 },
    { 120, 60 } };

  ref = gst_buffer_copy_deep (in);
  gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
  out = gst_harness_push_and_pull (h, in);
  fail_unless (out != NULL);

  /* on the outline: left edge (x = 24..29), bottom edge (y = 84..89);
   * sampled mid-line: converting 4:2:0 back to RGB interpolates chroma */
  pixel_rgb (out, &info, 26, 66, got);
  for (i = 0; i < 3; i++)
    fail_unless (abs (got[i] - want[i]) <= tol,
        "%s: left edge %d,%d,%d, want %d,%d,%d", name, got[0], got[1], got[2],
        want[0], want[1], want[2]);
  pixel_rgb (out, &info, 60, 86, got);
  for (i = 0; i < 3; i++)
    fail_unless (abs (got[i] - want[i]) <= tol, "%s: bottom edge", name);
  fail_if (same_pixel (out, ref, &info, 99, 60), "%s: right edge", name);
  fail_if (same_pixel (out, ref, &info, 60, 40), "%s: top edge", name);
  /* the tab sits above the box */
  fail_if (same_pixel (out, ref, &info, 26, 36), "%s: tab", name);
  for (i = 0; i < (gint) G_N_ELEMENTS (far); i++)
    fail_unless (same_pixel (out, ref, &info, far[i][0], far[i][1]),
        "%s: pixel %d,%d far from the box changed", name, far[i][0], far[i][1]);
  gst_buffer_unref (out);
  gst_buffer_unref (ref);
  gst_harness_teardown (h);
}

GST_START_TEST (test_overlay_draws_outline_only)
{
  guint f;

  for (f = 0; f < G_N_ELEMENTS (all_formats); f++) {
    check_overlay (gst_video_format_from_string (all_formats[f]), FALSE);
    check_overlay (gst_video_format_from_string (all_formats[f]), TRUE);
  }
}

GST_END_TEST;

GST_START_TEST (test_overlay_no_boxes_no_change)
{
  GstHarness *h = gst_harness_new_parse ("stageoverlay");
  GstVideoInfo info;
  GstBuffer *in, *ref, *out;
  GstMapInfo a, b;

  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_NV12, OW, OH);
  in = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&info), NULL);
  gst_buffer_memset (in, 0, 77, GST_VIDEO_INFO_SIZE (&info));
  ref = gst_buffer_copy_deep (in);
  gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
  out = gst_harness_push_and_pull (h, in);
  gst_buffer_map (out, &a, GST_MAP_READ);
  gst_buffer_map (ref, &b, GST_MAP_READ);
  fail_unless (memcmp (a.data, b.data, a.size) == 0);
  gst_buffer_unmap (out, &a);
  gst_buffer_unmap (ref, &b);
  gst_buffer_unref (out);
  gst_buffer_unref (ref);
  gst_harness_teardown (h);
}

GST_END_TEST;

/* Odd sizes, boxes on and past every edge, tabs cut by the frame: every
 * format draws without touching memory outside the frame (ASan/valgrind). */
GST_START_TEST (test_overlay_odd_sizes_and_edges)
{
  const gfloat boxes[][4] = { { 0, 0, 161, 121 }, { -20, -20, 30, 30 },
    { 140, 100, 400, 300 }, { 150, 3, 161, 9 }, { 1, 1, 2, 2 },
    { 160, 120, 161, 121 } };
  guint f, i;

  for (f = 0; f < G_N_ELEMENTS (all_formats); f++) {
    GstHarness *h = gst_harness_new_parse ("stageoverlay line-width=3");
    GstVideoInfo info;
    GstBuffer *buf, *ref, *out;
    SiDetectionMeta *m;
    GstMapInfo a, b;

    gst_video_info_set_format (
        &info, gst_video_format_from_string (all_formats[f]), 161, 121);
    buf = gst_buffer_new_allocate (NULL, GST_VIDEO_INFO_SIZE (&info), NULL);
    gst_buffer_memset (buf, 0, 90, GST_VIDEO_INFO_SIZE (&info));
    m = si_buffer_add_detection_meta (buf, "test", 161, 121);
    for (i = 0; i < G_N_ELEMENTS (boxes); i++)
      si_detection_meta_add (m, i, "a-rather-long-label", 0.5f, boxes[i][0],
          boxes[i][1], boxes[i][2], boxes[i][3]);
    ref = gst_buffer_copy_deep (buf);
    gst_harness_set_src_caps (h, gst_video_info_to_caps (&info));
    out = gst_harness_push_and_pull (h, buf);
    gst_buffer_map (out, &a, GST_MAP_READ);
    gst_buffer_map (ref, &b, GST_MAP_READ);
    fail_if (memcmp (a.data, b.data, a.size) == 0, "%s: nothing drawn",
        all_formats[f]);
    gst_buffer_unmap (out, &a);
    gst_buffer_unmap (ref, &b);
    gst_buffer_unref (out);
    gst_buffer_unref (ref);
    gst_harness_teardown (h);
  }
}

GST_END_TEST;

static Suite *
elements_suite (void)
{
  Suite *s = suite_create ("elements");
  TCase *tc = tcase_create ("general");
  const gchar *golden = g_getenv ("SI_GOLDEN_DIR");
  gchar *image;

  if (golden == NULL) {
    g_printerr ("SI_GOLDEN_DIR is not set\n");
    exit (1);
  }
  model_path = g_build_filename (golden, "tiny", "model.safetensors", NULL);
  image = g_build_filename (golden, "tiny", "image.ppm", NULL);
  if (!g_file_test (model_path, G_FILE_TEST_EXISTS) ||
      !g_file_test (image, G_FILE_TEST_EXISTS)) {
    g_printerr ("golden data missing: %s, %s\n", model_path, image);
    exit (1);
  }
  golden_rgb = load_ppm (image, &golden_info);
  g_free (image);

  tcase_set_timeout (tc, 600);
  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_detections_match_engine);
  tcase_add_test (tc, test_meta_survives_convert_and_scale);
  tcase_add_test (tc, test_roi_metas_match);
  tcase_add_test (tc, test_every_format_negotiates_and_runs);
  tcase_add_test (tc, test_bad_model_gives_bus_error);
  tcase_add_test (tc, test_state_cycles);
  tcase_add_test (tc, test_threshold_change_while_playing);
  tcase_add_test (tc, test_model_change_while_playing);
  tcase_add_test (tc, test_frame_size_changes_mid_stream);
  tcase_add_test (tc, test_interval_repeats_detections);
  tcase_add_test (tc, test_classes_and_labels);
  tcase_add_test (tc, test_stats);
  tcase_add_test (tc, test_live_source_never_stalls);
  tcase_add_test (tc, test_overlay_draws_outline_only);
  tcase_add_test (tc, test_overlay_no_boxes_no_change);
  tcase_add_test (tc, test_overlay_odd_sizes_and_edges);
  return s;
}

int
main (int argc, char **argv)
{
  Suite *s;
  int ret;

  gst_check_init (&argc, &argv);
  s = elements_suite ();
  ret = gst_check_run_suite (s, "elements", __FILE__);
  gst_buffer_unref (golden_rgb);
  g_free (model_path);
  return ret;
}
