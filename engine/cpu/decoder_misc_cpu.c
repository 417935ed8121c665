/* decoder_misc_cpu.c: CPU reference of the small decoder ops: LayerNorm
 * (+ residual, affine or not, + ReLU), bias + activation, sigmoid, batched
 * copies, initial boxes, positional encoding, box refinement and the
 * sigmoid top-k of the post-processing.  Plain loops (the CPU backend is
 * the reference); per-element math comes from si-math.h.
 */
#include "decoder_cpu.h"
#include "si-math.h"

#include <stdlib.h>
#include <string.h>

void
si_layer_norm_cpu (SiBackend *be, const float *x, const float *res,
    const float *gamma, const float *beta, float *y, int rows, int n, bool relu)
{
  SI_OMP (omp parallel for schedule (static) if (rows * n > 65536))
  for (int i = 0; i < rows; i++) {
    const float *xi = x + (size_t) i * n;
    float *yi = y + (size_t) i * n;
    float mean, rstd;

    if (res) {
      const float *ri = res + (size_t) i * n;
      SI_OMP (omp simd)
      for (int j = 0; j < n; j++)
        yi[j] = xi[j] + ri[j];
      xi = yi;
    }
    si_cpu_mean_rstd (xi, n, &mean, &rstd);
    if (gamma) {
      SI_OMP (omp simd)
      for (int j = 0; j < n; j++) {
        float v = (xi[j] - mean) * rstd * gamma[j] + beta[j];
        yi[j] = relu ? si_relu (v) : v;
      }
    } else {
      SI_OMP (omp simd)
      for (int j = 0; j < n; j++) {
        float v = (xi[j] - mean) * rstd;
        yi[j] = relu ? si_relu (v) : v;
      }
    }
  }
}

void
si_bias_act_cpu (SiBackend *be, float *y, const float *bias, int rows, int n,
    int ld, bool relu)
{
  SI_OMP (omp parallel for schedule (static) if ((long) rows * n > 16384))
  for (int i = 0; i < rows; i++) {
    float *yi = y + (size_t) i * ld;
    if (relu) {
      SI_OMP (omp simd)
      for (int j = 0; j < n; j++)
        yi[j] = si_relu (yi[j] + bias[j]);
    } else {
      SI_OMP (omp simd)
      for (int j = 0; j < n; j++)
        yi[j] += bias[j];
    }
  }
}

void
si_sigmoid_cpu (SiBackend *be, float *x, long n)
{
  SI_OMP (omp parallel for schedule (static) if (n > 16384))
  for (long i = 0; i < n; i++)
    x[i] = si_sigmoidf (x[i]);
}

void
si_split_columns_cpu (SiBackend *be, const float *src, int rows, int ld,
    const SiColumnSlice *slices, int n_slices)
{
  for (int s = 0; s < n_slices; s++) {
    const SiColumnSlice *sl = &slices[s];
    for (int r = 0; r < rows; r++) {
      const float *in = src + (size_t) r * ld + sl->col0;
      float *out = sl->dst + (size_t) r * sl->cols;
      for (int j = 0; j < sl->cols; j++)
        out[j] = sl->sigmoid ? si_sigmoidf (in[j]) : in[j];
    }
  }
}

void
si_copy_batched_cpu (SiBackend *be, float *dst, long dst_stride,
    const float *src, long src_stride, long n, int batch)
{
  SI_OMP (omp parallel for schedule (static) if (n * batch > 16384))
  for (int b = 0; b < batch; b++)
    memcpy (dst + b * dst_stride, src + b * src_stride, n * sizeof (float));
}

void
si_init_boxes_cpu (SiBackend *be, const float *cxcywh, int n, float img_w,
    float img_h, float *xyzr, float *xyxy)
{
  for (int i = 0; i < n; i++) {
    si_init_box (cxcywh + 4 * i, img_w, img_h, xyzr + 4 * i);
    si_decode_box (xyzr + 4 * i, xyxy + 4 * i);
  }
}

/* a (N, C) = q + pe: 4 blocks of C/4 (x/1000, y/1000, z, r), sin/cos
 * interleaved inside a block. */
void
si_posenc_add_cpu (
    SiBackend *be, const float *xyzr, const float *q, float *a, int n, int c)
{
  int nf = c / 4;
  float dim_t[nf];

  for (int j = 0; j < nf; j++)
    dim_t[j] = si_posenc_dim_t (j, nf);
  for (int i = 0; i < n; i++) {
    const float *b = xyzr + 4 * i;
    float v[4] = { b[0] / 1000.0f, b[1] / 1000.0f, b[2], b[3] };
    for (int k = 0; k < 4; k++) {
      for (int j = 0; j < nf; j++) {
        float t = v[k] / dim_t[j];
        size_t o = (size_t) i * c + k * nf + j;
        a[o] = q[o] + ((j & 1) ? cosf (t) : sinf (t));
      }
    }
  }
}

void
si_refine_boxes_cpu (SiBackend *be, const float *xyzr, const float *delta,
    float *xyzr_out, float *xyxy, int n)
{
  for (int i = 0; i < n; i++) {
    float t[4];
    si_refine_box (xyzr + 4 * i, delta + 4 * i, t);
    memcpy (xyzr_out + 4 * i, t, sizeof (t));
    si_decode_box (t, xyxy + 4 * i);
  }
}

typedef struct
{
  float score;
  int32_t idx;
} ScoreIdx;

/* score descending, then index ascending: a strict total order. */
static int
score_idx_cmp (const void *pa, const void *pb)
{
  const ScoreIdx *a = pa, *b = pb;
  if (a->score != b->score)
    return a->score > b->score ? -1 : 1;
  return (a->idx > b->idx) - (a->idx < b->idx);
}

void
si_topk_sigmoid_cpu (SiBackend *be, const float *logits, int n, int k,
    float *scores, int32_t *idx, void *scratch)
{
  ScoreIdx *s = scratch;

  for (int i = 0; i < n; i++) {
    s[i].score = si_topk_score (logits[i]);
    s[i].idx = i;
  }
  qsort (s, n, sizeof (ScoreIdx), score_idx_cmp);
  for (int i = 0; i < k && i < n; i++) {
    scores[i] = s[i].score;
    idx[i] = s[i].idx;
  }
}
