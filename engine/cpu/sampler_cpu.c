/* sampler_cpu.c: CPU reference of the two-level feature sampler
 * (model-spec 6.5): sampling points from the box and the generated
 * offsets, then level-weighted bilinear grid_sample (zeros padding,
 * align_corners False) over the four NHWC neck levels, group g reading
 * channels [g*Dg, (g+1)*Dg).
 */
#include "decoder_cpu.h"
#include "si-math.h"

#include <string.h>

/* pts (N, G, P, K, 3) from xyzr (N, 4), off1 (N, G, P, 3), off2 (N, K, 3) */
void
si_sample_points_cpu (SiBackend *be, const float *xyzr, const float *off1,
    const float *off2, float *pts, int n, int g, int p, int k)
{
  for (int i = 0; i < n; i++)
    for (int gp = 0; gp < g * p; gp++)
      for (int kk = 0; kk < k; kk++)
        si_sample_point (xyzr + 4 * i, off1 + ((size_t) i * g * p + gp) * 3,
            off2 + ((size_t) i * k + kk) * 3,
            pts + (((size_t) i * g * p + gp) * k + kk) * 3);
}

/* Adds wl * bilinear (level, u, v) of channels [c0, c0 + dg) into acc;
 * corners outside the map contribute nothing (zeros padding). */
static void
accumulate_level (const float *level, int h, int w, int d, int c0, int dg,
    float u, float v, float wl, float *restrict acc)
{
  int x0, y0;
  float fx, fy, cw[4];

  /* no corner inside (also NaN, and keeps the int conversion defined) */
  if (!(u > -1.0f && u < (float) w && v > -1.0f && v < (float) h))
    return;
  x0 = (int) floorf (u);
  y0 = (int) floorf (v);
  fx = u - (float) x0;
  fy = v - (float) y0;
  cw[0] = (1.0f - fx) * (1.0f - fy);
  cw[1] = fx * (1.0f - fy);
  cw[2] = (1.0f - fx) * fy;
  cw[3] = fx * fy;
  for (int t = 0; t < 4; t++) {
    int cx = x0 + (t & 1), cy = y0 + (t >> 1);
    const float *restrict f;
    float wt = cw[t] * wl;
    if (cx < 0 || cx >= w || cy < 0 || cy >= h)
      continue;
    f = level + ((size_t) cy * w + cx) * d + c0;
    SI_OMP (omp simd)
    for (int c = 0; c < dg; c++)
      acc[c] += wt * f[c];
  }
}

/* Prefetches the corners of (u, v) on a level: the maps of the fine levels
 * are larger than the caches and the points of a query jump around. */
static inline void
prefetch_level (
    const float *level, int h, int w, int d, int c0, int dg, float u, float v)
{
  int x0, y0;

  if (!(u > -1.0f && u < (float) w && v > -1.0f && v < (float) h))
    return;
  x0 = (int) floorf (u);
  y0 = (int) floorf (v);
  for (int t = 0; t < 4; t++) {
    int cx = x0 + (t & 1), cy = y0 + (t >> 1);
    const char *f;
    if (cx < 0 || cx >= w || cy < 0 || cy >= h)
      continue;
    f = (const char *) (level + ((size_t) cy * w + cx) * d + c0);
    for (size_t b = 0; b < dg * sizeof (float); b += 64)
      __builtin_prefetch (f + b);
  }
}

void
si_sample_features_cpu (SiBackend *be, const float *pts,
    const float *const levels[SI_NUM_LEVELS], const int h[SI_NUM_LEVELS],
    const int w[SI_NUM_LEVELS], const int strides[SI_NUM_LEVELS], int n, int g,
    int r, int dg, float *out)
{
  int d = g * dg;

  SI_OMP (omp parallel for schedule (static))
  for (int ig = 0; ig < n * g; ig++) {
    int gg = ig % g;
    {
      for (int rr = 0; rr < r; rr++) {
        size_t row = (size_t) ig * r + rr;
        const float *pt = pts + row * 3;
        float *acc = out + row * dg;
        float wl[SI_NUM_LEVELS];

        if (rr + 1 < r)
          for (int l = 0; l < 2; l++)
            prefetch_level (levels[l], h[l], w[l], d, gg * dg, dg,
                si_grid_coord (pt[3], w[l], strides[l]),
                si_grid_coord (pt[4], h[l], strides[l]));
        si_level_weights (pt[2], wl);
        memset (acc, 0, dg * sizeof (float));
        for (int l = 0; l < SI_NUM_LEVELS; l++) {
          float u = si_grid_coord (pt[0], w[l], strides[l]);
          float v = si_grid_coord (pt[1], h[l], strides[l]);
          accumulate_level (
              levels[l], h[l], w[l], d, gg * dg, dg, u, v, wl[l], acc);
        }
      }
    }
  }
}
