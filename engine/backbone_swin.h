/* backbone_swin.h: the Swin Transformer backbone (model-spec 3.3) on the
 * backend table, the SI_BACKBONE_SWIN half of backbone.c.  Internal to
 * engine/.
 */
#ifndef SI_BACKBONE_SWIN_H
#define SI_BACKBONE_SWIN_H

#include "backbone.h"

typedef struct _SiSwinNet SiSwinNet;

/* Floats of the Swin scratch buffers for padded inputs of up to px pixels
 * whose sides are at most max_side (window padding depends on them). */
void si_swin_sizes (
    const SiSwin *sw, size_t px, int max_side, SiBackboneSizes *s);

SiSwinNet *si_swin_net_new (SiBackend *be, const SiSwin *sw, GError **error);
void si_swin_net_free (SiSwinNet **sn);

/* input (H, W, 3) NHWC -> buf->out[0..3] (map layout) through the Swin
 * scratch of buf. */
gboolean si_swin_run (SiSwinNet *sn, const float *input, int h, int w,
    const SiBackboneBuffers *buf, GError **error);

#endif /* SI_BACKBONE_SWIN_H */
