/* image-io.c: PPM/PGM, PNG and JPEG readers to packed RGB (image-io.h).
 * The whole file is read into memory, the format sniffed from its magic
 * bytes, then decoded by the matching reader.  Sizes are bounded so that
 * width * height * 3 cannot overflow.
 */
#include "image-io.h"

#include "si-engine.h"

#include <stdio.h>
#include <string.h>

#ifdef SI_HAVE_JPEG
#include <jpeglib.h>
#include <setjmp.h>
#endif
#ifdef SI_HAVE_PNG
#include <png.h>
#endif

#define MAX_DIM 32768
#define MAX_PIXELS ((gint64) 1 << 28)

static gboolean
check_size (const char *path, gint64 w, gint64 h, GError **error)
{
  if (w <= 0 || h <= 0 || w > MAX_DIM || h > MAX_DIM || w * h > MAX_PIXELS) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: unsupported image size %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT,
        path, w, h);
    return FALSE;
  }
  return TRUE;
}

/* ---- PPM / PGM ---- */

typedef struct
{
  const guint8 *p, *end;
} Cursor;

/* Skips whitespace and '#' comments; reads one unsigned decimal. */
static gboolean
pnm_uint (Cursor *c, gint64 *out)
{
  for (;;) {
    while (c->p < c->end && g_ascii_isspace (*c->p))
      c->p++;
    if (c->p < c->end && *c->p == '#') {
      while (c->p < c->end && *c->p != '\n' && *c->p != '\r')
        c->p++;
      continue;
    }
    break;
  }
  if (c->p >= c->end || !g_ascii_isdigit (*c->p))
    return FALSE;
  gint64 v = 0;
  while (c->p < c->end && g_ascii_isdigit (*c->p)) {
    v = v * 10 + (*c->p - '0');
    if (v > G_MAXINT32)
      return FALSE;
    c->p++;
  }
  *out = v;
  return TRUE;
}

static gboolean
load_pnm (const char *path, const guint8 *data, gsize len, SiImage *img,
    GError **error)
{
  Cursor c = { data + 2, data + len };
  char kind = (char) data[1];
  gboolean color = kind == '3' || kind == '6';
  gboolean binary = kind == '5' || kind == '6';
  gint64 w, h, maxval;

  if (!pnm_uint (&c, &w) || !pnm_uint (&c, &h) || !pnm_uint (&c, &maxval) ||
      maxval < 1 || maxval > 65535) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: bad P%c header (width, height, maxval)", path, kind);
    return FALSE;
  }
  if (!check_size (path, w, h, error))
    return FALSE;
  int ch = color ? 3 : 1;
  int bps = maxval > 255 ? 2 : 1;
  gint64 n = w * h * ch;
  if (binary) {
    /* exactly one whitespace byte separates the header from the pixels */
    if (c.p >= c.end || !g_ascii_isspace (*c.p) ||
        (gint64) (c.end - c.p - 1) < n * bps) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: P%c pixel data is truncated", path, kind);
      return FALSE;
    }
    c.p++;
  }

  img->rgb = g_malloc ((gsize) (w * h * 3));
  for (gint64 i = 0; i < n; i++) {
    gint64 v;
    if (binary) {
      v = bps == 2 ? (c.p[0] << 8 | c.p[1]) : c.p[0];
      c.p += bps;
    } else if (!pnm_uint (&c, &v)) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: P%c pixel data is truncated or not a number", path, kind);
      si_image_clear (img);
      return FALSE;
    }
    if (v > maxval)
      v = maxval;
    guint8 b =
        maxval == 255 ? (guint8) v : (guint8) ((v * 255 + maxval / 2) / maxval);
    if (color) {
      img->rgb[i] = b;
    } else {
      img->rgb[3 * i] = img->rgb[3 * i + 1] = img->rgb[3 * i + 2] = b;
    }
  }
  img->width = (int) w;
  img->height = (int) h;
  return TRUE;
}

#ifdef SI_HAVE_PNG
/* ---- PNG (libpng simplified API) ---- */

static gboolean
load_png (const char *path, const guint8 *data, gsize len, SiImage *img,
    GError **error)
{
  png_image pi;

  memset (&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory (&pi, data, len)) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_FORMAT, "%s: bad PNG: %s", path, pi.message);
    return FALSE;
  }
  if (!check_size (path, pi.width, pi.height, error)) {
    png_image_free (&pi);
    return FALSE;
  }
  pi.format = PNG_FORMAT_RGB;
  img->rgb = g_malloc (PNG_IMAGE_SIZE (pi));
  if (!png_image_finish_read (&pi, NULL, img->rgb, 0, NULL)) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_FORMAT, "%s: bad PNG: %s", path, pi.message);
    png_image_free (&pi);
    si_image_clear (img);
    return FALSE;
  }
  img->width = (int) pi.width;
  img->height = (int) pi.height;
  return TRUE;
}

#endif /* SI_HAVE_PNG */

#ifdef SI_HAVE_JPEG
/* ---- JPEG (libjpeg) ---- */

typedef struct
{
  struct jpeg_error_mgr mgr;
  jmp_buf jmp;
  char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void
jpeg_error_exit (j_common_ptr cinfo)
{
  JpegErr *e = (JpegErr *) cinfo->err;
  cinfo->err->format_message (cinfo, e->msg);
  longjmp (e->jmp, 1);
}

static void
jpeg_quiet (j_common_ptr cinfo, int level)
{
  (void) cinfo;
  (void) level;
}

static gboolean
load_jpeg (const char *path, const guint8 *data, gsize len, SiImage *img,
    GError **error)
{
  struct jpeg_decompress_struct cinfo;
  JpegErr err;
  guint8 *volatile rgb = NULL;

  memset (&cinfo, 0, sizeof cinfo);
  cinfo.err = jpeg_std_error (&err.mgr);
  err.mgr.error_exit = jpeg_error_exit;
  err.mgr.emit_message = jpeg_quiet;
  err.msg[0] = '\0';
  if (setjmp (err.jmp)) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_FORMAT, "%s: bad JPEG: %s", path, err.msg);
    jpeg_destroy_decompress (&cinfo);
    g_free (rgb);
    return FALSE;
  }
  jpeg_create_decompress (&cinfo);
  jpeg_mem_src (&cinfo, data, (unsigned long) len);
  jpeg_read_header (&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;
  jpeg_start_decompress (&cinfo);
  if (cinfo.output_components != 3 ||
      !check_size (path, cinfo.output_width, cinfo.output_height, error)) {
    if (cinfo.output_components != 3)
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: JPEG decodes to %d components", path, cinfo.output_components);
    jpeg_destroy_decompress (&cinfo);
    return FALSE;
  }
  size_t stride = (size_t) cinfo.output_width * 3;
  rgb = g_malloc (stride * cinfo.output_height);
  while (cinfo.output_scanline < cinfo.output_height) {
    JSAMPROW row = rgb + stride * cinfo.output_scanline;
    jpeg_read_scanlines (&cinfo, &row, 1);
  }
  jpeg_finish_decompress (&cinfo);
  img->width = (int) cinfo.output_width;
  img->height = (int) cinfo.output_height;
  img->rgb = rgb;
  jpeg_destroy_decompress (&cinfo);
  return TRUE;
}

#endif /* SI_HAVE_JPEG */

gboolean
si_image_load (const char *path, SiImage *img, GError **error)
{
  gchar *data = NULL;
  gsize len = 0;
  GError *ferr = NULL;
  gboolean ok;

  memset (img, 0, sizeof *img);
  if (!g_file_get_contents (path, &data, &len, &ferr)) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO, "%s", ferr->message);
    g_error_free (ferr);
    return FALSE;
  }
  const guint8 *d = (const guint8 *) data;
  if (len >= 2 && d[0] == 'P' && d[1] >= '2' && d[1] <= '6' && d[1] != '4')
    ok = load_pnm (path, d, len, img, error);
  else if (len >= 8 && memcmp (d, "\x89PNG\r\n\x1a\n", 8) == 0) {
#ifdef SI_HAVE_PNG
    ok = load_png (path, d, len, img, error);
#else
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: PNG support is not built in (libpng missing)", path);
    ok = FALSE;
#endif
  } else if (len >= 3 && d[0] == 0xff && d[1] == 0xd8 && d[2] == 0xff) {
#ifdef SI_HAVE_JPEG
    ok = load_jpeg (path, d, len, img, error);
#else
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: JPEG support is not built in (libjpeg missing)", path);
    ok = FALSE;
#endif
  } else {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: not a PPM/PGM, PNG or JPEG image", path);
    ok = FALSE;
  }
  g_free (data);
  return ok;
}

void
si_image_clear (SiImage *img)
{
  if (img == NULL)
    return;
  g_free (img->rgb);
  memset (img, 0, sizeof *img);
}
