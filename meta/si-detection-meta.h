/* si-detection-meta.h: the StageInteractor detection meta (public API).
 *
 * One SiDetectionMeta per video buffer: the detections of that frame (box in
 * frame pixels, class id, label, score) and the model that produced them.
 * The meta survives copies and scaling (boxes are rescaled).
 */
#ifndef SI_DETECTION_META_H
#define SI_DETECTION_META_H

#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

/**
 * SiMetaDetection:
 * @class_id: class index in the model (0-based)
 * @label: class name; an interned string (g_intern_string), never freed
 * @score: confidence, 0..1
 * @x1: left edge of the box in frame pixels
 * @y1: top edge of the box in frame pixels
 * @x2: right edge of the box in frame pixels (exclusive)
 * @y2: bottom edge of the box in frame pixels (exclusive)
 * @roi_id: id of the #GstVideoRegionOfInterestMeta that mirrors this
 *   detection on the same buffer, or -1 when none was attached
 *
 * One detection.  Boxes are not clipped to the frame.
 */
typedef struct
{
  gint class_id;
  const gchar *label;
  gfloat score;
  gfloat x1;
  gfloat y1;
  gfloat x2;
  gfloat y2;
  gint roi_id;
} SiMetaDetection;

/**
 * SiDetectionMetaFlags:
 * @SI_DETECTION_META_FLAG_NONE: detections computed on this frame
 * @SI_DETECTION_META_FLAG_REPEATED: this frame was not run through the model
 *   (the detector's interval skipped it); the detections are those of the
 *   last frame that was, see #SiDetectionMeta.source_frame.
 */
typedef enum
{
  SI_DETECTION_META_FLAG_NONE = 0,
  SI_DETECTION_META_FLAG_REPEATED = (1 << 0),
} SiDetectionMetaFlags;

/**
 * SiDetectionMeta:
 * @meta: parent #GstMeta
 * @model: name of the model that produced the detections (interned string)
 * @flags: #SiDetectionMetaFlags
 * @frame: number of this frame at the detector (0-based)
 * @source_frame: number of the frame the detections were computed on
 *   (== @frame unless %SI_DETECTION_META_FLAG_REPEATED)
 * @width: width of the frame the boxes refer to, in pixels
 * @height: height of the frame the boxes refer to, in pixels
 *
 * The detections of one frame.  Read them with si_detection_meta_get_count()
 * and si_detection_meta_get() or si_detection_meta_iterate().
 */
typedef struct
{
  GstMeta meta;

  const gchar *model;
  SiDetectionMetaFlags flags;
  guint64 frame;
  guint64 source_frame;
  guint width;
  guint height;

  /*< private >*/
  guint n_detections;
  guint capacity;
  SiMetaDetection *detections; /* (capacity) */
  SiMetaDetection inline_store[8];
  gpointer _si_reserved[4];
} SiDetectionMeta;

GType si_detection_meta_api_get_type (void);
#define SI_DETECTION_META_API_TYPE (si_detection_meta_api_get_type ())

const GstMetaInfo *si_detection_meta_get_info (void);
#define SI_DETECTION_META_INFO (si_detection_meta_get_info ())

SiDetectionMeta *si_buffer_add_detection_meta (
    GstBuffer *buffer, const gchar *model, guint width, guint height);
SiDetectionMeta *si_buffer_get_detection_meta (GstBuffer *buffer);

gboolean si_detection_meta_add (SiDetectionMeta *meta, gint class_id,
    const gchar *label, gfloat score, gfloat x1, gfloat y1, gfloat x2,
    gfloat y2);
guint si_detection_meta_get_count (const SiDetectionMeta *meta);
const SiMetaDetection *si_detection_meta_get (
    const SiDetectionMeta *meta, guint index);
gboolean si_detection_meta_get_detection (const SiDetectionMeta *meta,
    guint index, gint *class_id, const gchar **label, gfloat *score, gfloat *x1,
    gfloat *y1, gfloat *x2, gfloat *y2);
const SiMetaDetection *si_detection_meta_iterate (
    const SiDetectionMeta *meta, gpointer *state);
gboolean si_detection_meta_is_repeated (const SiDetectionMeta *meta);

guint si_detection_meta_attach_roi_metas (
    SiDetectionMeta *meta, GstBuffer *buffer);

G_END_DECLS

#endif /* SI_DETECTION_META_H */
