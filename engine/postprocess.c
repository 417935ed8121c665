/* postprocess.c: host side of the post-processing (model-spec 7): labels,
 * query indices and rescaled boxes of the top-k candidates, then the
 * run-time threshold and detection limit.  No NMS, no clipping.
 */
#include "postprocess.h"

void
si_postprocess_detections (const SiModel *model, const float *scores,
    const int32_t *idx, int k, const float *xyxy, const SiImageInfo *info,
    SiDetection *out)
{
  int nc = model->num_classes;

  for (int i = 0; i < k; i++) {
    int label = idx[i] % nc, query = idx[i] / nc;
    SiDetection *d = &out[i];

    d->class_id = label;
    d->label = model->classes ? model->classes[label] : NULL;
    d->score = scores[i];
    d->query_index = query;
    for (int c = 0; c < 4; c++)
      d->box[c] = xyxy[4 * query + c] / info->scale_factor[c];
  }
}

size_t
si_postprocess_select (
    const SiDetection *dets, size_t k, const SiRunParams *params)
{
  size_t n = 0;

  while (n < k && dets[n].score >= params->threshold)
    n++;
  if (params->max_detections > 0 && n > (size_t) params->max_detections)
    n = params->max_detections;
  return n;
}
