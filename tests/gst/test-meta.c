/* test-meta.c: unit tests of the SiDetectionMeta library: add, count, get,
 * iterate, growth past the inline store, copies, scale transform and the
 * ROI mirror with distinct ids.
 */
#include <gst/check/gstcheck.h>
#include <si-detection-meta.h>

GST_START_TEST (test_add_count_iterate)
{
  GstBuffer *buf = gst_buffer_new ();
  SiDetectionMeta *m = si_buffer_add_detection_meta (buf, "demo", 640, 480);
  const SiMetaDetection *d;
  gpointer state = NULL;
  const gchar *label;
  gfloat score, x1, y1, x2, y2;
  gint cls;
  guint i, n = 0;

  fail_unless (m != NULL);
  fail_unless (si_buffer_get_detection_meta (buf) == m);
  fail_unless_equals_string (m->model, "demo");
  fail_unless_equals_int (si_detection_meta_get_count (m), 0);
  for (i = 0; i < 100; i++)
    fail_unless (si_detection_meta_add (
        m, i % 7, i % 2 ? "cat" : "dog", i / 100.0f, i, i + 1, i + 10, i + 20));
  fail_unless_equals_int (si_detection_meta_get_count (m), 100);
  while ((d = si_detection_meta_iterate (m, &state))) {
    fail_unless_equals_int (d->class_id, n % 7);
    fail_unless_equals_string (d->label, n % 2 ? "cat" : "dog");
    fail_unless_equals_float (d->x1, n);
    fail_unless_equals_float (d->y2, n + 20);
    fail_unless_equals_int (d->roi_id, -1);
    n++;
  }
  fail_unless_equals_int (n, 100);
  fail_unless (si_detection_meta_get (m, 100) == NULL);
  fail_unless (si_detection_meta_get_detection (
      m, 42, &cls, &label, &score, &x1, &y1, &x2, &y2));
  fail_unless_equals_int (cls, 0);
  fail_unless_equals_string (label, "dog");
  fail_unless_equals_float (x2, 52);
  fail_if (si_detection_meta_get_detection (
      m, 1000, NULL, NULL, NULL, NULL, NULL, NULL, NULL));
  fail_if (si_detection_meta_is_repeated (m));
  gst_buffer_unref (buf);
}

GST_END_TEST;

GST_START_TEST (test_copy_keeps_detections)
{
  GstBuffer *buf = gst_buffer_new_allocate (NULL, 64, NULL), *copy;
  SiDetectionMeta *m = si_buffer_add_detection_meta (buf, "demo", 64, 48);
  SiDetectionMeta *c;
  guint i;

  m->flags = SI_DETECTION_META_FLAG_REPEATED;
  m->frame = 9;
  m->source_frame = 6;
  for (i = 0; i < 20; i++)
    si_detection_meta_add (m, i, "x", 0.5f, 1, 2, 3, 4);
  copy = gst_buffer_copy (buf);
  c = si_buffer_get_detection_meta (copy);
  fail_unless (c != NULL && c != m);
  fail_unless_equals_int (si_detection_meta_get_count (c), 20);
  fail_unless (c->detections != m->detections);
  fail_unless (si_detection_meta_is_repeated (c));
  fail_unless_equals_int (c->frame, 9);
  fail_unless_equals_int (c->source_frame, 6);
  fail_unless_equals_int (si_detection_meta_get (c, 19)->class_id, 19);
  gst_buffer_unref (buf);
  gst_buffer_unref (copy);
}

GST_END_TEST;

GST_START_TEST (test_scale_transform)
{
  GstBuffer *buf = gst_buffer_new (), *dst = gst_buffer_new ();
  SiDetectionMeta *m = si_buffer_add_detection_meta (buf, "demo", 100, 50);
  GstVideoInfo in, out;
  GstVideoMetaTransform trans = { &in, &out };
  const GstMetaInfo *info = SI_DETECTION_META_INFO;
  SiDetectionMeta *s;
  const SiMetaDetection *d;

  si_detection_meta_add (m, 1, "a", 0.9f, 10, 20, 30, 40);
  gst_video_info_set_format (&in, GST_VIDEO_FORMAT_RGB, 100, 50);
  gst_video_info_set_format (&out, GST_VIDEO_FORMAT_RGB, 200, 25);
  fail_unless (info->transform_func (dst, (GstMeta *) m, buf,
      gst_video_meta_transform_scale_get_quark (), &trans));
  s = si_buffer_get_detection_meta (dst);
  fail_unless (s != NULL);
  d = si_detection_meta_get (s, 0);
  fail_unless_equals_float (d->x1, 20);
  fail_unless_equals_float (d->x2, 60);
  fail_unless_equals_float (d->y1, 10);
  fail_unless_equals_float (d->y2, 20);
  fail_unless_equals_int (s->width, 200);
  fail_unless_equals_int (s->height, 25);
  gst_buffer_unref (buf);
  gst_buffer_unref (dst);
}

GST_END_TEST;

GST_START_TEST (test_roi_mirror)
{
  GstBuffer *buf = gst_buffer_new ();
  SiDetectionMeta *m = si_buffer_add_detection_meta (buf, "demo", 100, 50);
  GstVideoRegionOfInterestMeta *other, *roi;
  GstStructure *s;
  gdouble conf;
  gint id;

  other = gst_buffer_add_video_region_of_interest_meta (buf, "x", 0, 0, 1, 1);
  other->id = 3;
  si_detection_meta_add (m, 2, "car", 0.25f, -5, 10, 120, 20.4f);
  si_detection_meta_add (m, 4, "bus", 0.75f, 1, 2, 3, 4);
  fail_unless_equals_int (si_detection_meta_attach_roi_metas (m, buf), 2);
  fail_unless_equals_int (si_detection_meta_get (m, 0)->roi_id, 4);
  fail_unless_equals_int (si_detection_meta_get (m, 1)->roi_id, 5);
  roi = gst_buffer_get_video_region_of_interest_meta_id (buf, 4);
  fail_unless (roi != NULL);
  fail_unless_equals_string (g_quark_to_string (roi->roi_type), "car");
  /* clipped to the frame */
  fail_unless_equals_int (roi->x, 0);
  fail_unless_equals_int (roi->y, 10);
  fail_unless_equals_int (roi->w, 100);
  fail_unless_equals_int (roi->h, 10);
  s = gst_video_region_of_interest_meta_get_param (roi, "detection");
  fail_unless (gst_structure_get_int (s, "label_id", &id));
  fail_unless_equals_int (id, 2);
  fail_unless (gst_structure_get_double (s, "confidence", &conf));
  fail_unless_equals_float (conf, 0.25);
  fail_unless_equals_string (gst_structure_get_string (s, "label"), "car");
  gst_buffer_unref (buf);
}

GST_END_TEST;

static Suite *
meta_suite (void)
{
  Suite *s = suite_create ("meta");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_add_count_iterate);
  tcase_add_test (tc, test_copy_keeps_detections);
  tcase_add_test (tc, test_scale_transform);
  tcase_add_test (tc, test_roi_mirror);
  return s;
}

GST_CHECK_MAIN (meta);
