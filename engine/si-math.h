/* si-math.h: per-element arithmetic shared by the CPU backend and (later)
 * the CUDA kernels: OpenCV-exact resize coefficients, BT.601 YUV -> RGB,
 * the normalisation recipe, ReLU, DCNv1's bilinear taps, GELU and Swin's
 * window indexing.  Everything is static inline and marked
 * SI_HOSTDEV so that both the C compiler and nvcc compile it.
 */
#ifndef SI_MATH_H
#define SI_MATH_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__
#define SI_HOSTDEV __host__ __device__
#else
#define SI_HOSTDEV
#endif

/* Fixed-point INTER_LINEAR (model-spec 2.2): 11-bit coefficients. */
#define SI_RESIZE_BITS 11
#define SI_RESIZE_ONE (1 << SI_RESIZE_BITS)

SI_HOSTDEV static inline int
si_clampi (int v, int lo, int hi)
{
  return v < lo ? lo : (v > hi ? hi : v);
}

SI_HOSTDEV static inline float
si_relu (float x)
{
  return x > 0.0f ? x : 0.0f;
}

/* Horizontal tap of destination column dx: source column x0 and weights
 * a0, a1 (sum 2048).  single: only x0 contributes (a0 = 2048 then). */
SI_HOSTDEV static inline void
si_resize_xcoef (
    int dx, double inv_scale, int src_w, int *x0, int *a0, int *a1, int *single)
{
  float fx = (float) ((dx + 0.5) * inv_scale - 0.5);
  int sx = (int) floorf (fx);
  fx -= (float) sx;
  *single = 0;
  if (sx < 0) {
    fx = 0.0f;
    sx = 0;
  }
  if (sx + 1 >= src_w) {
    *single = 1;
    if (sx >= src_w - 1) {
      fx = 0.0f;
      sx = src_w - 1;
    }
  }
  *x0 = sx;
  *a0 = (int) rintf ((1.0f - fx) * (float) SI_RESIZE_ONE);
  *a1 = (int) rintf (fx * (float) SI_RESIZE_ONE);
  if (*single) {
    *a0 = SI_RESIZE_ONE;
    *a1 = 0;
  }
}

/* Vertical tap of destination row dy: clamped rows r0, r1 and weights
 * b0, b1 (fy is not reset at the borders, as in OpenCV). */
SI_HOSTDEV static inline void
si_resize_ycoef (
    int dy, double inv_scale, int src_h, int *r0, int *r1, int *b0, int *b1)
{
  float fy = (float) ((dy + 0.5) * inv_scale - 0.5);
  int sy = (int) floorf (fy);
  fy -= (float) sy;
  *r0 = si_clampi (sy, 0, src_h - 1);
  *r1 = si_clampi (sy + 1, 0, src_h - 1);
  *b0 = (int) rintf ((1.0f - fy) * (float) SI_RESIZE_ONE);
  *b1 = (int) rintf (fy * (float) SI_RESIZE_ONE);
}

/* Vertical pass of two horizontally filtered values (int32 each). */
SI_HOSTDEV static inline uint8_t
si_resize_vmix (int32_t t0, int32_t t1, int b0, int b1)
{
  int v = ((((t0 >> 4) * b0) >> 16) + (((t1 >> 4) * b1) >> 16) + 2) >> 2;
  return (uint8_t) si_clampi (v, 0, 255);
}

/* BT.601 limited range YUV -> one RGB channel, 8-bit fixed point
 * (the coefficients of the ITU recommendation scaled by 2^16). */
SI_HOSTDEV static inline uint8_t
si_clamp_u8 (int v)
{
  return (uint8_t) si_clampi (v, 0, 255);
}

SI_HOSTDEV static inline void
si_yuv_to_rgb (int y, int u, int v, uint8_t *r, uint8_t *g, uint8_t *b)
{
  int c = (y - 16) * 76309; /* 1.164383 * 2^16 */
  int d = u - 128;
  int e = v - 128;
  *r = si_clamp_u8 ((c + 104597 * e + 32768) >> 16); /* 1.596027 */
  *g = si_clamp_u8 (
      (c - 25675 * d - 53279 * e + 32768) >> 16);    /* .391762, .812968 */
  *b = si_clamp_u8 ((c + 132201 * d + 32768) >> 16); /* 2.017232 */
}

/* Normalisation of one uint8 value (golden README): bit-exact to mmdet's
 * float32((double)(x - mean32) * (1.0 / (double)std32)). */
SI_HOSTDEV static inline float
si_normalize_value (int x, float mean, float std)
{
  float t = (float) x - mean;
  return (float) ((double) t * (1.0 / (double) std));
}

/* ---- decoder side (model-spec 5, 6.2, 6.3, 6.5, 6.9, 7) ---- */

SI_HOSTDEV static inline float
si_sigmoidf (float x)
{
  return 1.0f / (1.0f + expf (-x));
}

/* The score top-k ranks: the sigmoid, with a NaN logit (broken weights)
 * scored 0 so that both twins rank it last, as a total order wants. */
SI_HOSTDEV static inline float
si_topk_score (float logit)
{
  float s = si_sigmoidf (logit);
  return s == s ? s : 0.0f;
}

/* decode_box: xyzr (x, y, z = log2 sqrt(wh), r = log2 h/w) -> x1y1x2y2,
 * in the official evaluation order (model-spec 5). */
SI_HOSTDEV static inline void
si_decode_box (const float *xyzr, float *xyxy)
{
  float sc = exp2f (xyzr[2]);
  float w = sc * exp2f (xyzr[3] * -0.5f);
  float h = sc * exp2f (xyzr[3] * 0.5f);
  xyxy[0] = xyzr[0] - w * 0.5f;
  xyxy[1] = xyzr[1] - h * 0.5f;
  xyxy[2] = xyzr[0] + w * 0.5f;
  xyxy[3] = xyzr[1] + h * 0.5f;
}

/* Initial box of one query (model-spec 5): normalised cx, cy, w, h of an
 * img_w x img_h image -> xyzr. */
SI_HOSTDEV static inline void
si_init_box (const float *cxcywh, float img_w, float img_h, float *xyzr)
{
  float x1 = (cxcywh[0] - 0.5f * cxcywh[2]) * img_w;
  float y1 = (cxcywh[1] - 0.5f * cxcywh[3]) * img_h;
  float x2 = (cxcywh[0] + 0.5f * cxcywh[2]) * img_w;
  float y2 = (cxcywh[1] + 0.5f * cxcywh[3]) * img_h;
  float bw = x2 - x1, bh = y2 - y1;
  xyzr[0] = 0.5f * (x1 + x2);
  xyzr[1] = 0.5f * (y1 + y2);
  xyzr[2] = log2f (sqrtf (bw * bh));
  xyzr[3] = log2f (bh / bw);
}

/* refine_xyzr (model-spec 6.9): dx in box widths, dy in box heights. */
SI_HOSTDEV static inline void
si_refine_box (const float *xyzr, const float *delta, float *out)
{
  float x = xyzr[0], y = xyzr[1], z = xyzr[2], r = xyzr[3];
  out[0] = x + delta[0] * exp2f (z - 0.5f * r);
  out[1] = y + delta[1] * exp2f (z + 0.5f * r);
  out[2] = z + delta[2];
  out[3] = r + delta[3];
}

/* dim_t[j] of the positional encoding with nf features per coordinate,
 * rounded to float32 as the official code does (model-spec 6.2). */
SI_HOSTDEV static inline float
si_posenc_dim_t (int j, int nf)
{
  float e = (float) (2 * (j / 2)) / (float) nf;
  return powf (10000.0f, e);
}

/* log (IoF + 1e-7) of query box a against key box b, both x1y1x2y2
 * (model-spec 6.3: divided by the area of a). */
SI_HOSTDEV static inline float
si_log_iof (const float *a, const float *b)
{
  float ow = fminf (a[2], b[2]) - fmaxf (a[0], b[0]);
  float oh = fminf (a[3], b[3]) - fmaxf (a[1], b[1]);
  float area = (a[2] - a[0]) * (a[3] - a[1]);
  ow = ow > 0.0f ? ow : 0.0f;
  oh = oh > 0.0f ? oh : 0.0f;
  area = area > 1e-6f ? area : 1e-6f;
  return logf (ow * oh / area + 1e-7f);
}

/* One two-level sampling point (model-spec 6.5): box xyzr, first-level
 * offset o1 (dx0, dy0, dz0), shared second-level offset o2 -> X, Y, Z. */
SI_HOSTDEV static inline void
si_sample_point (
    const float *xyzr, const float *o1, const float *o2, float *xyz)
{
  float z = xyzr[2], r = xyzr[3];
  float ez = exp2f (o1[2]);
  xyz[0] = xyzr[0] + exp2f (z - 0.5f * r) * (o1[0] + ez * o2[0]);
  xyz[1] = xyzr[1] + exp2f (z + 0.5f * r) * (o1[1] + ez * o2[1]);
  xyz[2] = (z + o1[2]) + o2[2];
}

/* Soft level weights of a point of log2 scale Z over the 4 levels
 * (regress_z, tau 2): softmax_l (-|((Z - 3) - l)^2 / 2|). */
SI_HOSTDEV static inline void
si_level_weights (float z, float *wl)
{
  float t[4], mx, sum = 0.0f;
  for (int l = 0; l < 4; l++) {
    float d = (z - 3.0f) - (float) l;
    t[l] = -fabsf (d * d / 2.0f);
  }
  mx = fmaxf (fmaxf (t[0], t[1]), fmaxf (t[2], t[3]));
  for (int l = 0; l < 4; l++) {
    wl[l] = expf (t[l] - mx);
    sum += wl[l];
  }
  for (int l = 0; l < 4; l++)
    wl[l] /= sum;
}

/* grid_sample (bilinear, zeros, align_corners False) source coordinate of
 * X on a level of `size` cells and the given stride (model-spec 6.5). */
SI_HOSTDEV static inline float
si_grid_coord (float x, int size, int stride)
{
  float extent = (float) (size * stride);
  float g = x / extent * 2.0f - 1.0f;
  return ((g + 1.0f) * (float) size - 1.0f) / 2.0f;
}

/* DCNv1 (model-spec 3.2): the sampling coordinate of kernel row (or
 * column) i of output row (or column) o, pad 1, moved by d pixels. */
SI_HOSTDEV static inline float
si_dcn_coord (int o, int stride, int i, float d)
{
  return (float) (o * stride - 1 + i) + d;
}

/* mmcv's deformable_im2col_bilinear at (py, px) of an h x w map: the flat
 * indices y * w + x of the neighbours (h_low, w_low), (h_low, w_high),
 * (h_high, w_low), (h_high, w_high) with their weights; -1 for one outside
 * the map (it contributes 0, no renormalisation), and all four -1 unless
 * -1 < py < h and -1 < px < w. */
SI_HOSTDEV static inline void
si_dcn_taps (float py, float px, int h, int w, int idx[4], float wt[4])
{
  for (int q = 0; q < 4; q++) {
    idx[q] = -1;
    wt[q] = 0.0f;
  }
  if (!(py > -1.0f && px > -1.0f && py < (float) h && px < (float) w))
    return;
  int hl = (int) floorf (py), wl = (int) floorf (px);
  int hh = hl + 1, wh = wl + 1;
  float lh = py - (float) hl, lw = px - (float) wl;
  float uh = 1.0f - lh, uw = 1.0f - lw;
  wt[0] = uh * uw;
  wt[1] = uh * lw;
  wt[2] = lh * uw;
  wt[3] = lh * lw;
  if (hl >= 0 && wl >= 0)
    idx[0] = hl * w + wl;
  if (hl >= 0 && wh <= w - 1)
    idx[1] = hl * w + wh;
  if (hh <= h - 1 && wl >= 0)
    idx[2] = hh * w + wl;
  if (hh <= h - 1 && wh <= w - 1)
    idx[3] = hh * w + wh;
}

/* The sampled value from the neighbours' values (0 where idx is -1), in
 * mmcv's order of summation. */
SI_HOSTDEV static inline float
si_dcn_mix (const float wt[4], const float v[4])
{
  return wt[0] * v[0] + wt[1] * v[1] + wt[2] * v[2] + wt[3] * v[3];
}

/* GELU with the exact erf (torch.nn.GELU's default). */
SI_HOSTDEV static inline float
si_gelu (float x)
{
  return 0.5f * x * (1.0f + erff (x * 0.70710678118654752f));
}

/* Swin windows (model-spec 3.3): a side of len tokens padded up to whole
 * windows of ws. */
SI_HOSTDEV static inline int
si_swin_padded (int len, int ws)
{
  return (len + ws - 1) / ws * ws;
}

/* Swin windows (model-spec 3.3): the padded map's coordinate that the
 * rolled map's coordinate s (0 <= s < len) shows, rolled by -shift. */
SI_HOSTDEV static inline int
si_swin_unroll (int s, int shift, int len)
{
  return (s + shift) % len;
}

/* The attention mask's region of rolled coordinate s along an axis of
 * padded length len: 0 before len - ws, 1 before len - shift, 2 after. */
SI_HOSTDEV static inline int
si_swin_region (int s, int len, int ws, int shift)
{
  return s < len - ws ? 0 : (s < len - shift ? 1 : 2);
}

/* The rolled coordinate that shows padded coordinate p (the inverse of
 * si_swin_unroll). */
SI_HOSTDEV static inline int
si_swin_roll_back (int p, int shift, int len)
{
  return (p - shift % len + len) % len;
}

/* Row of the window token at rolled (sy, sx) in the (nW * ws * ws, C)
 * windows of a map nw_w windows wide, and back. */
SI_HOSTDEV static inline long
si_swin_row (int sy, int sx, int ws, int nw_w)
{
  return ((long) (sy / ws * nw_w + sx / ws) * ws + sy % ws) * ws + sx % ws;
}

SI_HOSTDEV static inline void
si_swin_row_coords (long r, int ws, int nw_w, int *sy, int *sx)
{
  int t = (int) (r % (ws * ws)), wi = (int) (r / (ws * ws));
  *sy = wi / nw_w * ws + t / ws;
  *sx = wi % nw_w * ws + t % ws;
}

/* Bias-table row of window tokens a and b (row-major in a ws x ws
 * window): (ya - yb + ws - 1) (2 ws - 1) + (xa - xb + ws - 1). */
SI_HOSTDEV static inline int
si_swin_rel_index (int a, int b, int ws)
{
  return (a / ws - b / ws + ws - 1) * (2 * ws - 1) + (a % ws - b % ws + ws - 1);
}

/* The mask region (0 .. 8) of token t of the window whose top-left
 * rolled coordinate is (y0, x0), in an (hp, wp) padded map. */
SI_HOSTDEV static inline int
si_swin_label (int y0, int x0, int t, int ws, int hp, int wp, int shift)
{
  return si_swin_region (y0 + t / ws, hp, ws, shift) * 3 +
      si_swin_region (x0 + t % ws, wp, ws, shift);
}

/* Row r of the (nW, heads, ws^2, ws^2) logits: its query token a, head
 * hd, the window's top-left rolled coordinate (y0, x0) (nw_w windows a
 * row) and a's mask region la. */
typedef struct
{
  int a, hd, y0, x0, la;
} SiSwinRow;

SI_HOSTDEV static inline SiSwinRow
si_swin_logit_row (
    long r, int heads, int nw_w, int ws, int hp, int wp, int shift)
{
  SiSwinRow q;
  int n = ws * ws, wi = (int) (r / ((long) n * heads));
  q.a = (int) (r % n);
  q.hd = (int) (r / n % heads);
  q.y0 = wi / nw_w * ws;
  q.x0 = wi % nw_w * ws;
  q.la = si_swin_label (q.y0, q.x0, q.a, ws, hp, wp, shift);
  return q;
}

/* What the logit of query a, key b of head hd gets added in the window at
 * (y0, x0): the relative-position bias, and -100 between tokens of
 * different regions in shifted windows (la: a's si_swin_label). */
SI_HOSTDEV static inline float
si_swin_logit_bias (const float *table, int heads, const SiSwinRow *q, int b,
    int ws, int hp, int wp, int shift)
{
  float v = table[(long) si_swin_rel_index (q->a, b, ws) * heads + q->hd];
  if (shift > 0 && si_swin_label (q->y0, q->x0, b, ws, hp, wp, shift) != q->la)
    v += -100.0f;
  return v;
}

#endif /* SI_MATH_H */
