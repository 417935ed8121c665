/* attention_cuda.cu: CUDA twin of attention_cpu.c: the log-IoF
 * box-relation bias (model-spec 6.3), the biased row softmax of the
 * multi-head self-attention (6.4), and the self-attention as one kernel
 * (bias, logits, softmax and the product with V; one launch instead of
 * four, and no (heads, N, N) round trips through memory), which falls
 * back to the four ops of self_attention.h for heads wider than it holds.
 * The projections are Linears (cuBLAS) called by the decoder.
 */
#include "backend_cuda.h"
#include "reduce.cuh"
#include "self_attention.h"
#include "si-math.h"

/* bias (Ha, N, N): one thread per (i, j), i = attending query. */
__global__ void
iof_bias_kernel (
    const float *xyzr, const float *tau, float *bias, int n, int heads)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) n * n)
    return;
  int i = (int) (t / n), j = (int) (t % n);
  float bi[4], bj[4], lg;
  si_decode_box (xyzr + 4 * i, bi);
  si_decode_box (xyzr + 4 * j, bj);
  lg = si_log_iof (bi, bj);
  for (int h = 0; h < heads; h++)
    bias[((size_t) h * n + i) * n + j] = lg * tau[h];
}

void
si_iof_bias_cuda (SiBackend *be, const float *xyzr, const float *tau,
    float *bias, int n, int heads)
{
  long total = (long) n * n;
  if (total <= 0)
    return;
  iof_bias_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (xyzr, tau, bias, n, heads);
  SI_CUDA_LAUNCHED (be, "iof_bias_kernel");
}

/* One block per row: l += b, then softmax over the row, in place. */
__global__ void
softmax_bias_kernel (float *logits, const float *bias, int n)
{
  float *l = logits + (size_t) blockIdx.x * n;
  const float *b = bias ? bias + (size_t) blockIdx.x * n : NULL;
  float mx = -INFINITY, sum = 0.0f;

  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float v = b ? l[j] + b[j] : l[j];
    l[j] = v;
    mx = fmaxf (mx, v);
  }
  mx = si_block_max (mx);
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float e = expf (l[j] - mx);
    l[j] = e;
    sum += e;
  }
  sum = si_block_sum (sum);
  for (int j = threadIdx.x; j < n; j += blockDim.x)
    l[j] /= sum;
}

void
si_softmax_bias_cuda (
    SiBackend *be, float *logits, const float *bias, int rows, int n)
{
  if (rows <= 0 || n <= 0)
    return;
  softmax_bias_kernel<<<rows, 128, 0, si_cuda_priv (be)->stream>>> (
      logits, bias, n);
  SI_CUDA_LAUNCHED (be, "softmax_bias_kernel");
}

/* The fused self-attention: a warp per (query i, head h), eight queries of
 * one head a block, keys in chunks of 32 staged in shared memory (one key
 * per lane for the logits, then each lane sums V's column(s) of its
 * own over the chunk's weights), the softmax kept online (running max and sum, rescaled per
 * chunk) so that any N fits. */
#define SI_ATTN_QUERIES 8
#define SI_ATTN_CHUNK 32
#define SI_ATTN_MAX_HD 128

__global__ void
self_attention_kernel (const float *q, const float *k, const float *v, int ld,
    const float *xyzr, const float *tau, float *out, int ldo, int n, int hd,
    float scale)
{
  /* +1: lane j reads row j of ks, so the rows fall in different banks */
  __shared__ float ks[SI_ATTN_CHUNK][SI_ATTN_MAX_HD + 1];
  __shared__ float vs[SI_ATTN_CHUNK][SI_ATTN_MAX_HD];
  __shared__ float qs[SI_ATTN_QUERIES][SI_ATTN_MAX_HD];
  __shared__ float ps[SI_ATTN_QUERIES][SI_ATTN_CHUNK]; /* a warp's weights */
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, h = blockIdx.y;
  int i = blockIdx.x * SI_ATTN_QUERIES + warp;
  /* a warp past the last query shadows it, so that every thread of the
   * block takes part in the barriers and shuffles; it writes nothing */
  int qi = i < n ? i : n - 1;
  float bi[4], th = tau[h], mx = -INFINITY, sum = 0.0f;
  float acc[SI_ATTN_MAX_HD / 32];

  for (int d = lane; d < hd; d += 32)
    qs[warp][d] = q[(size_t) qi * ld + h * hd + d];
  for (int t = 0; t < SI_ATTN_MAX_HD / 32; t++)
    acc[t] = 0.0f;
  si_decode_box (xyzr + 4 * qi, bi);

  for (int base = 0; base < n; base += SI_ATTN_CHUNK) {
    int count = min (SI_ATTN_CHUNK, n - base), j = base + lane;
    float l = -INFINITY, p = 0.0f, cmx, nmx, corr;

    __syncthreads (); /* the previous chunk is read (and qs written) */
    for (int e = threadIdx.x; e < count * hd; e += blockDim.x) {
      int r = e / hd, d = e % hd;
      size_t at = (size_t) (base + r) * ld + h * hd + d;
      ks[r][d] = k[at];
      vs[r][d] = v[at];
    }
    __syncthreads ();

    if (lane < count) {
      float dot = 0.0f, bj[4];
      for (int d = 0; d < hd; d++)
        dot += qs[warp][d] * ks[lane][d];
      si_decode_box (xyzr + 4 * j, bj);
      l = dot * scale + si_log_iof (bi, bj) * th;
    }
    cmx = si_warp_max (l);
    nmx = fmaxf (mx, cmx);
    /* exp (-inf - -inf) would be NaN: a first chunk rescales nothing */
    corr = mx == -INFINITY ? 0.0f : expf (mx - nmx);
    if (lane < count)
      p = expf (l - nmx);
    sum = sum * corr + si_warp_sum (p);
    for (int t = 0; t < SI_ATTN_MAX_HD / 32; t++)
      acc[t] *= corr;
    /* every lane needs every key's weight: through shared memory, one
     * warp barrier rather than a shuffle per key (the previous chunk's
     * reads of ps ended at the loop's first barrier) */
    ps[warp][lane] = p;
    __syncwarp ();
    for (int jj = 0; jj < count; jj++) {
      float pj = ps[warp][jj];
      for (int t = 0; t < SI_ATTN_MAX_HD / 32; t++) {
        int d = lane + 32 * t;
        if (d < hd)
          acc[t] += pj * vs[jj][d];
      }
    }
    mx = nmx;
  }
  if (i < n)
    for (int t = 0; t < SI_ATTN_MAX_HD / 32; t++) {
      int d = lane + 32 * t;
      if (d < hd)
        out[(size_t) i * ldo + h * hd + d] = acc[t] / sum;
    }
}

void
si_self_attention_cuda (SiBackend *be, const float *q, const float *k,
    const float *v, int ld, const float *xyzr, const float *tau, float *out,
    int ldo, int n, int heads, int hd, float *scratch)
{
  SiCudaBackend *cu = si_cuda_priv (be);
  dim3 grid ((n + SI_ATTN_QUERIES - 1) / SI_ATTN_QUERIES, heads);

  if (n <= 0 || heads <= 0 || hd <= 0)
    return;
  if (!cu->fused_attention || hd > SI_ATTN_MAX_HD) {
    si_self_attention_composed (
        be, q, k, v, ld, xyzr, tau, out, ldo, n, heads, hd, scratch);
    return;
  }
  self_attention_kernel<<<grid, SI_ATTN_QUERIES * 32, 0, cu->stream>>> (
      q, k, v, ld, xyzr, tau, out, ldo, n, hd, 1.0f / sqrtf ((float) hd));
  SI_CUDA_LAUNCHED (be, "self_attention_kernel");
}
