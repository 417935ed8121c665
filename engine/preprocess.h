/* preprocess.h: host-side helpers of the preprocessing (model-spec 2):
 * frame validation, the pixel-format table, the 3x256 normalisation LUT
 * and the size of the backend work buffer.  The per-pixel work is the
 * backend ops resize_frame and normalize_pad; si_image_info_compute()
 * (net.h) is implemented in preprocess.c.
 */
#ifndef SI_PREPROCESS_H
#define SI_PREPROCESS_H

#include "model.h"
#include "net.h"

/* Byte layout of a packed RGB format: bytes per pixel and the byte offset
 * of R, G and B inside a pixel.  FALSE for planar YUV. */
gboolean si_pixel_format_packed (
    SiPixelFormat format, int *bpp, int offsets[3]);

/* Checks format, sizes, planes and strides of a frame. */
gboolean si_frame_validate (const SiFrame *frame, GError **error);

/* lut (3, 256): lut[c * 256 + x] = normalised value of x in channel c
 * (RGB order), bit-exact to mmdet's Normalize (golden README). */
void si_preprocess_make_lut (const SiModel *model, float *lut);

/* Bytes of the work buffer resize_frame needs for frames up to
 * max_w x max_h resized to at most max_new_w columns. */
size_t si_preprocess_work_size (int max_w, int max_h, int max_new_w);

#endif /* SI_PREPROCESS_H */
