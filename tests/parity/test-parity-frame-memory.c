/* test-parity-frame-memory.c: frames in frame memory (si_frame_memory_alloc,
 * pinned on CUDA) go to the device in one copy straight from the caller's
 * block; every other frame through the context's pinned staging.  The case
 * image as RGB, NV12 and I420 frames, each in plain memory (the reference)
 * and laid out in frame memory in several ways: planes with gaps, padded
 * rows, planes in reverse order (straight from the block), planes in two
 * blocks and planes farther apart than the device's frame buffer (both
 * staged).  Detections must agree bit for bit with the reference.  Under
 * the emulation (SI_PARITY_EMU) the copies are checked too: one copy up a
 * frame, its source the block (the lowest plane, the planes' whole span)
 * or the staging buffer.  Built for the device (skips with "skipped: no
 * CUDA device") and for the emulation.  Usage: test-parity-frame-memory
 * CASE_DIR
 */
#include "si-config.h"

#include "image-io.h"
#include "si-engine.h"

#ifdef SI_PARITY_EMU
#include "cuda_runtime.h"
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* the context's largest frame: its device frame buffer is 4 bytes a pixel */
#define MAX_SIDE 256
#define FRAME_DEV_BYTES ((size_t) MAX_SIDE * MAX_SIDE * 4)

#include "../si-check.h"

/* How a case lays a frame out in memory. */
typedef struct
{
  const char *name;
  SiPixelFormat format;
  size_t row_pad;   /* bytes added to every plane's stride */
  size_t plane_gap; /* bytes between two planes */
  gboolean reverse; /* last plane first in memory */
  gboolean split;   /* every plane in a block of its own */
  gboolean direct;  /* expected: uploaded straight from the block */
} Layout;

static const Layout layouts[] = {
  { "RGB in one block", SI_FORMAT_RGB, 0, 0, FALSE, FALSE, TRUE },
  { "RGB, padded rows", SI_FORMAT_RGB, 40, 0, FALSE, FALSE, TRUE },
  { "NV12, planes 4 KiB apart, padded rows", SI_FORMAT_NV12, 32, 4096, FALSE,
      FALSE, TRUE },
  { "I420, planes in reverse order", SI_FORMAT_I420, 0, 100, TRUE, FALSE,
      TRUE },
  { "NV12, planes in two blocks", SI_FORMAT_NV12, 0, 0, FALSE, TRUE, FALSE },
  { "I420, planes farther apart than the device frame buffer", SI_FORMAT_I420,
      0, FRAME_DEV_BYTES, FALSE, FALSE, FALSE },
};

static int
n_planes (SiPixelFormat format)
{
  return format == SI_FORMAT_RGB ? 1 : format == SI_FORMAT_NV12 ? 2 : 3;
}

/* Bytes of a row and number of rows of plane @p of a w x h frame. */
static void
plane_geometry (
    SiPixelFormat format, int p, int w, int h, size_t *row_bytes, int *rows)
{
  int cw = (w + 1) / 2, ch = (h + 1) / 2;

  if (format == SI_FORMAT_RGB) {
    *row_bytes = (size_t) w * 3;
    *rows = h;
  } else if (p == 0) {
    *row_bytes = (size_t) w;
    *rows = h;
  } else {
    *row_bytes = format == SI_FORMAT_NV12 ? (size_t) cw * 2 : (size_t) cw;
    *rows = ch;
  }
}

/* Writes the image into the planes of @f (planes and strides set): RGB as
 * it is, YUV with BT.601 limited-range coefficients (any content will do,
 * as long as every layout gets the same bytes). */
static void
fill_frame (const SiImage *img, SiFrame *f)
{
  int w = f->width, h = f->height;

  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const uint8_t *s = img->rgb + ((size_t) y * img->width + x) * 3;
      int luma = (66 * s[0] + 129 * s[1] + 25 * s[2] + 128) / 256 + 16;
      int u = (-38 * s[0] - 74 * s[1] + 112 * s[2] + 128 * 256 + 128) / 256;
      int v = (112 * s[0] - 94 * s[1] - 18 * s[2] + 128 * 256 + 128) / 256;
      uint8_t *c;

      if (f->format == SI_FORMAT_RGB) {
        memcpy ((uint8_t *) f->planes[0] + y * f->strides[0] + x * 3, s, 3);
        continue;
      }
      ((uint8_t *) f->planes[0])[y * f->strides[0] + x] = (uint8_t) luma;
      if (x % 2 || y % 2)
        continue;
      if (f->format == SI_FORMAT_NV12) {
        c = (uint8_t *) f->planes[1] + (y / 2) * f->strides[1] + x;
        c[0] = (uint8_t) u;
        c[1] = (uint8_t) v;
      } else {
        ((uint8_t *) f->planes[1])[(y / 2) * f->strides[1] + x / 2] =
            (uint8_t) u;
        ((uint8_t *) f->planes[2])[(y / 2) * f->strides[2] + x / 2] =
            (uint8_t) v;
      }
    }
}

/* A w x h frame laid out as @l in @blocks (one, or one a plane when split;
 * free them with si_frame_memory_free), or tight in one g_malloc'ed block
 * when @l is NULL.  *span: the bytes from the lowest plane's start to the
 * highest plane's end. */
static SiFrame
make_frame (const SiImage *img, SiPixelFormat format, int w, int h,
    const Layout *l, uint8_t **blocks, size_t *span)
{
  SiFrame f;
  size_t row_bytes[3], size[3], off[3], total = 0;
  int rows[3], np = n_planes (format);
  GError *error = NULL;

  memset (&f, 0, sizeof (f));
  f.format = format;
  f.width = w;
  f.height = h;
  for (int p = 0; p < np; p++) {
    plane_geometry (format, p, w, h, &row_bytes[p], &rows[p]);
    f.strides[p] = row_bytes[p] + (l ? l->row_pad : 0);
    size[p] = f.strides[p] * rows[p];
  }
  /* offsets in memory order */
  for (int k = 0; k < np; k++) {
    int p = l && l->reverse ? np - 1 - k : k;
    off[p] = total;
    total += size[p] + (l && k + 1 < np ? l->plane_gap : 0);
  }
  *span = 0;
  for (int p = 0; p < np; p++)
    *span = MAX (
        *span, off[p] + f.strides[p] * (size_t) (rows[p] - 1) + row_bytes[p]);
  memset (blocks, 0, 3 * sizeof (*blocks));
  if (l == NULL) {
    blocks[0] = g_malloc0 (total);
  } else if (!l->split) {
    blocks[0] = si_frame_memory_alloc (SI_BACKEND_CUDA, total, &error);
  } else {
    for (int p = 0; p < np && error == NULL; p++)
      blocks[p] = si_frame_memory_alloc (SI_BACKEND_CUDA, size[p], &error);
  }
  if (error != NULL) {
    printf ("FAIL: si_frame_memory_alloc: %s\n", error->message);
    exit (1);
  }
  for (int p = 0; p < np; p++)
    f.planes[p] = l && l->split ? blocks[p] : blocks[0] + off[p];
  fill_frame (img, &f);
  return f;
}

static void
free_blocks (uint8_t **blocks, gboolean frame_memory)
{
  for (int p = 0; p < 3; p++) {
    if (frame_memory)
      si_frame_memory_free (blocks[p]);
    else
      g_free (blocks[p]);
  }
}

/* Runs @f; a copy of the detections in *dets (free it). */
static gboolean
run (SiContext *ctx, const SiFrame *f, SiDetection **dets, size_t *n,
    const char *what)
{
  GError *error = NULL;
  SiRunParams params;
  const SiDetection *out;

  si_run_params_init (&params);
  params.threshold = 0.0f;
  if (!si_context_run (ctx, f, &params, &error)) {
    CHECK (FALSE, "%s: si_context_run: %s", what, error->message);
    g_clear_error (&error);
    return FALSE;
  }
  out = si_context_get_detections (ctx, n);
  *dets = g_memdup2 (out, *n * sizeof (*out));
  return TRUE;
}

static gboolean
same_detections (
    const SiDetection *a, size_t na, const SiDetection *b, size_t nb)
{
  if (na != nb)
    return FALSE;
  for (size_t i = 0; i < na; i++)
    if (a[i].class_id != b[i].class_id || a[i].score != b[i].score ||
        a[i].query_index != b[i].query_index ||
        memcmp (a[i].box, b[i].box, sizeof (a[i].box)) != 0)
      return FALSE;
  return TRUE;
}

#ifdef SI_PARITY_EMU
/* One copy up, from pinned memory: the block (from the lowest plane, the
 * planes' whole span) when @direct, else the staging buffer (none of the
 * frame's planes). */
static void
check_upload (const SiEmuCounts *a, const SiEmuCounts *b, const SiFrame *f,
    size_t span, gboolean direct, const char *what)
{
  const uint8_t *lowest = f->planes[0];
  gboolean from_frame = FALSE, ok;

  for (int p = 0; p < n_planes (f->format); p++) {
    lowest = MIN (lowest, f->planes[p]);
    from_frame |= b->last_h2d_src == (const void *) f->planes[p];
  }
  ok = b->h2d - a->h2d == 1 && b->h2d_pageable == a->h2d_pageable &&
      (direct ? b->last_h2d_src == (const void *) lowest &&
                  b->last_h2d_bytes == span
              : !from_frame);
  printf ("%s %s: %d copy up (%d not pinned) of %zu bytes, %s\n",
      ok ? "ok  " : "FAIL", what, b->h2d - a->h2d,
      b->h2d_pageable - a->h2d_pageable, b->last_h2d_bytes,
      from_frame ? "from the frame's memory" : "from the staging buffer");
  CHECK (ok, "%s: expected one copy up %s", what,
      direct ? "straight from the frame memory" : "from the staging buffer");
}
#endif

/* The reference of a format: the frame tight in plain memory (staged). */
typedef struct
{
  SiDetection *dets;
  size_t n;
} Reference;

static gboolean
reference (SiContext *ctx, const SiImage *img, SiPixelFormat format, int w,
    int h, Reference *ref)
{
  uint8_t *blocks[3];
  size_t span;
  SiFrame f = make_frame (img, format, w, h, NULL, blocks, &span);
  char what[96];
  gboolean ran;
#ifdef SI_PARITY_EMU
  SiEmuCounts c[2];
  si_emu_counts (&c[0]);
#endif

  g_snprintf (what, sizeof (what), "%s in plain memory (%dx%d)",
      format == SI_FORMAT_RGB        ? "RGB"
          : format == SI_FORMAT_NV12 ? "NV12"
                                     : "I420",
      w, h);
  ran = run (ctx, &f, &ref->dets, &ref->n, what);
#ifdef SI_PARITY_EMU
  si_emu_counts (&c[1]);
  check_upload (&c[0], &c[1], &f, span, FALSE, what);
#endif
  free_blocks (blocks, FALSE);
  return ran;
}

static void
test_layouts (SiContext *ctx, const SiImage *img)
{
  /* odd sizes: the chroma planes round up */
  int w = img->width - 1, h = img->height - 1;
  Reference refs[3] = { { NULL, 0 } };
  SiPixelFormat formats[3] = { SI_FORMAT_RGB, SI_FORMAT_NV12, SI_FORMAT_I420 };
  gboolean have_ref[3];

  for (int k = 0; k < 3; k++)
    have_ref[k] = reference (ctx, img, formats[k], w, h, &refs[k]);
  for (size_t i = 0; i < G_N_ELEMENTS (layouts); i++) {
    const Layout *l = &layouts[i];
    int k = l->format == SI_FORMAT_RGB ? 0
        : l->format == SI_FORMAT_NV12  ? 1
                                       : 2;
    uint8_t *blocks[3];
    size_t span, n = 0;
    SiFrame f = make_frame (img, l->format, w, h, l, blocks, &span);
    SiDetection *dets = NULL;
    char what[128];
    gboolean ran;
#ifdef SI_PARITY_EMU
    SiEmuCounts c[2];
    si_emu_counts (&c[0]);
#endif

    g_snprintf (what, sizeof (what), "%s (%dx%d)", l->name, w, h);
    ran = run (ctx, &f, &dets, &n, what);
#ifdef SI_PARITY_EMU
    si_emu_counts (&c[1]);
    check_upload (&c[0], &c[1], &f, span, l->direct, what);
#endif
    if (ran && have_ref[k]) {
      gboolean same = same_detections (dets, n, refs[k].dets, refs[k].n);
      printf ("%s %s: %zu detections, %s those of the frame in plain "
              "memory\n",
          same ? "ok  " : "FAIL", what, n,
          same ? "identical to" : "differ from");
      CHECK (same, "%s: detections differ", what);
      CHECK (n > 0, "%s: no detections to compare", what);
    }
    g_free (dets);
    free_blocks (blocks, TRUE);
  }
  for (int k = 0; k < 3; k++)
    g_free (refs[k].dets);
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  SiModel *model;
  SiImage img = { 0 };
  SiContextOptions o;
  SiContext *ctx;
  char *path, *image_path;
  gboolean skipped = FALSE;

  if (argc < 2) {
    fprintf (stderr, "usage: %s CASE_DIR\n", argv[0]);
    return 2;
  }
  path = g_build_filename (argv[1], "model.safetensors", NULL);
  image_path = g_build_filename (argv[1], "image.ppm", NULL);
  if (!(model = si_model_load (path, &error)) ||
      !si_image_load (image_path, &img, &error)) {
    printf ("FAIL: %s\n", error->message);
    return 1;
  }
  si_context_options_init (&o);
  o.backend = SI_BACKEND_CUDA;
  o.max_width = MAX_SIDE;
  o.max_height = MAX_SIDE;
  ctx = si_context_new (model, &o, &error);
  if (ctx == NULL) {
    skipped = g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE);
    if (skipped)
      printf ("skipped: no CUDA device (%s)\n", error->message);
    else
      printf ("FAIL: CUDA context: %s\n", error->message);
    g_clear_error (&error);
    failures += !skipped;
  } else {
    test_layouts (ctx, &img);
    si_context_free (&ctx);
  }
  si_image_clear (&img);
  si_model_unref (model);
  g_free (path);
  g_free (image_path);
  if (skipped)
    return 77;
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
