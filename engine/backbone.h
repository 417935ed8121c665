/* backbone.h: the ResNet / ResNeXt backbone (model-spec 3.1, 3.2) run
 * through the backend table (Swin, model-spec 3.3: backbone_swin.c, behind
 * the same functions): stem conv 7x7/2 + ReLU, max pool 3x3/2, four
 * stages of Bottleneck (depth >= 50) or BasicBlock (18/34) blocks, BN
 * folded into every conv, ReLU and the residual sum fused into the conv
 * op; grouped 3x3 convs (ResNeXt) and DCNv1 3x3 convs (deformable im2col,
 * then one batched GEMM over the groups).  Maps are NHWC.
 *
 * Buffer sizes scale with the pixel count px = H * W of the padded input
 * (H, W multiples of 32), so one set of buffers fits both orientations.
 */
#ifndef SI_BACKBONE_H
#define SI_BACKBONE_H

#include "backend.h"

typedef struct _SiBackboneNet SiBackboneNet;

/* Activation buffers (backend memory); px is the padded input's pixel
 * count.  Allowed aliases (each buffer is dead when the other is live):
 * t1, t2 and the DCN scratch inside stem (stem is dead once pooled), pool
 * inside out[1] (written from layer2 on), the network input inside
 * out[0]. */
typedef struct
{
  float *stem; /* (H/2, W/2, stem_channels) */
  float *pool; /* (H/4, W/4, stem_channels) */
  float *t1;   /* block scratch: conv1 output */
  float *t2;   /* block scratch: conv2 output (bottleneck) */
  /* DCN scratch (NULL without DCN): the offsets (Ho, Wo, 18 * dg) in the
   * map layout, one chunk of deformable columns, the conv's NHWC fp32
   * output before it goes into t2's map layout */
  float *dcn_offset, *dcn_cols, *dcn_out;
  /* Swin scratch (NULL for ResNets; backbone_swin.c): tokens x (n, C),
   * their LN, the windows, QKV, the attention logits and output, the FFN
   * hidden layer (which may alias qkv, logits and attn) */
  float *swin_x, *swin_ln, *swin_win, *swin_qkv, *swin_logits, *swin_attn;
  float *swin_hidden;
  /* C2..C5 (H/2^(l+2), W/2^(l+2), out_channels[l]) in the backend's map
   * layout (backend.h); the neck converts them to NHWC */
  float *out[SI_NUM_LEVELS];
} SiBackboneBuffers;

/* Floats each buffer needs for inputs of up to px pixels. */
typedef struct
{
  size_t stem, pool, t1, t2, out[SI_NUM_LEVELS];
  size_t dcn_offset, dcn_cols, dcn_out; /* 0 without DCN */
  size_t swin_x, swin_ln, swin_win, swin_qkv, swin_logits, swin_attn;
  size_t swin_hidden; /* 0 for ResNets */
} SiBackboneSizes;

/* max_side: the padded input's longest side (Swin's windows pad each
 * side; ResNets ignore it). */
void si_backbone_sizes (
    const SiBackbone *bb, size_t px, int max_side, SiBackboneSizes *s);

/* Prepares every conv of bb on be (weights into the backend's layout). */
SiBackboneNet *si_backbone_net_new (
    SiBackend *be, const SiBackbone *bb, GError **error);
void si_backbone_net_free (SiBackboneNet **bn);

/* input (H, W, 3) NHWC -> buf->out[0..3] (map layout).  Queues the work
 * and returns: nothing here syncs, downloads or allocates.  On backends
 * with record and replay the work is recorded once per (input, H, W,
 * buffers) and replayed afterwards (graph_cache.h). */
gboolean si_backbone_run (SiBackboneNet *bn, const float *input, int h, int w,
    const SiBackboneBuffers *buf, GError **error);

#endif /* SI_BACKBONE_H */
