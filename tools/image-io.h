/* image-io.h: still-image readers for the command-line tools and tests:
 * PPM/PGM (P2, P3, P5, P6), PNG (libpng) and JPEG (libjpeg), always
 * decoded to packed 8-bit RGB (h, w, 3).  The format is sniffed from the
 * file's first bytes, not its name.  Errors are SI_ERROR_IO (cannot read)
 * or SI_ERROR_FORMAT (corrupt or unsupported image).
 */
#ifndef SI_IMAGE_IO_H
#define SI_IMAGE_IO_H

#include <glib.h>
#include <stdint.h>

typedef struct
{
  int width;
  int height;
  uint8_t *rgb; /* (height, width, 3), owned; stride width * 3 */
} SiImage;

gboolean si_image_load (const char *path, SiImage *img, GError **error);
/* Frees the pixels and zeroes img. */
void si_image_clear (SiImage *img);

#endif /* SI_IMAGE_IO_H */
