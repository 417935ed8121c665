/* Builds the JSON detection message (docs/detection-message.schema.json) from
 * an SiPublishFrame with json-glib: frame header, then one object per
 * detection with its pixel box and the box normalized by the frame size. */
#include "publish-json.h"

#include <json-glib/json-glib.h>

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

gchar *
si_publish_json_build (const SiPublishFrame *f, gsize *len)
{
  JsonBuilder *b = json_builder_new ();
  JsonGenerator *gen;
  JsonNode *root;
  gchar *text, *stamp;
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
  gen = json_generator_new ();
  json_generator_set_root (gen, root);
  text = json_generator_to_data (gen, len);
  g_object_unref (gen);
  json_node_unref (root);
  g_object_unref (b);
  return text;
}
