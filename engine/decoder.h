/* decoder.h: the query side of the forward pass (internal): initial queries
 * (model-spec 5), the decoder stages (6) and the post-processing (7), run
 * on one backend through the backend table.  A SiDecoder owns every
 * decoder activation buffer, allocated once in si_decoder_new() for the
 * model's N queries and stage sizes; running a frame allocates nothing.
 * net.c creates one per SiNet and calls run() then postprocess().
 */
#ifndef SI_DECODER_H
#define SI_DECODER_H

#include "backend.h"
#include "net.h"

typedef struct _SiDecoder SiDecoder;

/* Creates the decoder of @model on @be; both must outlive the decoder.
 * transfer full. */
SiDecoder *si_decoder_new (SiBackend *be, const SiModel *model, GError **error);
/* Sets *dec to NULL. */
void si_decoder_free (SiDecoder **dec);

/* CPU backend: after each stage, give the stage's weight pages back to the
 * page cache (madvise MADV_DONTNEED on the read-only model mapping), so
 * that the process holds one stage's weights at a time instead of all
 * six: the next frame maps them again from memory (no disk read while the
 * page cache keeps the file).  Other backends read their own copies and
 * ignore it. */
void si_decoder_set_release_weights (SiDecoder *dec, gboolean release);

/* Runs the query generator and every decoder stage.
 * levels: the neck outputs F_0..F_3, backend memory, NHWC (level_h[l],
 * level_w[l], D) each; info: the frame geometry (img_shape gives the
 * initial boxes).  timings (may be NULL) receives query_init, stage[] and
 * num_stages.  dump (may be NULL) receives init.* and stage{i}.* tensors
 * with the golden names and shapes.  Without a dump, on backends with
 * record and replay, the run is recorded once per key (levels, sizes,
 * new_w/new_h; on the key's second run, after a warm-up op by op) and
 * replayed (graph_cache.h); timings of a replay hold one figure,
 * query_init, with num_stages 0. */
gboolean si_decoder_run (SiDecoder *dec,
    const float *const levels[SI_NUM_LEVELS], const int level_h[SI_NUM_LEVELS],
    const int level_w[SI_NUM_LEVELS], const SiImageInfo *info,
    SiTimings *timings, SiDumpFunc dump, void *user_data, GError **error);

/* Post-processing of the last run: top max_per_img of the sigmoid scores,
 * boxes in original frame pixels, then params->threshold and
 * params->max_detections; sorted by score descending (ties: lower flat
 * index query * NC + label first).  *out is owned by the decoder, valid
 * until the next call.  dump (may be NULL) receives det_boxes, det_scores,
 * det_labels and det_query_index of the top max_per_img (before the
 * threshold), as float32.  timings (may be NULL) receives postprocess. */
gboolean si_decoder_postprocess (SiDecoder *dec, const SiImageInfo *info,
    const SiRunParams *params, SiTimings *timings, SiDumpFunc dump,
    void *user_data, const SiDetection **out, size_t *n_out, GError **error);

#endif /* SI_DECODER_H */
