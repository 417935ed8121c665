/* swin_cpu.c: the Swin backbone's own ops on the CPU (model-spec 3.3):
 * (shifted) window partition and its inverse with the residual add, the
 * windows' relative-position bias + mask + softmax, the 2x2 unfold of
 * patch merging, bias + GELU.  Index arithmetic from si-math.h, shared
 * with the CUDA twin.
 */
#include "backend_cpu.h"

#include <math.h>
#include <string.h>

#include "si-math.h"
#include "vector_math.h"

void
si_window_partition_cpu (SiBackend *be, const float *x, int h, int w, int c,
    int ws, int shift, float *win)
{
  int hp = si_swin_padded (h, ws), wp = si_swin_padded (w, ws), nw_w = wp / ws;
  long rows = (long) hp * wp;

  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (long r = 0; r < rows; r++) {
    int sy, sx;
    si_swin_row_coords (r, ws, nw_w, &sy, &sx);
    int py = si_swin_unroll (sy, shift, hp),
        px = si_swin_unroll (sx, shift, wp);
    float *o = win + (size_t) r * c;
    if (py < h && px < w)
      memcpy (o, x + ((size_t) py * w + px) * c, sizeof (float) * c);
    else
      memset (o, 0, sizeof (float) * c);
  }
}

void
si_window_merge_add_cpu (SiBackend *be, const float *win, int h, int w, int c,
    int ws, int shift, float *x)
{
  int hp = si_swin_padded (h, ws), wp = si_swin_padded (w, ws), nw_w = wp / ws;

  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (int py = 0; py < h; py++) {
    int sy = si_swin_roll_back (py, shift, hp);
    for (int px = 0; px < w; px++) {
      long r = si_swin_row (sy, si_swin_roll_back (px, shift, wp), ws, nw_w);
      const float *s = win + (size_t) r * c;
      float *o = x + ((size_t) py * w + px) * c;
#pragma omp simd
      for (int k = 0; k < c; k++)
        o[k] += s[k];
    }
  }
}

/* Per (window, head): the mask regions of the window's rows and columns
 * once, then per query row the bias row walked without divisions (the
 * arithmetic of si_swin_logit_bias, which the CUDA twin calls). */
void
si_window_softmax_cpu (SiBackend *be, float *logits, const float *table,
    int nw_h, int nw_w, int heads, int ws, int shift)
{
  int n = ws * ws, hp = nw_h * ws, wp = nw_w * ws, d = 2 * ws - 1;
  long pairs = (long) nw_h * nw_w * heads;

  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (long wh = 0; wh < pairs; wh++) {
    int wi = (int) (wh / heads), hd = (int) (wh % heads);
    int y0 = wi / nw_w * ws, x0 = wi % nw_w * ws;
    int ry[SI_SWIN_MAX_WINDOW], rx[SI_SWIN_MAX_WINDOW];
    for (int t = 0; t < ws; t++) {
      ry[t] = si_swin_region (y0 + t, hp, ws, shift);
      rx[t] = si_swin_region (x0 + t, wp, ws, shift);
    }
    for (int a = 0; a < n; a++) {
      int ya = a / ws, xa = a % ws, la = ry[ya] * 3 + rx[xa];
      float *l = logits + ((size_t) wh * n + a) * n;
      float mx = -INFINITY, sum = 0.0f;
      for (int yb = 0; yb < ws; yb++) {
        const float *trow =
            table + (long) ((ya - yb + ws - 1) * d + xa + ws - 1) * heads + hd;
        float *lr = l + yb * ws;
        /* (max by comparison: fmaxf is a libm call without -ffast-math;
         * the same for these finite logits) */
#pragma omp simd reduction(max : mx)
        for (int xb = 0; xb < ws; xb++) {
          float v = trow[(long) -xb * heads];
          if (shift > 0 && ry[yb] * 3 + rx[xb] != la)
            v += -100.0f;
          lr[xb] += v;
          mx = lr[xb] > mx ? lr[xb] : mx;
        }
      }
#pragma omp simd reduction(+ : sum)
      for (int b = 0; b < n; b++) {
        l[b] = expf (l[b] - mx);
        sum += l[b];
      }
#pragma omp simd
      for (int b = 0; b < n; b++)
        l[b] /= sum;
    }
  }
}

void
si_patch_merge_cpu (
    SiBackend *be, const float *x, int h, int w, int c, float *y)
{
  int ho = h / 2, wo = w / 2;

  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < ho; i++) {
    for (int j = 0; j < wo; j++) {
      float *o = y + ((size_t) i * wo + j) * 4 * c;
      for (int q = 0; q < 4; q++) {
        const float *s = x + ((size_t) (2 * i + q / 2) * w + 2 * j + q % 2) * c;
        for (int k = 0; k < c; k++)
          o[k * 4 + q] = s[k];
      }
    }
  }
}

void
si_bias_gelu_cpu (SiBackend *be, float *y, const float *bias, int rows, int n)
{
  si_cpu_apply_threads (be);
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *v = y + (size_t) r * n;
#pragma omp simd
    for (int k = 0; k < n; k++)
      v[k] = si_gelu (v[k] + bias[k]);
  }
}
