/* stagemetapublish element: reads SiDetectionMeta and foreign ROI metas off
 * each passing frame, builds the JSON message (publish/publish-json.c) and
 * pushes it to the bounded send queue (publish/publish-queue.c) whose sender
 * thread drives the file, MQTT or Kafka transport. The video is untouched. */

/**
 * SECTION:element-stagemetapublish
 *
 * Publishes one JSON message per video frame with the frame's detections:
 * source id, frame number, pts, wall-clock time, frame size, model name and,
 * per detection, label, class id, score and the box in pixels and
 * normalized (docs/detection-message.schema.json). Detections come from
 * #SiDetectionMeta and from #GstVideoRegionOfInterestMeta added by other
 * elements (ROI metas that mirror a #SiDetectionMeta are not repeated).
 *
 * The streaming thread never waits on the network: messages go through a
 * queue of at most #GstStageMetaPublish:max-queued messages; when it is full
 * the new message is dropped, counted in #GstStageMetaPublish:dropped and
 * reported with a bus warning (at most one per second).
 *
 * ## Example launch lines
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=100 ! stageinteractor ! \
 *   stagemetapublish method=file file-path=- ! fakesink
 * gst-launch-1.0 -e v4l2src ! videoconvert ! stageinteractor ! \
 *   stagemetapublish method=mqtt address=broker:1883 topic=cams/cam-01 \
 *   source-id=cam-01 qos=1 ! fakesink
 * gst-launch-1.0 -e v4l2src ! videoconvert ! stageinteractor ! \
 *   stagemetapublish method=kafka address=k1:9092,k2:9092 topic=detections \
 *   source-id=cam-01 kafka-config="acks=all;linger.ms=5" ! fakesink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gststagemetapublish.h"

#include "publish/publish-json.h"
#include "publish/publish-queue.h"
#include "si-detection-meta.h"

#include <gst/video/video.h>
#include <math.h>

GST_DEBUG_CATEGORY_STATIC (gst_stage_meta_publish_debug);
#define GST_CAT_DEFAULT gst_stage_meta_publish_debug

#define DEFAULT_METHOD GST_STAGE_META_PUBLISH_FILE
#define DEFAULT_FILE_PATH "-"
#define DEFAULT_FILE_FORMAT GST_STAGE_META_PUBLISH_JSON_LINES
#define DEFAULT_TOPIC "detections"
#define DEFAULT_QOS 1
#define DEFAULT_MAX_QUEUED 1000
#define DEFAULT_PUBLISH_EMPTY TRUE
#define DEFAULT_CONNECT_TIMEOUT 5000
#define DEFAULT_FLUSH_TIMEOUT 5000
/* At most one drop warning on the bus per interval. */
#define WARN_INTERVAL_US G_USEC_PER_SEC

enum
{
  PROP_0,
  PROP_METHOD,
  PROP_SOURCE_ID,
  PROP_FILE_PATH,
  PROP_FILE_FORMAT,
  PROP_ADDRESS,
  PROP_TOPIC,
  PROP_CLIENT_ID,
  PROP_QOS,
  PROP_CA_FILE,
  PROP_CERT_FILE,
  PROP_KEY_FILE,
  PROP_USERNAME,
  PROP_PASSWORD,
  PROP_KAFKA_CONFIG,
  PROP_MAX_QUEUED,
  PROP_PUBLISH_EMPTY,
  PROP_CONNECT_TIMEOUT,
  PROP_FLUSH_TIMEOUT,
  PROP_PUBLISHED,
  PROP_DROPPED,
};

/* What identifies a ROI meta written by si_detection_meta_attach_roi_metas */
typedef struct
{
  gint roi_id;
  GQuark roi_type;
  gint class_id;
  gdouble score;
} Mirror;

struct _GstStageMetaPublish
{
  GstBaseTransform parent;

  /* properties, under the object lock */
  GstStageMetaPublishMethod method;
  gchar *source_id;
  gchar *file_path;
  GstStageMetaPublishFileFormat file_format;
  gchar *address;
  gchar *topic;
  gchar *client_id;
  gint qos;
  gchar *ca_file, *cert_file, *key_file;
  gchar *username, *password;
  gchar *kafka_config;
  guint max_queued;
  gboolean publish_empty;
  guint connect_timeout;
  guint flush_timeout;

  /* streaming state: set in start(), used by the streaming thread, released
   * in stop() */
  SiPublishQueue *queue;
  gchar *active_source_id;
  gboolean active_publish_empty;
  gint width, height;
  guint64 frame_number;
  GArray *dets;    /* SiPublishDetection, reused per frame */
  GArray *mirrors; /* Mirror: the ROI metas that copy SiDetectionMeta */

  /* counters, under stats_lock; kept after stop() for the properties */
  GMutex stats_lock;
  guint64 published;   /* copied from the queue at stop() */
  guint64 dropped;     /* every loss the queue reported */
  guint64 unreported;  /* drops not yet in a bus warning */
  gint64 last_warn_us; /* monotonic */
  gchar *last_reason;
};

#define gst_stage_meta_publish_parent_class parent_class
G_DEFINE_TYPE (
    GstStageMetaPublish, gst_stage_meta_publish, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (stagemetapublish, "stagemetapublish",
    GST_RANK_NONE, GST_TYPE_STAGE_META_PUBLISH);

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE (
    "sink", GST_PAD_SINK, GST_PAD_ALWAYS, GST_STATIC_CAPS ("video/x-raw(ANY)"));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE (
    "src", GST_PAD_SRC, GST_PAD_ALWAYS, GST_STATIC_CAPS ("video/x-raw(ANY)"));

#define GST_TYPE_STAGE_META_PUBLISH_METHOD (method_get_type ())
static GType
method_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { GST_STAGE_META_PUBLISH_FILE, "JSON to a file or stdout", "file" },
    { GST_STAGE_META_PUBLISH_MQTT, "MQTT broker (libmosquitto)", "mqtt" },
    { GST_STAGE_META_PUBLISH_KAFKA, "Kafka cluster (librdkafka)", "kafka" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (
        &type, g_enum_register_static ("GstStageMetaPublishMethod", values));
  return type;
}

#define GST_TYPE_STAGE_META_PUBLISH_FILE_FORMAT (file_format_get_type ())
static GType
file_format_get_type (void)
{
  static GType type = 0;
  static const GEnumValue values[] = {
    { GST_STAGE_META_PUBLISH_JSON_LINES, "One JSON message per line", "lines" },
    { GST_STAGE_META_PUBLISH_JSON_ARRAY, "One JSON array of messages",
        "array" },
    { 0, NULL, NULL },
  };

  if (g_once_init_enter (&type))
    g_once_init_leave (&type,
        g_enum_register_static ("GstStageMetaPublishFileFormat", values));
  return type;
}

/* Posts one bus warning for the drops not reported yet. */
static void
post_drop_warning (GstStageMetaPublish *self, gboolean force)
{
  gint64 now = g_get_monotonic_time ();
  guint64 n = 0, total = 0;
  gchar *why = NULL;

  g_mutex_lock (&self->stats_lock);
  if (self->unreported > 0 &&
      (force || self->last_warn_us == 0 ||
          now - self->last_warn_us >= WARN_INTERVAL_US)) {
    self->last_warn_us = now;
    n = self->unreported;
    total = self->dropped;
    self->unreported = 0;
    why = g_strdup (self->last_reason);
  }
  g_mutex_unlock (&self->stats_lock);

  if (n > 0)
    GST_ELEMENT_WARNING (self, RESOURCE, WRITE,
        ("Dropped %" G_GUINT64_FORMAT
         " detection message(s), %" G_GUINT64_FORMAT " in total",
            n, total),
        ("%s", why));
  g_free (why);
}

static const gchar *
transport_name (GstStageMetaPublishMethod method)
{
  switch (method) {
    case GST_STAGE_META_PUBLISH_MQTT:
      return "mqtt";
    case GST_STAGE_META_PUBLISH_KAFKA:
      return "kafka";
    case GST_STAGE_META_PUBLISH_FILE:
    default:
      return "file";
  }
}

/* Called by the queue from any thread, without its lock, when messages are
 * lost; the queue calls it for every message it counts as dropped. */
static void
on_loss (gpointer user_data, guint n, const gchar *reason)
{
  GstStageMetaPublish *self = user_data;

  g_mutex_lock (&self->stats_lock);
  self->dropped += n;
  self->unreported += n;
  if (g_strcmp0 (self->last_reason, reason) != 0) {
    g_free (self->last_reason);
    self->last_reason = g_strdup (reason);
  }
  g_mutex_unlock (&self->stats_lock);
  post_drop_warning (self, FALSE);
}

/* The properties' strings, copied so that opening (which may wait on the
 * network) runs without the object lock. */
typedef struct
{
  SiPublishConfig cfg;
  GstStageMetaPublishMethod method;
  gchar *strings[12];
} StartConfig;

static const gchar *
keep (StartConfig *sc, guint i, const gchar *s)
{
  sc->strings[i] = g_strdup (s);
  return sc->strings[i];
}

static void
start_config_clear (StartConfig *sc)
{
  guint i;

  for (i = 0; i < G_N_ELEMENTS (sc->strings); i++)
    g_clear_pointer (&sc->strings[i], g_free);
}

static void
start_config_fill (GstStageMetaPublish *self, StartConfig *sc)
{
  SiPublishConfig *cfg = &sc->cfg;

  GST_OBJECT_LOCK (self);
  sc->method = self->method;
  /* The schema wants a non-empty source_id. */
  cfg->source_id = keep (sc, 0,
      self->source_id != NULL && self->source_id[0] != '\0'
          ? self->source_id
          : GST_OBJECT_NAME (self));
  cfg->address = keep (sc, 1, self->address);
  cfg->topic = keep (sc, 2, self->topic != NULL ? self->topic : "");
  cfg->file_path = keep (sc, 3, self->file_path);
  cfg->client_id = keep (sc, 4, self->client_id);
  cfg->ca_file = keep (sc, 5, self->ca_file);
  cfg->cert_file = keep (sc, 6, self->cert_file);
  cfg->key_file = keep (sc, 7, self->key_file);
  cfg->username = keep (sc, 8, self->username);
  cfg->password = keep (sc, 9, self->password);
  cfg->kafka_config = keep (sc, 10, self->kafka_config);
  cfg->connect_timeout_ms = self->connect_timeout;
  cfg->max_queued = self->max_queued;
  cfg->file_array = self->file_format == GST_STAGE_META_PUBLISH_JSON_ARRAY;
  cfg->qos = self->qos;
  self->active_publish_empty = self->publish_empty;
  GST_OBJECT_UNLOCK (self);
}

static gboolean
gst_stage_meta_publish_start (GstBaseTransform *trans)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (trans);
  SiPublishTransport transport = { NULL, NULL };
  StartConfig sc = { 0 };
  SiPublishQueue *queue = NULL;
  GError *error = NULL;
  gboolean ok;

  g_mutex_lock (&self->stats_lock);
  self->published = self->dropped = self->unreported = 0;
  self->last_warn_us = 0;
  g_mutex_unlock (&self->stats_lock);
  self->frame_number = 0;
  self->width = self->height = 0;

  start_config_fill (self, &sc);
  queue = si_publish_queue_new (sc.cfg.max_queued, on_loss, self);
  sc.cfg.done = si_publish_queue_done;
  sc.cfg.done_data = queue;
  switch (sc.method) {
    case GST_STAGE_META_PUBLISH_MQTT:
      ok = si_publish_mqtt_open (&sc.cfg, &transport, &error);
      break;
    case GST_STAGE_META_PUBLISH_KAFKA:
      ok = si_publish_kafka_open (&sc.cfg, &transport, &error);
      break;
    case GST_STAGE_META_PUBLISH_FILE:
    default:
      ok = si_publish_file_open (&sc.cfg, &transport, &error);
      break;
  }
  if (!ok)
    goto open_failed;
  if (!si_publish_queue_start (queue, &transport, &error))
    goto thread_failed;

  g_free (self->active_source_id);
  self->active_source_id = g_strdup (sc.cfg.source_id);
  GST_OBJECT_LOCK (self);
  self->queue = queue;
  GST_OBJECT_UNLOCK (self);
  start_config_clear (&sc);
  return TRUE;

open_failed:
  GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
      ("Could not start publishing detections: %s", error->message),
      ("method=%s", transport_name (sc.method)));
  goto fail;
thread_failed:
  GST_ELEMENT_ERROR (self, RESOURCE, FAILED,
      ("Could not start the publishing thread"), ("%s", error->message));
fail:
  g_clear_error (&error);
  si_publish_queue_free (&queue);
  start_config_clear (&sc);
  return FALSE;
}

static gboolean
gst_stage_meta_publish_stop (GstBaseTransform *trans)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (trans);
  SiPublishQueue *queue;
  guint flush_timeout;

  GST_OBJECT_LOCK (self);
  queue = self->queue;
  flush_timeout = self->flush_timeout;
  GST_OBJECT_UNLOCK (self);
  if (queue == NULL)
    return TRUE;

  if (!si_publish_queue_drain (queue, flush_timeout))
    GST_WARNING_OBJECT (
        self, "messages still unsent after %u ms", flush_timeout);
  si_publish_queue_stop (queue);

  g_mutex_lock (&self->stats_lock);
  self->published = si_publish_queue_get_delivered (queue);
  g_mutex_unlock (&self->stats_lock);
  /* Report the drops the rate limit held back. */
  post_drop_warning (self, TRUE);

  GST_OBJECT_LOCK (self);
  self->queue = NULL;
  GST_OBJECT_UNLOCK (self);
  si_publish_queue_free (&queue);
  g_clear_pointer (&self->active_source_id, g_free);
  return TRUE;
}

static gboolean
gst_stage_meta_publish_set_caps (
    GstBaseTransform *trans, GstCaps *incaps, GstCaps *outcaps)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (trans);
  GstVideoInfo info;

  if (!gst_video_info_from_caps (&info, incaps)) {
    GST_ERROR_OBJECT (self, "invalid caps %" GST_PTR_FORMAT, incaps);
    return FALSE;
  }
  self->width = GST_VIDEO_INFO_WIDTH (&info);
  self->height = GST_VIDEO_INFO_HEIGHT (&info);
  return TRUE;
}

/* Our meta's detections, scaled to the negotiated frame size if the meta
 * refers to another one. Returns the model name. */
static const gchar *
collect_si_meta (GstStageMetaPublish *self, GstBuffer *buf, gboolean *repeated)
{
  SiDetectionMeta *meta = si_buffer_get_detection_meta (buf);
  gdouble sx = 1.0, sy = 1.0;
  guint i, n;

  if (meta == NULL)
    return NULL;
  *repeated = si_detection_meta_is_repeated (meta);
  if (meta->width > 0 && meta->height > 0 && self->width > 0 &&
      self->height > 0) {
    sx = (gdouble) self->width / meta->width;
    sy = (gdouble) self->height / meta->height;
  }
  n = si_detection_meta_get_count (meta);
  for (i = 0; i < n; i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);
    SiPublishDetection p;

    p.label = d->label;
    p.class_id = d->class_id;
    p.score = d->score;
    p.x = d->x1 * sx;
    p.y = d->y1 * sy;
    p.w = (d->x2 - d->x1) * sx;
    p.h = (d->y2 - d->y1) * sy;
    g_array_append_val (self->dets, p);
    if (d->roi_id >= 0) {
      Mirror mirror = { d->roi_id,
        g_quark_from_string (d->label != NULL ? d->label : "object"),
        d->class_id, d->score };
      g_array_append_val (self->mirrors, mirror);
    }
  }
  return meta->model;
}

/* Other elements often leave ROI ids at 0: the id alone would hide their
 * regions, so type, class and score written by the mirror must match too. */
static gboolean
is_mirror (GstStageMetaPublish *self, GstVideoRegionOfInterestMeta *roi)
{
  GstStructure *s = NULL;
  guint i;

  for (i = 0; i < self->mirrors->len; i++) {
    const Mirror *m = &g_array_index (self->mirrors, Mirror, i);
    gdouble score;
    gint class_id;

    if (m->roi_id != roi->id || m->roi_type != roi->roi_type)
      continue;
    if (s == NULL)
      s = gst_video_region_of_interest_meta_get_param (roi, "detection");
    if (s != NULL && gst_structure_get_int (s, "label_id", &class_id) &&
        gst_structure_get_double (s, "confidence", &score) &&
        class_id == m->class_id && fabs (score - m->score) < 1e-6)
      return TRUE;
  }
  return FALSE;
}

/* ROI metas from other elements; the DL Streamer layout ("detection"
 * structure with label_id, confidence, label) is read when present. */
static void
collect_roi_metas (GstStageMetaPublish *self, GstBuffer *buf)
{
  gpointer state = NULL;
  GstMeta *m;

  while ((m = gst_buffer_iterate_meta_filtered (
              buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) m;
    GstStructure *s;
    SiPublishDetection p;
    const gchar *label;
    gdouble score;
    gint class_id;

    if (is_mirror (self, roi))
      continue;
    p.label = roi->roi_type != 0 ? g_quark_to_string (roi->roi_type) : NULL;
    p.class_id = -1;
    p.score = -1.0;
    s = gst_video_region_of_interest_meta_get_param (roi, "detection");
    if (s != NULL) {
      if (gst_structure_get_int (s, "label_id", &class_id))
        p.class_id = MAX (class_id, -1);
      if (gst_structure_get_double (s, "confidence", &score))
        p.score = CLAMP (score, 0.0, 1.0);
      label = gst_structure_get_string (s, "label");
      if (label != NULL && label[0] != '\0')
        p.label = g_intern_string (label);
    }
    p.x = roi->x;
    p.y = roi->y;
    p.w = roi->w;
    p.h = roi->h;
    g_array_append_val (self->dets, p);
  }
}

static GstFlowReturn
gst_stage_meta_publish_transform_ip (GstBaseTransform *trans, GstBuffer *buf)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (trans);
  SiPublishFrame frame = { 0 };
  gchar *json;
  gsize len;

  g_array_set_size (self->dets, 0);
  g_array_set_size (self->mirrors, 0);
  frame.model = collect_si_meta (self, buf, &frame.repeated);
  collect_roi_metas (self, buf);

  frame.frame_number = self->frame_number++;
  if (self->dets->len == 0 && !self->active_publish_empty)
    return GST_FLOW_OK;

  frame.source_id = self->active_source_id;
  frame.pts_ns =
      GST_BUFFER_PTS_IS_VALID (buf) ? (gint64) GST_BUFFER_PTS (buf) : -1;
  frame.wall_time_us = g_get_real_time ();
  frame.width = self->width;
  frame.height = self->height;
  frame.dets = (const SiPublishDetection *) self->dets->data;
  frame.n_dets = self->dets->len;

  json = si_publish_json_build (&frame, &len);
  /* A full queue drops and reports the message; the video goes on. */
  si_publish_queue_push (self->queue, json, len);
  return GST_FLOW_OK;
}

static void
gst_stage_meta_publish_set_property (
    GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_METHOD:
      self->method = g_value_get_enum (value);
      break;
    case PROP_SOURCE_ID:
      g_free (self->source_id);
      self->source_id = g_value_dup_string (value);
      break;
    case PROP_FILE_PATH:
      g_free (self->file_path);
      self->file_path = g_value_dup_string (value);
      break;
    case PROP_FILE_FORMAT:
      self->file_format = g_value_get_enum (value);
      break;
    case PROP_ADDRESS:
      g_free (self->address);
      self->address = g_value_dup_string (value);
      break;
    case PROP_TOPIC:
      g_free (self->topic);
      self->topic = g_value_dup_string (value);
      break;
    case PROP_CLIENT_ID:
      g_free (self->client_id);
      self->client_id = g_value_dup_string (value);
      break;
    case PROP_QOS:
      self->qos = g_value_get_int (value);
      break;
    case PROP_CA_FILE:
      g_free (self->ca_file);
      self->ca_file = g_value_dup_string (value);
      break;
    case PROP_CERT_FILE:
      g_free (self->cert_file);
      self->cert_file = g_value_dup_string (value);
      break;
    case PROP_KEY_FILE:
      g_free (self->key_file);
      self->key_file = g_value_dup_string (value);
      break;
    case PROP_USERNAME:
      g_free (self->username);
      self->username = g_value_dup_string (value);
      break;
    case PROP_PASSWORD:
      g_free (self->password);
      self->password = g_value_dup_string (value);
      break;
    case PROP_KAFKA_CONFIG:
      g_free (self->kafka_config);
      self->kafka_config = g_value_dup_string (value);
      break;
    case PROP_MAX_QUEUED:
      self->max_queued = g_value_get_uint (value);
      break;
    case PROP_PUBLISH_EMPTY:
      self->publish_empty = g_value_get_boolean (value);
      break;
    case PROP_CONNECT_TIMEOUT:
      self->connect_timeout = g_value_get_uint (value);
      break;
    case PROP_FLUSH_TIMEOUT:
      self->flush_timeout = g_value_get_uint (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_stage_meta_publish_get_property (
    GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (object);

  if (prop_id == PROP_PUBLISHED) {
    guint64 v;

    GST_OBJECT_LOCK (self);
    if (self->queue != NULL) {
      v = si_publish_queue_get_delivered (self->queue);
    } else {
      g_mutex_lock (&self->stats_lock);
      v = self->published;
      g_mutex_unlock (&self->stats_lock);
    }
    GST_OBJECT_UNLOCK (self);
    g_value_set_uint64 (value, v);
    return;
  }
  if (prop_id == PROP_DROPPED) {
    g_mutex_lock (&self->stats_lock);
    g_value_set_uint64 (value, self->dropped);
    g_mutex_unlock (&self->stats_lock);
    return;
  }

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_METHOD:
      g_value_set_enum (value, self->method);
      break;
    case PROP_SOURCE_ID:
      g_value_set_string (value, self->source_id);
      break;
    case PROP_FILE_PATH:
      g_value_set_string (value, self->file_path);
      break;
    case PROP_FILE_FORMAT:
      g_value_set_enum (value, self->file_format);
      break;
    case PROP_ADDRESS:
      g_value_set_string (value, self->address);
      break;
    case PROP_TOPIC:
      g_value_set_string (value, self->topic);
      break;
    case PROP_CLIENT_ID:
      g_value_set_string (value, self->client_id);
      break;
    case PROP_QOS:
      g_value_set_int (value, self->qos);
      break;
    case PROP_CA_FILE:
      g_value_set_string (value, self->ca_file);
      break;
    case PROP_CERT_FILE:
      g_value_set_string (value, self->cert_file);
      break;
    case PROP_KEY_FILE:
      g_value_set_string (value, self->key_file);
      break;
    case PROP_USERNAME:
      g_value_set_string (value, self->username);
      break;
    case PROP_PASSWORD:
      g_value_set_string (value, self->password);
      break;
    case PROP_KAFKA_CONFIG:
      g_value_set_string (value, self->kafka_config);
      break;
    case PROP_MAX_QUEUED:
      g_value_set_uint (value, self->max_queued);
      break;
    case PROP_PUBLISH_EMPTY:
      g_value_set_boolean (value, self->publish_empty);
      break;
    case PROP_CONNECT_TIMEOUT:
      g_value_set_uint (value, self->connect_timeout);
      break;
    case PROP_FLUSH_TIMEOUT:
      g_value_set_uint (value, self->flush_timeout);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_stage_meta_publish_finalize (GObject *object)
{
  GstStageMetaPublish *self = GST_STAGE_META_PUBLISH (object);

  si_publish_queue_free (&self->queue);
  g_free (self->active_source_id);
  g_free (self->source_id);
  g_free (self->file_path);
  g_free (self->address);
  g_free (self->topic);
  g_free (self->client_id);
  g_free (self->ca_file);
  g_free (self->cert_file);
  g_free (self->key_file);
  g_free (self->username);
  g_free (self->password);
  g_free (self->kafka_config);
  g_free (self->last_reason);
  g_array_unref (self->dets);
  g_array_unref (self->mirrors);
  g_mutex_clear (&self->stats_lock);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

#define STR_PROP(id, name, nick, blurb)                                        \
  g_object_class_install_property (gobject_class, id,                          \
      g_param_spec_string (name, nick, blurb, NULL,                            \
          G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS |                         \
              GST_PARAM_MUTABLE_READY))

static void
gst_stage_meta_publish_class_init (GstStageMetaPublishClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  const GParamFlags rw =
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_READY;
  const GParamFlags ro = G_PARAM_READABLE | G_PARAM_STATIC_STRINGS;

  GST_DEBUG_CATEGORY_INIT (gst_stage_meta_publish_debug, "stagemetapublish", 0,
      "Detection metadata publisher");

  gobject_class->set_property = gst_stage_meta_publish_set_property;
  gobject_class->get_property = gst_stage_meta_publish_get_property;
  gobject_class->finalize = gst_stage_meta_publish_finalize;

  g_object_class_install_property (gobject_class, PROP_METHOD,
      g_param_spec_enum ("method", "Method", "Where the messages go",
          GST_TYPE_STAGE_META_PUBLISH_METHOD, DEFAULT_METHOD, rw));
  STR_PROP (PROP_SOURCE_ID, "source-id", "Source id",
      "Name of this video source (camera) in every message and the Kafka "
      "message key (NULL: the element's name)");
  g_object_class_install_property (gobject_class, PROP_FILE_PATH,
      g_param_spec_string ("file-path", "File path",
          "method=file: output file, \"-\" for stdout", DEFAULT_FILE_PATH, rw));
  g_object_class_install_property (gobject_class, PROP_FILE_FORMAT,
      g_param_spec_enum ("file-format", "File format",
          "method=file: JSON lines or one JSON array",
          GST_TYPE_STAGE_META_PUBLISH_FILE_FORMAT, DEFAULT_FILE_FORMAT, rw));
  STR_PROP (PROP_ADDRESS, "address", "Address",
      "mqtt: broker host:port (default localhost:1883, 8883 with TLS); "
      "kafka: bootstrap servers host:port[,host:port...]");
  g_object_class_install_property (gobject_class, PROP_TOPIC,
      g_param_spec_string (
          "topic", "Topic", "MQTT or Kafka topic", DEFAULT_TOPIC, rw));
  STR_PROP (PROP_CLIENT_ID, "client-id", "Client id",
      "mqtt: client id (NULL: a random one)");
  g_object_class_install_property (gobject_class, PROP_QOS,
      g_param_spec_int ("qos", "QoS", "mqtt: quality of service (0, 1, 2)", 0,
          2, DEFAULT_QOS, rw));
  STR_PROP (PROP_CA_FILE, "ca-file", "CA file",
      "mqtt: PEM CA certificate; setting it enables TLS");
  STR_PROP (PROP_CERT_FILE, "cert-file", "Certificate file",
      "mqtt: PEM client certificate (TLS client authentication)");
  STR_PROP (PROP_KEY_FILE, "key-file", "Key file",
      "mqtt: PEM client private key (TLS client authentication)");
  STR_PROP (PROP_USERNAME, "username", "User name", "mqtt: user name");
  STR_PROP (PROP_PASSWORD, "password", "Password", "mqtt: password");
  STR_PROP (PROP_KAFKA_CONFIG, "kafka-config", "Kafka configuration",
      "kafka: extra librdkafka settings, \"key=value;key=value\"");
  g_object_class_install_property (gobject_class, PROP_MAX_QUEUED,
      g_param_spec_uint ("max-queued", "Max queued",
          "Messages kept while the output is slow or away (waiting or "
          "unacknowledged); beyond that new messages are dropped",
          1, G_MAXINT, DEFAULT_MAX_QUEUED, rw));
  g_object_class_install_property (gobject_class, PROP_PUBLISH_EMPTY,
      g_param_spec_boolean ("publish-empty", "Publish empty",
          "Publish a message for frames without detections",
          DEFAULT_PUBLISH_EMPTY, rw));
  g_object_class_install_property (gobject_class, PROP_CONNECT_TIMEOUT,
      g_param_spec_uint ("connect-timeout", "Connect timeout",
          "Milliseconds to wait for the broker's answer at start", 1, G_MAXINT,
          DEFAULT_CONNECT_TIMEOUT, rw));
  g_object_class_install_property (gobject_class, PROP_FLUSH_TIMEOUT,
      g_param_spec_uint ("flush-timeout", "Flush timeout",
          "Milliseconds to wait at stop for queued messages to be delivered", 0,
          G_MAXINT, DEFAULT_FLUSH_TIMEOUT, rw));
  g_object_class_install_property (gobject_class, PROP_PUBLISHED,
      g_param_spec_uint64 ("published", "Published",
          "Messages delivered (acknowledged by the broker for qos > 0)", 0,
          G_MAXUINT64, 0, ro));
  g_object_class_install_property (gobject_class, PROP_DROPPED,
      g_param_spec_uint64 ("dropped", "Dropped",
          "Messages lost: queue full, delivery failed or unsent at stop", 0,
          G_MAXUINT64, 0, ro));

  gst_element_class_set_static_metadata (element_class,
      "StageInteractor detection publisher", "Filter/Analytics/Video",
      "Publishes each frame's detections as JSON to a file, MQTT or Kafka",
      "StageInteractor developers");
  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);

  trans_class->start = GST_DEBUG_FUNCPTR (gst_stage_meta_publish_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_stage_meta_publish_stop);
  trans_class->set_caps = GST_DEBUG_FUNCPTR (gst_stage_meta_publish_set_caps);
  trans_class->transform_ip =
      GST_DEBUG_FUNCPTR (gst_stage_meta_publish_transform_ip);
  trans_class->passthrough_on_same_caps = TRUE;
  trans_class->transform_ip_on_passthrough = TRUE;

  gst_type_mark_as_plugin_api (GST_TYPE_STAGE_META_PUBLISH_METHOD, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_STAGE_META_PUBLISH_FILE_FORMAT, 0);
}

static void
gst_stage_meta_publish_init (GstStageMetaPublish *self)
{
  self->method = DEFAULT_METHOD;
  self->file_path = g_strdup (DEFAULT_FILE_PATH);
  self->file_format = DEFAULT_FILE_FORMAT;
  self->topic = g_strdup (DEFAULT_TOPIC);
  self->qos = DEFAULT_QOS;
  self->max_queued = DEFAULT_MAX_QUEUED;
  self->publish_empty = DEFAULT_PUBLISH_EMPTY;
  self->connect_timeout = DEFAULT_CONNECT_TIMEOUT;
  self->flush_timeout = DEFAULT_FLUSH_TIMEOUT;
  self->dets = g_array_new (FALSE, FALSE, sizeof (SiPublishDetection));
  self->mirrors = g_array_new (FALSE, FALSE, sizeof (Mirror));
  g_mutex_init (&self->stats_lock);
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), TRUE);
}
