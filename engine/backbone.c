/* backbone.c: the ResNet / ResNeXt backbone on the backend table
 * (model-spec 3.1, 3.2).  Buffer plan of one stage l: block 0 writes its
 * identity (the downsample conv) into out[l] and adds conv3 (conv2 for
 * BasicBlock) onto it; every later block adds its last conv in place onto
 * its own input in out[l], so a stage never copies and each stage's
 * output stays where the neck reads it.  A DCNv1 conv2 is its offset conv,
 * then per chunk of output pixels the backend's deformable im2col and one
 * GEMM batched over the conv's groups, then bias + ReLU and the map
 * layout.  Dimension legend: H, W padded input; Cs stem channels.
 */
#include "backbone.h"

#include <string.h>

#include "backbone_swin.h"

#include "graph_cache.h"

/* Floats of one chunk of deformable columns (np pixels x C * 9): bounds
 * the scratch (32 MiB) while keeping each GEMM large. */
#define DCN_COLS_FLOATS ((size_t) 8 << 20)

typedef struct
{
  SiConvPlan *conv1, *conv2, *conv3, *downsample; /* conv3 NULL: basic */
  /* DCN conv2 (conv2 NULL then): the offset conv, the BN-folded weight
   * (cout, cin/groups * 9) and bias (cout), backend memory */
  SiConvPlan *offset;
  float *dcn_w, *dcn_b;
} BlockPlans;

struct _SiBackboneNet
{
  SiBackend *be;
  const SiBackbone *bb;
  SiConvPlan *stem;
  BlockPlans *blocks[SI_NUM_LEVELS];
  SiSwinNet *swin; /* SI_BACKBONE_SWIN: everything else unused */
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

void
si_backbone_sizes (
    const SiBackbone *bb, size_t px, int max_side, SiBackboneSizes *s)
{
  size_t in_px = px / 16; /* after the stem and the pool */

  memset (s, 0, sizeof (*s));
  if (bb->type == SI_BACKBONE_SWIN) {
    si_swin_sizes (&bb->swin, px, max_side, s);
    return;
  }
  s->stem = (size_t) bb->stem.cout * (px / 4);
  s->pool = (size_t) bb->stem.cout * (px / 16);
  s->t1 = s->t2 = 0;
  s->dcn_offset = s->dcn_cols = s->dcn_out = 0;
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    size_t out_px = px / ((size_t) 16 << (2 * l));
    for (int b = 0; b < bb->n_blocks[l]; b++) {
      const SiBottleneck *blk = &bb->blocks[l][b];
      size_t bpx = b == 0 ? in_px : out_px;
      if (bb->bottleneck) {
        /* pytorch style: the stride sits on conv2 */
        s->t1 = MAX (s->t1, (size_t) blk->conv1.cout * bpx);
        s->t2 = MAX (s->t2, (size_t) blk->conv2.cout * out_px);
        if (blk->deform_groups > 0) {
          size_t kcol = (size_t) blk->conv2.cin * 9;
          s->dcn_offset =
              MAX (s->dcn_offset, (size_t) blk->conv2_offset.cout * out_px);
          s->dcn_cols = MAX (s->dcn_cols,
              kcol * MIN (out_px, MAX (DCN_COLS_FLOATS / kcol, 1)));
          s->dcn_out = MAX (s->dcn_out, (size_t) blk->conv2.cout * out_px);
        }
      } else {
        s->t1 = MAX (s->t1, (size_t) blk->conv1.cout * out_px);
      }
    }
    s->out[l] = (size_t) bb->out_channels[l] * out_px;
    in_px = out_px;
  }
}

/* A DCN conv2: its offset conv's plan and its folded weight and bias in
 * backend memory. */
static gboolean
dcn_prepare (
    SiBackend *be, const SiBottleneck *blk, BlockPlans *p, GError **error)
{
  const SiConv *cv = &blk->conv2;
  size_t wn = si_conv_weight_numel (cv);
  float *w = g_try_new (float, wn), *b = g_try_new (float, cv->cout);
  gboolean ok = FALSE;

  if (cv->kh != 3 || cv->kw != 3 || cv->pad != 1) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "DCN: only 3x3 convs with pad 1 (got %dx%d pad %d)", cv->kh, cv->kw,
        cv->pad);
  } else if (w == NULL || b == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "DCN: cannot allocate %zu floats to fold the weights", wn);
  } else if ((p->offset = be->ops->conv_prepare (
                  be, &blk->conv2_offset, error)) != NULL &&
      (p->dcn_w = be->ops->alloc (be, wn * sizeof (float), error)) &&
      (p->dcn_b =
              be->ops->alloc (be, (size_t) cv->cout * sizeof (float), error))) {
    si_conv_fold (cv, w, b);
    ok = be->ops->upload (be, p->dcn_w, w, wn * sizeof (float), error) &&
        be->ops->upload (
            be, p->dcn_b, b, (size_t) cv->cout * sizeof (float), error);
    si_conv_release_pages (cv);
  }
  g_free (w);
  g_free (b);
  return ok;
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
  if (bb->type == SI_BACKBONE_SWIN) {
    if (!(bn->swin = si_swin_net_new (be, &bb->swin, error)))
      goto fail;
    return bn;
  }
  if (!(bn->stem = ops->conv_prepare (be, &bb->stem, error)))
    goto fail;
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    bn->blocks[l] = g_new0 (BlockPlans, bb->n_blocks[l]);
    for (int b = 0; b < bb->n_blocks[l]; b++) {
      const SiBottleneck *blk = &bb->blocks[l][b];
      BlockPlans *p = &bn->blocks[l][b];
      if (!(p->conv1 = ops->conv_prepare (be, &blk->conv1, error)))
        goto fail;
      if (blk->deform_groups > 0
              ? !dcn_prepare (be, blk, p, error)
              : !(p->conv2 = ops->conv_prepare (be, &blk->conv2, error)))
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
  si_swin_net_free (&bn->swin);
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
      bn->be->ops->conv_release (bn->be, p->offset);
      if (p->dcn_w)
        bn->be->ops->free (bn->be, p->dcn_w);
      if (p->dcn_b)
        bn->be->ops->free (bn->be, p->dcn_b);
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

/* A DCNv1 conv2 + BN + ReLU: x (h, w, cin) -> y (ho, wo, cout), both in
 * the map layout. */
static gboolean
run_dcn (SiBackboneNet *bn, const SiBottleneck *blk, const BlockPlans *p,
    const float *x, int h, int w, float *y, const SiBackboneBuffers *buf,
    GError **error)
{
  SiBackend *be = bn->be;
  const SiBackendOps *ops = be->ops;
  const SiConv *cv = &blk->conv2;
  int ho = conv_out (cv, h), wo = conv_out (cv, w);
  int cin_g = cv->cin / cv->groups, cout_g = cv->cout / cv->groups;
  int kcol = cv->cin * 9, kg = cin_g * 9;
  long npx = (long) ho * wo;
  long chunk = MAX ((long) (DCN_COLS_FLOATS / (size_t) kcol), 1);
  /* a backend whose maps are all NHWC fp32 takes the GEMM's output as is */
  float *out = ops->map_from_nhwc ? buf->dcn_out : y;

  if (!ops->conv2d (
          be, p->offset, x, h, w, buf->dcn_offset, false, false, error))
    return FALSE;
  for (long p0 = 0; p0 < npx; p0 += chunk) {
    int np = (int) MIN (chunk, npx - p0);
    /* per group g: out[:, g] (np, cout_g) = cols[:, g] (np, kg) W_g^T */
    SiGemm g = { .trans_a = false,
      .trans_b = true,
      .m = np,
      .n = cout_g,
      .k = kg,
      .alpha = 1.0f,
      .beta = 0.0f,
      .a = buf->dcn_cols,
      .lda = kcol,
      .b = p->dcn_w,
      .ldb = kg,
      .c = out + p0 * cv->cout,
      .ldc = cv->cout };
    ops->deform_im2col (be, x, h, w, cv->cin, buf->dcn_offset, ho, wo,
        cv->stride, blk->deform_groups, p0, np, buf->dcn_cols);
    ops->gemm_batched (
        be, &g, cv->groups, kg, (long) cout_g * kg, (long) cout_g);
  }
  ops->bias_act (be, out, p->dcn_b, (int) npx, cv->cout, cv->cout, true);
  if (ops->map_from_nhwc)
    ops->map_from_nhwc (be, out, ho, wo, cv->cout, y);
  return TRUE;
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
    if (!ops->conv2d (be, p->conv1, x, h, w, buf->t1, false, true, error))
      return FALSE;
    if (p->offset ? !run_dcn (bn, blk, p, buf->t1, h, w, buf->t2, buf, error)
                  : !ops->conv2d (be, p->conv2, buf->t1, h, w, buf->t2, false,
                        true, error))
      return FALSE;
    if (!ops->conv2d (be, p->conv3, buf->t2, h2, w2, y, true, true, error))
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
  int hs, ws;

  if (bn->swin)
    return si_swin_run (bn->swin, input, h, w, buf, error);
  hs = conv_out (&bb->stem, h);
  ws = conv_out (&bb->stem, w);
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
