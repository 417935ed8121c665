/* stagemetapublish, method=file: N frames in, N JSON lines (or one array)
 * out, in order, each valid against docs/detection-message.schema.json and
 * equal to the metas of its frame; passthrough, publish-empty, open errors,
 * the documented example and the validator itself. */
#include "publish-test-util.h"

#include "si-detection-meta.h"

#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>

#define N_FRAMES 40

static gchar *
tmp_path (const gchar *name)
{
  gchar *dir = g_dir_make_tmp ("si-publish-XXXXXX", NULL);
  gchar *path;

  fail_unless (dir != NULL);
  path = g_build_filename (dir, name, NULL);
  g_free (dir);
  return path;
}

static void
remove_tmp (gchar *path)
{
  gchar *dir = g_path_get_dirname (path);

  g_unlink (path);
  g_rmdir (dir);
  g_free (dir);
  g_free (path);
}

static gchar **
read_lines (const gchar *path)
{
  gchar *text = NULL;
  gchar **lines;

  fail_unless (g_file_get_contents (path, &text, NULL, NULL));
  fail_unless (g_str_has_suffix (text, "\n"), "last line not terminated");
  text[strlen (text) - 1] = '\0';
  lines = g_strsplit (text, "\n", -1);
  g_free (text);
  return lines;
}

GST_START_TEST (test_file_lines_match_metas)
{
  gchar *path = tmp_path ("out.jsonl");
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  GstHarness *h;
  gchar **lines;
  guint64 published, dropped;
  guint i;

  g_object_set (e, "method", 0, "file-path", path, "source-id", "cam-7", NULL);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, N_FRAMES);
  gst_harness_teardown (h);

  lines = read_lines (path);
  fail_unless_equals_int (g_strv_length (lines), N_FRAMES);
  for (i = 0; i < N_FRAMES; i++)
    pt_check_message (
        lines[i], strlen (lines[i]), i, "cam-7", PT_WIDTH, PT_HEIGHT);
  g_object_get (e, "published", &published, "dropped", &dropped, NULL);
  fail_unless_equals_uint64 (published, N_FRAMES);
  fail_unless_equals_uint64 (dropped, 0);
  g_strfreev (lines);
  remove_tmp (path);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_file_array_is_one_json_array)
{
  gchar *path = tmp_path ("out.json");
  GstElement *e = gst_element_factory_make ("stagemetapublish", "array0");
  JsonParser *parser = json_parser_new ();
  JsonGenerator *gen = json_generator_new ();
  GstHarness *h;
  JsonArray *arr;
  guint i;

  gst_util_set_object_arg (G_OBJECT (e), "file-format", "array");
  g_object_set (e, "file-path", path, NULL);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, N_FRAMES);
  gst_harness_teardown (h);

  fail_unless (json_parser_load_from_file (parser, path, NULL));
  arr = json_node_get_array (json_parser_get_root (parser));
  fail_unless_equals_int (json_array_get_length (arr), N_FRAMES);
  for (i = 0; i < N_FRAMES; i++) {
    gsize len;
    gchar *text;

    json_generator_set_root (gen, json_array_get_element (arr, i));
    text = json_generator_to_data (gen, &len);
    /* source-id defaults to the element's name */
    pt_check_message (text, len, i, "array0", PT_WIDTH, PT_HEIGHT);
    g_free (text);
  }
  g_object_unref (gen);
  g_object_unref (parser);
  remove_tmp (path);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_empty_array_file_is_valid_json)
{
  gchar *path = tmp_path ("empty.json");
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  GstHarness *h;
  gchar *text = NULL;

  gst_util_set_object_arg (G_OBJECT (e), "file-format", "array");
  g_object_set (e, "file-path", path, NULL);
  h = pt_new_harness (e);
  gst_harness_teardown (h);
  fail_unless (g_file_get_contents (path, &text, NULL, NULL));
  fail_unless_equals_string (text, "[\n]\n");
  g_free (text);
  remove_tmp (path);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_publish_empty_false_skips_empty_frames)
{
  gchar *path = tmp_path ("nonempty.jsonl");
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  GstHarness *h;
  gchar **lines;
  guint i, k = 0;

  g_object_set (
      e, "file-path", path, "source-id", "cam", "publish-empty", FALSE, NULL);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, N_FRAMES);
  gst_harness_teardown (h);

  lines = read_lines (path);
  for (i = 0; i < N_FRAMES; i++) {
    /* Frames with detections: metas of pt_attach_metas */
    gboolean has = (i % 4 != 3 && i % 3 != 0) || i % 5 <= 1;

    if (!has)
      continue;
    fail_unless (lines[k] != NULL, "missing message of frame %u", i);
    pt_check_message (
        lines[k], strlen (lines[k]), i, "cam", PT_WIDTH, PT_HEIGHT);
    k++;
  }
  fail_unless (lines[k] == NULL, "extra messages");
  g_strfreev (lines);
  remove_tmp (path);
  gst_object_unref (e);
}

GST_END_TEST;

static GstPadProbeReturn
add_metas_probe (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  guint *count = data;
  GstBuffer *buf = gst_buffer_make_writable (GST_PAD_PROBE_INFO_BUFFER (info));

  pt_attach_metas (buf, (*count)++);
  GST_PAD_PROBE_INFO_DATA (info) = buf;
  return GST_PAD_PROBE_OK;
}

GST_START_TEST (test_pipeline_videotestsrc)
{
  gchar *path = tmp_path ("pipeline.jsonl");
  gchar *desc = g_strdup_printf (
      "videotestsrc num-buffers=%d ! %s ! "
      "stagemetapublish name=pub source-id=cam-p file-path=%s ! fakesink",
      N_FRAMES, pt_caps_string (), path);
  GstElement *pipe = gst_parse_launch (desc, NULL);
  GstElement *pub = gst_bin_get_by_name (GST_BIN (pipe), "pub");
  GstPad *pad = gst_element_get_static_pad (pub, "sink");
  GstBus *bus = gst_element_get_bus (pipe);
  GstMessage *msg;
  guint count = 0, i;
  gchar **lines;

  gst_pad_add_probe (
      pad, GST_PAD_PROBE_TYPE_BUFFER, add_metas_probe, &count, NULL);
  fail_unless (gst_element_set_state (pipe, GST_STATE_PLAYING) !=
      GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_timed_pop_filtered (
      bus, 20 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  fail_unless (msg != NULL && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS);
  gst_message_unref (msg);
  gst_element_set_state (pipe, GST_STATE_NULL);

  lines = read_lines (path);
  fail_unless_equals_int (g_strv_length (lines), N_FRAMES);
  for (i = 0; i < N_FRAMES; i++)
    pt_check_message (
        lines[i], strlen (lines[i]), i, "cam-p", PT_WIDTH, PT_HEIGHT);
  g_strfreev (lines);
  gst_object_unref (bus);
  gst_object_unref (pad);
  gst_object_unref (pub);
  gst_object_unref (pipe);
  g_free (desc);
  remove_tmp (path);
}

GST_END_TEST;

/* Start, stop and restart: counters start over, the file is rewritten. */
GST_START_TEST (test_state_changes_restart_cleanly)
{
  gchar *path = tmp_path ("states.jsonl");
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  guint round;

  g_object_set (e, "file-path", path, NULL);
  for (round = 0; round < 3; round++) {
    GstHarness *h;
    guint64 published;
    gchar **lines;

    fail_unless_equals_int (
        gst_element_set_state (e, GST_STATE_READY), GST_STATE_CHANGE_SUCCESS);
    fail_unless_equals_int (
        gst_element_set_state (e, GST_STATE_NULL), GST_STATE_CHANGE_SUCCESS);
    h = pt_new_harness (e);
    pt_push_frames (h, 0, round + 1);
    gst_harness_teardown (h);
    g_object_get (e, "published", &published, NULL);
    fail_unless_equals_uint64 (published, round + 1);
    lines = read_lines (path);
    fail_unless_equals_int (g_strv_length (lines), round + 1);
    g_strfreev (lines);
  }
  gst_object_unref (e);
  remove_tmp (path);
}

GST_END_TEST;

/* A meta whose boxes refer to another frame size is scaled to the caps. */
GST_START_TEST (test_meta_of_other_size_is_scaled)
{
  gchar *path = tmp_path ("scaled.jsonl");
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  GstBuffer *buf =
      gst_buffer_new_allocate (NULL, PT_WIDTH * PT_HEIGHT * 4, NULL);
  SiDetectionMeta *meta;
  JsonParser *p = json_parser_new ();
  JsonObject *det, *box;
  GstHarness *h;
  gchar **lines;

  meta = si_buffer_add_detection_meta (buf, "m", 2 * PT_WIDTH, 2 * PT_HEIGHT);
  si_detection_meta_add (meta, 3, "motorcycle", 0.5f, 10, 20, 50, 60);
  g_object_set (e, "file-path", path, NULL);
  h = pt_new_harness (e);
  fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  gst_harness_teardown (h);

  lines = read_lines (path);
  fail_unless (json_parser_load_from_data (p, lines[0], -1, NULL));
  det = json_array_get_object_element (
      json_object_get_array_member (
          json_node_get_object (json_parser_get_root (p)), "detections"),
      0);
  box = json_object_get_object_member (det, "box");
  fail_unless (json_object_get_double_member (box, "x") == 5.0);
  fail_unless (json_object_get_double_member (box, "y") == 10.0);
  fail_unless (json_object_get_double_member (box, "width") == 20.0);
  fail_unless (json_object_get_double_member (box, "height") == 20.0);
  g_object_unref (p);
  g_strfreev (lines);
  gst_object_unref (e);
  remove_tmp (path);
}

GST_END_TEST;

/* Labels come from other elements too: quotes, backslashes, control
 * characters and UTF-8 must survive the JSON text. */
GST_START_TEST (test_labels_are_escaped)
{
  static const gchar *const label =
      "a \"quoted\" back\\slash\ttab\x01 \xc3\xa9";
  gchar *path = tmp_path ("escaped.jsonl");
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  GstBuffer *buf =
      gst_buffer_new_allocate (NULL, PT_WIDTH * PT_HEIGHT * 4, NULL);
  JsonParser *p = json_parser_new ();
  JsonObject *det;
  GstHarness *h;
  gchar **lines;

  gst_buffer_add_video_region_of_interest_meta (buf, label, 1, 2, 3, 4);
  g_object_set (e, "file-path", path, "source-id", "cam \"x\"", NULL);
  h = pt_new_harness (e);
  fail_unless_equals_int (gst_harness_push (h, buf), GST_FLOW_OK);
  gst_harness_teardown (h);

  lines = read_lines (path);
  fail_unless_equals_int (g_strv_length (lines), 1);
  fail_unless (
      json_parser_load_from_data (p, lines[0], -1, NULL), "%s", lines[0]);
  fail_unless_equals_string (
      json_object_get_string_member (
          json_node_get_object (json_parser_get_root (p)), "source_id"),
      "cam \"x\"");
  det = json_array_get_object_element (
      json_object_get_array_member (
          json_node_get_object (json_parser_get_root (p)), "detections"),
      0);
  fail_unless_equals_string (
      json_object_get_string_member (det, "label"), label);
  g_object_unref (p);
  g_strfreev (lines);
  gst_object_unref (e);
  remove_tmp (path);
}

GST_END_TEST;

GST_START_TEST (test_bad_file_path_is_bus_error)
{
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GError *err = NULL;

  g_object_set (e, "file-path", "/nonexistent-dir/out.jsonl", NULL);
  gst_element_set_bus (e, bus);
  fail_unless_equals_int (
      gst_element_set_state (e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL);
  gst_message_parse_error (msg, &err, NULL);
  fail_unless (strstr (err->message, "/nonexistent-dir/out.jsonl") != NULL,
      "%s", err->message);
  fail_unless (
      strstr (err->message, "No such file") != NULL, "%s", err->message);
  g_error_free (err);
  gst_message_unref (msg);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_example_message_is_valid)
{
  JsonParser *p = json_parser_new ();
  gchar *why = NULL;

  fail_unless (json_parser_load_from_file (p, EXAMPLE_PATH, NULL));
  if (!pt_schema_validate (pt_schema (), json_parser_get_root (p), &why))
    fail ("example: %s", why);
  g_object_unref (p);
}

GST_END_TEST;

/* The validator must reject, or every schema check above proves nothing. */
GST_START_TEST (test_validator_rejects_bad_messages)
{
  static const gchar *const bad[] = {
    "{}",
    /* score above 1 */
    "{\"version\":1,\"source_id\":\"c\",\"frame_number\":0,\"pts_ns\":null,"
    "\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"timestamp_us\":0,"
    "\"width\":1,\"height\":1,\"model\":null,\"repeated\":false,\"detections\":"
    "[{\"label\":"
    "null,\"class_id\":null,\"score\":1.5,\"box\":{\"x\":0,\"y\":0,"
    "\"width\":1,\"height\":1},\"box_normalized\":{\"x\":0,\"y\":0,"
    "\"width\":1,\"height\":1}}]}",
    /* unknown member */
    "{\"version\":1,\"source_id\":\"c\",\"frame_number\":0,\"pts_ns\":null,"
    "\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"timestamp_us\":0,"
    "\"width\":1,\"height\":1,\"model\":null,\"repeated\":false,\"detections\":"
    "[],"
    "\"extra\":1}",
    /* frame number as a string, bad timestamp */
    "{\"version\":1,\"source_id\":\"c\",\"frame_number\":\"0\",\"pts_ns\":"
    "null,\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"timestamp_us\":"
    "0,\"width\":1,\"height\":1,\"model\":null,\"repeated\":false,"
    "\"detections\":[]}",
    "{\"version\":1,\"source_id\":\"c\",\"frame_number\":0,\"pts_ns\":null,"
    "\"timestamp\":\"yesterday\",\"timestamp_us\":0,\"width\":1,"
    "\"height\":1,\"model\":null,\"repeated\":false,\"detections\":[]}",
    /* version 2 */
    "{\"version\":2,\"source_id\":\"c\",\"frame_number\":0,\"pts_ns\":null,"
    "\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"timestamp_us\":0,"
    "\"width\":1,\"height\":1,\"model\":null,\"repeated\":false,\"detections\":"
    "[]}",
  };
  guint i;

  for (i = 0; i < G_N_ELEMENTS (bad); i++) {
    JsonParser *p = json_parser_new ();
    gchar *why = NULL;

    fail_unless (json_parser_load_from_data (p, bad[i], -1, NULL));
    fail_if (pt_schema_validate (pt_schema (), json_parser_get_root (p), &why),
        "accepted bad message %u", i);
    GST_INFO ("rejected %u: %s", i, why);
    g_free (why);
    g_object_unref (p);
  }
}

GST_END_TEST;

static Suite *
publish_file_suite (void)
{
  Suite *s = suite_create ("stagemetapublish-file");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_file_lines_match_metas);
  tcase_add_test (tc, test_file_array_is_one_json_array);
  tcase_add_test (tc, test_empty_array_file_is_valid_json);
  tcase_add_test (tc, test_publish_empty_false_skips_empty_frames);
  tcase_add_test (tc, test_pipeline_videotestsrc);
  tcase_add_test (tc, test_state_changes_restart_cleanly);
  tcase_add_test (tc, test_meta_of_other_size_is_scaled);
  tcase_add_test (tc, test_labels_are_escaped);
  tcase_add_test (tc, test_bad_file_path_is_bus_error);
  tcase_add_test (tc, test_example_message_is_valid);
  tcase_add_test (tc, test_validator_rejects_bad_messages);
  return s;
}

GST_CHECK_MAIN (publish_file);
