/* backend_cpu.h: the CPU backend's private state and the signatures of its
 * ops (one op family per file in engine/cpu/), gathered into the table by
 * backend_cpu.c.  Internal to engine/.
 */
#ifndef SI_BACKEND_CPU_H
#define SI_BACKEND_CPU_H

#include "backend.h"
#include "gemm.h"

typedef struct
{
  int num_threads;
  /* TRUE: plain-loop reference paths only (no oneDNN), for tests. */
  bool reference;
  /* TRUE: the fast path keeps every map NHWC (no blocked layout). */
  bool nhwc_maps;
  /* FALSE: no Winograd for 3x3 stride-1 convs (SI_CPU_WINOGRAD=0). */
  bool winograd;
  /* Winograd only for 3x3 convs with cin * cout <= this (its weights are
   * 4x larger: layer4's would cost ~85 MiB more for little time) */
  long winograd_max_cc;
  void *dnnl_engine; /* dnnl_engine_t, NULL without oneDNN */
  void *dnnl_stream; /* dnnl_stream_t */
  void *scratch; /* oneDNN scratchpad + NCHW input copy, shared by every conv */
  size_t scratch_bytes;
} SiCpuBackend;

static inline SiCpuBackend *
si_cpu_priv (SiBackend *be)
{
  return (SiCpuBackend *) be->priv;
}

/* OpenMP's thread count is per calling thread: the ops that start a frame
 * or a parallel library call re-apply num_threads in the running thread
 * (a context may be created in one thread and run in another). */
void si_cpu_apply_threads (SiBackend *be);

/* Selects the plain-loop reference implementations (tests). */
void si_cpu_backend_set_reference (SiBackend *be, bool reference);

/* Forces NHWC maps on the fast path too (e.g. to compare conv2d outputs
 * of the fast path with NHWC twins directly); also SI_CPU_NHWC_MAPS=1.
 * Slower: no Winograd. */
void si_cpu_backend_set_nhwc_maps (SiBackend *be, bool nhwc);

/* TRUE when maps of c channels are kept blocked (c/16, H, W, 16): the
 * oneDNN path with c % 16 == 0 (see "Map layout" in backend.h). */
bool si_cpu_map_blocked (SiBackend *be, int c);

/* gemm_cpu.c */
void si_cpu_sgemm_col_major (const SiGemmColMajor *cm);
void si_gemm_cpu (SiBackend *be, const SiGemm *g);
void si_gemm_batched_cpu (SiBackend *be, const SiGemm *g, int batch,
    long stride_a, long stride_b, long stride_c);
void si_gemm_bias_act_cpu (
    SiBackend *be, const SiGemm *g, const float *bias, bool relu);

/* preprocess_cpu.c */
gboolean si_resize_frame_cpu (SiBackend *be, const SiFrame *frame,
    const SiImageInfo *info, void *work, uint8_t *rgb, GError **error);
void si_normalize_pad_cpu (SiBackend *be, const uint8_t *rgb,
    const SiImageInfo *info, const float *lut, float *out);

/* conv_cpu.c */
SiConvPlan *si_conv_prepare_cpu (
    SiBackend *be, const SiConv *conv, GError **error);
void si_conv_release_cpu (SiBackend *be, SiConvPlan *plan);
gboolean si_conv2d_cpu (SiBackend *be, SiConvPlan *plan, const float *x, int h,
    int w, float *y, bool accumulate, bool relu, GError **error);
/* oneDNN's name of the kernel of the plan's last run ("jit:avx512_core";
 * " (NHWC copies)" appended when the conv ran on NHWC copies of blocked
 * maps); NULL when it ran the plain-loop path or has not run. */
const char *si_conv_impl_cpu (const SiConvPlan *plan);
/* The plain-loop reference convolution (always available). */
void si_conv2d_reference (const SiConv *conv, const float *x, int h, int w,
    float *y, bool accumulate, bool relu);

/* deform_cpu.c */
void si_deform_im2col_cpu (SiBackend *be, const float *x, int h, int w, int c,
    const float *offset, int ho, int wo, int stride, int deform_groups, long p0,
    int np, float *cols);

/* swin_cpu.c */
void si_window_partition_cpu (SiBackend *be, const float *x, int h, int w,
    int c, int ws, int shift, float *win);
void si_window_merge_add_cpu (SiBackend *be, const float *win, int h, int w,
    int c, int ws, int shift, float *x);
void si_window_softmax_cpu (SiBackend *be, float *logits, const float *table,
    int nw_h, int nw_w, int heads, int ws, int shift);
void si_patch_merge_cpu (
    SiBackend *be, const float *x, int h, int w, int c, float *y);
void si_bias_gelu_cpu (
    SiBackend *be, float *y, const float *bias, int rows, int n);

/* pool_cpu.c */
void si_maxpool3x3s2_cpu (
    SiBackend *be, const float *x, int h, int w, int c, float *y);

/* norm_cpu.c */
void si_group_norm_cpu (SiBackend *be, const float *x, int hw, int c,
    int groups, const float *bias, const float *gamma, const float *beta,
    float eps, float *y);

/* layout_cpu.c */
void si_map_to_nhwc_cpu (
    SiBackend *be, const float *src, int h, int w, int c, float *dst);
void si_map_from_nhwc_cpu (
    SiBackend *be, const float *src, int h, int w, int c, float *dst);
void si_copy_cpu (SiBackend *be, void *dst, const void *src, size_t bytes);
void si_transpose_cpu (
    SiBackend *be, const float *src, int rows, int cols, float *dst);

#endif /* SI_BACKEND_CPU_H */
