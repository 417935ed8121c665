/* preprocess.h: host-side helpers of the preprocessing (model-spec 2):
 * frame validation, the pixel-format table (inline), the 3x256 normalisation LUT
 * and the size of the backend work buffer.  The per-pixel work is the
 * backend ops resize_frame and normalize_pad; si_image_info_compute()
 * (net.h) is implemented in preprocess.c.
 */
#ifndef SI_PREPROCESS_H
#define SI_PREPROCESS_H

#include "model.h"
#include "net.h"

/* Byte layout of a packed RGB format: bytes per pixel and the byte offset
 * of R, G and B inside a pixel.  FALSE for planar YUV.  Inline because the
 * CUDA backend, a separately loaded module, needs it too. */
static inline gboolean
si_pixel_format_packed (SiPixelFormat format, int *bpp, int offsets[3])
{
  /* byte offsets of R, G, B in memory order (C and CUDA C++ alike, hence
   * a switch rather than a designated table) */
  int n = 4, r, g, b;

  switch (format) {
    case SI_FORMAT_RGB:
    case SI_FORMAT_RGBX:
    case SI_FORMAT_RGBA:
      r = 0, g = 1, b = 2;
      break;
    case SI_FORMAT_BGR:
    case SI_FORMAT_BGRX:
    case SI_FORMAT_BGRA:
      r = 2, g = 1, b = 0;
      break;
    case SI_FORMAT_XRGB:
    case SI_FORMAT_ARGB:
      r = 1, g = 2, b = 3;
      break;
    case SI_FORMAT_XBGR:
    case SI_FORMAT_ABGR:
      r = 3, g = 2, b = 1;
      break;
    default:
      *bpp = 0;
      offsets[0] = offsets[1] = offsets[2] = 0;
      return FALSE;
  }
  if (format == SI_FORMAT_RGB || format == SI_FORMAT_BGR)
    n = 3;
  *bpp = n;
  offsets[0] = r;
  offsets[1] = g;
  offsets[2] = b;
  return TRUE;
}

/* Checks format, sizes, planes and strides of a frame. */
gboolean si_frame_validate (const SiFrame *frame, GError **error);

/* lut (3, 256): lut[c * 256 + x] = normalised value of x in channel c
 * (RGB order), bit-exact to mmdet's Normalize (golden README). */
void si_preprocess_make_lut (const SiModel *model, float *lut);

/* Bytes of the work buffer resize_frame needs for frames up to
 * max_w x max_h resized to at most max_new_w columns. */
size_t si_preprocess_work_size (int max_w, int max_h, int max_new_w);

#endif /* SI_PREPROCESS_H */
