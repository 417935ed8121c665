/* postprocess.h: host side of the post-processing (model-spec 7): turns
 * the top-k (score, flat index) of the last stage's sigmoid scores and the
 * final boxes into SiDetections in original frame pixels.  The top-k
 * itself is a backend op (topk_sigmoid); decoder.c runs it and downloads
 * its results.  Internal to engine/.
 */
#ifndef SI_POSTPROCESS_H
#define SI_POSTPROCESS_H

#include "net.h"

/* out[i], i < k: label = idx % NC, query = idx / NC, box = xyxy[query] /
 * scale_factor (float32 division), score.  scores/idx: (k), sorted by
 * score descending (ties: lower idx first); xyxy: (N, 4) in resized-image
 * pixels. */
void si_postprocess_detections (const SiModel *model, const float *scores,
    const int32_t *idx, int k, const float *xyxy, const SiImageInfo *info,
    SiDetection *out);

/* Number of leading detections of dets (k, sorted by score descending)
 * kept by params: score >= threshold, at most max_detections (0: all). */
size_t si_postprocess_select (
    const SiDetection *dets, size_t k, const SiRunParams *params);

#endif /* SI_POSTPROCESS_H */
