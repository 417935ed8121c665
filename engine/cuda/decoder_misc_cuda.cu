/* decoder_misc_cuda.cu: CUDA twin of decoder_misc_cpu.c: LayerNorm (+
 * residual, affine or not, + ReLU), bias + activation, sigmoid, batched
 * copies, initial boxes, positional encoding, box refinement and the
 * sigmoid top-k of the post-processing.  Per-element math from si-math.h,
 * the same functions the CPU reference calls.
 */
#include "backend_cuda.h"
#include "half.cuh"
#include "reduce.cuh"
#include "si-math.h"

#include <cuda_fp16.h>
#include <string.h>

#define SI_LN_THREADS 256

/* One block per row: y (rows, n) = LN (x + res) [* gamma + beta] [ReLU].
 * Each thread only touches its own columns, so y may alias x or res. */
__global__ void
layer_norm_kernel (const float *x, const float *res, const float *gamma,
    const float *beta, float *y, int n, bool relu)
{
  size_t row = (size_t) blockIdx.x * n;
  const float *xi = x + row;
  const float *ri = res ? res + row : NULL;
  float *yi = y + row;
  double sum = 0.0, sq = 0.0;
  float mean, rstd;

  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float v = ri ? xi[j] + ri[j] : xi[j];
    yi[j] = v;
    sum += v;
  }
  mean = (float) (si_block_sum (sum) / n);
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    double d = yi[j] - mean;
    sq += d * d;
  }
  rstd = (float) (1.0 / sqrt (si_block_sum (sq) / n + 1e-5));
  for (int j = threadIdx.x; j < n; j += blockDim.x) {
    float v = (yi[j] - mean) * rstd;
    if (gamma)
      v = v * gamma[j] + beta[j];
    yi[j] = relu ? si_relu (v) : v;
  }
}

void
si_layer_norm_cuda (SiBackend *be, const float *x, const float *res,
    const float *gamma, const float *beta, float *y, int rows, int n, bool relu)
{
  if (rows <= 0 || n <= 0)
    return;
  layer_norm_kernel<<<rows, SI_LN_THREADS, 0, si_cuda_priv (be)->stream>>> (
      x, res, gamma, beta, y, n, relu);
  SI_CUDA_LAUNCHED (be, "layer_norm_kernel");
}

/* y + bias in fp32, stored as y's type: for a half y (the fallback of a
 * convolution that writes a half map) a second rounding after the GEMM's
 * own, where the fused epilogue rounds once */
template <typename T>
static __device__ __forceinline__ void
bias_act_thread (T *y, const T *bias, int rows, int n, int ld, bool relu)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) rows * n)
    return;
  int i = (int) (t / n), j = (int) (t % n);
  T *p = y + (size_t) i * ld + j;
  float v = si_to_float (*p) + si_to_float (bias[j]);
  si_store (p, relu ? si_relu (v) : v);
}

__global__ void
bias_act_kernel (
    float *y, const float *bias, int rows, int n, int ld, bool relu)
{
  bias_act_thread (y, bias, rows, n, ld, relu);
}

__global__ void
bias_act_half_kernel (
    __half *y, const __half *bias, int rows, int n, int ld, bool relu)
{
  bias_act_thread (y, bias, rows, n, ld, relu);
}

void
si_bias_act_cuda (SiBackend *be, float *y, const float *bias, int rows, int n,
    int ld, bool relu)
{
  long total = (long) rows * n;
  if (total <= 0)
    return;
  bias_act_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (y, bias, rows, n, ld, relu);
  SI_CUDA_LAUNCHED (be, "bias_act_kernel");
}

void
si_bias_act_half_cuda (SiBackend *be, void *y, const void *bias, int rows,
    int n, int ld, bool relu)
{
  long total = (long) rows * n;
  if (total <= 0)
    return;
  bias_act_half_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (
      (__half *) y, (const __half *) bias, rows, n, ld, relu);
  SI_CUDA_LAUNCHED (be, "bias_act_half_kernel");
}

__global__ void
sigmoid_kernel (float *x, long n)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t < n)
    x[t] = si_sigmoidf (x[t]);
}

void
si_sigmoid_cuda (SiBackend *be, float *x, long n)
{
  if (n <= 0)
    return;
  sigmoid_kernel<<<si_cuda_blocks (n, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (x, n);
  SI_CUDA_LAUNCHED (be, "sigmoid_kernel");
}

/* The slices by value (a kernel parameter); width = the sum of their
 * columns, one thread per (row, slice column). */
struct SiColumnSlices
{
  SiColumnSlice s[SI_MAX_COLUMN_SLICES];
  int n, width;
};

__global__ void
split_columns_kernel (const float *src, int rows, int ld, SiColumnSlices sl)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) rows * sl.width)
    return;
  int r = (int) (t / sl.width), j = (int) (t % sl.width), i = 0;
  while (j >= sl.s[i].cols)
    j -= sl.s[i++].cols;
  const SiColumnSlice *c = &sl.s[i];
  float v = src[(long) r * ld + c->col0 + j];
  c->dst[(long) r * c->cols + j] = c->sigmoid ? si_sigmoidf (v) : v;
}

void
si_split_columns_cuda (SiBackend *be, const float *src, int rows, int ld,
    const SiColumnSlice *slices, int n_slices)
{
  SiColumnSlices sl;
  SiCudaBackend *cu = si_cuda_priv (be);

  memset (&sl, 0, sizeof (sl));
  if (n_slices < 0 || n_slices > SI_MAX_COLUMN_SLICES) {
    if (cu->deferred == NULL)
      g_set_error (&cu->deferred, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "split_columns: %d slices (at most %d)", n_slices,
          SI_MAX_COLUMN_SLICES);
    return;
  }
  for (int i = 0; i < n_slices; i++)
    if (slices[i].cols > 0)
      sl.s[sl.n++] = slices[i];
  for (int i = 0; i < sl.n; i++)
    sl.width += sl.s[i].cols;
  if (rows <= 0 || sl.width == 0)
    return;
  split_columns_kernel<<<si_cuda_blocks ((long) rows * sl.width, 256), 256, 0,
      cu->stream>>> (src, rows, ld, sl);
  SI_CUDA_LAUNCHED (be, "split_columns_kernel");
}

void
si_copy_batched_cuda (SiBackend *be, float *dst, long dst_stride,
    const float *src, long src_stride, long n, int batch)
{
  cudaStream_t s = si_cuda_priv (be)->stream;

  if (n <= 0 || batch <= 0)
    return;
  if (batch == 1 || (dst_stride >= n && src_stride >= n))
    SI_CUDA_DEFER (be,
        cudaMemcpy2DAsync (dst,
            (size_t) (batch == 1 ? n : dst_stride) * sizeof (float), src,
            (size_t) (batch == 1 ? n : src_stride) * sizeof (float),
            (size_t) n * sizeof (float), batch, cudaMemcpyDeviceToDevice, s));
  else
    for (int b = 0; b < batch; b++)
      SI_CUDA_DEFER (be,
          cudaMemcpyAsync (dst + b * dst_stride, src + b * src_stride,
              (size_t) n * sizeof (float), cudaMemcpyDeviceToDevice, s));
  si_cuda_profile_mark (be, "copy_batched");
}

__global__ void
init_boxes_kernel (const float *cxcywh, int n, float img_w, float img_h,
    float *xyzr, float *xyxy)
{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  si_init_box (cxcywh + 4 * i, img_w, img_h, xyzr + 4 * i);
  si_decode_box (xyzr + 4 * i, xyxy + 4 * i);
}

void
si_init_boxes_cuda (SiBackend *be, const float *cxcywh, int n, float img_w,
    float img_h, float *xyzr, float *xyxy)
{
  if (n <= 0)
    return;
  init_boxes_kernel<<<si_cuda_blocks (n, 128), 128, 0,
      si_cuda_priv (be)->stream>>> (cxcywh, n, img_w, img_h, xyzr, xyxy);
  SI_CUDA_LAUNCHED (be, "init_boxes_kernel");
}

/* a (N, C) = q + pe: 4 blocks of C/4 (x/1000, y/1000, z, r), sin/cos
 * interleaved inside a block; one thread per element. */
__global__ void
posenc_add_kernel (const float *xyzr, const float *q, float *a, int n, int c)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) n * c)
    return;
  int i = (int) (t / c), col = (int) (t % c);
  int nf = c / 4, k = col / nf, j = col % nf;
  const float *b = xyzr + 4 * i;
  float v = k < 2 ? b[k] / 1000.0f : b[k];
  float arg = v / si_posenc_dim_t (j, nf);
  a[t] = q[t] + ((j & 1) ? cosf (arg) : sinf (arg));
}

void
si_posenc_add_cuda (
    SiBackend *be, const float *xyzr, const float *q, float *a, int n, int c)
{
  long total = (long) n * c;
  if (total <= 0)
    return;
  posenc_add_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (xyzr, q, a, n, c);
  SI_CUDA_LAUNCHED (be, "posenc_add_kernel");
}

__global__ void
refine_boxes_kernel (
    const float *xyzr, const float *delta, float *xyzr_out, float *xyxy, int n)
{
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n)
    return;
  float t[4];
  si_refine_box (xyzr + 4 * i, delta + 4 * i, t);
  for (int c = 0; c < 4; c++)
    xyzr_out[4 * i + c] = t[c];
  si_decode_box (t, xyxy + 4 * i);
}

void
si_refine_boxes_cuda (SiBackend *be, const float *xyzr, const float *delta,
    float *xyzr_out, float *xyxy, int n)
{
  if (n <= 0)
    return;
  refine_boxes_kernel<<<si_cuda_blocks (n, 128), 128, 0,
      si_cuda_priv (be)->stream>>> (xyzr, delta, xyzr_out, xyxy, n);
  SI_CUDA_LAUNCHED (be, "refine_boxes_kernel");
}

/* ---- top-k ----
 * Keys order (score desc, index asc) as one descending uint64: the score's
 * bits (sigmoid >= 0, so its IEEE bits are monotonic) high, the inverted
 * index low; all keys are distinct.  One block: an MSB-first radix select
 * (8 bits per pass) finds the k-th largest key, the keys >= it are gathered
 * into shared memory and bitonic-sorted. */

#define SI_TOPK_THREADS 1024
#define SI_TOPK_MAX 2048

__device__ __forceinline__ unsigned long long
topk_key (float score, int idx)
{
  unsigned int s = __float_as_uint (score);
  if (s & 0x80000000u) /* -0.0f: cannot come out of a sigmoid, map to 0 */
    s = 0;
  return ((unsigned long long) s << 32) | (0xffffffffu - (unsigned int) idx);
}

/* 1024 threads: the compiler must keep to 64 registers a thread, or the
 * launch fails (only on a device) */
__global__ void __launch_bounds__ (SI_TOPK_THREADS)
topk_kernel (const float *logits, int n, int k, float *scores, int32_t *idx,
    unsigned long long *keys)
{
  __shared__ unsigned int hist[256];
  __shared__ unsigned long long sel[SI_TOPK_MAX];
  __shared__ unsigned long long prefix, prefix_mask;
  __shared__ int remaining, count, found;

  for (int i = threadIdx.x; i < n; i += blockDim.x)
    keys[i] = topk_key (si_topk_score (logits[i]), i);
  if (threadIdx.x == 0) {
    prefix = 0;
    prefix_mask = 0;
    remaining = k;
    count = 0;
    found = 0;
  }
  __syncthreads ();

  for (int shift = 56; shift >= 0 && !found; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
      hist[b] = 0;
    __syncthreads ();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      unsigned long long key = keys[i];
      if ((key & prefix_mask) == prefix)
        atomicAdd (&hist[(key >> shift) & 0xff], 1u);
    }
    __syncthreads ();
    if (threadIdx.x == 0) {
      /* the digit (from the top) where the k-th largest key lies */
      int b = 255;
      unsigned int above = 0;
      while (b > 0 && above + hist[b] < (unsigned int) remaining)
        above += hist[b--];
      remaining -= above;
      prefix |= (unsigned long long) b << shift;
      prefix_mask |= 0xffull << shift;
      /* the whole digit is taken: the keys >= prefix (its lower bits 0)
       * are already exactly k; the usual case after the score's bytes,
       * without ties at the k-th score */
      found = hist[b] == (unsigned int) remaining;
    }
    __syncthreads ();
  }
  /* exactly k keys are >= prefix: the k-th largest key, or the lowest
   * key with the k-th largest's top bytes when found */
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    unsigned long long key = keys[i];
    if (key >= prefix) {
      int slot = atomicAdd (&count, 1);
      if (slot < SI_TOPK_MAX)
        sel[slot] = key;
    }
  }
  __syncthreads ();
  int m = 1;
  while (m < k)
    m <<= 1;
  for (int i = k + threadIdx.x; i < m; i += blockDim.x)
    sel[i] = 0; /* below every real key */
  __syncthreads ();
  /* bitonic sort of sel[0, m), descending */
  for (int size = 2; size <= m; size <<= 1) {
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = threadIdx.x; i < m; i += blockDim.x) {
        int j = i ^ stride;
        if (j > i) {
          bool desc = (i & size) == 0;
          unsigned long long a = sel[i], b = sel[j];
          if ((a < b) == desc) {
            sel[i] = b;
            sel[j] = a;
          }
        }
      }
      __syncthreads ();
    }
  }
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    unsigned long long key = sel[i];
    scores[i] = __uint_as_float ((unsigned int) (key >> 32));
    idx[i] = (int32_t) (0xffffffffu - (unsigned int) (key & 0xffffffffu));
  }
}

void
si_topk_sigmoid_cuda (SiBackend *be, const float *logits, int n, int k,
    float *scores, int32_t *idx, void *scratch)
{
  SiCudaBackend *cu = si_cuda_priv (be);

  if (k > n)
    k = n;
  if (k <= 0)
    return;
  if (k > SI_TOPK_MAX) {
    if (cu->deferred == NULL)
      g_set_error (&cu->deferred, SI_ERROR, SI_ERROR_UNSUPPORTED,
          "topk_sigmoid: k = %d is above the CUDA limit of %d", k, SI_TOPK_MAX);
    return;
  }
  topk_kernel<<<1, SI_TOPK_THREADS, 0, cu->stream>>> (
      logits, n, k, scores, idx, (unsigned long long *) scratch);
  SI_CUDA_LAUNCHED (be, "topk_kernel");
}
