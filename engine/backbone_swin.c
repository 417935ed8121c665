/* backbone_swin.c: the Swin Transformer backbone (model-spec 3.3) on the
 * backend table.  Tokens are NHWC fp32 (H, W, C).  Per block: LN1, the
 * (shifted, zero-padded) windows, QKV, per head one GEMM batched over the
 * windows for Q K^T (scaled) and one for P V, the bias + mask + softmax
 * op between them, the projection, the windows merged back onto x; then
 * LN2, FFN with GELU, added onto x by the second GEMM (beta 1).  Between
 * stages the 2x2 patch merging; each stage's output is its norm{i} in the
 * map layout.  Legend: n = H W tokens, C channels, ws window side, nwt
 * window tokens (the padded map's), nW windows, hd head dim.
 */
#include "backbone_swin.h"

#include <string.h>

#include "si-math.h"
#include "uploads.h"

struct _SiSwinNet
{
  SiBackend *be;
  SiSwin sw;         /* weights as backend pointers (blocks: own arrays) */
  SiConvPlan *embed; /* patch_embed.projection */
  SiUploads uploads; /* backend copies (not on the CPU) */
};

void
si_swin_sizes (const SiSwin *sw, size_t px, int max_side, SiBackboneSizes *s)
{
  int ws = sw->window_size;

  s->stem = s->pool = s->t1 = s->t2 = 0;
  s->dcn_offset = s->dcn_cols = s->dcn_out = 0;
  s->swin_x = s->swin_ln = s->swin_win = s->swin_qkv = 0;
  s->swin_logits = s->swin_attn = s->swin_hidden = 0;
  for (int i = 0; i < SI_NUM_LEVELS; i++) {
    size_t n = px / ((size_t) 16 << (2 * i)), c = (size_t) sw->embed_dims << i;
    size_t side = (size_t) (max_side >> (i + 2)) + 1;
    /* (H + ws - 1)(W + ws - 1) with H W <= n and H, W <= side */
    size_t nwt = n + 2 * (ws - 1) * side + (size_t) (ws - 1) * (ws - 1);
    s->swin_x = MAX (s->swin_x, n * c);
    s->swin_ln = MAX (s->swin_ln, n * c);
    s->swin_win = MAX (s->swin_win, nwt * c);
    s->swin_qkv = MAX (s->swin_qkv, nwt * 3 * c);
    s->swin_logits =
        MAX (s->swin_logits, nwt * sw->heads[i] * (size_t) (ws * ws));
    s->swin_attn = MAX (s->swin_attn, nwt * c);
    s->swin_hidden = MAX (s->swin_hidden, n * c * sw->mlp_ratio);
    s->out[i] = n * c;
  }
}

SiSwinNet *
si_swin_net_new (SiBackend *be, const SiSwin *sw, GError **error)
{
  const SiBackendOps *ops = be->ops;
  SiSwinNet *sn;
  SiUploads *u;
  int ws = sw->window_size;

  if (!ops->window_partition || !ops->window_merge_add ||
      !ops->window_softmax || !ops->patch_merge || !ops->bias_gelu) {
    g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
        "the %s backend cannot run Swin backbones yet", ops->name);
    return NULL;
  }
  sn = g_new0 (SiSwinNet, 1);
  sn->be = be;
  u = &sn->uploads;
  sn->sw = *sw;
  si_uploads_init (u, be);
  for (int i = 0; i < SI_NUM_LEVELS; i++)
    sn->sw.blocks[i] = g_memdup2 (
        sw->blocks[i], sizeof (SiSwinBlock) * (size_t) MAX (sw->depths[i], 1));
  if (!(sn->embed = ops->conv_prepare (be, &sw->patch_embed, error)) ||
      !si_uploads_norm (u, &sn->sw.patch_norm, error))
    goto fail;
  for (int i = 0; i < SI_NUM_LEVELS; i++) {
    for (int j = 0; j < sw->depths[i]; j++) {
      SiSwinBlock *blk = &sn->sw.blocks[i][j];
      if (!si_uploads_norm (u, &blk->norm1, error) ||
          !si_uploads_norm (u, &blk->norm2, error) ||
          !si_uploads_linear (u, &blk->qkv, error) ||
          !si_uploads_linear (u, &blk->proj, error) ||
          !si_uploads_linear (u, &blk->fc1, error) ||
          !si_uploads_linear (u, &blk->fc2, error) ||
          !si_uploads_weight (u, &blk->rel_bias,
              (size_t) (2 * ws - 1) * (2 * ws - 1) * sw->heads[i], error))
        goto fail;
    }
    if (!si_uploads_norm (u, &sn->sw.out_norm[i], error) ||
        (i < 3 &&
            (!si_uploads_norm (u, &sn->sw.merge_norm[i], error) ||
                !si_uploads_linear (u, &sn->sw.merge_reduce[i], error))))
      goto fail;
  }
  return sn;

fail:
  si_swin_net_free (&sn);
  return NULL;
}

void
si_swin_net_free (SiSwinNet **psn)
{
  SiSwinNet *sn = psn ? *psn : NULL;

  if (sn == NULL)
    return;
  sn->be->ops->conv_release (sn->be, sn->embed);
  si_uploads_clear (&sn->uploads);
  for (int i = 0; i < SI_NUM_LEVELS; i++)
    g_free (sn->sw.blocks[i]);
  g_free (sn);
  *psn = NULL;
}

/* y (rows, out) = x (rows, in) W^T (+ beta y), + l->b when bias. */
static void
linear (SiBackend *be, const SiLinear *l, const float *x, int rows, float *y,
    float beta, bool bias)
{
  SiGemm g = si_linear_gemm (l, x, l->in, rows, y, l->out, beta);

  if (bias)
    be->ops->gemm_bias_act (be, &g, l->b, false);
  else
    be->ops->gemm (be, &g);
}

/* One block on x (H, W, C) in place. */
static void
run_block (SiSwinNet *sn, const SiSwinBlock *blk, int heads, int h, int w,
    int c, const SiBackboneBuffers *buf)
{
  SiBackend *be = sn->be;
  const SiBackendOps *ops = be->ops;
  int ws = sn->sw.window_size, nn = ws * ws, hd = c / heads;
  int nw_h = si_swin_padded (h, ws) / ws, nw_w = si_swin_padded (w, ws) / ws;
  int nw = nw_h * nw_w;
  int nwt = nw * nn, n = h * w;
  float *x = buf->swin_x, *ln = buf->swin_ln, *win = buf->swin_win;
  float *qkv = buf->swin_qkv, *logits = buf->swin_logits;
  float *attn = buf->swin_attn;

  ops->layer_norm (
      be, x, NULL, blk->norm1.gamma, blk->norm1.beta, ln, n, c, false);
  ops->window_partition (be, ln, h, w, c, ws, blk->shift, win);
  linear (be, &blk->qkv, win, nwt, qkv, 0.0f, true);
  for (int hh = 0; hh < heads; hh++) {
    /* per window: logits (nn, nn) = hd^-0.5 q k^T */
    SiGemm qk = { .trans_a = false,
      .trans_b = true,
      .m = nn,
      .n = nn,
      .k = hd,
      .alpha = 1.0f / sqrtf ((float) hd),
      .beta = 0.0f,
      .a = qkv + hh * hd,
      .lda = 3 * c,
      .b = qkv + c + hh * hd,
      .ldb = 3 * c,
      .c = logits + (size_t) hh * nn * nn,
      .ldc = nn };
    ops->gemm_batched (be, &qk, nw, (long) nn * 3 * c, (long) nn * 3 * c,
        (long) heads * nn * nn);
  }
  ops->window_softmax (
      be, logits, blk->rel_bias, nw_h, nw_w, heads, ws, blk->shift);
  for (int hh = 0; hh < heads; hh++) {
    /* per window: attn[:, head] (nn, hd) = P (nn, nn) v (nn, hd) */
    SiGemm pv = { .trans_a = false,
      .trans_b = false,
      .m = nn,
      .n = hd,
      .k = nn,
      .alpha = 1.0f,
      .beta = 0.0f,
      .a = logits + (size_t) hh * nn * nn,
      .lda = nn,
      .b = qkv + 2 * c + hh * hd,
      .ldb = 3 * c,
      .c = attn + hh * hd,
      .ldc = c };
    ops->gemm_batched (
        be, &pv, nw, (long) heads * nn * nn, (long) nn * 3 * c, (long) nn * c);
  }
  linear (be, &blk->proj, attn, nwt, win, 0.0f, true);
  ops->window_merge_add (be, win, h, w, c, ws, blk->shift, x);

  ops->layer_norm (
      be, x, NULL, blk->norm2.gamma, blk->norm2.beta, ln, n, c, false);
  linear (be, &blk->fc1, ln, n, buf->swin_hidden, 0.0f, false);
  ops->bias_gelu (be, buf->swin_hidden, blk->fc1.b, n, blk->fc1.out);
  linear (be, &blk->fc2, buf->swin_hidden, n, x, 1.0f, true);
}

gboolean
si_swin_run (SiSwinNet *sn, const float *input, int h, int w,
    const SiBackboneBuffers *buf, GError **error)
{
  SiBackend *be = sn->be;
  const SiBackendOps *ops = be->ops;
  const SiSwin *sw = &sn->sw;
  int c = sw->embed_dims;

  if (h % 32 != 0 || w % 32 != 0 || h <= 0 || w <= 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "Swin: the input %dx%d is not a multiple of 32 in both sides", w, h);
    return FALSE;
  }
  /* patch embed (H/4, W/4, C) in the map layout -> NHWC tokens, LN */
  if (!ops->conv2d (
          be, sn->embed, input, h, w, buf->swin_ln, false, false, error))
    return FALSE;
  h /= 4;
  w /= 4;
  if (ops->map_to_nhwc)
    ops->map_to_nhwc (be, buf->swin_ln, h, w, c, buf->swin_x);
  else
    ops->copy (be, buf->swin_x, buf->swin_ln, sizeof (float) * h * w * c);
  ops->layer_norm (be, buf->swin_x, NULL, sw->patch_norm.gamma,
      sw->patch_norm.beta, buf->swin_x, h * w, c, false);

  for (int i = 0; i < SI_NUM_LEVELS; i++) {
    const SiNorm *on = &sw->out_norm[i];
    for (int j = 0; j < sw->depths[i]; j++)
      run_block (sn, &sw->blocks[i][j], sw->heads[i], h, w, c, buf);
    if (ops->map_from_nhwc) {
      ops->layer_norm (be, buf->swin_x, NULL, on->gamma, on->beta, buf->swin_ln,
          h * w, c, false);
      ops->map_from_nhwc (be, buf->swin_ln, h, w, c, buf->out[i]);
    } else {
      ops->layer_norm (be, buf->swin_x, NULL, on->gamma, on->beta, buf->out[i],
          h * w, c, false);
    }
    if (i < 3) {
      /* 2x2 merge (H/2 W/2, 4C), LN, reduction to 2C */
      const SiNorm *mn = &sw->merge_norm[i];
      ops->patch_merge (be, buf->swin_x, h, w, c, buf->swin_hidden);
      h /= 2;
      w /= 2;
      ops->layer_norm (be, buf->swin_hidden, NULL, mn->gamma, mn->beta,
          buf->swin_hidden, h * w, 4 * c, false);
      linear (be, &sw->merge_reduce[i], buf->swin_hidden, h * w, buf->swin_x,
          0.0f, false);
      c *= 2;
    }
  }
  return TRUE;
}
