/* Builds the JSON detection message (docs/detection-message.schema.json) from
 * an SiPublishFrame with json-glib: frame header, then one object per
 * detection with its pixel box and the box normalized by the frame size;
 * numbers are written at float precision (write_double). */
#include "publish-json.h"

#include <json-glib/json-glib.h>
#include <float.h>
#include <math.h>

static void
add_box (JsonBuilder *b, const gchar *name, gdouble x, gdouble y, gdouble w,
    gdouble h)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "x");
  json_builder_add_double_value (b, x);
  json_builder_set_member_name (b, "y");
  json_builder_add_double_value (b, y);
  json_builder_set_member_name (b, "width");
  json_builder_add_double_value (b, w);
  json_builder_set_member_name (b, "height");
  json_builder_add_double_value (b, h);
  json_builder_end_object (b);
}

static void
add_detection (
    JsonBuilder *b, const SiPublishDetection *d, gint width, gint height)
{
  /* A zero-sized frame (no caps yet) normalizes to 0 rather than inf. */
  gdouble sx = width > 0 ? 1.0 / width : 0.0;
  gdouble sy = height > 0 ? 1.0 / height : 0.0;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "label");
  if (d->label != NULL)
    json_builder_add_string_value (b, d->label);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "class_id");
  if (d->class_id >= 0)
    json_builder_add_int_value (b, d->class_id);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "score");
  if (d->score >= 0.0)
    json_builder_add_double_value (b, d->score);
  else
    json_builder_add_null_value (b);
  add_box (b, "box", d->x, d->y, d->w, d->h);
  add_box (b, "box_normalized", d->x * sx, d->y * sy, d->w * sx, d->h * sy);
  json_builder_end_object (b);
}

static gchar *
format_wall_time (gint64 us)
{
  GDateTime *dt = g_date_time_new_from_unix_utc (us / G_USEC_PER_SEC);
  gchar *date, *out;

  if (dt == NULL)
    return g_strdup ("1970-01-01T00:00:00.000000Z");
  date = g_date_time_format (dt, "%Y-%m-%dT%H:%M:%S");
  out =
      g_strdup_printf ("%s.%06" G_GINT64_FORMAT "Z", date, us % G_USEC_PER_SEC);
  g_free (date);
  g_date_time_unref (dt);
  return out;
}

/* JSON text of the tree. json-glib's generator prints every double with 17
 * significant digits ("55.099998474121094" for the float 55.1f); the values
 * come from floats, so the shortest text that reads back as the same float
 * says all there is ("55.1") in half the bytes. */
static void
write_string (GString *out, const gchar *s)
{
  g_string_append_c (out, '"');
  for (; *s != '\0'; s++) {
    guchar c = (guchar) *s;

    if (c == '"' || c == '\\')
      g_string_append_printf (out, "\\%c", c);
    else if (c < 0x20)
      g_string_append_printf (out, "\\u%04x", c);
    else
      g_string_append_c (out, (gchar) c);
  }
  g_string_append_c (out, '"');
}

static void
write_double (GString *out, gdouble v)
{
  static const gchar *const fmt[] = { "%.1g", "%.2g", "%.3g", "%.4g", "%.5g",
    "%.6g", "%.7g", "%.8g", "%.9g" };
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
  guint p;

  if (!isfinite (v)) { /* JSON has no inf or nan */
    g_string_append (out, "null");
    return;
  }
  if (fabs (v) > FLT_MAX) {
    g_string_append (out, g_ascii_dtostr (buf, sizeof buf, v));
    return;
  }
  for (p = 0; p < G_N_ELEMENTS (fmt); p++) {
    g_ascii_formatd (buf, sizeof buf, fmt[p], v);
    if ((gfloat) g_ascii_strtod (buf, NULL) == (gfloat) v)
      break;
  }
  g_string_append (out, buf);
}

static void
write_node (GString *out, JsonNode *node)
{
  switch (JSON_NODE_TYPE (node)) {
    case JSON_NODE_OBJECT:
    {
      JsonObject *o = json_node_get_object (node);
      GList *members = json_object_get_members (o), *l;

      g_string_append_c (out, '{');
      for (l = members; l != NULL; l = l->next) {
        if (l != members)
          g_string_append_c (out, ',');
        write_string (out, l->data);
        g_string_append_c (out, ':');
        write_node (out, json_object_get_member (o, l->data));
      }
      g_string_append_c (out, '}');
      g_list_free (members);
      break;
    }
    case JSON_NODE_ARRAY:
    {
      JsonArray *a = json_node_get_array (node);
      guint i;

      g_string_append_c (out, '[');
      for (i = 0; i < json_array_get_length (a); i++) {
        if (i > 0)
          g_string_append_c (out, ',');
        write_node (out, json_array_get_element (a, i));
      }
      g_string_append_c (out, ']');
      break;
    }
    case JSON_NODE_VALUE:
      switch (json_node_get_value_type (node)) {
        case G_TYPE_INT64:
          g_string_append_printf (
              out, "%" G_GINT64_FORMAT, json_node_get_int (node));
          break;
        case G_TYPE_DOUBLE:
          write_double (out, json_node_get_double (node));
          break;
        case G_TYPE_BOOLEAN:
          g_string_append (
              out, json_node_get_boolean (node) ? "true" : "false");
          break;
        default:
          write_string (out, json_node_get_string (node));
          break;
      }
      break;
    case JSON_NODE_NULL:
    default:
      g_string_append (out, "null");
      break;
  }
}

gchar *
si_publish_json_build (const SiPublishFrame *f, gsize *len)
{
  JsonBuilder *b = json_builder_new ();
  JsonNode *root;
  GString *out;
  gchar *stamp;
  guint i;

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_int_value (b, SI_PUBLISH_JSON_VERSION);
  json_builder_set_member_name (b, "source_id");
  json_builder_add_string_value (b, f->source_id);
  json_builder_set_member_name (b, "frame_number");
  json_builder_add_int_value (b, (gint64) f->frame_number);
  json_builder_set_member_name (b, "pts_ns");
  if (f->pts_ns >= 0)
    json_builder_add_int_value (b, f->pts_ns);
  else
    json_builder_add_null_value (b);
  stamp = format_wall_time (MAX (f->wall_time_us, 0));
  json_builder_set_member_name (b, "timestamp");
  json_builder_add_string_value (b, stamp);
  g_free (stamp);
  json_builder_set_member_name (b, "timestamp_us");
  json_builder_add_int_value (b, f->wall_time_us);
  json_builder_set_member_name (b, "width");
  json_builder_add_int_value (b, f->width);
  json_builder_set_member_name (b, "height");
  json_builder_add_int_value (b, f->height);
  json_builder_set_member_name (b, "model");
  if (f->model != NULL)
    json_builder_add_string_value (b, f->model);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "repeated");
  json_builder_add_boolean_value (b, f->repeated);
  json_builder_set_member_name (b, "detections");
  json_builder_begin_array (b);
  for (i = 0; i < f->n_dets; i++)
    add_detection (b, &f->dets[i], f->width, f->height);
  json_builder_end_array (b);
  json_builder_end_object (b);

  root = json_builder_get_root (b);
  out = g_string_sized_new (256 + 256 * f->n_dets);
  write_node (out, root);
  json_node_unref (root);
  g_object_unref (b);
  if (len != NULL)
    *len = out->len;
  return g_string_free (out, FALSE);
}
