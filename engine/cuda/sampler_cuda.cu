/* sampler_cuda.cu: CUDA twin of sampler_cpu.c: the two-level feature
 * sampler (model-spec 6.5): sampling points from the box and the generated
 * offsets, then level-weighted bilinear grid_sample (zeros padding,
 * align_corners False) over the four NHWC neck levels, group g reading
 * channels [g*Dg, (g+1)*Dg).  Point and weight math from si-math.h.
 */
#include "backend_cuda.h"
#include "si-math.h"

/* pts (N, G, P, K, 3) from xyzr (N, 4), off1 (N, G, P, 3), off2 (N, K, 3):
 * one thread per point. */
__global__ void
sample_points_kernel (const float *xyzr, const float *off1, const float *off2,
    float *pts, int n, int gp, int k)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) n * gp * k)
    return;
  int kk = (int) (t % k);
  long igp = t / k; /* i * gp + (g * P + p) */
  int i = (int) (igp / gp);
  si_sample_point (xyzr + 4 * i, off1 + igp * 3,
      off2 + ((size_t) i * k + kk) * 3, pts + t * 3);
}

void
si_sample_points_cuda (SiBackend *be, const float *xyzr, const float *off1,
    const float *off2, float *pts, int n, int g, int p, int k)
{
  long total = (long) n * g * p * k;
  if (total <= 0)
    return;
  sample_points_kernel<<<si_cuda_blocks (total, 128), 128, 0,
      si_cuda_priv (be)->stream>>> (xyzr, off1, off2, pts, n, g * p, k);
  SI_CUDA_LAUNCHED (be, "sample_points_kernel");
}

typedef struct
{
  const float *level[SI_NUM_LEVELS];
  int h[SI_NUM_LEVELS], w[SI_NUM_LEVELS], stride[SI_NUM_LEVELS];
} SiLevels;

/* One thread per (row, channel); row = (n, g, r).  The threads of a row
 * share the point math and read consecutive channels (coalesced).  Same
 * summation order as the CPU: corners nw, ne, sw, se into val, then
 * acc += val * w_l over the levels 0..3. */
__global__ void
sample_features_kernel (
    const float *pts, SiLevels lv, long rows, int g, int r, int dg, float *out)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= rows * dg)
    return;
  int c = (int) (t % dg);
  long row = t / dg;
  int gg = (int) ((row / r) % g);
  int d = g * dg;
  const float *pt = pts + row * 3;
  float wl[SI_NUM_LEVELS], acc = 0.0f;

  si_level_weights (pt[2], wl);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    int h = lv.h[l], w = lv.w[l];
    float u = si_grid_coord (pt[0], w, lv.stride[l]);
    float v = si_grid_coord (pt[1], h, lv.stride[l]);
    /* no corner inside, also NaN: as the CPU twin; a device converts NaN
     * to 0 (x86, and so the emulation, to INT_MIN), which would sample */
    if (!(u > -1.0f && u < (float) w && v > -1.0f && v < (float) h))
      continue;
    int x0 = (int) floorf (u), y0 = (int) floorf (v);
    float fx = u - (float) x0, fy = v - (float) y0;
    float cw[4] = { (1.0f - fx) * (1.0f - fy), fx * (1.0f - fy),
      (1.0f - fx) * fy, fx * fy };
    int cx[4] = { x0, x0 + 1, x0, x0 + 1 };
    int cy[4] = { y0, y0, y0 + 1, y0 + 1 };
    float val = 0.0f;
    for (int q = 0; q < 4; q++) {
      if (cx[q] < 0 || cx[q] >= w || cy[q] < 0 || cy[q] >= h)
        continue;
      val +=
          cw[q] * lv.level[l][((size_t) cy[q] * w + cx[q]) * d + gg * dg + c];
    }
    acc += val * wl[l];
  }
  out[t] = acc;
}

void
si_sample_features_cuda (SiBackend *be, const float *pts,
    const float *const levels[SI_NUM_LEVELS], const int h[SI_NUM_LEVELS],
    const int w[SI_NUM_LEVELS], const int strides[SI_NUM_LEVELS], int n, int g,
    int r, int dg, float *out)
{
  SiLevels lv;
  long rows = (long) n * g * r;

  if (rows <= 0 || dg <= 0)
    return;
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    lv.level[l] = levels[l];
    lv.h[l] = h[l];
    lv.w[l] = w[l];
    lv.stride[l] = strides[l];
  }
  sample_features_kernel<<<si_cuda_blocks (rows * dg, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (pts, lv, rows, g, r, dg, out);
  SI_CUDA_LAUNCHED (be, "sample_features_kernel");
}
