/* preprocess_cpu.c: preprocessing ops on the CPU (reference, plain loops):
 * any SiPixelFormat -> RGB uint8 resized with OpenCV's fixed-point
 * INTER_LINEAR (model-spec 2.2, arithmetic in si-math.h), then the
 * 3x256-LUT normalisation with zero padding (2.3, 2.4) into NHWC.
 */
#include "backend_cpu.h"

#include <string.h>

#include "preprocess.h"
#include "si-math.h"

/* Planar BT.601 YUV 4:2:0 -> packed RGB (H, W, 3), chroma sited on the
 * even luma samples (nearest). */
static void
yuv420_to_rgb (const SiFrame *f, uint8_t *rgb)
{
#pragma omp parallel for schedule(static)
  for (int y = 0; y < f->height; y++) {
    const uint8_t *yr = f->planes[0] + (size_t) y * f->strides[0];
    const uint8_t *ur, *vr;
    int ustep;
    uint8_t *o = rgb + (size_t) y * f->width * 3;

    if (f->format == SI_FORMAT_NV12) {
      ur = f->planes[1] + (size_t) (y / 2) * f->strides[1];
      vr = ur + 1;
      ustep = 2;
    } else {
      ur = f->planes[1] + (size_t) (y / 2) * f->strides[1];
      vr = f->planes[2] + (size_t) (y / 2) * f->strides[2];
      ustep = 1;
    }
    for (int x = 0; x < f->width; x++) {
      int ci = (x / 2) * ustep;
      si_yuv_to_rgb (
          yr[x], ur[ci], vr[ci], &o[3 * x], &o[3 * x + 1], &o[3 * x + 2]);
    }
  }
}

gboolean
si_resize_frame_cpu (SiBackend *be, const SiFrame *frame,
    const SiImageInfo *info, void *work, uint8_t *rgb, GError **error)
{
  si_cpu_apply_threads (be);
  const uint8_t *src;
  size_t stride;
  int bpp, off[3];
  int sw = frame->width, sh = frame->height;
  int dw = info->new_w, dh = info->new_h;
  double inv_sx = 1.0 / ((double) dw / sw), inv_sy = 1.0 / ((double) dh / sh);
  int32_t *xtab; /* (dw, 4): byte offsets of the two taps, a0, a1 */

  if (si_pixel_format_packed (frame->format, &bpp, off)) {
    src = frame->planes[0];
    stride = frame->strides[0];
    xtab = (int32_t *) work;
  } else {
    uint8_t *staging = work;
    yuv420_to_rgb (frame, staging);
    src = staging;
    stride = (size_t) sw * 3;
    bpp = 3;
    off[0] = 0;
    off[1] = 1;
    off[2] = 2;
    xtab = (int32_t *) (staging + ((size_t) sw * sh * 3 + 63) / 64 * 64);
  }

  for (int dx = 0; dx < dw; dx++) {
    int x0, a0, a1, single;
    si_resize_xcoef (dx, inv_sx, sw, &x0, &a0, &a1, &single);
    xtab[4 * dx] = x0 * bpp;
    xtab[4 * dx + 1] = (single ? x0 : x0 + 1) * bpp;
    xtab[4 * dx + 2] = a0;
    xtab[4 * dx + 3] = a1;
  }

#pragma omp parallel for schedule(static)
  for (int dy = 0; dy < dh; dy++) {
    int r0, r1, b0, b1;
    si_resize_ycoef (dy, inv_sy, sh, &r0, &r1, &b0, &b1);
    const uint8_t *s0 = src + (size_t) r0 * stride;
    const uint8_t *s1 = src + (size_t) r1 * stride;
    uint8_t *o = rgb + (size_t) dy * dw * 3;
    for (int dx = 0; dx < dw; dx++) {
      const int32_t *t = &xtab[4 * dx];
      for (int c = 0; c < 3; c++) {
        int32_t t0 = s0[t[0] + off[c]] * t[2] + s0[t[1] + off[c]] * t[3];
        int32_t t1 = s1[t[0] + off[c]] * t[2] + s1[t[1] + off[c]] * t[3];
        o[3 * dx + c] = si_resize_vmix (t0, t1, b0, b1);
      }
    }
  }
  return TRUE;
}

void
si_normalize_pad_cpu (SiBackend *be, const uint8_t *rgb,
    const SiImageInfo *info, const float *lut, float *out)
{
  int nw = info->new_w, nh = info->new_h, pw = info->pad_w;

#pragma omp parallel for schedule(static)
  for (int y = 0; y < info->pad_h; y++) {
    float *o = out + (size_t) y * pw * 3;
    if (y >= nh) {
      memset (o, 0, sizeof (float) * pw * 3);
      continue;
    }
    const uint8_t *s = rgb + (size_t) y * nw * 3;
    for (int x = 0; x < nw; x++) {
      o[3 * x] = lut[s[3 * x]];
      o[3 * x + 1] = lut[256 + s[3 * x + 1]];
      o[3 * x + 2] = lut[512 + s[3 * x + 2]];
    }
    memset (o + 3 * nw, 0, sizeof (float) * (pw - nw) * 3);
  }
}
