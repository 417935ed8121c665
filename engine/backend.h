/* backend.h: the backend table.  A backend is one struct of function
 * pointers (SiBackendOps) plus its private state; the model code (net.c,
 * backbone.c, neck.c, decoder*.c, postprocess.c) calls only this table and
 * never #ifdefs on CUDA.  engine/cpu/ implements it with plain loops,
 * oneDNN and BLAS; engine/cuda/ mirrors it op for op with kernels and
 * cuBLAS.  All float pointers passed to ops are backend memory (device
 * memory for CUDA) obtained from ops->alloc.  Ops are stream-ordered:
 * they may return before the work is done; sync() reports errors.
 *
 * Activation layout: feature maps are NHWC (batch 1: (H, W, C)), the same
 * on every backend; the dump converts to NCHW for the golden names.
 */
#ifndef SI_BACKEND_H
#define SI_BACKEND_H

#include "model.h"
#include "net.h"

#include <string.h>

typedef struct _SiBackend SiBackend;
typedef struct _SiConvPlan SiConvPlan; /* backend-owned prepared conv */
typedef struct _SiBackendOps SiBackendOps;

/* Row-major GEMM: C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C.
 * The column-major mapping for cuBLAS / cblas lives in gemm.h only. */
typedef struct
{
  bool trans_a, trans_b;
  int m, n, k;
  float alpha, beta;
  const float *a;
  int lda;
  const float *b;
  int ldb;
  float *c;
  int ldc;
} SiGemm;

/* The GEMM of a Linear layer (W stored (out, in)): y (rows, l->out; row
 * stride ldy) = x (rows, l->in; row stride ldx) W^T + beta y; the bias is
 * the caller's (gemm_bias_act). */
static inline SiGemm
si_linear_gemm (const SiLinear *l, const float *x, int ldx, int rows, float *y,
    int ldy, float beta)
{
  SiGemm g = { .trans_a = false,
    .trans_b = true,
    .m = rows,
    .n = l->out,
    .k = l->in,
    .alpha = 1.0f,
    .beta = beta,
    .a = x,
    .lda = ldx,
    .b = l->w,
    .ldb = l->in,
    .c = y,
    .ldc = ldy };
  return g;
}

/* One slice of split_columns: columns [col0, col0 + cols) of the source
 * into dst (rows, cols), through the sigmoid when sigmoid. */
typedef struct
{
  float *dst;
  int col0, cols;
  bool sigmoid;
} SiColumnSlice;
#define SI_MAX_COLUMN_SLICES 8

struct _SiBackendOps
{
  const char *name;

  /* lifetime */
  gboolean (*init) (
      SiBackend *be, const SiContextOptions *options, GError **error);
  void (*destroy) (SiBackend *be);

  /* memory */
  void *(*alloc) (SiBackend *be, size_t bytes, GError **error);
  void (*free) (SiBackend *be, void *ptr);
  gboolean (*upload) (
      SiBackend *be, void *dst, const void *src, size_t bytes, GError **error);
  gboolean (*download) (
      SiBackend *be, void *dst, const void *src, size_t bytes, GError **error);
  gboolean (*sync) (SiBackend *be, GError **error);
  /* Frame memory (si_frame_memory_alloc): host blocks that resize_frame
   * reads without staging, not tied to a backend instance.  NULL: the
   * backend reads frames where they are (the CPU), plain memory serves.
   * frame_memory_free returns FALSE when mem is not one of its blocks. */
  void *(*frame_memory_alloc) (size_t bytes, GError **error);
  gboolean (*frame_memory_free) (void *mem);

  /* ---- ops: each has a CPU twin in engine/cpu/ and a CUDA twin ----
   * The sections below are filled by the modules that use them; keep one
   * op family per section. */

  /* GEMM family (gemm) */
  void (*gemm) (SiBackend *be, const SiGemm *g);
  /* Batched GEMM with constant strides between matrices. */
  void (*gemm_batched) (SiBackend *be, const SiGemm *g, int batch,
      long stride_a, long stride_b, long stride_c);
  /* The GEMM, then bias (g->n values, one per column of C) added to its
   * m rows and ReLU when relu: c = act (alpha a op (b) + beta c + bias), a
   * Linear layer (with beta 1, onto a residual).  CPU: gemm + bias_act;
   * CUDA: one cuBLASLt call with the bias in the epilogue where the device
   * has a kernel for it, else the same two passes. */
  void (*gemm_bias_act) (
      SiBackend *be, const SiGemm *g, const float *bias, bool relu);

  /* ---- image side: preprocessing, backbone, neck ----
   * (engine/cpu/preprocess_cpu.c, conv_cpu.c, pool_cpu.c, norm_cpu.c,
   * layout_cpu.c).  Shapes: H, W frame or map size, C channels. */

  /* Frame (host memory, any SiPixelFormat) -> RGB uint8 (new_h, new_w, 3)
   * resized with OpenCV's fixed-point INTER_LINEAR (model-spec 2.2).
   * work: backend memory of si_preprocess_work_size() bytes (YUV -> RGB
   * staging at frame size, resize tables); a CUDA backend stages the frame
   * itself. */
  gboolean (*resize_frame) (SiBackend *be, const SiFrame *frame,
      const SiImageInfo *info, void *work, uint8_t *rgb, GError **error);
  /* rgb (new_h, new_w, 3) -> out (pad_h, pad_w, 3) = lut[c][rgb], zero in
   * the bottom/right padding.  lut: (3, 256) float, RGB order. */
  void (*normalize_pad) (SiBackend *be, const uint8_t *rgb,
      const SiImageInfo *info, const float *lut, float *out);

  /* Convolution with BN folded: a plan holds the weights in the backend's
   * layout (made once at si_net_new).
   * Map layout: conv2d and maxpool3x3s2 read and write maps in the
   * backend's own map layout, which is NHWC fp32 except that a backend may
   * keep maps whose C is a multiple of 16 blocked as (C/16, H, W, 16) (the
   * CPU's oneDNN path does) or as NHWC half (the CUDA backend in fp16
   * does); a map with another C (the 3-channel network input) is always
   * NHWC fp32.  Buffers are sized for H*W*C floats either way.
   * map_to_nhwc converts a map to NHWC fp32 at the end, map_from_nhwc
   * the other way (NULL: the backend is always NHWC fp32). */
  SiConvPlan *(*conv_prepare) (
      SiBackend *be, const SiConv *conv, GError **error);
  void (*conv_release) (SiBackend *be, SiConvPlan *plan);
  /* y (Ho, Wo, cout) = [ReLU] (conv (x (H, W, cin)) + b [+ y]).
   * accumulate adds y's previous content (the residual) before the ReLU;
   * Ho = (H + 2 pad - kh) / stride + 1. */
  gboolean (*conv2d) (SiBackend *be, SiConvPlan *plan, const float *x, int h,
      int w, float *y, bool accumulate, bool relu, GError **error);
  /* Max pool 3x3, stride 2, pad 1: x (H, W, C) -> y (Ho, Wo, C). */
  void (*maxpool3x3s2) (
      SiBackend *be, const float *x, int h, int w, int c, float *y);
  /* GroupNorm over NHWC with a per-channel bias added first:
   * t = x (HW, C) + bias (C); statistics per group of C/groups channels
   * over all HW pixels; y = (t - mean) / sqrt (var + eps) * gamma + beta.
   * In place (y == x) allowed. */
  void (*group_norm) (SiBackend *be, const float *x, int hw, int c, int groups,
      const float *bias, const float *gamma, const float *beta, float eps,
      float *y);
  /* dst (H, W, C) NHWC = src (H, W, C) in the map layout; dst != src. */
  void (*map_to_nhwc) (
      SiBackend *be, const float *src, int h, int w, int c, float *dst);
  /* dst (H, W, C) in the map layout = src (H, W, C) NHWC fp32; dst != src. */
  void (*map_from_nhwc) (
      SiBackend *be, const float *src, int h, int w, int c, float *dst);
  /* Bytes a map (H, W, C) takes in the map layout, what copying it takes
   * (NULL: H*W*C floats). */
  size_t (*map_bytes) (SiBackend *be, int h, int w, int c);
  /* Backend-to-backend copy of bytes. */
  void (*copy) (SiBackend *be, void *dst, const void *src, size_t bytes);
  /* dst (cols, rows) = src (rows, cols)^T, e.g. NCHW (C, HW) -> NHWC. */
  void (*transpose) (
      SiBackend *be, const float *src, int rows, int cols, float *dst);
  /* Deformable im2col of a 3x3, pad 1 DCNv1 conv (model-spec 3.2) for
   * the output pixels p0 .. p0 + np - 1 (row-major over (Ho, Wo)):
   * cols (np, C * 9), column c * 9 + k (tap k = i * 3 + j) = x_c sampled
   * bilinearly (si_dcn_taps) at py = ho * stride - 1 + i + dy,
   * px = wo * stride - 1 + j + dx, where (dy, dx) = offset (ho, wo)
   * [(g * 9 + k) * 2 + {0, 1}] for the channel's deform group
   * g = c / (C / deform_groups).  x (H, W, C) and offset (Ho, Wo,
   * 18 * deform_groups) are in the map layout.  A GEMM with the conv's
   * (cout, C / groups * 9) weight finishes the conv (backbone.c). */
  void (*deform_im2col) (SiBackend *be, const float *x, int h, int w, int c,
      const float *offset, int ho, int wo, int stride, int deform_groups,
      long p0, int np, float *cols);

  /* Swin (model-spec 3.3; engine/cpu/swin_cpu.c).  Token maps are NHWC
   * fp32 (H, W, C) on every backend; windows are ws x ws, the map padded
   * (bottom / right, zeros) to Hp = ceil (H / ws) ws by Wp, rolled by
   * -shift in both axes (si_swin_* in si-math.h), windows row-major over
   * (Hp / ws, Wp / ws) and tokens row-major inside a window.  NULL on a
   * backend without Swin support. */
  /* win (nW * ws * ws, C) = the padded, rolled x (H, W, C) by windows. */
  void (*window_partition) (SiBackend *be, const float *x, int h, int w, int c,
      int ws, int shift, float *win);
  /* x (H, W, C) += the windows win (nW * ws * ws, C) rolled back by
   * +shift, the padding dropped. */
  void (*window_merge_add) (SiBackend *be, const float *win, int h, int w,
      int c, int ws, int shift, float *x);
  /* logits (nW, heads, ws^2, ws^2) of the windows of an (Hp, Wp) =
   * (nw_h ws, nw_w ws) map: += table ((2 ws - 1)^2, heads) at the tokens'
   * relative offset, += -100 between tokens of different regions of the
   * rolled map when shift > 0; then softmax over each row, in place. */
  void (*window_softmax) (SiBackend *be, float *logits, const float *table,
      int nw_h, int nw_w, int heads, int ws, int shift);
  /* y (H/2 * W/2, 4C) [c * 4 + dy * 2 + dx] = x (H, W, C) at (2i + dy,
   * 2j + dx), channel c (the 2x2 unfold of patch merging). */
  void (*patch_merge) (
      SiBackend *be, const float *x, int h, int w, int c, float *y);
  /* y (rows, n) = GELU (y + bias (n)), exact erf GELU, in place. */
  void (*bias_gelu) (
      SiBackend *be, float *y, const float *bias, int rows, int n);

  /* ---- decoder side (see decoder.h; CPU twins in engine/cpu/
   * decoder_misc_cpu.c, attention_cpu.c, sampler_cpu.c, mixing_cpu.c,
   * declared in engine/cpu/decoder_cpu.h).  Legend: N queries, C content,
   * G groups, Dg = C/G, P points, K sub-points, R = P*K, Ha heads,
   * B = N*G (query, group) pairs. ---- */

  /* y (rows, n) = LN(x + res) * gamma + beta, then ReLU when relu.
   * res NULL: no residual; gamma NULL: no affine (beta ignored); y may
   * alias x or res.  eps 1e-5. */
  void (*layer_norm) (SiBackend *be, const float *x, const float *res,
      const float *gamma, const float *beta, float *y, int rows, int n,
      bool relu);
  /* y (rows, n; row stride ld) += bias (n), then ReLU when relu. */
  void (*bias_act) (SiBackend *be, float *y, const float *bias, int rows, int n,
      int ld, bool relu);
  /* x (n) = sigmoid (x), in place. */
  void (*sigmoid) (SiBackend *be, float *x, long n);
  /* src (rows, ld) -> each slice's dst (rows, cols), row-major, as
   * SiColumnSlice says; at most SI_MAX_COLUMN_SLICES slices, the
   * destinations apart from src and from each other. */
  void (*split_columns) (SiBackend *be, const float *src, int rows, int ld,
      const SiColumnSlice *slices, int n_slices);
  /* dst[b * dst_stride + i] = src[b * src_stride + i], i < n, b < batch. */
  void (*copy_batched) (SiBackend *be, float *dst, long dst_stride,
      const float *src, long src_stride, long n, int batch);
  /* Initial boxes (model-spec 5): cxcywh (N, 4) normalised -> xyzr (N, 4)
   * and xyxy (N, 4) for an img_w x img_h (unpadded) image. */
  void (*init_boxes) (SiBackend *be, const float *cxcywh, int n, float img_w,
      float img_h, float *xyzr, float *xyxy);
  /* a (N, C) = q (N, C) + PosEnc (xyzr (N, 4))  (model-spec 6.2). */
  void (*posenc_add) (
      SiBackend *be, const float *xyzr, const float *q, float *a, int n, int c);
  /* bias (Ha, N, N) = log (IoF (i, j) + 1e-7) * tau[h]  (model-spec 6.3). */
  void (*iof_bias) (SiBackend *be, const float *xyzr, const float *tau,
      float *bias, int n, int heads);
  /* logits (rows, n) += bias (rows, n), then softmax over each row, in
   * place (rows = Ha * N for attention). */
  void (*softmax_bias) (
      SiBackend *be, float *logits, const float *bias, int rows, int n);
  /* The biased multi-head self-attention (model-spec 6.3, 6.4): for each
   * head h < heads, with Q_h, K_h, V_h the columns [h*hd, (h+1)*hd) of q,
   * k and v (N rows each, row stride ld),
   *   out[:, h*hd..] = softmax (Q_h K_h^T / sqrt (hd) + bias_h) V_h,
   * bias_h = iof_bias's head h (out: row stride ldo).  scratch: 2 * heads
   * * N * N floats the backend may use (self_attention.h, the four ops
   * above, uses them for the logits and the bias). */
  void (*self_attention) (SiBackend *be, const float *q, const float *k,
      const float *v, int ld, const float *xyzr, const float *tau, float *out,
      int ldo, int n, int heads, int hd, float *scratch);
  /* Sampling points (model-spec 6.5): off1 (N, G*P*3), off2 (N, K*3),
   * xyzr (N, 4) -> pts (N, G, P, K, 3) holding X, Y, Z. */
  void (*sample_points) (SiBackend *be, const float *xyzr, const float *off1,
      const float *off2, float *pts, int n, int g, int p, int k);
  /* Level-weighted bilinear sampling: pts (N, G, R, 3), levels[l] NHWC
   * (h[l], w[l], G*Dg) with stride strides[l] -> out (N, G, R, Dg). */
  void (*sample_features) (SiBackend *be, const float *pts,
      const float *const levels[SI_NUM_LEVELS], const int h[SI_NUM_LEVELS],
      const int w[SI_NUM_LEVELS], const int strides[SI_NUM_LEVELS], int n,
      int g, int r, int dg, float *out);
  /* For each b < batch: X_b (rows, cols) at x + b*rows*cols gets the bias
   * at bias + b*bias_stride added (bias[j] per column, or bias[i] per row
   * when per_row), then X_b = ReLU (LN2D (X_b)) over all rows*cols values,
   * no affine, eps 1e-5 (model-spec 6.6 (b), (d), (e)). */
  void (*ln2d_bias_relu) (SiBackend *be, float *x, const float *bias,
      long bias_stride, bool per_row, int batch, int rows, int cols);
  /* ln2d_bias_relu on X_b (p*k rows, cols), which also writes the result
   * with its row axes swapped, swapped (B, K, P, cols) (= swap_axes of x
   * afterwards: the static axis layer's input, model-spec 6.6 (d)). */
  void (*ln2d_bias_relu_swap) (SiBackend *be, float *x, const float *bias,
      long bias_stride, bool per_row, int batch, int p, int k, int cols,
      float *swapped);
  /* dst (B, Y, X, Z) = src (B, X, Y, Z) with axes 1 and 2 swapped. */
  void (*swap_axes) (SiBackend *be, const float *src, float *dst, int batch,
      int x, int y, int z);
  /* u (B, P, K, Dg) = (lc (B, P, K, Dg) + axt^T) + res, where axt is
   * (B, K, P, Dg): the cascade residual of model-spec 6.6 (d).  u may
   * alias res. */
  void (*cascade_residual) (SiBackend *be, const float *lc, const float *axt,
      const float *res, float *u, int batch, int p, int k, int dg);
  /* Gated filter mix (model-spec 6.6 (d)), for b < batch, (i, j) < (rows,
   * cols), with a_b = old + b*old_stride, n_b = new + b*new_stride,
   * rg = rowgate + b*rg_stride + i*rg_inc, cg = colgate + b*cg_stride +
   * j*cg_inc (gates already through the sigmoid):
   *   t = a[i][j] * rg + n[i][j] * (1 - rg)
   *   out[b][i][j] = t * cg + n[i][j] * (1 - cg)     out (batch, rows, cols) */
  void (*gate_mix) (SiBackend *be, const float *old, long old_stride,
      const float *new_, long new_stride, const float *rowgate, long rg_stride,
      int rg_inc, const float *colgate, long cg_stride, int cg_inc, float *out,
      int batch, int rows, int cols);
  /* xyzr_out (N, 4) = refine (xyzr (N, 4), delta (N, 4)) and xyxy (N, 4) =
   * decode (xyzr_out) (model-spec 6.9).  xyzr_out may alias xyzr. */
  void (*refine_boxes) (SiBackend *be, const float *xyzr, const float *delta,
      float *xyzr_out, float *xyxy, int n);
  /* Top k of sigmoid (logits (n)): scores (k) descending, idx (k) flat
   * indices, ties lower index first.  scratch: n * 8 bytes. */
  void (*topk_sigmoid) (SiBackend *be, const float *logits, int n, int k,
      float *scores, int32_t *idx, void *scratch);

  /* ---- record and replay (optional: NULL where unsupported, e.g. the
   * CPU; the CUDA twins are CUDA graphs in engine/cuda/backend_cuda.c) ----
   * Between capture_begin and capture_end the ops issued on @be are
   * recorded instead of run; nothing in between may sync, download,
   * upload or alloc (those fail, and capture_end then fails too).
   * capture_end returns the recording (NULL with @error set on failure);
   * graph_launch replays it, stream-ordered, with the pointers and the
   * by-value arguments it was recorded with (the caller re-records when
   * one of them changes); errors of the replayed work come back from the
   * next sync() or download().  graph_free takes NULL. */
  gboolean (*capture_begin) (SiBackend *be, GError **error);
  void *(*capture_end) (SiBackend *be, GError **error); /* a graph */
  gboolean (*graph_launch) (SiBackend *be, void *graph, GError **error);
  void (*graph_free) (SiBackend *be, void *graph);
};

struct _SiBackend
{
  const SiBackendOps *ops;
  SiBackendKind kind;
  void *priv; /* backend state */
};

/* Row-major c_h (m, n) = alpha a_h op (b_h) for h < batch, x_h = x + h *
 * sx, op (b) = b^T (stored (n, k)) when trans_b, else b (k, n); one gemm
 * when batch is 1.  (Field by field: nvcc's C++ reads this header too.) */
static inline void
si_backend_product (SiBackend *be, int batch, bool trans_b, int m, int n, int k,
    float alpha, const float *a, int lda, long sa, const float *b, int ldb,
    long sb, float *c, int ldc, long sc)
{
  SiGemm g;

  memset (&g, 0, sizeof (g));
  g.trans_b = trans_b;
  g.m = m;
  g.n = n;
  g.k = k;
  g.alpha = alpha;
  g.a = a;
  g.lda = lda;
  g.b = b;
  g.ldb = ldb;
  g.c = c;
  g.ldc = ldc;
  if (batch == 1)
    be->ops->gemm (be, &g);
  else
    be->ops->gemm_batched (be, &g, batch, sa, sb, sc);
}

/* Creates and initialises a backend of the given kind (not AUTO). */
SiBackend *si_backend_new (
    SiBackendKind kind, const SiContextOptions *options, GError **error);
void si_backend_free (SiBackend **be);
/* si_frame_memory_alloc / _free of si-engine.h: the backend's blocks
 * (CUDA: pinned) or, for a backend without its own, 64-byte aligned
 * plain memory. */
void *si_backend_frame_memory_alloc (
    SiBackendKind kind, size_t bytes, GError **error);
void si_backend_frame_memory_free (void *mem);
/* The end of a timed part: with @ms, waits for @be and sets *ms to the
 * milliseconds since *t0 (g_get_monotonic_time), which restarts; without
 * (no timings wanted), no wait either, so the next part's work queues
 * behind this one's. */
gboolean si_backend_lap (SiBackend *be, gint64 *t0, double *ms, GError **error);

extern const SiBackendOps si_cpu_backend_ops;

/* The CUDA backend is a separate shared module (libsi-engine-cuda.so,
 * linked against cudart and cuBLAS), loaded with dlopen by the first
 * si_backend_new (SI_BACKEND_CUDA): merely linking cuBLAS costs every
 * process ~150 MiB of resident memory, CPU-only users included.  The
 * module exports one function, SI_CUDA_MODULE_ENTRY, which checks that it
 * was built from the same engine (SiCudaModuleAbi) and returns its table.
 * Where the module is looked for: $SI_CUDA_MODULE (a file), then the build
 * tree, then the install directory (engine/meson.build). */
#define SI_CUDA_MODULE_ENTRY "si_cuda_module_ops"

/* The name of the SI_ERROR quark: the engine and the module each define
 * si_error_quark () from it, which gives one error domain per process. */
#define SI_ERROR_QUARK_NAME "si-engine-error-quark"

typedef struct
{
  const char *version; /* SI_VERSION */
  size_t ops_size, backend_size, model_size, stage_size;
} SiCudaModuleAbi;

#define SI_CUDA_MODULE_ABI_INIT                                                \
  {                                                                            \
    SI_VERSION, sizeof (SiBackendOps), sizeof (SiBackend), sizeof (SiModel),   \
        sizeof (SiStage)                                                       \
  }

typedef const SiBackendOps *(*SiCudaModuleEntry) (
    const SiCudaModuleAbi *engine_abi, char *why, size_t why_size);

/* Programs that link the CUDA backend's code into themselves (the CUDA
 * parity tests, which call its ops directly) hand its table to the engine
 * here, so that the engine uses that copy instead of loading the module. */
void si_backend_use_linked_cuda (const SiBackendOps *ops);

#ifdef SI_HAVE_CUDA
extern const SiBackendOps si_cuda_backend_ops;
#endif

#endif /* SI_BACKEND_H */
