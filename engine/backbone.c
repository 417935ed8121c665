/* backbone.c: the ResNet backbone on the backend table (model-spec 3.1).
 * Buffer plan of one stage l: block 0 writes its identity (the downsample
 * conv) into out[l] and adds conv3 (conv2 for BasicBlock) onto it; every
 * later block adds its last conv in place onto its own input in out[l],
 * so a stage never copies and each stage's output stays where the neck
 * reads it.  Dimension legend: H, W padded input; Cs stem channels.
 */
#include "backbone.h"

#include <string.h>

#include "graph_cache.h"

typedef struct
{
  SiConvPlan *conv1, *conv2, *conv3, *downsample; /* conv3 NULL: basic */
} BlockPlans;

struct _SiBackboneNet
{
  SiBackend *be;
  const SiBackbone *bb;
  SiConvPlan *stem;
  BlockPlans *blocks[SI_NUM_LEVELS];
  SiGraphCache graphs;
};

/* What a recorded backbone run depends on: the input's size and address
 * and the buffers (the weights are the net's own). */
typedef struct
{
  const float *input;
  int h, w;
  SiBackboneBuffers buf;
} SiBackboneGraphKey;

G_STATIC_ASSERT (sizeof (SiBackboneGraphKey) <= SI_GRAPH_KEY_MAX);

static size_t
max_sz (size_t a, size_t b)
{
  return a > b ? a : b;
}

void
si_backbone_sizes (const SiBackbone *bb, size_t px, SiBackboneSizes *s)
{
  size_t in_px = px / 16; /* after the stem and the pool */

  s->stem = (size_t) bb->stem.cout * (px / 4);
  s->pool = (size_t) bb->stem.cout * (px / 16);
  s->t1 = s->t2 = 0;
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    size_t out_px = px / ((size_t) 16 << (2 * l));
    for (int b = 0; b < bb->n_blocks[l]; b++) {
      const SiBottleneck *blk = &bb->blocks[l][b];
      size_t bpx = b == 0 ? in_px : out_px;
      if (bb->bottleneck) {
        /* pytorch style: the stride sits on conv2 */
        s->t1 = max_sz (s->t1, (size_t) blk->conv1.cout * bpx);
        s->t2 = max_sz (s->t2, (size_t) blk->conv2.cout * out_px);
      } else {
        s->t1 = max_sz (s->t1, (size_t) blk->conv1.cout * out_px);
      }
    }
    s->out[l] = (size_t) bb->out_channels[l] * out_px;
    in_px = out_px;
  }
}

SiBackboneNet *
si_backbone_net_new (SiBackend *be, const SiBackbone *bb, GError **error)
{
  SiBackboneNet *bn = g_new0 (SiBackboneNet, 1);
  const SiBackendOps *ops = be->ops;

  bn->be = be;
  bn->bb = bb;
  si_graph_cache_init (
      &bn->graphs, be, "backbone", sizeof (SiBackboneGraphKey));
  if (!(bn->stem = ops->conv_prepare (be, &bb->stem, error)))
    goto fail;
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    bn->blocks[l] = g_new0 (BlockPlans, bb->n_blocks[l]);
    for (int b = 0; b < bb->n_blocks[l]; b++) {
      const SiBottleneck *blk = &bb->blocks[l][b];
      BlockPlans *p = &bn->blocks[l][b];
      if (!(p->conv1 = ops->conv_prepare (be, &blk->conv1, error)) ||
          !(p->conv2 = ops->conv_prepare (be, &blk->conv2, error)))
        goto fail;
      if (bb->bottleneck &&
          !(p->conv3 = ops->conv_prepare (be, &blk->conv3, error)))
        goto fail;
      if (blk->has_downsample &&
          !(p->downsample = ops->conv_prepare (be, &blk->downsample, error)))
        goto fail;
    }
  }
  return bn;

fail:
  si_backbone_net_free (&bn);
  return NULL;
}

void
si_backbone_net_free (SiBackboneNet **pbn)
{
  SiBackboneNet *bn = pbn ? *pbn : NULL;

  if (bn == NULL)
    return;
  si_graph_cache_clear (&bn->graphs);
  bn->be->ops->conv_release (bn->be, bn->stem);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    if (bn->blocks[l] == NULL)
      continue;
    for (int b = 0; b < bn->bb->n_blocks[l]; b++) {
      BlockPlans *p = &bn->blocks[l][b];
      bn->be->ops->conv_release (bn->be, p->conv1);
      bn->be->ops->conv_release (bn->be, p->conv2);
      bn->be->ops->conv_release (bn->be, p->conv3);
      bn->be->ops->conv_release (bn->be, p->downsample);
    }
    g_free (bn->blocks[l]);
  }
  g_free (bn);
  *pbn = NULL;
}

static int
conv_out (const SiConv *cv, int n)
{
  return (n + 2 * cv->pad - cv->kh) / cv->stride + 1;
}

/* One residual block: x (h, w, cin) -> y (ho, wo, cout); x == y for the
 * blocks without a downsample (in place). */
static gboolean
run_block (SiBackboneNet *bn, const SiBottleneck *blk, const BlockPlans *p,
    const float *x, int h, int w, float *y, int *ho, int *wo,
    const SiBackboneBuffers *buf, GError **error)
{
  SiBackend *be = bn->be;
  const SiBackendOps *ops = be->ops;

  if (blk->has_downsample) {
    if (!ops->conv2d (be, p->downsample, x, h, w, y, false, false, error))
      return FALSE;
  } else if (x != y) {
    /* ResNet-18/34 layer1.0: identity without a conv */
    size_t bytes = ops->map_bytes ? ops->map_bytes (be, h, w, blk->conv1.cin)
                                  : sizeof (float) * h * w * blk->conv1.cin;
    ops->copy (be, y, x, bytes);
  }
  if (p->conv3) {
    /* Bottleneck: 1x1 -> 3x3 (stride) -> 1x1 + identity, ReLU */
    int h2 = conv_out (&blk->conv2, h), w2 = conv_out (&blk->conv2, w);
    if (!ops->conv2d (be, p->conv1, x, h, w, buf->t1, false, true, error) ||
        !ops->conv2d (
            be, p->conv2, buf->t1, h, w, buf->t2, false, true, error) ||
        !ops->conv2d (be, p->conv3, buf->t2, h2, w2, y, true, true, error))
      return FALSE;
    *ho = h2;
    *wo = w2;
  } else {
    /* BasicBlock: 3x3 (stride) -> 3x3 + identity, ReLU */
    int h1 = conv_out (&blk->conv1, h), w1 = conv_out (&blk->conv1, w);
    if (!ops->conv2d (be, p->conv1, x, h, w, buf->t1, false, true, error) ||
        !ops->conv2d (be, p->conv2, buf->t1, h1, w1, y, true, true, error))
      return FALSE;
    *ho = h1;
    *wo = w1;
  }
  return TRUE;
}

/* The ops of si_backbone_run (the work a recording holds). */
static gboolean
backbone_ops (SiBackboneNet *bn, const float *input, int h, int w,
    const SiBackboneBuffers *buf, GError **error)
{
  SiBackend *be = bn->be;
  const SiBackbone *bb = bn->bb;
  const float *x;
  int hs = conv_out (&bb->stem, h), ws = conv_out (&bb->stem, w);

  /* stem: conv 7x7/2 + ReLU (H/2, W/2, Cs), pool (H/4, W/4, Cs) */
  if (!be->ops->conv2d (
          be, bn->stem, input, h, w, buf->stem, false, true, error))
    return FALSE;
  be->ops->maxpool3x3s2 (be, buf->stem, hs, ws, bb->stem.cout, buf->pool);
  h = (hs - 1) / 2 + 1;
  w = (ws - 1) / 2 + 1;
  x = buf->pool;

  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    for (int b = 0; b < bb->n_blocks[l]; b++) {
      int ho, wo;
      if (!run_block (bn, &bb->blocks[l][b], &bn->blocks[l][b], x, h, w,
              buf->out[l], &ho, &wo, buf, error))
        return FALSE;
      x = buf->out[l];
      h = ho;
      w = wo;
    }
  }
  return TRUE;
}

typedef struct
{
  SiBackboneNet *bn;
  const SiBackboneGraphKey *key;
} SiBackboneWork;

static gboolean
backbone_work (void *data, GError **error)
{
  SiBackboneWork *work = data;
  const SiBackboneGraphKey *k = work->key;

  return backbone_ops (work->bn, k->input, k->h, k->w, &k->buf, error);
}

gboolean
si_backbone_run (SiBackboneNet *bn, const float *input, int h, int w,
    const SiBackboneBuffers *buf, GError **error)
{
  SiBackboneGraphKey key;
  SiBackboneWork work = { bn, &key };
  gboolean replayed;

  memset (&key, 0, sizeof (key)); /* compared bytewise */
  key.input = input;
  key.h = h;
  key.w = w;
  key.buf = *buf;
  if (!si_graph_cache_replay (
          &bn->graphs, &key, backbone_work, &work, &replayed, error))
    return FALSE;
  return replayed || backbone_ops (bn, input, h, w, buf, error);
}
