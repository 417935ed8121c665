/* decoder_cpu.h: the CPU twins of the decoder-side ops of the backend
 * table (engine/backend.h, "decoder side"), implemented in
 * decoder_misc_cpu.c, attention_cpu.c, sampler_cpu.c and mixing_cpu.c.
 * SI_CPU_DECODER_OPS lists them as designated initializers for
 * si_cpu_backend_ops (backend_cpu.c).
 */
#ifndef SI_DECODER_CPU_H
#define SI_DECODER_CPU_H

#include "backend.h"

#include <math.h>

/* OpenMP pragmas when the build has OpenMP (threads over queries / groups,
 * simd reductions), nothing otherwise. */
#ifdef _OPENMP
#define SI_OMP(directive) _Pragma (#directive)
#else
#define SI_OMP(directive)
#endif

/* Mean and 1/sqrt(var + 1e-5) of x (n), biased variance, in one pass of
 * sums shifted by x[0] (no cancellation when |mean| >> std). */
static inline void
si_cpu_mean_rstd (const float *x, size_t n, float *mean, float *rstd)
{
  float s = x[0], sum = 0.0f, sq = 0.0f, m, var;

  SI_OMP (omp simd reduction (+ : sum, sq))
  for (size_t i = 0; i < n; i++) {
    float d = x[i] - s;
    sum += d;
    sq += d * d;
  }
  m = sum / (float) n;
  var = sq / (float) n - m * m;
  *mean = s + m;
  *rstd = 1.0f / sqrtf ((var > 0.0f ? var : 0.0f) + 1e-5f);
}

/* decoder_misc_cpu.c */
void si_layer_norm_cpu (SiBackend *be, const float *x, const float *res,
    const float *gamma, const float *beta, float *y, int rows, int n,
    bool relu);
void si_bias_act_cpu (SiBackend *be, float *y, const float *bias, int rows,
    int n, int ld, bool relu);
void si_sigmoid_cpu (SiBackend *be, float *x, long n);
void si_split_columns_cpu (SiBackend *be, const float *src, int rows, int ld,
    const SiColumnSlice *slices, int n_slices);
void si_copy_batched_cpu (SiBackend *be, float *dst, long dst_stride,
    const float *src, long src_stride, long n, int batch);
void si_init_boxes_cpu (SiBackend *be, const float *cxcywh, int n, float img_w,
    float img_h, float *xyzr, float *xyxy);
void si_posenc_add_cpu (
    SiBackend *be, const float *xyzr, const float *q, float *a, int n, int c);
void si_refine_boxes_cpu (SiBackend *be, const float *xyzr, const float *delta,
    float *xyzr_out, float *xyxy, int n);
void si_topk_sigmoid_cpu (SiBackend *be, const float *logits, int n, int k,
    float *scores, int32_t *idx, void *scratch);

/* attention_cpu.c */
void si_iof_bias_cpu (SiBackend *be, const float *xyzr, const float *tau,
    float *bias, int n, int heads);
void si_softmax_bias_cpu (
    SiBackend *be, float *logits, const float *bias, int rows, int n);
void si_self_attention_cpu (SiBackend *be, const float *q, const float *k,
    const float *v, int ld, const float *xyzr, const float *tau, float *out,
    int ldo, int n, int heads, int hd, float *scratch);

/* sampler_cpu.c */
void si_sample_points_cpu (SiBackend *be, const float *xyzr, const float *off1,
    const float *off2, float *pts, int n, int g, int p, int k);
void si_sample_features_cpu (SiBackend *be, const float *pts,
    const float *const levels[SI_NUM_LEVELS], const int h[SI_NUM_LEVELS],
    const int w[SI_NUM_LEVELS], const int strides[SI_NUM_LEVELS], int n, int g,
    int r, int dg, float *out);

/* mixing_cpu.c */
void si_ln2d_bias_relu_cpu (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int rows, int cols);
void si_ln2d_bias_relu_swap_cpu (SiBackend *be, float *x, const float *bias,
    long bias_stride, bool per_row, int batch, int p, int k, int cols,
    float *swapped);
void si_swap_axes_cpu (SiBackend *be, const float *src, float *dst, int batch,
    int x, int y, int z);
void si_cascade_residual_cpu (SiBackend *be, const float *lc, const float *axt,
    const float *res, float *u, int batch, int p, int k, int dg);
void si_gate_mix_cpu (SiBackend *be, const float *old, long old_stride,
    const float *new_, long new_stride, const float *rowgate, long rg_stride,
    int rg_inc, const float *colgate, long cg_stride, int cg_inc, float *out,
    int batch, int rows, int cols);

/* clang-format off */
#define SI_CPU_DECODER_OPS \
  .layer_norm = si_layer_norm_cpu, \
  .bias_act = si_bias_act_cpu, \
  .sigmoid = si_sigmoid_cpu, \
  .split_columns = si_split_columns_cpu, \
  .copy_batched = si_copy_batched_cpu, \
  .init_boxes = si_init_boxes_cpu, \
  .posenc_add = si_posenc_add_cpu, \
  .iof_bias = si_iof_bias_cpu, \
  .softmax_bias = si_softmax_bias_cpu, \
  .self_attention = si_self_attention_cpu, \
  .sample_points = si_sample_points_cpu, \
  .sample_features = si_sample_features_cpu, \
  .ln2d_bias_relu = si_ln2d_bias_relu_cpu, \
  .ln2d_bias_relu_swap = si_ln2d_bias_relu_swap_cpu, \
  .swap_axes = si_swap_axes_cpu, \
  .cascade_residual = si_cascade_residual_cpu, \
  .gate_mix = si_gate_mix_cpu, \
  .refine_boxes = si_refine_boxes_cpu, \
  .topk_sigmoid = si_topk_sigmoid_cpu
/* clang-format on */

#endif /* SI_DECODER_CPU_H */
