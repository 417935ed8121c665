/* si-overlay-render.c: the Cairo box/label renderer behind stageoverlay.
 * Text is rendered once per string with Pango into A8 masks (labels by
 * interned pointer, scores by hundredth) and stamped with cairo_mask, so a
 * frame costs only pixel-aligned fills and mask blits.  Packed 32-bit
 * formats in Cairo's byte order (or with R/B swapped: colours are swapped
 * instead) are drawn in place; all other formats go through an ARGB layer
 * whose touched rectangles are blended over the frame and cleared again.
 */
#include "si-overlay-render.h"

#include <cairo.h>
#include <pango/pangocairo.h>
#include <math.h>
#include <string.h>

#define TEXT_PAD 2
#define N_SCORES 101
#define MAX_CACHED_LABELS 4096

typedef struct
{
  cairo_surface_t *mask; /* A8, (height, width) */
  gint width;
  gint height;
} SiTextMask;

typedef struct
{
  gint x, y, w, h;
} SiRect;

/* BT.601/709 RGB -> YUV in 14-bit fixed point, premultiplied inputs. */
typedef struct
{
  gint off_y;
  gint yr, yg, yb;
  gint ur, ug, ub;
  gint vr, vg, vb;
} SiYuvCoefs;

struct _SiOverlayRender
{
  /* text cache, valid for font_desc */
  gchar *font_desc;
  cairo_surface_t *scratch; /* 1x1 A8, hosts the layout */
  cairo_t *scratch_cr;
  PangoLayout *layout;
  GHashTable *labels; /* interned label -> SiTextMask */
  SiTextMask *scores[N_SCORES];
  gint text_height;

  /* layer route */
  cairo_surface_t *layer; /* ARGB32, (layer_h, layer_w), transparent
                           * outside the rectangles being drawn */
  gint layer_w, layer_h;
  GArray *dirty; /* SiRect, rectangles drawn into the layer this frame */
};

static void
text_mask_free (gpointer data)
{
  SiTextMask *tm = data;

  if (tm == NULL)
    return;
  cairo_surface_destroy (tm->mask);
  g_free (tm);
}

static void
text_cache_clear (SiOverlayRender *r)
{
  guint i;

  g_hash_table_remove_all (r->labels);
  for (i = 0; i < N_SCORES; i++) {
    text_mask_free (r->scores[i]);
    r->scores[i] = NULL;
  }
  g_clear_object (&r->layout);
  if (r->scratch_cr)
    cairo_destroy (r->scratch_cr);
  r->scratch_cr = NULL;
  if (r->scratch)
    cairo_surface_destroy (r->scratch);
  r->scratch = NULL;
  g_clear_pointer (&r->font_desc, g_free);
  r->text_height = 0;
}

SiOverlayRender *
si_overlay_render_new (void)
{
  SiOverlayRender *r = g_new0 (SiOverlayRender, 1);

  r->labels = g_hash_table_new_full (
      g_direct_hash, g_direct_equal, NULL, text_mask_free);
  r->dirty = g_array_sized_new (FALSE, FALSE, sizeof (SiRect), 512);
  return r;
}

void
si_overlay_render_free (SiOverlayRender **render)
{
  SiOverlayRender *r;

  if (render == NULL || *render == NULL)
    return;
  r = *render;
  text_cache_clear (r);
  g_hash_table_unref (r->labels);
  if (r->layer)
    cairo_surface_destroy (r->layer);
  g_array_free (r->dirty, TRUE);
  g_free (r);
  *render = NULL;
}

/* (Re)creates the Pango layout for font_desc; drops cached text. */
static gboolean
text_setup (SiOverlayRender *r, const gchar *font_desc, GError **error)
{
  PangoFontDescription *desc;
  PangoRectangle logical;

  if (r->layout && g_strcmp0 (r->font_desc, font_desc) == 0)
    return TRUE;
  text_cache_clear (r);

  r->scratch = cairo_image_surface_create (CAIRO_FORMAT_A8, 1, 1);
  r->scratch_cr = cairo_create (r->scratch);
  if (cairo_status (r->scratch_cr) != CAIRO_STATUS_SUCCESS) {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_FAILED, "cairo: %s",
        cairo_status_to_string (cairo_status (r->scratch_cr)));
    text_cache_clear (r);
    return FALSE;
  }
  r->layout = pango_cairo_create_layout (r->scratch_cr);
  desc = pango_font_description_from_string (font_desc ? font_desc : "");
  pango_layout_set_font_description (r->layout, desc);
  pango_font_description_free (desc);
  pango_layout_set_text (r->layout, "Ag0", -1);
  pango_layout_get_pixel_extents (r->layout, NULL, &logical);
  r->text_height = MAX (logical.height, 1);
  r->font_desc = g_strdup (font_desc);
  return TRUE;
}

static SiTextMask *
text_mask_new (SiOverlayRender *r, const gchar *text)
{
  PangoRectangle logical;
  SiTextMask *tm;
  cairo_surface_t *surf;
  cairo_t *cr;

  pango_layout_set_text (r->layout, text, -1);
  pango_layout_get_pixel_extents (r->layout, NULL, &logical);
  surf = cairo_image_surface_create (
      CAIRO_FORMAT_A8, MAX (logical.width, 1), MAX (logical.height, 1));
  cr = cairo_create (surf);
  if (cairo_status (cr) != CAIRO_STATUS_SUCCESS) {
    cairo_destroy (cr);
    cairo_surface_destroy (surf);
    return NULL;
  }
  cairo_move_to (cr, -logical.x, -logical.y);
  pango_cairo_update_layout (cr, r->layout);
  pango_cairo_show_layout (cr, r->layout);
  cairo_destroy (cr);
  cairo_surface_flush (surf);

  tm = g_new (SiTextMask, 1);
  tm->mask = surf;
  tm->width = MAX (logical.width, 1);
  tm->height = MAX (logical.height, 1);
  return tm;
}

static SiTextMask *
label_mask (SiOverlayRender *r, const gchar *label)
{
  SiTextMask *tm = g_hash_table_lookup (r->labels, label);

  if (tm)
    return tm;
  if (g_hash_table_size (r->labels) >= MAX_CACHED_LABELS)
    g_hash_table_remove_all (r->labels);
  tm = text_mask_new (r, label);
  if (tm)
    g_hash_table_insert (r->labels, (gpointer) label, tm);
  return tm;
}

static SiTextMask *
score_mask (SiOverlayRender *r, gfloat score)
{
  gint i = (gint) lrintf (CLAMP (score, 0.0f, 1.0f) * 100.0f);
  gchar text[8];

  if (r->scores[i] == NULL) {
    g_snprintf (text, sizeof (text), "%d.%02d", i / 100, i % 100);
    r->scores[i] = text_mask_new (r, text);
  }
  return r->scores[i];
}

guint32
si_overlay_class_color (guint32 class_key)
{
  /* Golden-ratio hue walk: neighbouring classes get distant hues. */
  gdouble h = fmod (class_key * 0.6180339887498949 + 0.1, 1.0) * 6.0;
  gdouble s = (class_key / 7) % 2 ? 0.70 : 0.90, v = 0.95;
  gint i = (gint) h;
  gdouble f = h - i, p = v * (1 - s), q = v * (1 - s * f);
  gdouble t = v * (1 - s * (1 - f)), rr, gg, bb;

  switch (i % 6) {
    case 0:
      rr = v, gg = t, bb = p;
      break;
    case 1:
      rr = q, gg = v, bb = p;
      break;
    case 2:
      rr = p, gg = v, bb = t;
      break;
    case 3:
      rr = p, gg = q, bb = v;
      break;
    case 4:
      rr = t, gg = p, bb = v;
      break;
    default:
      rr = v, gg = p, bb = q;
      break;
  }
  return ((guint32) lrint (rr * 255) << 16) |
      ((guint32) lrint (gg * 255) << 8) | (guint32) lrint (bb * 255);
}

static inline gint
round_clamp (gfloat v, gint max)
{
  if (!(v > 0.0f)) /* also NaN */
    return 0;
  if (v >= (gfloat) max)
    return max;
  return (gint) (v + 0.5f);
}

static inline void
add_rect (SiOverlayRender *r, cairo_t *cr, gint x, gint y, gint w, gint h,
    gboolean record, gboolean even)
{
  SiRect rc;

  if (w <= 0 || h <= 0)
    return;
  cairo_rectangle (cr, x, y, w, h);
  if (!record)
    return;
  rc.x = x;
  rc.y = y;
  rc.w = w;
  rc.h = h;
  if (even) {
    /* chroma is 2x2: keep every rectangle on whole chroma blocks */
    rc.w += rc.x & 1;
    rc.x &= ~1;
    rc.h += rc.y & 1;
    rc.y &= ~1;
    rc.w += rc.w & 1;
    rc.h += rc.h & 1;
  }
  g_array_append_val (r->dirty, rc);
}

/* Draws every box with cr (pixel-aligned, no antialiasing on fills).
 * record: note each filled rectangle in r->dirty (even: 2x2 aligned). */
static void
draw_boxes (SiOverlayRender *r, cairo_t *cr, gint W, gint H,
    const SiOverlayStyle *style, const SiOverlayBox *boxes, guint n,
    gboolean swap_rb, gboolean record, gboolean even)
{
  gint lw = MAX (1, (gint) (style->line_width + 0.5));
  guint i;

  cairo_set_antialias (cr, CAIRO_ANTIALIAS_NONE);
  cairo_set_operator (cr, CAIRO_OPERATOR_OVER);
  for (i = 0; i < n; i++) {
    const SiOverlayBox *b = &boxes[i];
    gint x1 = round_clamp (b->x1, W), x2 = round_clamp (b->x2, W);
    gint y1 = round_clamp (b->y1, H), y2 = round_clamp (b->y2, H);
    gint w = x2 - x1, h = y2 - y1;
    guint32 c = si_overlay_class_color (b->class_key);
    gdouble cr_ = ((c >> 16) & 255) / 255.0, cg = ((c >> 8) & 255) / 255.0;
    gdouble cb = (c & 255) / 255.0;
    SiTextMask *lm = NULL, *sm = NULL;
    gint tab_w = 0, tab_h, tx, ty;

    if (w <= 0 || h <= 0)
      continue;

    /* outline: four edge rectangles inside the box */
    if (w <= 2 * lw || h <= 2 * lw) {
      add_rect (r, cr, x1, y1, w, h, record, even);
    } else {
      add_rect (r, cr, x1, y1, w, lw, record, even);
      add_rect (r, cr, x1, y2 - lw, w, lw, record, even);
      add_rect (r, cr, x1, y1 + lw, lw, h - 2 * lw, record, even);
      add_rect (r, cr, x2 - lw, y1 + lw, lw, h - 2 * lw, record, even);
    }

    /* label tab above the box (inside it at the top of the frame) */
    if (style->show_labels && b->label)
      lm = label_mask (r, b->label);
    if (style->show_scores && b->score >= 0.0f)
      sm = score_mask (r, b->score);
    if (lm || sm) {
      tab_w = TEXT_PAD + (lm ? lm->width : 0) + (lm && sm ? 2 * TEXT_PAD : 0) +
          (sm ? sm->width : 0) + TEXT_PAD;
      tab_h = r->text_height + 2 * TEXT_PAD;
      tx = x1;
      ty = y1 - tab_h;
      if (ty < 0)
        ty = MAX (0, MIN (y1, H - tab_h));
      if (tx + tab_w > W)
        tx = MAX (0, W - tab_w);
      add_rect (r, cr, tx, ty, MIN (tab_w, W - tx), MIN (tab_h, H - ty), record,
          even);
    }

    if (swap_rb)
      cairo_set_source_rgb (cr, cb, cg, cr_);
    else
      cairo_set_source_rgb (cr, cr_, cg, cb);
    cairo_fill (cr);

    if (lm || sm) {
      gdouble luma = 0.299 * cr_ + 0.587 * cg + 0.114 * cb;
      gint x = tx + TEXT_PAD, y = ty + TEXT_PAD;

      if (luma > 0.55)
        cairo_set_source_rgb (cr, 0, 0, 0);
      else
        cairo_set_source_rgb (cr, 1, 1, 1);
      /* the tab may be cut by the frame edge: keep text inside it */
      cairo_save (cr);
      cairo_rectangle (cr, tx, ty, MIN (tab_w, W - tx), MIN (tab_h, H - ty));
      cairo_clip (cr);
      if (lm) {
        cairo_mask_surface (cr, lm->mask, x, y);
        x += lm->width + 2 * TEXT_PAD;
      }
      if (sm)
        cairo_mask_surface (cr, sm->mask, x, y);
      cairo_restore (cr);
    }
  }
}

/* x * (255 - a) / 255 style rounding division, exact on 0..255*255 */
static inline guint
div255 (guint x)
{
  x += 128;
  return (x + (x >> 8)) >> 8;
}

/* Packed RGB family through the layer: OVER with premultiplied source. */
static void
blend_packed (SiOverlayRender *r, GstVideoFrame *frame, const SiRect *rc)
{
  guint8 *ldata = cairo_image_surface_get_data (r->layer);
  gint lstride = cairo_image_surface_get_stride (r->layer);
  guint8 *data = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  gint stride = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (frame, 0);
  gint ro = GST_VIDEO_FRAME_COMP_POFFSET (frame, 0);
  gint go = GST_VIDEO_FRAME_COMP_POFFSET (frame, 1);
  gint bo = GST_VIDEO_FRAME_COMP_POFFSET (frame, 2);
  gint ao = GST_VIDEO_INFO_HAS_ALPHA (&frame->info)
      ? (gint) GST_VIDEO_FRAME_COMP_POFFSET (frame, 3)
      : -1;
  gint x, y;

  for (y = rc->y; y < rc->y + rc->h; y++) {
    guint32 *l = (guint32 *) (ldata + (gsize) y * lstride) + rc->x;
    guint8 *p = data + (gsize) y * stride + (gsize) rc->x * ps;

    for (x = 0; x < rc->w; x++, p += ps) {
      guint32 v = l[x];
      guint a, ia;

      if (v == 0)
        continue;
      a = v >> 24;
      ia = 255 - a;
      p[ro] = ((v >> 16) & 255) + div255 (p[ro] * ia);
      p[go] = ((v >> 8) & 255) + div255 (p[go] * ia);
      p[bo] = (v & 255) + div255 (p[bo] * ia);
      if (ao >= 0)
        p[ao] = a + div255 (p[ao] * ia);
    }
    memset (l, 0, (gsize) rc->w * 4);
  }
}

static void
yuv_coefs_init (SiYuvCoefs *k, const GstVideoInfo *info)
{
  gdouble Kr = 0.299, Kb = 0.114, Kg;
  gint offset[GST_VIDEO_MAX_COMPONENTS], scale[GST_VIDEO_MAX_COMPONENTS];
  gdouble sy, sc;
  const gdouble one = 1 << 14;

  if (!gst_video_color_matrix_get_Kr_Kb (info->colorimetry.matrix, &Kr, &Kb)) {
    Kr = 0.299;
    Kb = 0.114;
  }
  Kg = 1.0 - Kr - Kb;
  gst_video_color_range_offsets (
      info->colorimetry.range, info->finfo, offset, scale);
  /* Y * a = off * a + scale * (Kr r' + Kg g' + Kb b') with premultiplied
   * r' = R * a / 255 (R, r' in 0..255); likewise for U and V. */
  sy = scale[0];
  sc = scale[1];
  k->off_y = offset[0];
  k->yr = (gint) lrint (sy * Kr * one);
  k->yg = (gint) lrint (sy * Kg * one);
  k->yb = (gint) lrint (sy * Kb * one);
  k->ur = (gint) lrint (-sc * Kr / (2 * (1 - Kb)) * one);
  k->ug = (gint) lrint (-sc * Kg / (2 * (1 - Kb)) * one);
  k->ub = (gint) lrint (sc * 0.5 * one);
  k->vr = (gint) lrint (sc * 0.5 * one);
  k->vg = (gint) lrint (-sc * Kg / (2 * (1 - Kr)) * one);
  k->vb = (gint) lrint (-sc * Kb / (2 * (1 - Kr)) * one);
}

static inline guint8
clamp8 (gint v)
{
  return (guint8) CLAMP (v, 0, 255);
}

/* NV12 / I420 through the layer: luma per pixel, chroma per 2x2 block from
 * the mean premultiplied colour and alpha of the block.  rc is even-aligned
 * (except at odd frame edges). */
static void
blend_yuv420 (SiOverlayRender *r, GstVideoFrame *frame, const SiRect *rc,
    const SiYuvCoefs *k)
{
  guint8 *ldata = cairo_image_surface_get_data (r->layer);
  gint lstride = cairo_image_surface_get_stride (r->layer);
  gint W = GST_VIDEO_FRAME_WIDTH (frame), H = GST_VIDEO_FRAME_HEIGHT (frame);
  gboolean nv12 = GST_VIDEO_FRAME_FORMAT (frame) == GST_VIDEO_FORMAT_NV12;
  guint8 *yp = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  gint ys = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  guint8 *up = GST_VIDEO_FRAME_PLANE_DATA (frame, 1);
  gint us = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 1);
  guint8 *vp = nv12 ? up + 1 : GST_VIDEO_FRAME_PLANE_DATA (frame, 2);
  gint vs = nv12 ? us : GST_VIDEO_FRAME_PLANE_STRIDE (frame, 2);
  gint cps = nv12 ? 2 : 1;
  gint x0 = rc->x, y0 = rc->y, x1 = MIN (W, rc->x + rc->w);
  gint y1 = MIN (H, rc->y + rc->h);
  gint x, y;

  /* chroma first: it reads the layer that the luma pass clears */
  for (y = y0; y < y1; y += 2) {
    guint32 *l0 = (guint32 *) (ldata + (gsize) y * lstride);
    guint32 *l1 =
        y + 1 < H ? (guint32 *) (ldata + (gsize) (y + 1) * lstride) : NULL;
    guint8 *u = up + (gsize) (y / 2) * us, *v = vp + (gsize) (y / 2) * vs;

    for (x = x0; x < x1; x += 2) {
      guint32 px[4] = { l0[x], x + 1 < W ? l0[x + 1] : 0, l1 ? l1[x] : 0,
        l1 && x + 1 < W ? l1[x + 1] : 0 };
      gint cnt = 1 + (x + 1 < W) + (l1 != NULL) + (l1 && x + 1 < W);
      gint sa = 0, sr = 0, sg = 0, sb = 0, i, a, rr, gg, bb, ia, t;
      guint8 *pu, *pv;

      if ((px[0] | px[1] | px[2] | px[3]) == 0)
        continue;
      for (i = 0; i < 4; i++) {
        sa += px[i] >> 24;
        sr += (px[i] >> 16) & 255;
        sg += (px[i] >> 8) & 255;
        sb += px[i] & 255;
      }
      a = (sa + cnt / 2) / cnt;
      rr = (sr + cnt / 2) / cnt;
      gg = (sg + cnt / 2) / cnt;
      bb = (sb + cnt / 2) / cnt;
      ia = 255 - a;
      pu = u + (x / 2) * cps;
      pv = v + (x / 2) * cps;
      t = *pu * ia + 128 * a +
          ((k->ur * rr + k->ug * gg + k->ub * bb + (1 << 13)) >> 14);
      *pu = clamp8 ((gint) div255 ((guint) MAX (t, 0)));
      t = *pv * ia + 128 * a +
          ((k->vr * rr + k->vg * gg + k->vb * bb + (1 << 13)) >> 14);
      *pv = clamp8 ((gint) div255 ((guint) MAX (t, 0)));
    }
  }

  for (y = y0; y < y1; y++) {
    guint32 *l = (guint32 *) (ldata + (gsize) y * lstride);
    guint8 *py = yp + (gsize) y * ys;

    for (x = x0; x < x1; x++) {
      guint32 pv = l[x];
      guint a;

      if (pv == 0)
        continue;
      a = pv >> 24;
      py[x] = clamp8 ((gint) div255 (py[x] * (255 - a) + k->off_y * a +
          ((k->yr * ((pv >> 16) & 255) + k->yg * ((pv >> 8) & 255) +
               k->yb * (pv & 255) + (1 << 13)) >>
              14)));
    }
    memset (l + x0, 0, (gsize) (x1 - x0) * 4);
  }
}

gboolean
si_overlay_render_supports (GstVideoFormat format)
{
  switch (format) {
    case GST_VIDEO_FORMAT_RGB:
    case GST_VIDEO_FORMAT_BGR:
    case GST_VIDEO_FORMAT_RGBx:
    case GST_VIDEO_FORMAT_BGRx:
    case GST_VIDEO_FORMAT_xRGB:
    case GST_VIDEO_FORMAT_xBGR:
    case GST_VIDEO_FORMAT_RGBA:
    case GST_VIDEO_FORMAT_BGRA:
    case GST_VIDEO_FORMAT_ARGB:
    case GST_VIDEO_FORMAT_ABGR:
    case GST_VIDEO_FORMAT_NV12:
    case GST_VIDEO_FORMAT_I420:
      return TRUE;
    default:
      return FALSE;
  }
}

/* Can Cairo address this frame in place?  *swap_rb: with R and B swapped. */
static gboolean
direct_format (
    GstVideoFormat format, cairo_format_t *cformat, gboolean *swap_rb)
{
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  const GstVideoFormat nx = GST_VIDEO_FORMAT_BGRx, na = GST_VIDEO_FORMAT_BGRA;
  const GstVideoFormat sx = GST_VIDEO_FORMAT_RGBx, sa = GST_VIDEO_FORMAT_RGBA;
#else
  const GstVideoFormat nx = GST_VIDEO_FORMAT_xRGB, na = GST_VIDEO_FORMAT_ARGB;
  const GstVideoFormat sx = GST_VIDEO_FORMAT_xBGR, sa = GST_VIDEO_FORMAT_ABGR;
#endif
  *swap_rb = (format == sx || format == sa);
  if (format == nx || format == sx) {
    *cformat = CAIRO_FORMAT_RGB24;
    return TRUE;
  }
  if (format == na || format == sa) {
    *cformat = CAIRO_FORMAT_ARGB32;
    return TRUE;
  }
  return FALSE;
}

static gboolean
render_direct (SiOverlayRender *r, GstVideoFrame *frame, cairo_format_t cformat,
    gboolean swap_rb, const SiOverlayStyle *style, const SiOverlayBox *boxes,
    guint n)
{
  cairo_surface_t *surf;
  cairo_t *cr;

  surf = cairo_image_surface_create_for_data (
      GST_VIDEO_FRAME_PLANE_DATA (frame, 0), cformat,
      GST_VIDEO_FRAME_WIDTH (frame), GST_VIDEO_FRAME_HEIGHT (frame),
      GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0));
  if (cairo_surface_status (surf) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy (surf);
    return FALSE; /* odd stride: the caller takes the layer route */
  }
  cr = cairo_create (surf);
  draw_boxes (r, cr, GST_VIDEO_FRAME_WIDTH (frame),
      GST_VIDEO_FRAME_HEIGHT (frame), style, boxes, n, swap_rb, FALSE, FALSE);
  if (cairo_status (cr) != CAIRO_STATUS_SUCCESS)
    GST_WARNING ("cairo: %s", cairo_status_to_string (cairo_status (cr)));
  cairo_destroy (cr);
  cairo_surface_flush (surf);
  cairo_surface_destroy (surf);
  return TRUE;
}

static gboolean
render_layer (SiOverlayRender *r, GstVideoFrame *frame,
    const SiOverlayStyle *style, const SiOverlayBox *boxes, guint n,
    GError **error)
{
  gint W = GST_VIDEO_FRAME_WIDTH (frame), H = GST_VIDEO_FRAME_HEIGHT (frame);
  gboolean yuv = GST_VIDEO_INFO_IS_YUV (&frame->info);
  SiYuvCoefs k;
  cairo_t *cr;
  guint i;

  if (r->layer == NULL || r->layer_w != W || r->layer_h != H) {
    if (r->layer)
      cairo_surface_destroy (r->layer);
    r->layer = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, W, H);
    if (cairo_surface_status (r->layer) != CAIRO_STATUS_SUCCESS) {
      g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_FAILED,
          "cannot allocate a %dx%d ARGB layer: %s", W, H,
          cairo_status_to_string (cairo_surface_status (r->layer)));
      cairo_surface_destroy (r->layer);
      r->layer = NULL;
      return FALSE;
    }
    r->layer_w = W;
    r->layer_h = H;
  }

  g_array_set_size (r->dirty, 0);
  cr = cairo_create (r->layer);
  draw_boxes (r, cr, W, H, style, boxes, n, FALSE, TRUE, yuv);
  cairo_destroy (cr);
  cairo_surface_flush (r->layer);

  if (yuv)
    yuv_coefs_init (&k, &frame->info);
  for (i = 0; i < r->dirty->len; i++) {
    SiRect rc = g_array_index (r->dirty, SiRect, i);

    /* even alignment may step one past an odd frame edge */
    rc.w = MIN (rc.w, W - rc.x);
    rc.h = MIN (rc.h, H - rc.y);
    if (rc.w <= 0 || rc.h <= 0)
      continue;
    if (yuv)
      blend_yuv420 (r, frame, &rc, &k);
    else
      blend_packed (r, frame, &rc);
  }
  cairo_surface_mark_dirty (r->layer);
  return TRUE;
}

gboolean
si_overlay_render_frame (SiOverlayRender *render, GstVideoFrame *frame,
    const SiOverlayStyle *style, const SiOverlayBox *boxes, guint n_boxes,
    GError **error)
{
  GstVideoFormat format = GST_VIDEO_FRAME_FORMAT (frame);
  cairo_format_t cformat;
  gboolean swap_rb;

  g_return_val_if_fail (render != NULL, FALSE);
  g_return_val_if_fail (style != NULL, FALSE);

  if (!si_overlay_render_supports (format)) {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_NOT_IMPLEMENTED,
        "cannot draw on %s frames", gst_video_format_to_string (format));
    return FALSE;
  }
  if (n_boxes == 0)
    return TRUE;
  if (!text_setup (render, style->font_desc, error))
    return FALSE;
  if (direct_format (format, &cformat, &swap_rb) &&
      render_direct (render, frame, cformat, swap_rb, style, boxes, n_boxes))
    return TRUE;
  return render_layer (render, frame, style, boxes, n_boxes, error);
}
