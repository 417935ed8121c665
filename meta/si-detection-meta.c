/* si-detection-meta.c: the detection meta (SiDetectionMeta): storage of the
 * detections of one frame, its GstMetaInfo (init/free/transform: copies and
 * video scaling rescale the boxes) and the mirror of each detection as a
 * standard GstVideoRegionOfInterestMeta with a "detection" structure.
 */
#include "si-detection-meta.h"

#include <string.h>

static GQuark q_detection, q_label_id, q_confidence, q_label;

/**
 * si_detection_meta_api_get_type:
 *
 * Returns: the #GType of the detection meta API.
 */
GType
si_detection_meta_api_get_type (void)
{
  static GType type = 0;
  static const gchar *tags[] = { GST_META_TAG_VIDEO_STR,
    GST_META_TAG_VIDEO_SIZE_STR, GST_META_TAG_VIDEO_ORIENTATION_STR, NULL };

  if (g_once_init_enter (&type)) {
    GType t = gst_meta_api_type_register ("SiDetectionMetaAPI", tags);
    g_once_init_leave (&type, t);
  }
  return type;
}

static gboolean
si_detection_meta_init (GstMeta *meta, gpointer params, GstBuffer *buffer)
{
  SiDetectionMeta *dmeta = (SiDetectionMeta *) meta;

  dmeta->model = NULL;
  dmeta->flags = SI_DETECTION_META_FLAG_NONE;
  dmeta->frame = 0;
  dmeta->source_frame = 0;
  dmeta->width = 0;
  dmeta->height = 0;
  dmeta->n_detections = 0;
  dmeta->capacity = G_N_ELEMENTS (dmeta->inline_store);
  dmeta->detections = dmeta->inline_store;
  return TRUE;
}

static void
si_detection_meta_free (GstMeta *meta, GstBuffer *buffer)
{
  SiDetectionMeta *dmeta = (SiDetectionMeta *) meta;

  if (dmeta->detections != dmeta->inline_store)
    g_free (dmeta->detections);
  dmeta->detections = NULL;
  dmeta->n_detections = 0;
  dmeta->capacity = 0;
}

/* Makes room for at least n detections; FALSE when n is absurd. */
static gboolean
si_detection_meta_reserve (SiDetectionMeta *meta, guint n)
{
  SiMetaDetection *store;
  guint cap;

  if (n <= meta->capacity)
    return TRUE;
  if (n > G_MAXINT / sizeof (SiMetaDetection))
    return FALSE;
  cap = MAX (n, meta->capacity * 2);
  if (meta->detections == meta->inline_store) {
    store = g_new (SiMetaDetection, cap);
    memcpy (store, meta->inline_store,
        meta->n_detections * sizeof (SiMetaDetection));
  } else {
    store = g_renew (SiMetaDetection, meta->detections, cap);
  }
  meta->detections = store;
  meta->capacity = cap;
  return TRUE;
}

static SiDetectionMeta *
si_detection_meta_copy_into (GstBuffer *dest, const SiDetectionMeta *src)
{
  SiDetectionMeta *dmeta;

  dmeta =
      si_buffer_add_detection_meta (dest, src->model, src->width, src->height);
  if (dmeta == NULL)
    return NULL;
  dmeta->flags = src->flags;
  dmeta->frame = src->frame;
  dmeta->source_frame = src->source_frame;
  if (!si_detection_meta_reserve (dmeta, src->n_detections))
    return NULL;
  memcpy (dmeta->detections, src->detections,
      src->n_detections * sizeof (SiMetaDetection));
  dmeta->n_detections = src->n_detections;
  return dmeta;
}

static gboolean
si_detection_meta_transform (GstBuffer *dest, GstMeta *meta, GstBuffer *buffer,
    GQuark type, gpointer data)
{
  SiDetectionMeta *smeta = (SiDetectionMeta *) meta;
  SiDetectionMeta *dmeta;

  if (GST_META_TRANSFORM_IS_COPY (type)) {
    GstMetaTransformCopy *copy = data;

    /* A copy of part of the buffer is not a frame any more. */
    if (copy->region &&
        (copy->offset != 0 ||
            (copy->size != (gsize) -1 &&
                copy->size != gst_buffer_get_size (buffer))))
      return TRUE;
    return si_detection_meta_copy_into (dest, smeta) != NULL;
  }

  if (GST_VIDEO_META_TRANSFORM_IS_SCALE (type)) {
    GstVideoMetaTransform *trans = data;
    gint in_w = GST_VIDEO_INFO_WIDTH (trans->in_info);
    gint in_h = GST_VIDEO_INFO_HEIGHT (trans->in_info);
    gint out_w = GST_VIDEO_INFO_WIDTH (trans->out_info);
    gint out_h = GST_VIDEO_INFO_HEIGHT (trans->out_info);
    gfloat sx, sy;
    guint i;

    if (in_w <= 0 || in_h <= 0)
      return FALSE;
    dmeta = si_detection_meta_copy_into (dest, smeta);
    if (dmeta == NULL)
      return FALSE;
    sx = (gfloat) out_w / (gfloat) in_w;
    sy = (gfloat) out_h / (gfloat) in_h;
    for (i = 0; i < dmeta->n_detections; i++) {
      SiMetaDetection *d = &dmeta->detections[i];
      d->x1 *= sx;
      d->x2 *= sx;
      d->y1 *= sy;
      d->y2 *= sy;
    }
    dmeta->width = out_w;
    dmeta->height = out_h;
    return TRUE;
  }

  /* Unknown transform: do not carry stale boxes. */
  return FALSE;
}

/**
 * si_detection_meta_get_info:
 *
 * Returns: (transfer none): the #GstMetaInfo of the detection meta.
 */
const GstMetaInfo *
si_detection_meta_get_info (void)
{
  static const GstMetaInfo *info = NULL;

  if (g_once_init_enter ((GstMetaInfo **) &info)) {
    const GstMetaInfo *mi;

    q_detection = g_quark_from_static_string ("detection");
    q_label_id = g_quark_from_static_string ("label_id");
    q_confidence = g_quark_from_static_string ("confidence");
    q_label = g_quark_from_static_string ("label");
    mi = gst_meta_register (SI_DETECTION_META_API_TYPE, "SiDetectionMeta",
        sizeof (SiDetectionMeta), si_detection_meta_init,
        si_detection_meta_free, si_detection_meta_transform);
    g_once_init_leave ((GstMetaInfo **) &info, (GstMetaInfo *) mi);
  }
  return info;
}

/**
 * si_buffer_add_detection_meta:
 * @buffer: a writable #GstBuffer
 * @model: (nullable): name of the model that produced the detections
 * @width: width of the frame the boxes refer to
 * @height: height of the frame the boxes refer to
 *
 * Adds an empty detection meta to @buffer.
 *
 * Returns: (transfer none) (nullable): the new meta, owned by @buffer
 */
SiDetectionMeta *
si_buffer_add_detection_meta (
    GstBuffer *buffer, const gchar *model, guint width, guint height)
{
  SiDetectionMeta *meta;

  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  g_return_val_if_fail (gst_buffer_is_writable (buffer), NULL);

  meta = (SiDetectionMeta *) gst_buffer_add_meta (
      buffer, SI_DETECTION_META_INFO, NULL);
  if (meta == NULL)
    return NULL;
  meta->model = model ? g_intern_string (model) : NULL;
  meta->width = width;
  meta->height = height;
  return meta;
}

/**
 * si_buffer_get_detection_meta:
 * @buffer: a #GstBuffer
 *
 * Returns: (transfer none) (nullable): the first detection meta of @buffer
 */
SiDetectionMeta *
si_buffer_get_detection_meta (GstBuffer *buffer)
{
  g_return_val_if_fail (GST_IS_BUFFER (buffer), NULL);
  return (SiDetectionMeta *) gst_buffer_get_meta (
      buffer, SI_DETECTION_META_API_TYPE);
}

/**
 * si_detection_meta_add:
 * @meta: a #SiDetectionMeta
 * @class_id: class index
 * @label: (nullable): class name (interned by this call)
 * @score: confidence, 0..1
 * @x1: left, frame pixels
 * @y1: top, frame pixels
 * @x2: right, frame pixels
 * @y2: bottom, frame pixels
 *
 * Appends one detection.
 *
 * Returns: %TRUE on success
 */
gboolean
si_detection_meta_add (SiDetectionMeta *meta, gint class_id, const gchar *label,
    gfloat score, gfloat x1, gfloat y1, gfloat x2, gfloat y2)
{
  SiMetaDetection *d;

  g_return_val_if_fail (meta != NULL, FALSE);
  if (!si_detection_meta_reserve (meta, meta->n_detections + 1))
    return FALSE;
  d = &meta->detections[meta->n_detections++];
  d->class_id = class_id;
  d->label = label ? g_intern_string (label) : NULL;
  d->score = score;
  d->x1 = x1;
  d->y1 = y1;
  d->x2 = x2;
  d->y2 = y2;
  d->roi_id = -1;
  return TRUE;
}

/**
 * si_detection_meta_get_count:
 * @meta: a #SiDetectionMeta
 *
 * Returns: the number of detections
 */
guint
si_detection_meta_get_count (const SiDetectionMeta *meta)
{
  g_return_val_if_fail (meta != NULL, 0);
  return meta->n_detections;
}

/**
 * si_detection_meta_get:
 * @meta: a #SiDetectionMeta
 * @index: index of the detection
 *
 * Returns: (transfer none) (nullable): detection @index, NULL when out of
 *   range; valid while the buffer lives and the meta is not changed
 */
const SiMetaDetection *
si_detection_meta_get (const SiDetectionMeta *meta, guint index)
{
  g_return_val_if_fail (meta != NULL, NULL);
  if (index >= meta->n_detections)
    return NULL;
  return &meta->detections[index];
}

/**
 * si_detection_meta_get_detection:
 * @meta: a #SiDetectionMeta
 * @index: index of the detection
 * @class_id: (out) (optional): class index
 * @label: (out) (optional) (transfer none): class name
 * @score: (out) (optional): confidence
 * @x1: (out) (optional): left
 * @y1: (out) (optional): top
 * @x2: (out) (optional): right
 * @y2: (out) (optional): bottom
 *
 * Reads detection @index field by field (convenient from bindings).
 *
 * Returns: %FALSE when @index is out of range
 */
gboolean
si_detection_meta_get_detection (const SiDetectionMeta *meta, guint index,
    gint *class_id, const gchar **label, gfloat *score, gfloat *x1, gfloat *y1,
    gfloat *x2, gfloat *y2)
{
  const SiMetaDetection *d = si_detection_meta_get (meta, index);

  if (d == NULL)
    return FALSE;
  if (class_id)
    *class_id = d->class_id;
  if (label)
    *label = d->label;
  if (score)
    *score = d->score;
  if (x1)
    *x1 = d->x1;
  if (y1)
    *y1 = d->y1;
  if (x2)
    *x2 = d->x2;
  if (y2)
    *y2 = d->y2;
  return TRUE;
}

/**
 * si_detection_meta_iterate:
 * @meta: a #SiDetectionMeta
 * @state: (inout): an opaque state, set its pointee to NULL to start
 *
 * Walks the detections in order:
 * |[
 *   gpointer state = NULL;
 *   const SiMetaDetection *d;
 *   while ((d = si_detection_meta_iterate (meta, &state)))
 *     ...
 * ]|
 *
 * Returns: (transfer none) (nullable): the next detection, NULL at the end
 */
const SiMetaDetection *
si_detection_meta_iterate (const SiDetectionMeta *meta, gpointer *state)
{
  guintptr next;

  g_return_val_if_fail (meta != NULL, NULL);
  g_return_val_if_fail (state != NULL, NULL);

  next = GPOINTER_TO_SIZE (*state);
  if (next >= meta->n_detections)
    return NULL;
  *state = GSIZE_TO_POINTER (next + 1);
  return &meta->detections[next];
}

/**
 * si_detection_meta_is_repeated:
 * @meta: a #SiDetectionMeta
 *
 * Returns: %TRUE when the detections were computed on an earlier frame
 */
gboolean
si_detection_meta_is_repeated (const SiDetectionMeta *meta)
{
  g_return_val_if_fail (meta != NULL, FALSE);
  return (meta->flags & SI_DETECTION_META_FLAG_REPEATED) != 0;
}

static inline guint
clamp_coord (gfloat v, guint max)
{
  if (!(v > 0.0f)) /* also NaN */
    return 0;
  if (v >= (gfloat) max)
    return max;
  return (guint) (v + 0.5f);
}

/**
 * si_detection_meta_attach_roi_metas:
 * @meta: a #SiDetectionMeta on @buffer
 * @buffer: the writable buffer that holds @meta
 *
 * Mirrors every detection of @meta as a #GstVideoRegionOfInterestMeta on
 * @buffer (roi_type = label, box clipped to the frame) carrying a
 * "detection" structure with label_id (int), confidence (double) and label
 * (string), the layout DL Streamer uses.  Each gets an id not yet used by
 * any ROI meta of @buffer, stored in the detection's roi_id.
 *
 * Returns: the number of ROI metas added
 */
guint
si_detection_meta_attach_roi_metas (SiDetectionMeta *meta, GstBuffer *buffer)
{
  GstVideoRegionOfInterestMeta *roi;
  gpointer state = NULL;
  GstMeta *m;
  gint next_id = 0;
  guint i, added = 0;

  g_return_val_if_fail (meta != NULL, 0);
  g_return_val_if_fail (GST_IS_BUFFER (buffer), 0);
  g_return_val_if_fail (gst_buffer_is_writable (buffer), 0);

  while ((m = gst_buffer_iterate_meta_filtered (
              buffer, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    roi = (GstVideoRegionOfInterestMeta *) m;
    if (roi->id >= next_id)
      next_id = roi->id + 1;
  }

  for (i = 0; i < meta->n_detections; i++) {
    SiMetaDetection *d = &meta->detections[i];
    guint x1 = clamp_coord (d->x1, meta->width);
    guint y1 = clamp_coord (d->y1, meta->height);
    guint x2 = clamp_coord (d->x2, meta->width);
    guint y2 = clamp_coord (d->y2, meta->height);
    GstStructure *s;

    roi = gst_buffer_add_video_region_of_interest_meta (buffer,
        d->label ? d->label : "object", x1, y1, x2 > x1 ? x2 - x1 : 0,
        y2 > y1 ? y2 - y1 : 0);
    if (roi == NULL)
      break;
    roi->id = next_id++;
    d->roi_id = roi->id;
    s = gst_structure_new_id (q_detection, q_label_id, G_TYPE_INT, d->class_id,
        q_confidence, G_TYPE_DOUBLE, (gdouble) d->score, q_label, G_TYPE_STRING,
        d->label ? d->label : "", NULL);
    gst_video_region_of_interest_meta_add_param (roi, s);
    added++;
  }
  return added;
}
