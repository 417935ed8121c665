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

void
si_deform_im2col_cpu (SiBackend *be, const float *x, int h, int w, int c,
    const float *offset, int ho, int wo, int stride, int deform_groups, long p0,
    int np, float *cols)
{
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
      for (int k = 0; k < 9; k++) {
        int ch = (g * 9 + k) * 2, idx[4];
        float dy = offset[map_index (ob, howo, n_off, p, ch)];
        float dx = offset[map_index (ob, howo, n_off, p, ch + 1)];
        float wt[4];
        si_dcn_taps (si_dcn_coord (oy, stride, k / 3, dy),
            si_dcn_coord (ox, stride, k % 3, dx), h, w, idx, wt);
        for (int ci = g * cg; ci < (g + 1) * cg; ci++) {
          float v[4];
          for (int q = 0; q < 4; q++)
            v[q] = idx[q] < 0 ? 0.0f
                              : x[map_index (xb, hw, c, (size_t) idx[q], ci)];
          col[(size_t) ci * 9 + k] = si_dcn_mix (wt, v);
        }
      }
    }
  }
}
