/* gststageoverlay.h: the stageoverlay element: draws the detections of
 * SiDetectionMeta and of foreign GstVideoRegionOfInterestMeta with Cairo.
 */
#ifndef GST_STAGE_OVERLAY_H
#define GST_STAGE_OVERLAY_H

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_STAGE_OVERLAY (gst_stage_overlay_get_type ())
G_DECLARE_FINAL_TYPE (
    GstStageOverlay, gst_stage_overlay, GST, STAGE_OVERLAY, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (stageoverlay);

G_END_DECLS

#endif /* GST_STAGE_OVERLAY_H */
