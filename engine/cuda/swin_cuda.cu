/* swin_cuda.cu: CUDA twin of swin_cpu.c (model-spec 3.3): window
 * partition and merge-add over NHWC fp32 token maps, the windows' bias +
 * mask + softmax (one warp per row), the 2x2 patch-merging unfold, bias +
 * GELU.  Index arithmetic from si-math.h, shared with the CPU.  One
 * thread per output element elsewhere, consecutive threads on
 * consecutive channels.
 */
#include "backend_cuda.h"

#include <math.h>

#include "si-math.h"

__global__ void
window_partition_kernel (
    const float *x, int h, int w, int c, int ws, int shift, float *win)
{
  int hp = si_swin_padded (h, ws), wp = si_swin_padded (w, ws), nw_w = wp / ws;
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) hp * wp * c)
    return;
  int k = (int) (t % c), sy, sx;
  si_swin_row_coords (t / c, ws, nw_w, &sy, &sx);
  int py = si_swin_unroll (sy, shift, hp), px = si_swin_unroll (sx, shift, wp);
  win[t] = py < h && px < w ? x[((size_t) py * w + px) * c + k] : 0.0f;
}

__global__ void
window_merge_add_kernel (
    const float *win, int h, int w, int c, int ws, int shift, float *x)
{
  int hp = si_swin_padded (h, ws), wp = si_swin_padded (w, ws), nw_w = wp / ws;
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) h * w * c)
    return;
  int k = (int) (t % c);
  long p = t / c;
  int py = (int) (p / w), px = (int) (p % w);
  long r = si_swin_row (si_swin_roll_back (py, shift, hp),
      si_swin_roll_back (px, shift, wp), ws, nw_w);
  x[t] += win[(size_t) r * c + k];
}

/* One warp per row of n = ws^2 logits. */
__global__ void
window_softmax_kernel (float *logits, const float *table, int nw_h, int nw_w,
    int heads, int ws, int shift, long rows)
{
  int n = ws * ws, hp = nw_h * ws, wp = nw_w * ws;
  long r = ((long) blockIdx.x * blockDim.x + threadIdx.x) / 32;
  int lane = threadIdx.x % 32;
  if (r >= rows)
    return;
  SiSwinRow q = si_swin_logit_row (r, heads, nw_w, ws, hp, wp, shift);
  float *l = logits + (size_t) r * n;
  float mx = -INFINITY, sum = 0.0f;
  for (int b = lane; b < n; b += 32) {
    float v =
        l[b] + si_swin_logit_bias (table, heads, &q, b, ws, hp, wp, shift);
    l[b] = v;
    mx = fmaxf (mx, v);
  }
  for (int o = 16; o > 0; o /= 2)
    mx = fmaxf (mx, __shfl_xor_sync (0xffffffffu, mx, o));
  for (int b = lane; b < n; b += 32) {
    float e = expf (l[b] - mx);
    l[b] = e;
    sum += e;
  }
  for (int o = 16; o > 0; o /= 2)
    sum += __shfl_xor_sync (0xffffffffu, sum, o);
  for (int b = lane; b < n; b += 32)
    l[b] /= sum;
}

__global__ void
patch_merge_kernel (const float *x, int h, int w, int c, float *y)
{
  int ho = h / 2, wo = w / 2;
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) ho * wo * 4 * c)
    return;
  int f = (int) (t % (4 * c)), k = f / 4, q = f % 4;
  long p = t / (4 * c);
  int i = (int) (p / wo), j = (int) (p % wo);
  y[t] = x[((size_t) (2 * i + q / 2) * w + 2 * j + q % 2) * c + k];
}

__global__ void
bias_gelu_kernel (float *y, const float *bias, int rows, int n)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) rows * n)
    return;
  y[t] = si_gelu (y[t] + bias[t % n]);
}

void
si_window_partition_cuda (SiBackend *be, const float *x, int h, int w, int c,
    int ws, int shift, float *win)
{
  long total = (long) si_swin_padded (h, ws) * si_swin_padded (w, ws) * c;
  if (total <= 0)
    return;
  window_partition_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (x, h, w, c, ws, shift, win);
  SI_CUDA_LAUNCHED (be, "window_partition_kernel");
}

void
si_window_merge_add_cuda (SiBackend *be, const float *win, int h, int w, int c,
    int ws, int shift, float *x)
{
  long total = (long) h * w * c;
  if (total <= 0)
    return;
  window_merge_add_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (win, h, w, c, ws, shift, x);
  SI_CUDA_LAUNCHED (be, "window_merge_add_kernel");
}

void
si_window_softmax_cuda (SiBackend *be, float *logits, const float *table,
    int nw_h, int nw_w, int heads, int ws, int shift)
{
  long rows = (long) nw_h * nw_w * heads * ws * ws;
  if (rows <= 0)
    return;
  window_softmax_kernel<<<si_cuda_blocks (rows * 32, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (
      logits, table, nw_h, nw_w, heads, ws, shift, rows);
  SI_CUDA_LAUNCHED (be, "window_softmax_kernel");
}

void
si_patch_merge_cuda (
    SiBackend *be, const float *x, int h, int w, int c, float *y)
{
  long total = (long) (h / 2) * (w / 2) * 4 * c;
  if (total <= 0)
    return;
  patch_merge_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (x, h, w, c, y);
  SI_CUDA_LAUNCHED (be, "patch_merge_kernel");
}

void
si_bias_gelu_cuda (SiBackend *be, float *y, const float *bias, int rows, int n)
{
  long total = (long) rows * n;
  if (total <= 0)
    return;
  bias_gelu_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (y, bias, rows, n);
  SI_CUDA_LAUNCHED (be, "bias_gelu_kernel");
}
