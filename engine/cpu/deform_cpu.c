/* deform_cpu.c: the deformable im2col of DCNv1 (model-spec 3.2) on the
 * CPU, reading maps in the backend's layout (blocked (C/16, H, W, 16) or
 * NHWC); the sampling arithmetic is si-math.h's, shared with the CUDA twin.
 */
#include "backend_cpu.h"

#include "si-math.h"

/* Offset of channel ch of pixel p in a map of c channels and hw pixels. */
static inline size_t
map_index (bool blocked, size_t hw, int c, size_t p, int ch)
{
  if (blocked)
    return ((size_t) (ch >> 4) * hw + p) * 16 + (size_t) (ch & 15);
  return p * (size_t) c + (size_t) ch;
}

/* Channels of one run of the gather: contiguous at a pixel in both
 * layouts (a run never crosses a 16-channel block of the blocked layout). */
#define RUN 16

void
si_deform_im2col_cpu (SiBackend *be, const float *x, int h, int w, int c,
    const float *offset, int ho, int wo, int stride, int deform_groups, long p0,
    int np, float *cols)
{
  static const float zeros[RUN]; /* the value of a tap outside the map */
  int n_off = 18 * deform_groups, cg = c / deform_groups;
  bool xb = si_cpu_map_blocked (be, c), ob = si_cpu_map_blocked (be, n_off);
  size_t hw = (size_t) h * w, howo = (size_t) ho * wo;

  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (int t = 0; t < np; t++) {
    size_t p = (size_t) (p0 + t);
    int oy = (int) (p / (size_t) wo), ox = (int) (p % (size_t) wo);
    float *col = cols + (size_t) t * c * 9;
    for (int g = 0; g < deform_groups; g++) {
      int idx[9][4], c1 = (g + 1) * cg;
      float wt[9][4];
      for (int k = 0; k < 9; k++) {
        int ch = (g * 9 + k) * 2;
        float dy = offset[map_index (ob, howo, n_off, p, ch)];
        float dx = offset[map_index (ob, howo, n_off, p, ch + 1)];
        si_dcn_taps (si_dcn_coord (oy, stride, k / 3, dy),
            si_dcn_coord (ox, stride, k % 3, dx), h, w, idx[k], wt[k]);
      }
      /* per run of channels: the 9 taps' values, tap-major (vectorised
       * over the channels), then written channel-major as the columns
       * want: col[ci * 9 + k] */
      for (int ci = g * cg; ci < c1;) {
        int run = MIN (xb ? RUN - (ci & (RUN - 1)) : RUN, c1 - ci);
        float tmp[9][RUN];
        for (int k = 0; k < 9; k++) {
          const float *s[4];
          for (int q = 0; q < 4; q++)
            s[q] = idx[k][q] < 0
                ? zeros
                : x + map_index (xb, hw, c, (size_t) idx[k][q], ci);
          for (int j = 0; j < run; j++) {
            float v[4] = { s[0][j], s[1][j], s[2][j], s[3][j] };
            tmp[k][j] = si_dcn_mix (wt[k], v);
          }
        }
        for (int j = 0; j < run; j++)
          for (int k = 0; k < 9; k++)
            col[(size_t) (ci + j) * 9 + k] = tmp[k][j];
        ci += run;
      }
    }
  }
}
