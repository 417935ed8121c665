/* stagemetapublish: passthrough video element that publishes the detections
 * of each frame (SiDetectionMeta and standard ROI metas) as one JSON message
 * to a file, an MQTT broker or a Kafka cluster, off the streaming thread. */
#pragma once

#include <gst/base/gstbasetransform.h>

G_BEGIN_DECLS

typedef enum
{
  GST_STAGE_META_PUBLISH_FILE,
  GST_STAGE_META_PUBLISH_MQTT,
  GST_STAGE_META_PUBLISH_KAFKA,
} GstStageMetaPublishMethod;

typedef enum
{
  GST_STAGE_META_PUBLISH_JSON_LINES,
  GST_STAGE_META_PUBLISH_JSON_ARRAY,
} GstStageMetaPublishFileFormat;

#define GST_TYPE_STAGE_META_PUBLISH (gst_stage_meta_publish_get_type ())
G_DECLARE_FINAL_TYPE (GstStageMetaPublish, gst_stage_meta_publish, GST,
    STAGE_META_PUBLISH, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (stagemetapublish);

G_END_DECLS
