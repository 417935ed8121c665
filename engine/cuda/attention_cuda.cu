/* attention_cuda.cu: CUDA twin of attention_cpu.c: the log-IoF
 * box-relation bias (model-spec 6.3) and the biased row softmax of the
 * multi-head self-attention (6.4).  The projections and the two attention
 * products are GEMMs (cuBLAS) called by the decoder.
 */
#include "backend_cuda.h"
#include "reduce.cuh"
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
