/* decoder_stage.c: one StageInteractor decoder stage (model-spec 6.2-6.9)
 * as a sequence of backend ops: positional encoding, IoF-biased
 * self-attention, two-level sampling, cascade dynamic mixing with filter
 * reuse, Wv projection, FFN, classification / regression branches and box
 * refinement.  Model code: backend pointers only, every Linear a GEMM.
 * Shapes use the legend of decoder_stage.h.
 */
#include "decoder_stage.h"

/* y (rows, lin->out; row stride ldy) = x (rows, lin->in; stride ldx) W^T + b,
 * then ReLU when relu (one GEMM with the bias in its epilogue where the
 * backend can) */
static void
linear (SiDecoder *dec, const float *x, int ldx, const SiLinear *lin, float *y,
    int ldy, int rows, bool relu)
{
  SiGemm g = si_linear_gemm (lin, x, ldx, rows, y, ldy, 0.0f);

  if (lin->b)
    dec->be->ops->gemm_bias_act (dec->be, &g, lin->b, relu);
  else
    dec->be->ops->gemm (dec->be, &g);
}

/* Per-(n, g) product: c_b (m, n) = a_b (m, k) b_b (k, n), all row-major
 * with ld = columns, constant strides between the matrices. */
static void
batched (SiDecoder *dec, int batch, int m, int n, int k, const float *a,
    long sa, const float *b, long sb, float *c, int ldc, long sc)
{
  si_backend_product (
      dec->be, batch, false, m, n, k, 1.0f, a, k, sa, b, n, sb, c, ldc, sc);
}

/* 6.2-6.4: q1 (N, C) = LN (a + MHA (a, IoF bias)), a = q + pe; Q, K, V
 * are the column blocks of qkv (N, 3C). */
static void
attention (SiDecoder *dec, const SiStage *st, int n)
{
  SiBackend *be = dec->be;
  const SiBackendOps *ops = be->ops;
  int c = st->C, ha = st->Ha;

  ops->posenc_add (be, dec->xyzr, dec->q, dec->a, n, c);
  linear (dec, dec->a, c, &st->in_proj, dec->qkv, 3 * c, n, false);
  ops->self_attention (be, dec->qkv, dec->qkv + c, dec->qkv + 2 * c, 3 * c,
      dec->xyzr, st->iof_tau, dec->attn_cat, c, n, ha, c / ha, dec->attn);
  linear (dec, dec->attn_cat, c, &st->out_proj, dec->tmp_c, c, n, false);
  ops->layer_norm (be, dec->tmp_c, dec->a, st->attn_norm.gamma,
      st->attn_norm.beta, dec->q1, n, c, false);
}

/* The Linears on q1 but param_gen (si_stage_q1_heads): the sampling
 * offsets off1 and off2 (6.5), the mixing biases mb (6.6 b), and with
 * filter reuse the scores ms, mmb, ss1, ss2 (sigmoids on ms, ss1, ss2).
 * Stacked (q1_pack): one GEMM into dec->heads, then split_columns;
 * else one GEMM each. */
static void
q1_heads (SiDecoder *dec, int s, int n)
{
  SiBackend *be = dec->be;
  SiStage *st = &dec->stages[s];
  const SiLinear *pack = &dec->q1_pack[s];
  SiLinear *heads[SI_Q1_HEADS];
  float *dst[SI_Q1_HEADS] = { dec->off1, dec->off2, dec->mb, dec->ms, dec->mmb,
    dec->ss1, dec->ss2 };
  static const bool sigmoid[SI_Q1_HEADS] = { false, false, false, true, false,
    true, true };
  SiColumnSlice slices[SI_Q1_HEADS];
  int col = 0;

  si_stage_q1_heads (st, heads);
  if (pack->w == NULL) {
    for (int i = 0; i < SI_Q1_HEADS; i++) {
      if (heads[i]->out == 0)
        continue;
      linear (dec, dec->q1, st->C, heads[i], dst[i], heads[i]->out, n, false);
      if (sigmoid[i])
        be->ops->sigmoid (be, dst[i], (long) n * heads[i]->out);
    }
    return;
  }
  linear (dec, dec->q1, st->C, pack, dec->heads, pack->out, n, false);
  for (int i = 0; i < SI_Q1_HEADS; i++) {
    slices[i] = (SiColumnSlice){
      .dst = dst[i], .col0 = col, .cols = heads[i]->out, .sigmoid = sigmoid[i]
    };
    col += heads[i]->out;
  }
  be->ops->split_columns (be, dec->heads, n, pack->out, slices, SI_Q1_HEADS);
}

/* 6.5: x0 (N, G, R, Dg) sampled with points from q1 and the input box
 * (the offsets off1, off2 made by q1_heads). */
static void
sample (SiDecoder *dec, const SiStage *st, int n,
    const float *const levels[SI_NUM_LEVELS], const int level_h[SI_NUM_LEVELS],
    const int level_w[SI_NUM_LEVELS])
{
  SiBackend *be = dec->be;

  be->ops->sample_points (
      be, dec->xyzr, dec->off1, dec->off2, dec->pts, n, st->G, st->P, st->K);
  be->ops->sample_features (be, dec->pts, levels, level_h, level_w,
      dec->model->featmap_strides, n, st->G, st->R, st->Dg, dec->x0);
}

/* The filters that stage s's param_gen makes, pg (B, Dg*Dg + Sg*R), one
 * (M, S) pair per (query, group) b at b * stage_pg_stride.  The stages
 * whose M later stages reuse (the bank, model-spec 6.6 (f): stages
 * reuse_st-1 .. in slots 0 ..) keep theirs in a buffer of their own, in
 * which the reuse steps read M and the next stage reads S; the others
 * share dec->pg.  (Every stage whose S is reused is in the bank: the
 * reuse stages are reuse_st .. the last, check_sizes.) */
static float *
stage_pg (const SiDecoder *dec, int s)
{
  int slot = s - (dec->reuse_st - 1);

  return slot >= 0 && slot < dec->max_L ? dec->pg_bank[slot] : dec->pg;
}

static long
stage_pg_stride (const SiStage *st)
{
  return (long) st->Dg * st->Dg + (long) st->Sg * st->R;
}

/* y = ReLU (LN2D (y + bias)) for the B matrices y (R, Dg); when a reuse
 * step comes next, also its axis layer's input ax_in (B, K, P, Dg) = y
 * with its (P, K) axes swapped. */
static void
ln2d_for_next (SiDecoder *dec, const SiStage *st, int nb, const float *bias,
    long bias_stride, bool step_next)
{
  SiBackend *be = dec->be;

  if (step_next)
    be->ops->ln2d_bias_relu_swap (be, dec->y, bias, bias_stride, false, nb,
        st->P, st->K, st->Dg, dec->ax_in);
  else
    be->ops->ln2d_bias_relu (
        be, dec->y, bias, bias_stride, false, nb, st->R, st->Dg);
}

/* One reuse step m of 6.6 (d): static axis + local layers on y (ax_in:
 * y swapped, by the LN2D before), cascade residual into x0, gated
 * filter, y = ReLU (LN2D (x0 Mmix + bmix)). */
static void
reuse_step (SiDecoder *dec, const SiStage *st, int nb, int m, const float *pg,
    long pg_stride)
{
  SiBackend *be = dec->be;
  const SiBackendOps *ops = be->ops;
  int dg = st->Dg, p = st->P, k = st->K, r = st->R, l = st->L;
  long mm = (long) dg * dg;
  const SiStage *banked = &dec->stages[dec->reuse_st - 1 + m]; /* slot m's */

  /* axis: mixes the P points of each sub-point index k */
  linear (dec, dec->ax_in, p * dg, &st->axis_atten[m], dec->ax_out, p * dg,
      nb * k, false);
  /* local: mixes the K sub-points of each point p (contiguous rows) */
  linear (dec, dec->y, k * dg, &st->subbox_local[m], dec->lc, k * dg, nb * p,
      false);
  ops->cascade_residual (
      be, dec->lc, dec->ax_out, dec->x0, dec->x0, nb, p, k, dg);

  /* MS (B, Dg, 2, L): slot 0 = column gate, slot 1 = row gate */
  ops->gate_mix (be, dec->pg_bank[m], stage_pg_stride (banked), pg, pg_stride,
      dec->ms + l + m, (long) dg * 2 * l, 2 * l, dec->ms + m, (long) dg * 2 * l,
      2 * l, dec->mmix, nb, dg, dg);
  batched (dec, nb, r, dg, dg, dec->x0, (long) r * dg, dec->mmix, mm, dec->y,
      dg, (long) r * dg);
  ln2d_for_next (dec, st, nb, dec->mmb + m * dg, (long) l * dg, m + 1 < l);
}

/* 6.6 (e): z (B, O, Dg) = ReLU (LN2D (Sfin y + bS)). */
static void
spatial_mix (SiDecoder *dec, int s, int nb, const float *pg, long pg_stride)
{
  SiBackend *be = dec->be;
  const SiStage *st = &dec->stages[s];
  int dg = st->Dg, r = st->R, o = st->O, sg = st->Sg;
  const float *sgen = pg + (long) dg * dg;

  batched (dec, nb, sg, dg, r, sgen, pg_stride, dec->y, (long) r * dg, dec->z,
      dg, (long) o * dg);
  if (st->reuse) {
    /* Smix: the first Sg rows of the previous stage's S (R as ours),
     * gated by row gates beta then column gates gamma */
    const SiStage *prev = &dec->stages[s - 1];
    const float *sprev = stage_pg (dec, s - 1) + (long) prev->Dg * prev->Dg;
    be->ops->gate_mix (be, sprev, stage_pg_stride (prev), sgen, pg_stride,
        dec->ss1, sg, 1, dec->ss2, r, 1, dec->smix, nb, sg, r);
    batched (dec, nb, sg, dg, r, dec->smix, (long) sg * r, dec->y,
        (long) r * dg, dec->z + (long) sg * dg, dg, (long) o * dg);
  }
  be->ops->ln2d_bias_relu (be, dec->z, dec->mb + dg, dg + o, true, nb, o, dg);
}

/* 6.6: q2 (N, C) = LN (q1 + Wv (Mix (x0, q1, bank))); a bank stage's
 * filters stay in its stage_pg for the later stages. */
static void
mixing (SiDecoder *dec, int s, int n)
{
  SiBackend *be = dec->be;
  const SiBackendOps *ops = be->ops;
  const SiStage *st = &dec->stages[s];
  int dg = st->Dg, r = st->R, nb = n * st->G, c = st->C;
  long pg_stride = stage_pg_stride (st);
  float *pg = stage_pg (dec, s); /* in the bank (f) when later stages reuse */

  linear (dec, dec->q1, c, &st->param_gen, pg, st->param_gen.out, n, false);

  /* (b) y = ReLU (LN2D (x0 Mnew + bM)) */
  batched (dec, nb, r, dg, dg, dec->x0, (long) r * dg, pg, pg_stride, dec->y,
      dg, (long) r * dg);
  ln2d_for_next (dec, st, nb, dec->mb, dg + st->O, st->reuse && st->L > 0);

  if (st->reuse) {
    for (int m = 0; m < st->L; m++)
      reuse_step (dec, st, nb, m, pg, pg_stride);
  }
  spatial_mix (dec, s, nb, pg, pg_stride);

  /* (e) Wv on the (g, o, c) flattening, residual q1 */
  linear (dec, dec->z, st->Wv.in, &st->Wv, dec->tmp_c, c, n, false);
  ops->layer_norm (be, dec->tmp_c, dec->q1, st->Wv_norm.gamma, st->Wv_norm.beta,
      dec->q2, n, c, false);
}

/* 6.8: out (N, last->out) = last (ReLU (LN (fc_i (...)))) on q, i < n_fcs. */
static void
branch (SiDecoder *dec, const SiLinear *fc, const SiNorm *ln, int n_fcs,
    const SiLinear *last, float *out, int n, int c)
{
  SiBackend *be = dec->be;
  const float *h = dec->q;

  for (int i = 0; i < n_fcs; i++) {
    float *o = (h == dec->br_a) ? dec->br_b : dec->br_a;
    linear (dec, h, c, &fc[i], o, c, n, false);
    be->ops->layer_norm (be, o, NULL, ln[i].gamma, ln[i].beta, o, n, c, true);
    h = o;
  }
  linear (dec, h, c, last, out, last->out, n, false);
}

/* 6.7, 6.8: q (N, C) = LN (q2 + FFN (q2)); cls (N, NC) when with_cls (only
 * the last stage's logits are read, unless dumping), delta (N, 4). */
static void
ffn_and_branches (SiDecoder *dec, const SiStage *st, int n, bool with_cls)
{
  SiBackend *be = dec->be;
  int c = st->C;

  linear (dec, dec->q2, c, &st->ffn1, dec->ffn_h, st->F, n, true);
  linear (dec, dec->ffn_h, st->F, &st->ffn2, dec->tmp_c, c, n, false);
  be->ops->layer_norm (be, dec->tmp_c, dec->q2, st->ffn_norm.gamma,
      st->ffn_norm.beta, dec->q, n, c, false);
  if (with_cls)
    branch (dec, st->cls_fc, st->cls_ln, st->n_cls_fcs, &st->fc_cls, dec->cls,
        n, c);
  branch (dec, st->reg_fc, st->reg_ln, st->n_reg_fcs, &st->fc_reg, dec->delta,
      n, c);
}

/* (G, N*P, K, 2) sample_xy and (G, N*P, K, 1) sample_z from
 * pts (N, G, P, K, 3), on the host. */
static gboolean
dump_points (SiDecoder *dec, const SiStage *st, int n, SiDumpFunc dump,
    void *user_data, int s, GError **error)
{
  SiBackend *be = dec->be;
  int g = st->G, p = st->P, k = st->K;
  size_t count = (size_t) n * g * p * k;
  float *src = dec->dump_host, *dst = dec->dump_host2;
  char name[64];
  int64_t shape[4] = { g, (int64_t) n * p, k, 2 };

  if (!be->ops->download (be, src, dec->pts, count * 3 * sizeof (float), error))
    return FALSE;
  for (int comp = 0; comp < 2; comp++) {
    int nc = comp == 0 ? 2 : 1;
    for (int i = 0; i < n; i++)
      for (int gg = 0; gg < g; gg++)
        for (int pk = 0; pk < p * k; pk++) {
          const float *pt = src + (((size_t) i * g + gg) * p * k + pk) * 3;
          float *d = dst + (((size_t) gg * n + i) * p * k + pk) * nc;
          if (comp == 0) {
            d[0] = pt[0];
            d[1] = pt[1];
          } else {
            d[0] = pt[2];
          }
        }
    shape[3] = nc;
    g_snprintf (name, sizeof (name), "stage%d.%s", s,
        comp == 0 ? "sample_xy" : "sample_z");
    dump (name, shape, 4, dst, user_data);
  }
  return TRUE;
}

#define DUMP(suffix, dev, ...)                                                 \
  do {                                                                         \
    const int64_t shape_[] = { __VA_ARGS__ };                                  \
    g_snprintf (name, sizeof (name), "stage%d." suffix, s);                    \
    if (!si_decoder_dump (dec, dump, user_data, name, (dev), shape_,           \
            G_N_ELEMENTS (shape_), error))                                     \
      return FALSE;                                                            \
  } while (0)

gboolean
si_decoder_stage_run (SiDecoder *dec, int s,
    const float *const levels[SI_NUM_LEVELS], const int level_h[SI_NUM_LEVELS],
    const int level_w[SI_NUM_LEVELS], SiDumpFunc dump, void *user_data,
    GError **error)
{
  SiBackend *be = dec->be;
  const SiStage *st = &dec->stages[s];
  int n = dec->model->num_query, c = st->C, nb = n * st->G;
  char name[64];

  attention (dec, st, n);
  if (dump)
    DUMP ("attn_out", dec->q1, 1, n, c);
  q1_heads (dec, s, n);
  sample (dec, st, n, levels, level_h, level_w);
  if (dump) {
    if (!dump_points (dec, st, n, dump, user_data, s, error))
      return FALSE;
    DUMP ("sampled_feats", dec->x0, 1, n, st->G, st->R, st->Dg);
  }
  mixing (dec, s, n);
  if (dump) {
    /* the generated M of this stage, made contiguous (mmix is free now) */
    long mm = (long) st->Dg * st->Dg;
    be->ops->copy_batched (
        be, dec->mmix, mm, stage_pg (dec, s), stage_pg_stride (st), mm, nb);
    DUMP ("dyn_M", dec->mmix, nb, st->Dg, st->Dg);
    DUMP ("mixer_out", dec->q2, 1, n, c);
  }
  ffn_and_branches (dec, st, n, dump || s == dec->n_stages - 1);
  be->ops->refine_boxes (be, dec->xyzr, dec->delta, dec->xyzr, dec->xyxy, n);
  if (dump) {
    DUMP ("content", dec->q, 1, n, c);
    DUMP ("cls_logits", dec->cls, 1, n, st->fc_cls.out);
    DUMP ("box_delta", dec->delta, 1, n, 4);
    DUMP ("xyzr", dec->xyzr, 1, n, 4);
    DUMP ("xyxy", dec->xyxy, 1, n, 4);
  }
  return TRUE;
}
