/* conv_cuda.cu: CUDA twin of conv_cpu.c: 2-D convolution on NHWC maps with
 * BN folded, as im2col + GEMM (through the backend's row-major mapping,
 * gemm.h), the residual accumulated by the GEMM (beta = 1 on y), bias and
 * ReLU in the GEMM's epilogue (cuBLASLt; a separate pass where the device
 * has no such kernel, or with SI_CUDA_FUSED_EPILOGUE=0).  1x1 / stride 1
 * convolutions are one GEMM on the input itself.  In fp16 the maps are
 * half (si_cuda_map_half; all but the 3-channel network input): weights,
 * im2col columns, inputs and outputs are half, the GEMM reads them on the
 * tensor cores with fp32 accumulation and rounds its output (after the
 * bias, the residual and the ReLU) to half once.  With SI_CUDA_HALF_MAPS=0
 * the maps stay fp32: im2col rounds to half as it gathers, the GEMMs
 * write fp32, and the direct 1x1 GEMMs read fp32 maps with
 * CUBLAS_COMPUTE_32F_FAST_16F.  The im2col buffer is the backend's fixed
 * workspace: large maps are done in slices of output pixels, so nothing is
 * allocated per frame.
 */
#include "backend_cuda.h"
#include "half.cuh"

#include <cuda_fp16.h>
#include <string.h>

struct _SiConvPlan
{
  SiConv conv; /* sizes (its views of the model are not read after prepare) */
  /* one GEMM on the input (1x1, stride 1, no padding, one group), no
   * im2col */
  bool direct;
  /* half weights (and, when not direct, im2col into half) */
  bool half;
  /* the input / output map is __half (si_cuda_map_half) */
  bool in_half, out_half;
  /* bias (+ ReLU) in the GEMM's epilogue (one group: one bias slice) */
  bool fused;
  /* (cout, kh*kw*cin_g) device, row order (ky, kx, ci), rows ldw apart:
   * __half when half, else float */
  void *w;
  int ldw;
  /* (cout) device, of the output's type (cuBLASLt's bias has D's type):
   * __half when out_half, else float */
  void *b;
};

/* Row pitch of the half operands (im2col columns, weights): a multiple
 * of 8 halves, 16 bytes, which the tensor-core kernels' loads need (the
 * stem's 7 x 7 x 3 = 147 taps are not); the extra columns are never
 * read (the GEMM's k stays the tap count). */
static int
half_pitch (int n)
{
  return (n + 7) / 8 * 8;
}

SiConvPlan *
si_conv_prepare_cuda (SiBackend *be, const SiConv *conv, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  int cin_g, kg;
  size_t n;
  float *wt, *wf, *bf;
  SiConvPlan *plan;
  __half *wh = NULL;
  int ldw;
  bool in_half = si_cuda_map_half (cu, conv->cin);
  bool out_half = si_cuda_map_half (cu, conv->cout);
  /* one GEMM cannot take fp32 operands to a half C: such a 1x1 converts
   * through im2col */
  bool direct = conv->kh == 1 && conv->kw == 1 && conv->stride == 1 &&
      conv->pad == 0 && conv->groups == 1 && (in_half || !out_half);
  bool half = cu->precision == SI_PRECISION_FP16 && (!direct || in_half);
  __half *bias_h = NULL;
  size_t w_bytes, b_bytes;
  const void *src, *b_src;

  SI_CUDA_TRY (cudaSetDevice (cu->device), error, NULL);
  if (conv->w == NULL || conv->cout <= 0 || conv->groups <= 0 ||
      conv->cin % conv->groups || conv->cout % conv->groups ||
      conv->stride <= 0 || conv->kh <= 0 || conv->kw <= 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
        "conv: bad geometry (cin %d cout %d groups %d k %dx%d stride %d)",
        conv->cin, conv->cout, conv->groups, conv->kh, conv->kw, conv->stride);
    return NULL;
  }
  cin_g = conv->cin / conv->groups;
  kg = conv->kh * conv->kw * cin_g;
  n = (size_t) conv->cout * kg;
  if ((size_t) kg * conv->groups > cu->conv_ws_floats) {
    g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
        "conv: %d x %d x %d taps exceed the CUDA im2col workspace", conv->kh,
        conv->kw, conv->cin);
    return NULL;
  }

  /* BN folded into host temporaries (the model keeps only the raw
   * views), then (cout, cin_g, kh, kw) -> (cout, kh, kw, cin_g) to match
   * im2col */
  wf = (float *) g_try_malloc ((n + conv->cout) * sizeof (float));
  wt = (float *) g_try_malloc (n * sizeof (float));
  if (wf == NULL || wt == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "conv: cannot allocate %zu floats to fold the weights",
        2 * n + conv->cout);
    g_free (wf);
    g_free (wt);
    return NULL;
  }
  bf = wf + n;
  si_conv_fold (conv, wf, bf);
  for (int co = 0; co < conv->cout; co++)
    for (int ci = 0; ci < cin_g; ci++)
      for (int ky = 0; ky < conv->kh; ky++)
        for (int kx = 0; kx < conv->kw; kx++)
          wt[(size_t) co * kg + (ky * conv->kw + kx) * cin_g + ci] =
              wf[(((size_t) co * cin_g + ci) * conv->kh + ky) * conv->kw + kx];
  src = wt;
  ldw = kg;
  w_bytes = n * sizeof (float);
  if (half) {
    ldw = half_pitch (kg);
    w_bytes = (size_t) conv->cout * ldw * sizeof (__half);
    if ((wh = (__half *) g_try_malloc0 (w_bytes)) == NULL) {
      g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
          "conv: cannot allocate %zu bytes for the half weights", w_bytes);
      g_free (wf);
      g_free (wt);
      return NULL;
    }
    for (int co = 0; co < conv->cout; co++)
      for (int i = 0; i < kg; i++)
        wh[(size_t) co * ldw + i] = __float2half (wt[(size_t) co * kg + i]);
    src = wh;
  }

  b_src = bf;
  b_bytes = conv->cout * sizeof (float);
  if (out_half) {
    b_bytes = conv->cout * sizeof (__half);
    if ((bias_h = (__half *) g_try_malloc (b_bytes)) == NULL) {
      g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
          "conv: cannot allocate the half bias");
      g_free (wf);
      g_free (wt);
      g_free (wh);
      return NULL;
    }
    for (int co = 0; co < conv->cout; co++)
      bias_h[co] = __float2half (bf[co]);
    b_src = bias_h;
  }

  plan = g_new0 (SiConvPlan, 1);
  plan->conv = *conv;
  plan->direct = direct;
  plan->half = half;
  plan->in_half = in_half;
  plan->out_half = out_half;
  plan->ldw = ldw;
  plan->fused = conv->groups == 1 && cu->fused_epilogue;
  plan->w = si_cuda_alloc (be, w_bytes, error);
  plan->b = plan->w ? si_cuda_alloc (be, b_bytes, error) : NULL;
  if (plan->b == NULL)
    goto fail;
  /* the backend's upload blocks: the host copies may go after it */
  if (!be->ops->upload (be, plan->w, src, w_bytes, error) ||
      !be->ops->upload (be, plan->b, b_src, b_bytes, error))
    goto fail;
  g_free (wt);
  g_free (wf);
  g_free (wh);
  g_free (bias_h);
  /* the raw pages the fold read are dead in this process now */
  si_conv_release_pages (conv);
  return plan;

fail:
  g_free (wt);
  g_free (wf);
  g_free (wh);
  g_free (bias_h);
  si_conv_release_cuda (be, plan);
  return NULL;
}

void
si_conv_release_cuda (SiBackend *be, SiConvPlan *plan)
{
  if (plan == NULL)
    return;
  si_cuda_free (be, plan->w);
  si_cuda_free (be, plan->b);
  g_free (plan);
}

/* Element t of the im2col matrix col (rows, groups*kg) for output pixels
 * [m0, m0 + rows): column g*kg + (ky*kw + kx)*cin_g + ci holds
 * x[iy][ix][g*cin_g + ci].  Returns its index in x, or -1 in the padding.
 * Consecutive t are consecutive input channels. */
__device__ __forceinline__ long
im2col_source (long t, int h, int w, int cin, int kh, int kw, int stride,
    int pad, int groups, int wo, long m0)
{
  int cin_g = cin / groups, kg = kh * kw * cin_g, kt = kg * groups;
  int q = (int) (t % kt);
  long m = m0 + t / kt;
  int g = q / kg, r = q % kg;
  int ci = r % cin_g, tap = r / cin_g;
  int ky = tap / kw, kx = tap % kw;
  int oy = (int) (m / wo), ox = (int) (m % wo);
  int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
  if (iy < 0 || iy >= h || ix < 0 || ix >= w)
    return -1;
  return ((long) iy * w + ix) * cin + g * cin_g + ci;
}

/* Thread t writes element t of col (n = rows * groups * kg), rows ld
 * apart: float from float, half from float (rounded) or from half. */
template <typename X, typename T>
static __device__ __forceinline__ void
im2col_thread (const X *x, int h, int w, int cin, int kh, int kw, int stride,
    int pad, int groups, int wo, long m0, long n, int ld, T *col)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= n)
    return;
  long kt = (long) kh * kw * (cin / groups) * groups;
  long src = im2col_source (t, h, w, cin, kh, kw, stride, pad, groups, wo, m0);
  T *p = &col[t / kt * ld + t % kt];
  if (src >= 0)
    si_store (p, x[src]);
  else
    si_store (p, 0.0f);
}

__global__ void
im2col_kernel (const float *x, int h, int w, int cin, int kh, int kw,
    int stride, int pad, int groups, int wo, long m0, long n, int ld,
    float *col)
{
  im2col_thread (x, h, w, cin, kh, kw, stride, pad, groups, wo, m0, n, ld, col);
}

__global__ void
im2col_half_kernel (const float *x, int h, int w, int cin, int kh, int kw,
    int stride, int pad, int groups, int wo, long m0, long n, int ld,
    __half *col)
{
  im2col_thread (x, h, w, cin, kh, kw, stride, pad, groups, wo, m0, n, ld, col);
}

__global__ void
im2col_half_map_kernel (const __half *x, int h, int w, int cin, int kh, int kw,
    int stride, int pad, int groups, int wo, long m0, long n, int ld,
    __half *col)
{
  im2col_thread (x, h, w, cin, kh, kw, stride, pad, groups, wo, m0, n, ld, col);
}

/* One GEMM of a convolution, g->c = act (g->a W^T + beta g->c + bias):
 * fused into the GEMM's epilogue (cuBLASLt) where the device has a kernel
 * for it, else the GEMM and then the bias pass over the rows it wrote. */
static void
conv_gemm (SiBackend *be, SiConvPlan *plan, const SiGemm *g, const void *bias,
    bool relu)
{
  if (plan->fused &&
      si_gemm_lt_bias_act_cuda (be, g, plan->half, plan->out_half, bias, relu))
    return;
  if (plan->half)
    si_gemm_half_cuda (be, g, plan->out_half);
  else
    si_gemm_cuda (be, g);
  if (plan->out_half)
    si_bias_act_half_cuda (be, g->c, bias, g->m, g->n, g->ldc, relu);
  else
    si_bias_act_cuda (be, g->c, (const float *) bias, g->m, g->n, g->ldc, relu);
}

gboolean
si_conv2d_cuda (SiBackend *be, SiConvPlan *plan, const float *x, int h, int w,
    float *y, bool accumulate, bool relu, GError **error)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  const SiConv *cv = &plan->conv;
  int ho = (h + 2 * cv->pad - cv->kh) / cv->stride + 1;
  int wo = (w + 2 * cv->pad - cv->kw) / cv->stride + 1;
  int cin_g = cv->cin / cv->groups, cout_g = cv->cout / cv->groups;
  int kg = cv->kh * cv->kw * cin_g, kt = kg * cv->groups;
  long m = (long) ho * wo;
  bool half = plan->half;
  size_t osz = plan->out_half ? sizeof (__half) : sizeof (float);
  const uint8_t *bias = (const uint8_t *) plan->b;
  SiGemm g;

  if (ho <= 0 || wo <= 0)
    return TRUE;
  memset (&g, 0, sizeof (g));
  g.trans_b = true; /* W (cout_g, kg) used as W^T */
  g.alpha = 1.0f;
  g.beta = accumulate ? 1.0f : 0.0f;
  g.ldb = plan->ldw;
  g.ldc = cv->cout;

  if (plan->direct) {
    /* y (HW, cout) = x (HW, cin) W^T */
    g.m = (int) m;
    g.n = cv->cout;
    g.k = cv->cin;
    g.a = x;
    g.lda = cv->cin;
    g.b = (const float *) plan->w;
    g.c = y;
    conv_gemm (be, plan, &g, bias, relu);
  } else {
    /* the workspace holds conv_ws_floats floats, or twice as many halves;
     * half rows are padded to the half pitch */
    int ld = half ? half_pitch (kt) : kt;
    long slice = (long) ((half ? 2 : 1) * cu->conv_ws_floats / ld);
    size_t esz = half ? sizeof (__half) : sizeof (float);
    for (long m0 = 0; m0 < m; m0 += slice) {
      long rows = MIN (slice, m - m0);
      uint8_t *ys = (uint8_t *) y + (size_t) m0 * cv->cout * osz;
      if (plan->in_half)
        im2col_half_map_kernel<<<si_cuda_blocks (rows * kt, 256), 256, 0,
            cu->stream>>> ((const __half *) x, h, w, cv->cin, cv->kh, cv->kw,
            cv->stride, cv->pad, cv->groups, wo, m0, rows * kt, ld,
            (__half *) cu->conv_ws);
      else if (half)
        im2col_half_kernel<<<si_cuda_blocks (rows * kt, 256), 256, 0,
            cu->stream>>> (x, h, w, cv->cin, cv->kh, cv->kw, cv->stride,
            cv->pad, cv->groups, wo, m0, rows * kt, ld, (__half *) cu->conv_ws);
      else
        im2col_kernel<<<si_cuda_blocks (rows * kt, 256), 256, 0, cu->stream>>> (
            x, h, w, cv->cin, cv->kh, cv->kw, cv->stride, cv->pad, cv->groups,
            wo, m0, rows * kt, ld, cu->conv_ws);
      SI_CUDA_TRY_FRAME (cu, cudaGetLastError (), error, FALSE);
      si_cuda_profile_mark (be, "im2col %dx%d/%d cin %d", cv->kh, cv->kw,
          cv->stride, cv->cin);
      for (int gi = 0; gi < cv->groups; gi++) {
        g.m = (int) rows;
        g.n = cout_g;
        g.k = kg;
        /* (for fp16 these point to halves: si_gemm_half_cuda) */
        g.a = (const float *) ((const uint8_t *) cu->conv_ws +
            (size_t) gi * kg * esz);
        g.lda = ld;
        g.b = (const float *) ((const uint8_t *) plan->w +
            (size_t) gi * cout_g * plan->ldw * esz);
        g.c = (float *) (ys + (size_t) gi * cout_g * osz);
        conv_gemm (be, plan, &g, bias + (size_t) gi * cout_g * osz, relu);
      }
    }
  }
  return si_cuda_take_deferred (cu, error);
}
