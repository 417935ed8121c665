/* Helpers of the stagemetapublish tests (see publish-test-util.h): the frame
 * generator and its expected message, a validator for the JSON Schema
 * keywords our schema uses, the harness around the element, and
 * process/port utilities for real brokers. */
#include "publish-test-util.h"

#include "si-detection-meta.h"

#include <gst/check/gstcheck.h>
#include <gst/video/video.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static const gchar *const names[] = { "person", "bicycle", "car", "motorcycle",
  "airplane", "bus", "train", "truck" };

typedef struct
{
  const gchar *label;
  gint class_id; /* -1: null */
  gdouble score; /* < 0: null */
  gdouble x, y, w, h;
} Expect;

guint16
pt_free_port (void)
{
  struct sockaddr_in addr = { 0 };
  socklen_t len = sizeof addr;
  int fd = socket (AF_INET, SOCK_STREAM, 0);

  fail_unless (fd >= 0);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
  fail_unless (bind (fd, (struct sockaddr *) &addr, sizeof addr) == 0);
  fail_unless (getsockname (fd, (struct sockaddr *) &addr, &len) == 0);
  close (fd);
  return ntohs (addr.sin_port);
}

gboolean
pt_wait_port (guint16 port, guint timeout_ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;

  do {
    struct sockaddr_in addr = { 0 };
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    int rc;

    addr.sin_family = AF_INET;
    addr.sin_port = htons (port);
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    rc = connect (fd, (struct sockaddr *) &addr, sizeof addr);
    close (fd);
    if (rc == 0)
      return TRUE;
    g_usleep (20 * 1000);
  } while (g_get_monotonic_time () < end);
  return FALSE;
}

GPid
pt_spawn (const gchar *const *argv)
{
  GError *error = NULL;
  GPid pid = 0;

  if (!g_spawn_async (NULL, (gchar **) argv, NULL, G_SPAWN_DO_NOT_REAP_CHILD,
          NULL, NULL, &pid, &error))
    fail ("cannot run %s: %s", argv[0], error->message);
  return pid;
}

void
pt_kill (GPid pid)
{
  int status;

  kill (pid, SIGTERM);
  while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
    ;
  g_spawn_close_pid (pid);
}

/* Frame i's detections in message order; returns how many (<= 8). */
static guint
expected_dets (guint i, Expect *out, const gchar **model)
{
  guint n = 0, j;

  *model = NULL;
  if (i % 4 != 3) {
    *model = PT_MODEL;
    for (j = 0; j < i % 3; j++) {
      Expect *e = &out[n++];
      gfloat x1 = 4.0f * i + 8.0f * j + 0.5f, y1 = 2.0f * i + 0.25f;

      e->class_id = (gint) ((i + j) % 80);
      e->label = names[e->class_id % G_N_ELEMENTS (names)];
      /* sixteenths: exact in float, double and JSON */
      e->score = (gfloat) ((i * 7 + j * 3) % 16) / 16.0f;
      e->x = x1;
      e->y = y1;
      e->w = (gdouble) (x1 + 20.0f + j) - (gdouble) x1;
      e->h = (gdouble) (y1 + 10.5f) - (gdouble) y1;
    }
  }
  if (i % 5 == 0) {
    Expect e = { "face", 7, 0.75, 10, 20, 30, 40 };
    out[n++] = e;
  } else if (i % 5 == 1) {
    Expect e = { "car", -1, -1.0, 1, 2, 3, 4 };
    out[n++] = e;
  }
  return n;
}

void
pt_attach_metas (GstBuffer *buf, guint i)
{
  Expect exp[8];
  const gchar *model;
  guint n = expected_dets (i, exp, &model), k = 0;

  if (model != NULL) {
    SiDetectionMeta *meta =
        si_buffer_add_detection_meta (buf, model, PT_WIDTH, PT_HEIGHT);

    for (; k < i % 3; k++)
      fail_unless (si_detection_meta_add (meta, exp[k].class_id, exp[k].label,
          (gfloat) exp[k].score, (gfloat) exp[k].x, (gfloat) exp[k].y,
          (gfloat) (exp[k].x + exp[k].w), (gfloat) (exp[k].y + exp[k].h)));
    if (i % 4 == 2)
      meta->flags |= SI_DETECTION_META_FLAG_REPEATED;
    /* The mirrors must not come out twice. */
    if (i % 2 == 0)
      si_detection_meta_attach_roi_metas (meta, buf);
  }
  if (k < n) {
    const Expect *e = &exp[k];
    GstVideoRegionOfInterestMeta *roi =
        gst_buffer_add_video_region_of_interest_meta (buf, e->label,
            (guint) e->x, (guint) e->y, (guint) e->w, (guint) e->h);

    /* Left at the default id 0: may equal a mirror's id. */
    if (e->class_id >= 0)
      gst_video_region_of_interest_meta_add_param (roi,
          gst_structure_new ("detection", "label_id", G_TYPE_INT, e->class_id,
              "confidence", G_TYPE_DOUBLE, e->score, "label", G_TYPE_STRING,
              e->label, NULL));
  }
}

const gchar *
pt_caps_string (void)
{
  return "video/x-raw,format=RGBA,width=64,height=48,framerate=25/1";
}

GstBuffer *
pt_make_frame (guint i)
{
  GstBuffer *buf =
      gst_buffer_new_allocate (NULL, PT_WIDTH * PT_HEIGHT * 4, NULL);

  gst_buffer_memset (buf, 0, (guint8) i, PT_WIDTH * PT_HEIGHT * 4);
  GST_BUFFER_PTS (buf) = i * PT_FRAME_NS;
  GST_BUFFER_DURATION (buf) = PT_FRAME_NS;
  pt_attach_metas (buf, i);
  return buf;
}

/* ---- JSON Schema subset ---------------------------------------------- */

static gboolean validate (JsonNode *root, JsonObject *schema, JsonNode *inst,
    const gchar *path, gchar **why);

static const gchar *
node_type (JsonNode *n)
{
  if (JSON_NODE_HOLDS_NULL (n))
    return "null";
  if (JSON_NODE_HOLDS_OBJECT (n))
    return "object";
  if (JSON_NODE_HOLDS_ARRAY (n))
    return "array";
  switch (json_node_get_value_type (n)) {
    case G_TYPE_INT64:
      return "integer";
    case G_TYPE_DOUBLE:
      return "number";
    case G_TYPE_BOOLEAN:
      return "boolean";
    default:
      return "string";
  }
}

static gboolean
type_matches (const gchar *want, const gchar *have)
{
  return strcmp (want, have) == 0 ||
      (strcmp (want, "number") == 0 && strcmp (have, "integer") == 0);
}

static gboolean
check_type (JsonNode *type, JsonNode *inst)
{
  const gchar *have = node_type (inst);
  guint i;

  if (JSON_NODE_HOLDS_VALUE (type))
    return type_matches (json_node_get_string (type), have);
  for (i = 0; i < json_array_get_length (json_node_get_array (type)); i++)
    if (type_matches (
            json_array_get_string_element (json_node_get_array (type), i),
            have))
      return TRUE;
  return FALSE;
}

static gboolean
is_number (JsonNode *n)
{
  return JSON_NODE_HOLDS_VALUE (n) &&
      (json_node_get_value_type (n) == G_TYPE_INT64 ||
          json_node_get_value_type (n) == G_TYPE_DOUBLE);
}

static JsonObject *
resolve_ref (JsonNode *root, const gchar *ref)
{
  const gchar *prefix = "#/$defs/";
  JsonObject *defs;

  if (!g_str_has_prefix (ref, prefix))
    return NULL;
  defs = json_object_get_object_member (json_node_get_object (root), "$defs");
  if (defs == NULL || !json_object_has_member (defs, ref + strlen (prefix)))
    return NULL;
  return json_object_get_object_member (defs, ref + strlen (prefix));
}

static gboolean
fail_at (gchar **why, const gchar *path, const gchar *what)
{
  *why = g_strdup_printf ("%s: %s", path, what);
  return FALSE;
}

static gboolean
validate_object (JsonNode *root, JsonObject *schema, JsonObject *obj,
    const gchar *path, gchar **why)
{
  JsonObject *props = json_object_has_member (schema, "properties")
      ? json_object_get_object_member (schema, "properties")
      : NULL;
  GList *members, *l;
  gboolean ok = TRUE;

  if (json_object_has_member (schema, "required")) {
    JsonArray *req = json_object_get_array_member (schema, "required");
    guint i;

    for (i = 0; i < json_array_get_length (req); i++)
      if (!json_object_has_member (
              obj, json_array_get_string_element (req, i))) {
        gchar *what = g_strdup_printf (
            "missing required \"%s\"", json_array_get_string_element (req, i));
        ok = fail_at (why, path, what);
        g_free (what);
        return ok;
      }
  }
  members = json_object_get_members (obj);
  for (l = members; ok && l != NULL; l = l->next) {
    const gchar *name = l->data;
    gchar *sub = g_strdup_printf ("%s.%s", path, name);

    if (props != NULL && json_object_has_member (props, name)) {
      ok = validate (root, json_object_get_object_member (props, name),
          json_object_get_member (obj, name), sub, why);
    } else if (json_object_has_member (schema, "additionalProperties") &&
        !json_object_get_boolean_member (schema, "additionalProperties")) {
      ok = fail_at (why, sub, "not allowed (additionalProperties: false)");
    }
    g_free (sub);
  }
  g_list_free (members);
  return ok;
}

static gboolean
validate (JsonNode *root, JsonObject *schema, JsonNode *inst, const gchar *path,
    gchar **why)
{
  static const gchar *const known[] = { "$schema", "$id", "title",
    "description", "type", "required", "additionalProperties", "properties",
    "$defs", "items", "enum", "minimum", "maximum", "minLength", "pattern",
    "$ref", NULL };
  GList *keys = json_object_get_members (schema), *l;
  gboolean ok = TRUE;

  for (l = keys; l != NULL; l = l->next)
    if (!g_strv_contains (known, l->data)) {
      gchar *what = g_strdup_printf ("schema keyword \"%s\" unsupported "
                                     "by the test validator",
          (const gchar *) l->data);
      ok = fail_at (why, path, what);
      g_free (what);
    }
  g_list_free (keys);
  if (!ok)
    return FALSE;

  if (json_object_has_member (schema, "$ref")) {
    JsonObject *target =
        resolve_ref (root, json_object_get_string_member (schema, "$ref"));
    if (target == NULL)
      return fail_at (why, path, "unresolvable $ref");
    if (!validate (root, target, inst, path, why))
      return FALSE;
  }
  if (json_object_has_member (schema, "type") &&
      !check_type (json_object_get_member (schema, "type"), inst)) {
    gchar *what = g_strdup_printf ("type %s not allowed", node_type (inst));
    ok = fail_at (why, path, what);
    g_free (what);
    return ok;
  }
  if (json_object_has_member (schema, "enum")) {
    JsonArray *values = json_object_get_array_member (schema, "enum");
    gboolean found = FALSE;
    guint i;

    for (i = 0; i < json_array_get_length (values); i++)
      found |= json_node_equal (json_array_get_element (values, i), inst);
    if (!found)
      return fail_at (why, path, "not one of the enum values");
  }
  if (is_number (inst)) {
    gdouble v = json_node_get_double (inst);

    if (json_object_has_member (schema, "minimum") &&
        v < json_object_get_double_member (schema, "minimum"))
      return fail_at (why, path, "below minimum");
    if (json_object_has_member (schema, "maximum") &&
        v > json_object_get_double_member (schema, "maximum"))
      return fail_at (why, path, "above maximum");
  }
  if (JSON_NODE_HOLDS_VALUE (inst) &&
      json_node_get_value_type (inst) == G_TYPE_STRING) {
    const gchar *s = json_node_get_string (inst);

    if (json_object_has_member (schema, "minLength") &&
        g_utf8_strlen (s, -1) <
            json_object_get_int_member (schema, "minLength"))
      return fail_at (why, path, "shorter than minLength");
    if (json_object_has_member (schema, "pattern") &&
        !g_regex_match_simple (
            json_object_get_string_member (schema, "pattern"), s, 0, 0))
      return fail_at (why, path, "does not match pattern");
  }
  if (JSON_NODE_HOLDS_ARRAY (inst) &&
      json_object_has_member (schema, "items")) {
    JsonArray *arr = json_node_get_array (inst);
    guint i;

    for (i = 0; i < json_array_get_length (arr); i++) {
      gchar *sub = g_strdup_printf ("%s[%u]", path, i);
      ok = validate (root, json_object_get_object_member (schema, "items"),
          json_array_get_element (arr, i), sub, why);
      g_free (sub);
      if (!ok)
        return FALSE;
    }
  }
  if (JSON_NODE_HOLDS_OBJECT (inst))
    return validate_object (
        root, schema, json_node_get_object (inst), path, why);
  return TRUE;
}

gboolean
pt_schema_validate (JsonNode *schema, JsonNode *instance, gchar **why)
{
  return validate (schema, json_node_get_object (schema), instance, "$", why);
}

JsonNode *
pt_schema (void)
{
  static JsonNode *schema = NULL;

  if (schema == NULL) {
    JsonParser *p = json_parser_new ();
    GError *error = NULL;

    if (!json_parser_load_from_file (p, SCHEMA_PATH, &error))
      fail ("cannot read %s: %s", SCHEMA_PATH, error->message);
    schema = json_node_copy (json_parser_get_root (p));
    g_object_unref (p);
  }
  return schema;
}

/* ---- message checks -------------------------------------------------- */

static JsonNode *
parse (const gchar *text, gsize len)
{
  JsonParser *p = json_parser_new ();
  GError *error = NULL;
  JsonNode *root;

  if (!json_parser_load_from_data (p, text, (gssize) len, &error))
    fail ("not JSON (%s): %.*s", error->message, (int) len, text);
  root = json_node_copy (json_parser_get_root (p));
  g_object_unref (p);
  fail_unless (
      JSON_NODE_HOLDS_OBJECT (root), "not an object: %.*s", (int) len, text);
  return root;
}

guint64
pt_message_frame (const gchar *text, gsize len)
{
  JsonNode *root = parse (text, len);
  guint64 f = (guint64) json_object_get_int_member (
      json_node_get_object (root), "frame_number");

  json_node_unref (root);
  return f;
}

/* The element writes numbers at float precision: equal as floats. */
static gboolean
same_float (JsonObject *o, const gchar *member, gdouble want)
{
  return (gfloat) json_object_get_double_member (o, member) == (gfloat) want;
}

static void
check_box (JsonObject *box, gdouble x, gdouble y, gdouble w, gdouble h,
    const gchar *what)
{
  fail_unless (same_float (box, "x", x), "%s.x", what);
  fail_unless (same_float (box, "y", y), "%s.y", what);
  fail_unless (same_float (box, "width", w), "%s.width", what);
  fail_unless (same_float (box, "height", h), "%s.height", what);
}

guint64
pt_check_message (const gchar *text, gsize len, guint i, const gchar *source_id,
    gint w, gint h)
{
  JsonNode *root = parse (text, len);
  JsonObject *o = json_node_get_object (root);
  JsonArray *dets;
  Expect exp[8];
  const gchar *model;
  gchar *why = NULL;
  guint n = expected_dets (i, exp, &model), k;
  gint64 now = g_get_real_time (), stamp;

  if (!pt_schema_validate (pt_schema (), root, &why))
    fail ("frame %u: schema violation %s in %.*s", i, why, (int) len, text);
  fail_unless_equals_int (json_object_get_int_member (o, "version"), 1);
  fail_unless_equals_string (
      json_object_get_string_member (o, "source_id"), source_id);
  fail_unless_equals_uint64 (json_object_get_int_member (o, "frame_number"), i);
  fail_unless_equals_int64 (
      json_object_get_int_member (o, "pts_ns"), (gint64) (i * PT_FRAME_NS));
  stamp = json_object_get_int_member (o, "timestamp_us");
  fail_unless (stamp <= now && stamp > now - 600 * G_USEC_PER_SEC,
      "frame %u: wall clock %" G_GINT64_FORMAT " not recent", i, stamp);
  fail_unless_equals_int (json_object_get_int_member (o, "width"), w);
  fail_unless_equals_int (json_object_get_int_member (o, "height"), h);
  if (model == NULL)
    fail_unless (json_object_get_null_member (o, "model"));
  else
    fail_unless_equals_string (
        json_object_get_string_member (o, "model"), model);

  fail_unless_equals_int (
      json_object_get_boolean_member (o, "repeated"), i % 4 == 2);
  dets = json_object_get_array_member (o, "detections");
  fail_unless (json_array_get_length (dets) == n,
      "frame %u: %u detections, expected %u", i, json_array_get_length (dets),
      n);
  for (k = 0; k < n; k++) {
    JsonObject *d = json_array_get_object_element (dets, k);
    const Expect *e = &exp[k];

    fail_unless_equals_string (
        json_object_get_string_member (d, "label"), e->label);
    if (e->class_id < 0)
      fail_unless (json_object_get_null_member (d, "class_id"));
    else
      fail_unless_equals_int (
          json_object_get_int_member (d, "class_id"), e->class_id);
    if (e->score < 0)
      fail_unless (json_object_get_null_member (d, "score"));
    else
      fail_unless (json_object_get_double_member (d, "score") == e->score,
          "frame %u det %u: score", i, k);
    check_box (json_object_get_object_member (d, "box"), e->x, e->y, e->w, e->h,
        "box");
    check_box (json_object_get_object_member (d, "box_normalized"),
        e->x * (1.0 / w), e->y * (1.0 / h), e->w * (1.0 / w), e->h * (1.0 / h),
        "box_normalized");
  }
  g_free (why);
  json_node_unref (root);
  return i;
}

/* ---- harness ---------------------------------------------------------- */

GstHarness *
pt_new_harness (GstElement *e)
{
  GstHarness *h = gst_harness_new_with_element (e, "sink", "src");

  gst_harness_set_src_caps_str (h, pt_caps_string ());
  return h;
}

void
pt_push_frames (GstHarness *h, guint first, guint n)
{
  guint i;

  for (i = first; i < first + n; i++) {
    GstBuffer *in = pt_make_frame (i), *out;

    fail_unless_equals_int (gst_harness_push (h, in), GST_FLOW_OK);
    out = gst_harness_pull (h);
    fail_unless (out == in, "not passthrough");
    gst_buffer_unref (out);
  }
}

guint64
pt_get_u64 (GstElement *e, const gchar *name)
{
  guint64 v;

  g_object_get (e, name, &v, NULL);
  return v;
}

void
pt_expect_start_error (GstElement *e, const gchar *const *needles)
{
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GError *err = NULL;

  gst_element_set_bus (e, bus);
  fail_unless_equals_int (
      gst_element_set_state (e, GST_STATE_PAUSED), GST_STATE_CHANGE_FAILURE);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  fail_unless (msg != NULL, "no error message");
  gst_message_parse_error (msg, &err, NULL);
  for (; *needles != NULL; needles++)
    fail_unless (strstr (err->message, *needles) != NULL,
        "\"%s\" not in error \"%s\"", *needles, err->message);
  g_error_free (err);
  gst_message_unref (msg);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
}
