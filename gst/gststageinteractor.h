/* gststageinteractor.h: the stageinteractor detector element (in-place
 * video filter running the StageInteractor engine and attaching
 * SiDetectionMeta + GstVideoRegionOfInterestMeta to each frame).
 */
#ifndef GST_STAGE_INTERACTOR_H
#define GST_STAGE_INTERACTOR_H

#include <gst/gst.h>
#include <gst/video/video.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_STAGE_INTERACTOR (gst_stage_interactor_get_type ())
G_DECLARE_FINAL_TYPE (GstStageInteractor, gst_stage_interactor, GST,
    STAGE_INTERACTOR, GstVideoFilter)

#define GST_TYPE_STAGE_INTERACTOR_BACKEND                                      \
  (gst_stage_interactor_backend_get_type ())
GType gst_stage_interactor_backend_get_type (void);

#define GST_TYPE_STAGE_INTERACTOR_PRECISION                                    \
  (gst_stage_interactor_precision_get_type ())
GType gst_stage_interactor_precision_get_type (void);

GST_ELEMENT_REGISTER_DECLARE (stageinteractor);

G_END_DECLS

#endif /* GST_STAGE_INTERACTOR_H */
