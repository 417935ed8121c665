/* neck.h: the ChannelMapping neck (model-spec 4) on the backend table:
 * per level a 1x1 conv with bias (one GEMM on the NHWC map) and the shared
 * GroupNorm(32), statistics over the padded map, eps 1e-5.
 */
#ifndef SI_NECK_H
#define SI_NECK_H

#include "backend.h"

typedef struct _SiNeckNet SiNeckNet;

/* Uploads the neck weights of model to be. */
SiNeckNet *si_neck_net_new (
    SiBackend *be, const SiModel *model, GError **error);
void si_neck_net_free (SiNeckNet **nn);

/* in[l] (h[l], w[l], in_channels[l]) in the backend's map layout ->
 * out[l] (h[l], w[l], D) NHWC.  Level by level, C_l is first converted to
 * NHWC into scratch (floats: the largest h*w*in_channels), so out[l] may
 * alias in[l].  Queues the work without syncing; on backends with record
 * and replay it is recorded once per set of arguments and replayed
 * afterwards (graph_cache.h). */
gboolean si_neck_run (SiNeckNet *nn, const float *const in[SI_NUM_LEVELS],
    const int h[SI_NUM_LEVELS], const int w[SI_NUM_LEVELS], float *scratch,
    float *const out[SI_NUM_LEVELS], GError **error);

#endif /* SI_NECK_H */
