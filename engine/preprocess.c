/* preprocess.c: host-side part of the preprocessing (model-spec 2): the
 * keep-ratio geometry (2.2, 2.4, 2.6), frame validation and the
 * normalisation LUT (2.3).
 */
#include "preprocess.h"

#include <math.h>

#include "si-math.h"

void
si_image_info_compute (
    const SiModel *model, int width, int height, SiImageInfo *info)
{
  double long_max = MAX (model->test_scale[0], model->test_scale[1]);
  double short_max = MIN (model->test_scale[0], model->test_scale[1]);
  double s =
      MIN (long_max / MAX (width, height), short_max / MIN (width, height));
  int div = model->size_divisor > 0 ? model->size_divisor : 1;

  info->width = width;
  info->height = height;
  info->new_w = (int) (width * s + 0.5);
  info->new_h = (int) (height * s + 0.5);
  if (info->new_w < 1)
    info->new_w = 1;
  if (info->new_h < 1)
    info->new_h = 1;
  info->pad_w = (info->new_w + div - 1) / div * div;
  info->pad_h = (info->new_h + div - 1) / div * div;
  info->scale_factor[0] = (float) ((double) info->new_w / width);
  info->scale_factor[1] = (float) ((double) info->new_h / height);
  info->scale_factor[2] = info->scale_factor[0];
  info->scale_factor[3] = info->scale_factor[1];
}

gboolean
si_frame_validate (const SiFrame *frame, GError **error)
{
  int bpp, off[3];
  size_t cw, ch;

  if (frame == NULL || frame->width <= 0 || frame->height <= 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "frame: empty or NULL (%dx%d)", frame ? frame->width : 0,
        frame ? frame->height : 0);
    return FALSE;
  }
  if (si_pixel_format_packed (frame->format, &bpp, off)) {
    if (frame->planes[0] == NULL ||
        frame->strides[0] < (size_t) frame->width * bpp) {
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "frame: missing plane or stride %zu < %d bytes per row",
          frame->strides[0], frame->width * bpp);
      return FALSE;
    }
    return TRUE;
  }
  cw = ((size_t) frame->width + 1) / 2;
  ch = ((size_t) frame->height + 1) / 2;
  (void) ch;
  switch (frame->format) {
    case SI_FORMAT_NV12:
      if (frame->planes[0] && frame->planes[1] &&
          frame->strides[0] >= (size_t) frame->width &&
          frame->strides[1] >= 2 * cw)
        return TRUE;
      break;
    case SI_FORMAT_I420:
      if (frame->planes[0] && frame->planes[1] && frame->planes[2] &&
          frame->strides[0] >= (size_t) frame->width &&
          frame->strides[1] >= cw && frame->strides[2] >= cw)
        return TRUE;
      break;
    default:
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "frame: unknown pixel format %d", (int) frame->format);
      return FALSE;
  }
  g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
      "frame: YUV 4:2:0 planes missing or strides too small");
  return FALSE;
}

void
si_preprocess_make_lut (const SiModel *model, float *lut)
{
  for (int c = 0; c < 3; c++)
    for (int x = 0; x < 256; x++)
      lut[c * 256 + x] = si_normalize_value (x, model->mean[c], model->std[c]);
}

size_t
si_preprocess_work_size (int max_w, int max_h, int max_new_w)
{
  /* YUV -> RGB staging (H, W, 3) + the column table (new_w, 4) int32 */
  return (size_t) max_w * max_h * 3 + 64 + (size_t) max_new_w * 4 * 4;
}
