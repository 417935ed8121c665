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

/* Adds wl * bilinear (level, u, v) of channels [c0, c0 + dg) into acc. */
static void
accumulate_level (const float *level, int h, int w, int d, int c0, int dg,
    float u, float v, float wl, float *acc)
{
  int x0 = (int) floorf (u), y0 = (int) floorf (v);
  float fx = u - (float) x0, fy = v - (float) y0;
  float cw[4] = { (1.0f - fx) * (1.0f - fy), fx * (1.0f - fy), (1.0f - fx) * fy,
    fx * fy };
  int cx[4] = { x0, x0 + 1, x0, x0 + 1 };
  int cy[4] = { y0, y0, y0 + 1, y0 + 1 };
  float val[dg];

  memset (val, 0, sizeof (val));
  for (int t = 0; t < 4; t++) {
    const float *f;
    if (cx[t] < 0 || cx[t] >= w || cy[t] < 0 || cy[t] >= h)
      continue;
    f = level + ((size_t) cy[t] * w + cx[t]) * d + c0;
    SI_OMP (omp simd)
    for (int c = 0; c < dg; c++)
      val[c] += cw[t] * f[c];
  }
  SI_OMP (omp simd)
  for (int c = 0; c < dg; c++)
    acc[c] += val[c] * wl;
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
