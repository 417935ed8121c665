/* si-stream.c: example application.  Runs stageinteractor on a file, URI or
 * V4L2 camera and prints one JSON line per frame (frame, pts, detections)
 * read from SiDetectionMeta in a pad probe; optionally also writes the
 * annotated video (stageoverlay) to an AVI/MJPEG file.
 *
 *   si-stream --model M.safetensors video.mp4
 *   si-stream --model M.safetensors --interval 3 /dev/video0
 */
#include <gst/gst.h>
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <si-detection-meta.h>

#ifndef SI_PLUGIN_BUILD_DIR
#define SI_PLUGIN_BUILD_DIR ""
#endif

typedef struct
{
  GMainLoop *loop;
  GstElement *pipeline;
  GString *line;
  guint64 frames;
  gint exit_code;
} App;

/* Appends s as a JSON string literal. */
static void
append_json_string (GString *out, const gchar *s)
{
  g_string_append_c (out, '"');
  for (; s && *s; s++) {
    guchar c = (guchar) *s;

    if (c == '"' || c == '\\')
      g_string_append_printf (out, "\\%c", c);
    else if (c < 0x20)
      g_string_append_printf (out, "\\u%04x", c);
    else
      g_string_append_c (out, c);
  }
  g_string_append_c (out, '"');
}

/* One JSON line for the detections of buf:
 * {"frame":N,"pts":S,"model":"m","repeated":false,"detections":[
 *   {"class_id":0,"label":"person","score":0.91,"box":[x1,y1,x2,y2]}]} */
static void
print_frame (App *app, GstBuffer *buf)
{
  SiDetectionMeta *meta = si_buffer_get_detection_meta (buf);
  GString *out = app->line;
  guint i;

  g_string_truncate (out, 0);
  g_string_append_printf (out, "{\"frame\":%" G_GINT64_FORMAT ",\"pts\":",
      meta ? (gint64) meta->frame : (gint64) app->frames);
  if (GST_BUFFER_PTS_IS_VALID (buf))
    g_string_append_printf (
        out, "%.6f", GST_BUFFER_PTS (buf) / (gdouble) GST_SECOND);
  else
    g_string_append (out, "null");
  if (meta) {
    g_string_append (out, ",\"model\":");
    append_json_string (out, meta->model);
    g_string_append_printf (out, ",\"repeated\":%s",
        si_detection_meta_is_repeated (meta) ? "true" : "false");
  }
  g_string_append (out, ",\"detections\":[");
  for (i = 0; meta && i < si_detection_meta_get_count (meta); i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);

    g_string_append_printf (
        out, "%s{\"class_id\":%d,\"label\":", i ? "," : "", d->class_id);
    append_json_string (out, d->label);
    g_string_append_printf (out,
        ",\"score\":%.4f,\"box\":[%.1f,%.1f,%.1f,"
        "%.1f]}",
        d->score, d->x1, d->y1, d->x2, d->y2);
  }
  g_string_append (out, "]}\n");
  fwrite (out->str, 1, out->len, stdout);
  fflush (stdout);
  app->frames++;
}

static GstPadProbeReturn
on_buffer (GstPad *pad, GstPadProbeInfo *info, gpointer user_data)
{
  print_frame (user_data, GST_PAD_PROBE_INFO_BUFFER (info));
  return GST_PAD_PROBE_OK;
}

static gboolean
on_bus (GstBus *bus, GstMessage *msg, gpointer user_data)
{
  App *app = user_data;
  GError *err = NULL;
  gchar *dbg = NULL;

  switch (GST_MESSAGE_TYPE (msg)) {
    case GST_MESSAGE_ERROR:
      gst_message_parse_error (msg, &err, &dbg);
      g_printerr (
          "error from %s: %s\n", GST_OBJECT_NAME (msg->src), err->message);
      if (dbg)
        g_printerr ("  %s\n", dbg);
      g_clear_error (&err);
      g_free (dbg);
      app->exit_code = 1;
      g_main_loop_quit (app->loop);
      break;
    case GST_MESSAGE_EOS:
      g_main_loop_quit (app->loop);
      break;
    default:
      break;
  }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_sigint (gpointer user_data)
{
  App *app = user_data;

  /* EOS lets the muxer finish the annotated file */
  g_printerr ("interrupted: finishing\n");
  gst_element_send_event (app->pipeline, gst_event_new_eos ());
  return G_SOURCE_CONTINUE;
}

int
main (int argc, char **argv)
{
  gchar *model = NULL, *backend = NULL, *annotate = NULL, *classes = NULL;
  gdouble threshold = 0.3;
  gint interval = 1, max_detections = 100;
  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
        "Model (.safetensors), required", "FILE" },
    { "threshold", 't', 0, G_OPTION_ARG_DOUBLE, &threshold,
        "Score threshold (default 0.3)", "T" },
    { "interval", 'i', 0, G_OPTION_ARG_INT, &interval,
        "Run the model every Nth frame (default 1)", "N" },
    { "max-detections", 'n', 0, G_OPTION_ARG_INT, &max_detections,
        "At most N detections per frame (default 100, 0 = all)", "N" },
    { "classes", 'c', 0, G_OPTION_ARG_STRING, &classes,
        "Only these classes (names or ids, comma-separated)", "LIST" },
    { "backend", 'b', 0, G_OPTION_ARG_STRING, &backend,
        "auto, cpu or cuda (default auto)", "B" },
    { "annotate", 'o', 0, G_OPTION_ARG_FILENAME, &annotate,
        "Also write the annotated video to FILE (.avi, MJPEG)", "FILE" },
    { NULL },
  };
  GOptionContext *ctx;
  GError *err = NULL;
  App app = { NULL, NULL, NULL, 0, 0 };
  GString *desc;
  const gchar *input;
  GstElement *det;
  GstPad *pad;
  GstBus *bus;
  gboolean camera;

  ctx = g_option_context_new ("FILE|URI|/dev/videoN");
  g_option_context_set_summary (ctx,
      "Prints the StageInteractor detections "
      "of every frame as one JSON line.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  if (!g_option_context_parse (ctx, &argc, &argv, &err) || argc != 2 ||
      model == NULL) {
    g_printerr ("%s\n",
        err ? err->message
            : "usage: si-stream --model FILE [options] FILE|URI|/dev/videoN");
    g_clear_error (&err);
    g_option_context_free (ctx);
    return 2;
  }
  g_option_context_free (ctx);
  input = argv[1];

  /* run from the build tree without GST_PLUGIN_PATH */
  if (!gst_registry_check_feature_version (
          gst_registry_get (), "stageinteractor", 1, 0, 0) &&
      SI_PLUGIN_BUILD_DIR[0])
    gst_registry_scan_path (gst_registry_get (), SI_PLUGIN_BUILD_DIR);

  /* live camera: a leaky queue drops frames the detector cannot take */
  camera = g_str_has_prefix (input, "/dev/video");
  desc = g_string_new (NULL);
  if (camera) {
    g_string_append_printf (desc,
        "v4l2src device=\"%s\" ! videoconvert ! "
        "queue leaky=downstream max-size-buffers=1 max-size-bytes=0 "
        "max-size-time=0 ! ",
        input);
  } else {
    gchar *uri = gst_uri_is_valid (input) ? g_strdup (input)
                                          : gst_filename_to_uri (input, &err);

    if (uri == NULL) {
      g_printerr ("bad input %s: %s\n", input, err->message);
      return 2;
    }
    g_string_append_printf (
        desc, "uridecodebin uri=\"%s\" ! videoconvert ! ", uri);
    g_free (uri);
  }
  g_string_append (desc, "stageinteractor name=det ! ");
  if (annotate)
    g_string_append (desc,
        "stageoverlay ! videoconvert ! jpegenc ! avimux ! "
        "filesink name=out");
  else
    g_string_append_printf (
        desc, "fakesink sync=%s", camera ? "true" : "false");

  app.pipeline = gst_parse_launch (desc->str, &err);
  g_string_free (desc, TRUE);
  if (app.pipeline == NULL) {
    g_printerr ("pipeline: %s\n", err->message);
    return 1;
  }
  det = gst_bin_get_by_name (GST_BIN (app.pipeline), "det");
  g_object_set (det, "model", model, "threshold", (gfloat) threshold,
      "interval", (guint) MAX (interval, 1), "max-detections",
      (guint) MAX (max_detections, 0), NULL);
  if (classes)
    g_object_set (det, "classes", classes, NULL);
  if (backend)
    gst_util_set_object_arg (G_OBJECT (det), "backend", backend);
  if (annotate) {
    GstElement *out = gst_bin_get_by_name (GST_BIN (app.pipeline), "out");

    g_object_set (out, "location", annotate, NULL);
    gst_object_unref (out);
  }
  app.line = g_string_new (NULL);
  pad = gst_element_get_static_pad (det, "src");
  gst_pad_add_probe (pad, GST_PAD_PROBE_TYPE_BUFFER, on_buffer, &app, NULL);
  gst_object_unref (pad);
  gst_object_unref (det);

  app.loop = g_main_loop_new (NULL, FALSE);
  bus = gst_element_get_bus (app.pipeline);
  gst_bus_add_watch (bus, on_bus, &app);
  g_unix_signal_add (SIGINT, on_sigint, &app);
  if (gst_element_set_state (app.pipeline, GST_STATE_PLAYING) ==
      GST_STATE_CHANGE_FAILURE) {
    /* the error message on the bus says why */
    app.exit_code = 1;
  }
  g_main_loop_run (app.loop);

  gst_element_set_state (app.pipeline, GST_STATE_NULL);
  gst_bus_remove_watch (bus);
  gst_object_unref (bus);
  gst_object_unref (app.pipeline);
  g_string_free (app.line, TRUE);
  g_main_loop_unref (app.loop);
  g_free (model);
  g_free (backend);
  g_free (annotate);
  g_free (classes);
  return app.exit_code;
}
