/* gststageoverlay.c: the stageoverlay element.  Collects the boxes of every
 * SiDetectionMeta and of the GstVideoRegionOfInterestMeta that do not mirror
 * one of ours, and draws them with the Cairo renderer (si-overlay-render.c)
 * on any of the 12 accepted formats.  Reads metas only.
 */

/**
 * SECTION:element-stageoverlay
 * @title: stageoverlay
 *
 * Draws detections (from stageinteractor's #SiDetectionMeta and from any
 * #GstVideoRegionOfInterestMeta) on the video: box outlines, the label and
 * score on a filled tab, one stable colour per class.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 videotestsrc num-buffers=30 ! videoconvert ! \
 *   stageinteractor model=model.safetensors ! stageoverlay line-width=3 ! \
 *   videoconvert ! autovideosink
 * ]|
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gststageoverlay.h"
#include "si-overlay-render.h"

#include <si-detection-meta.h>
#include <math.h>

GST_DEBUG_CATEGORY_STATIC (gst_stage_overlay_debug);
#define GST_CAT_DEFAULT gst_stage_overlay_debug

#define DEFAULT_LINE_WIDTH 2.0
#define DEFAULT_SHOW_LABELS TRUE
#define DEFAULT_SHOW_SCORES TRUE
#define DEFAULT_FONT_DESC "Sans Bold 10"

enum
{
  PROP_0,
  PROP_LINE_WIDTH,
  PROP_SHOW_LABELS,
  PROP_SHOW_SCORES,
  PROP_FONT_DESC,
};

struct _GstStageOverlay
{
  GstVideoFilter parent;

  /* properties, under the object lock */
  gdouble line_width;
  gboolean show_labels;
  gboolean show_scores;
  gchar *font_desc;

  /* streaming state */
  SiOverlayRender *render;
  GArray *boxes;   /* SiOverlayBox, rebuilt each frame */
  GArray *own_ids; /* gint, ROI ids mirrored from our metas */
  gchar *font_in_use;
};

#define VIDEO_FORMATS                                                          \
  "{ BGRx, BGRA, RGBx, RGBA, xRGB, xBGR, ARGB, ABGR, RGB, BGR, NV12, I420 }"

static GstStaticPadTemplate sink_template =
    GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK, GST_PAD_ALWAYS,
        GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (VIDEO_FORMATS)));
static GstStaticPadTemplate src_template =
    GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC, GST_PAD_ALWAYS,
        GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (VIDEO_FORMATS)));

#define gst_stage_overlay_parent_class parent_class
G_DEFINE_TYPE (GstStageOverlay, gst_stage_overlay, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE_WITH_CODE (stageoverlay, "stageoverlay",
    GST_RANK_NONE, GST_TYPE_STAGE_OVERLAY,
    GST_DEBUG_CATEGORY_INIT (
        gst_stage_overlay_debug, "stageoverlay", 0, "StageInteractor overlay"));

static gboolean
gst_stage_overlay_start (GstBaseTransform *trans)
{
  GstStageOverlay *self = GST_STAGE_OVERLAY (trans);

  self->render = si_overlay_render_new ();
  return TRUE;
}

static gboolean
gst_stage_overlay_stop (GstBaseTransform *trans)
{
  GstStageOverlay *self = GST_STAGE_OVERLAY (trans);

  si_overlay_render_free (&self->render);
  g_clear_pointer (&self->font_in_use, g_free);
  return TRUE;
}

/* Is id one of the ROI ids our metas mirror?  stageinteractor hands out
 * consecutive ids, so a range test usually answers. */
static gboolean
is_own_roi (GstStageOverlay *self, gint id, gint lo, gint hi)
{
  guint i;

  if (id < lo || id > hi)
    return FALSE;
  if ((guint) (hi - lo + 1) == self->own_ids->len)
    return TRUE; /* distinct ids filling [lo, hi] */
  for (i = 0; i < self->own_ids->len; i++)
    if (g_array_index (self->own_ids, gint, i) == id)
      return TRUE;
  return FALSE;
}

/* Boxes of all our metas, then of the ROI metas nobody of ours mirrors. */
static void
collect_boxes (GstStageOverlay *self, GstBuffer *buf, gint width, gint height)
{
  gpointer state = NULL;
  GstMeta *m;
  gint lo = G_MAXINT, hi = G_MININT;

  g_array_set_size (self->boxes, 0);
  g_array_set_size (self->own_ids, 0);

  while ((m = gst_buffer_iterate_meta_filtered (
              buf, &state, SI_DETECTION_META_API_TYPE))) {
    SiDetectionMeta *dm = (SiDetectionMeta *) m;
    gfloat sx = 1.0f, sy = 1.0f;
    guint i;

    /* boxes refer to dm->width x dm->height: follow a missed rescale */
    if (dm->width > 0 && dm->height > 0) {
      sx = (gfloat) width / dm->width;
      sy = (gfloat) height / dm->height;
    }
    for (i = 0; i < dm->n_detections; i++) {
      const SiMetaDetection *d = &dm->detections[i];
      SiOverlayBox b;

      b.x1 = d->x1 * sx;
      b.y1 = d->y1 * sy;
      b.x2 = d->x2 * sx;
      b.y2 = d->y2 * sy;
      b.class_key = (guint32) d->class_id;
      b.label = d->label;
      b.score = d->score;
      g_array_append_val (self->boxes, b);
      if (d->roi_id >= 0) {
        g_array_append_val (self->own_ids, d->roi_id);
        lo = MIN (lo, d->roi_id);
        hi = MAX (hi, d->roi_id);
      }
    }
  }

  state = NULL;
  while ((m = gst_buffer_iterate_meta_filtered (
              buf, &state, GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) m;
    GstStructure *s;
    SiOverlayBox b;
    const gchar *label = g_quark_to_string (roi->roi_type);
    gint label_id;
    gdouble conf;

    if (self->own_ids->len && is_own_roi (self, roi->id, lo, hi))
      continue;
    b.x1 = roi->x;
    b.y1 = roi->y;
    b.x2 = (gfloat) roi->x + roi->w;
    b.y2 = (gfloat) roi->y + roi->h;
    b.score = -1.0f;
    s = gst_video_region_of_interest_meta_get_param (roi, "detection");
    if (s && gst_structure_get_double (s, "confidence", &conf))
      b.score = (gfloat) conf;
    if (s && gst_structure_has_field_typed (s, "label", G_TYPE_STRING))
      label = g_intern_string (gst_structure_get_string (s, "label"));
    if (s && gst_structure_get_int (s, "label_id", &label_id))
      b.class_key = (guint32) label_id;
    else
      b.class_key = label ? g_str_hash (label) : 0;
    b.label = label;
    g_array_append_val (self->boxes, b);
  }
}

static GstFlowReturn
gst_stage_overlay_transform_frame_ip (
    GstVideoFilter *filter, GstVideoFrame *frame)
{
  GstStageOverlay *self = GST_STAGE_OVERLAY (filter);
  SiOverlayStyle style;
  GError *err = NULL;

  collect_boxes (self, frame->buffer, GST_VIDEO_FRAME_WIDTH (frame),
      GST_VIDEO_FRAME_HEIGHT (frame));
  if (self->boxes->len == 0)
    return GST_FLOW_OK;

  GST_OBJECT_LOCK (self);
  style.line_width = self->line_width;
  style.show_labels = self->show_labels;
  style.show_scores = self->show_scores;
  if (g_strcmp0 (self->font_in_use, self->font_desc) != 0) {
    g_free (self->font_in_use);
    self->font_in_use = g_strdup (self->font_desc);
  }
  GST_OBJECT_UNLOCK (self);
  style.font_desc = self->font_in_use;

  if (!si_overlay_render_frame (self->render, frame, &style,
          (const SiOverlayBox *) self->boxes->data, self->boxes->len, &err)) {
    GST_ELEMENT_ERROR (
        self, STREAM, FAILED, ("Could not draw: %s", err->message), (NULL));
    g_clear_error (&err);
    return GST_FLOW_ERROR;
  }
  return GST_FLOW_OK;
}

static void
gst_stage_overlay_set_property (
    GObject *object, guint prop_id, const GValue *value, GParamSpec *pspec)
{
  GstStageOverlay *self = GST_STAGE_OVERLAY (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_LINE_WIDTH:
      self->line_width = g_value_get_double (value);
      break;
    case PROP_SHOW_LABELS:
      self->show_labels = g_value_get_boolean (value);
      break;
    case PROP_SHOW_SCORES:
      self->show_scores = g_value_get_boolean (value);
      break;
    case PROP_FONT_DESC:
      g_free (self->font_desc);
      self->font_desc = g_value_dup_string (value);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_stage_overlay_get_property (
    GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstStageOverlay *self = GST_STAGE_OVERLAY (object);

  GST_OBJECT_LOCK (self);
  switch (prop_id) {
    case PROP_LINE_WIDTH:
      g_value_set_double (value, self->line_width);
      break;
    case PROP_SHOW_LABELS:
      g_value_set_boolean (value, self->show_labels);
      break;
    case PROP_SHOW_SCORES:
      g_value_set_boolean (value, self->show_scores);
      break;
    case PROP_FONT_DESC:
      g_value_set_string (value, self->font_desc);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
      break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_stage_overlay_finalize (GObject *object)
{
  GstStageOverlay *self = GST_STAGE_OVERLAY (object);

  si_overlay_render_free (&self->render);
  g_free (self->font_desc);
  g_free (self->font_in_use);
  g_array_free (self->boxes, TRUE);
  g_array_free (self->own_ids, TRUE);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

static void
gst_stage_overlay_init (GstStageOverlay *self)
{
  self->line_width = DEFAULT_LINE_WIDTH;
  self->show_labels = DEFAULT_SHOW_LABELS;
  self->show_scores = DEFAULT_SHOW_SCORES;
  self->font_desc = g_strdup (DEFAULT_FONT_DESC);
  self->boxes = g_array_sized_new (FALSE, FALSE, sizeof (SiOverlayBox), 128);
  self->own_ids = g_array_sized_new (FALSE, FALSE, sizeof (gint), 128);
}

static void
gst_stage_overlay_class_init (GstStageOverlayClass *klass)
{
  GObjectClass *gobject_class = G_OBJECT_CLASS (klass);
  GstElementClass *element_class = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *trans_class = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *filter_class = GST_VIDEO_FILTER_CLASS (klass);
  const GParamFlags rw =
      G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS | GST_PARAM_MUTABLE_PLAYING;

  gobject_class->set_property = gst_stage_overlay_set_property;
  gobject_class->get_property = gst_stage_overlay_get_property;
  gobject_class->finalize = gst_stage_overlay_finalize;

  g_object_class_install_property (gobject_class, PROP_LINE_WIDTH,
      g_param_spec_double ("line-width", "Line width",
          "Width of the box outlines in pixels (rounded)", 1.0, 64.0,
          DEFAULT_LINE_WIDTH, rw));
  g_object_class_install_property (gobject_class, PROP_SHOW_LABELS,
      g_param_spec_boolean ("show-labels", "Show labels",
          "Draw the class label on a tab above each box", DEFAULT_SHOW_LABELS,
          rw));
  g_object_class_install_property (gobject_class, PROP_SHOW_SCORES,
      g_param_spec_boolean ("show-scores", "Show scores",
          "Draw the score (0.00..1.00) on the tab", DEFAULT_SHOW_SCORES, rw));
  g_object_class_install_property (gobject_class, PROP_FONT_DESC,
      g_param_spec_string ("font-desc", "Font description",
          "Pango font description of the tab text, e.g. \"Sans Bold 10\"",
          DEFAULT_FONT_DESC, rw));

  gst_element_class_add_static_pad_template (element_class, &sink_template);
  gst_element_class_add_static_pad_template (element_class, &src_template);
  gst_element_class_set_static_metadata (element_class,
      "StageInteractor overlay", "Filter/Effect/Video",
      "Draws detection boxes, labels and scores (StageInteractor metas and "
      "region-of-interest metas) with Cairo",
      "StageInteractor developers");

  trans_class->start = GST_DEBUG_FUNCPTR (gst_stage_overlay_start);
  trans_class->stop = GST_DEBUG_FUNCPTR (gst_stage_overlay_stop);
  filter_class->transform_frame_ip =
      GST_DEBUG_FUNCPTR (gst_stage_overlay_transform_frame_ip);
}
