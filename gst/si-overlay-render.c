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

/* Where one box and its tab go: everything clipped to the frame. */
typedef struct
{
  SiRect rects[5]; /* outline edges, then the tab */
  gint n_rects;
  SiRect tab;
  gboolean has_tab;
  gboolean tab_cut;    /* the frame edge cuts the tab: clip the text */
  SiTextMask *lm, *sm; /* label and score masks, or NULL */
  gint lx, sx, ty;     /* their positions (text row ty) */
  guint32 color;       /* 0xRRGGBB */
  gboolean dark_text;  /* black text on a light tab */
} SiBoxGeom;

static inline void
geom_add (SiBoxGeom *g, gint x, gint y, gint w, gint h)
{
  if (w <= 0 || h <= 0)
    return;
  g->rects[g->n_rects].x = x;
  g->rects[g->n_rects].y = y;
  g->rects[g->n_rects].w = w;
  g->rects[g->n_rects].h = h;
  g->n_rects++;
}

static gboolean
box_geometry (SiOverlayRender *r, gint W, gint H, const SiOverlayStyle *style,
    const SiOverlayBox *b, gint lw, SiBoxGeom *g)
{
  gint x1 = round_clamp (b->x1, W), x2 = round_clamp (b->x2, W);
  gint y1 = round_clamp (b->y1, H), y2 = round_clamp (b->y2, H);
  gint w = x2 - x1, h = y2 - y1;

  if (w <= 0 || h <= 0)
    return FALSE;
  g->n_rects = 0;
  /* outline: four edge rectangles inside the box */
  if (w <= 2 * lw || h <= 2 * lw) {
    geom_add (g, x1, y1, w, h);
  } else {
    geom_add (g, x1, y1, w, lw);
    geom_add (g, x1, y2 - lw, w, lw);
    geom_add (g, x1, y1 + lw, lw, h - 2 * lw);
    geom_add (g, x2 - lw, y1 + lw, lw, h - 2 * lw);
  }

  g->color = si_overlay_class_color (b->class_key);
  g->dark_text = 0.299 * ((g->color >> 16) & 255) +
          0.587 * ((g->color >> 8) & 255) + 0.114 * (g->color & 255) >
      0.55 * 255;

  /* label tab above the box (inside it at the top of the frame) */
  g->lm = style->show_labels && b->label ? label_mask (r, b->label) : NULL;
  g->sm =
      style->show_scores && b->score >= 0.0f ? score_mask (r, b->score) : NULL;
  g->has_tab = g->lm || g->sm;
  if (g->has_tab) {
    gint tab_w = TEXT_PAD + (g->lm ? g->lm->width : 0) +
        (g->lm && g->sm ? 2 * TEXT_PAD : 0) + (g->sm ? g->sm->width : 0) +
        TEXT_PAD;
    gint tab_h = r->text_height + 2 * TEXT_PAD;
    gint tx = x1, ty = y1 - tab_h;

    if (ty < 0)
      ty = MAX (0, MIN (y1, H - tab_h));
    if (tx + tab_w > W)
      tx = MAX (0, W - tab_w);
    g->tab.x = tx;
    g->tab.y = ty;
    g->tab.w = MIN (tab_w, W - tx);
    g->tab.h = MIN (tab_h, H - ty);
    g->tab_cut = g->tab.w < tab_w || g->tab.h < tab_h;
    geom_add (g, g->tab.x, g->tab.y, g->tab.w, g->tab.h);
    g->lx = tx + TEXT_PAD;
    g->sx = g->lx + (g->lm ? g->lm->width + 2 * TEXT_PAD : 0);
    g->ty = ty + TEXT_PAD;
  }
  return TRUE;
}

/* Draws every box with cr (pixel-aligned, no antialiasing on fills).
 * dirty: when not NULL, every filled rectangle is appended to it. */
static void
draw_boxes (SiOverlayRender *r, cairo_t *cr, gint W, gint H,
    const SiOverlayStyle *style, const SiOverlayBox *boxes, guint n,
    gboolean swap_rb, GArray *dirty)
{
  gint lw = MAX (1, (gint) (style->line_width + 0.5));
  SiBoxGeom g;
  guint i;
  gint k;

  cairo_set_antialias (cr, CAIRO_ANTIALIAS_NONE);
  cairo_set_operator (cr, CAIRO_OPERATOR_OVER);
  for (i = 0; i < n; i++) {
    gdouble cr_, cg, cb;

    if (!box_geometry (r, W, H, style, &boxes[i], lw, &g))
      continue;
    for (k = 0; k < g.n_rects; k++)
      cairo_rectangle (
          cr, g.rects[k].x, g.rects[k].y, g.rects[k].w, g.rects[k].h);
    if (dirty)
      g_array_append_vals (dirty, g.rects, g.n_rects);
    cr_ = ((g.color >> 16) & 255) / 255.0;
    cg = ((g.color >> 8) & 255) / 255.0;
    cb = (g.color & 255) / 255.0;
    if (swap_rb)
      cairo_set_source_rgb (cr, cb, cg, cr_);
    else
      cairo_set_source_rgb (cr, cr_, cg, cb);
    cairo_fill (cr);

    if (g.has_tab) {
      if (g.dark_text)
        cairo_set_source_rgb (cr, 0, 0, 0);
      else
        cairo_set_source_rgb (cr, 1, 1, 1);
      /* the tab may be cut by the frame edge: keep text inside it (a clip
       * costs, so only then) */
      if (g.tab_cut) {
        cairo_save (cr);
        cairo_rectangle (cr, g.tab.x, g.tab.y, g.tab.w, g.tab.h);
        cairo_clip (cr);
      }
      if (g.lm)
        cairo_mask_surface (cr, g.lm->mask, g.lx, g.ty);
      if (g.sm)
        cairo_mask_surface (cr, g.sm->mask, g.sx, g.ty);
      if (g.tab_cut)
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

/* Planes of a 4:2:0 frame (NV12: U and V interleaved, pixel stride 2). */
typedef struct
{
  gint W, H;
  guint8 *y, *u, *v;
  gint ys, us, vs, cps;
} SiYuv420;

static void
yuv420_init (SiYuv420 *p, GstVideoFrame *frame)
{
  gboolean nv12 = GST_VIDEO_FRAME_FORMAT (frame) == GST_VIDEO_FORMAT_NV12;

  p->W = GST_VIDEO_FRAME_WIDTH (frame);
  p->H = GST_VIDEO_FRAME_HEIGHT (frame);
  p->y = GST_VIDEO_FRAME_PLANE_DATA (frame, 0);
  p->ys = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 0);
  p->u = GST_VIDEO_FRAME_PLANE_DATA (frame, 1);
  p->us = GST_VIDEO_FRAME_PLANE_STRIDE (frame, 1);
  p->v = nv12 ? p->u + 1 : GST_VIDEO_FRAME_PLANE_DATA (frame, 2);
  p->vs = nv12 ? p->us : GST_VIDEO_FRAME_PLANE_STRIDE (frame, 2);
  p->cps = nv12 ? 2 : 1;
}

/* Opaque RGB -> Y, U, V with the frame's matrix and range. */
static void
rgb_to_yuv (const SiYuvCoefs *k, guint32 rgb, guint8 yuv[3])
{
  gint r = (rgb >> 16) & 255, g = (rgb >> 8) & 255, b = rgb & 255;

  yuv[0] = clamp8 ((gint) div255 (k->off_y * 255 +
      ((k->yr * r + k->yg * g + k->yb * b + (1 << 13)) >> 14)));
  yuv[1] = clamp8 ((gint) div255 ((guint) MAX (
      0, 128 * 255 + ((k->ur * r + k->ug * g + k->ub * b + (1 << 13)) >> 14))));
  yuv[2] = clamp8 ((gint) div255 ((guint) MAX (
      0, 128 * 255 + ((k->vr * r + k->vg * g + k->vb * b + (1 << 13)) >> 14))));
}

/* How many of the (1 or 2) pixels 2c, 2c + 1 below n lie in [lo, hi). */
static inline gint
span_cover (gint c, gint lo, gint hi, gint n, gint *total)
{
  gint a = 2 * c, cov = 0;

  *total = a + 1 < n ? 2 : 1;
  cov += a >= lo && a < hi;
  cov += a + 1 < n && a + 1 >= lo && a + 1 < hi;
  return cov;
}

/* An opaque rectangle straight into the planes: luma per pixel; a chroma
 * sample takes the colour in proportion to the pixels of its 2x2 block
 * that the rectangle covers (the mean the ARGB-layer route would give). */
static void
yuv420_fill_rect (const SiYuv420 *p, const SiRect *rc, const guint8 c[3])
{
  gint x0 = rc->x, y0 = rc->y, x1 = rc->x + rc->w, y1 = rc->y + rc->h;
  gint y, cx, cy;

  for (y = y0; y < y1; y++)
    memset (p->y + (gsize) y * p->ys + x0, c[0], (gsize) (x1 - x0));

  for (cy = y0 / 2; cy <= (y1 - 1) / 2; cy++) {
    gint ty, ycov = span_cover (cy, y0, y1, p->H, &ty);
    guint8 *u = p->u + (gsize) cy * p->us, *v = p->v + (gsize) cy * p->vs;

    for (cx = x0 / 2; cx <= (x1 - 1) / 2; cx++) {
      gint tx, cov = ycov * span_cover (cx, x0, x1, p->W, &tx), tot = tx * ty;
      guint8 *pu = u + cx * p->cps, *pv = v + cx * p->cps;

      if (cov == tot) {
        *pu = c[1];
        *pv = c[2];
      } else {
        *pu = (guint8) ((*pu * (tot - cov) + c[1] * cov + tot / 2) / tot);
        *pv = (guint8) ((*pv * (tot - cov) + c[2] * cov + tot / 2) / tot);
      }
    }
  }
}

/* Text: an A8 mask of neutral colour (luma yt) blended at (mx, my), cut to
 * clip; chroma moves towards 128 by the block's mean coverage. */
static void
yuv420_blend_mask (const SiYuv420 *p, const SiTextMask *tm, gint mx, gint my,
    const SiRect *clip, guint8 yt)
{
  const guint8 *mdata = cairo_image_surface_get_data (tm->mask);
  gint ms = cairo_image_surface_get_stride (tm->mask);
  gint x0 = MAX (mx, clip->x), y0 = MAX (my, clip->y);
  gint x1 = MIN (mx + tm->width, clip->x + clip->w);
  gint y1 = MIN (my + tm->height, clip->y + clip->h);
  gint x, y, cx, cy;

  if (x0 >= x1 || y0 >= y1)
    return;
  /* chroma first, from the mask alone */
  for (cy = y0 / 2; cy <= (y1 - 1) / 2; cy++) {
    guint8 *u = p->u + (gsize) cy * p->us, *v = p->v + (gsize) cy * p->vs;

    for (cx = x0 / 2; cx <= (x1 - 1) / 2; cx++) {
      gint sum = 0, tot = 0, m;

      for (y = 2 * cy; y < 2 * cy + 2 && y < p->H; y++)
        for (x = 2 * cx; x < 2 * cx + 2 && x < p->W; x++) {
          tot++;
          if (x >= x0 && x < x1 && y >= y0 && y < y1)
            sum += mdata[(gsize) (y - my) * ms + (x - mx)];
        }
      if (sum == 0)
        continue;
      m = (sum + tot / 2) / tot;
      u[cx * p->cps] = (guint8) div255 (u[cx * p->cps] * (255 - m) + 128 * m);
      v[cx * p->cps] = (guint8) div255 (v[cx * p->cps] * (255 - m) + 128 * m);
    }
  }
  for (y = y0; y < y1; y++) {
    const guint8 *mrow = mdata + (gsize) (y - my) * ms - mx;
    guint8 *py = p->y + (gsize) y * p->ys;

    for (x = x0; x < x1; x++) {
      guint m = mrow[x];

      if (m)
        py[x] = (guint8) div255 (py[x] * (255 - m) + yt * m);
    }
  }
}

/* NV12 / I420: boxes and tabs filled in the planes, Cairo/Pango-rendered
 * text masks blended on top, in drawing order. */
static void
render_yuv420 (SiOverlayRender *r, GstVideoFrame *frame,
    const SiOverlayStyle *style, const SiOverlayBox *boxes, guint n)
{
  gint lw = MAX (1, (gint) (style->line_width + 0.5));
  guint8 black[3], white[3];
  SiYuvCoefs k;
  SiYuv420 p;
  SiBoxGeom g;
  guint i;
  gint j;

  yuv420_init (&p, frame);
  yuv_coefs_init (&k, &frame->info);
  rgb_to_yuv (&k, 0x000000, black);
  rgb_to_yuv (&k, 0xffffff, white);
  for (i = 0; i < n; i++) {
    guint8 c[3];

    if (!box_geometry (r, p.W, p.H, style, &boxes[i], lw, &g))
      continue;
    rgb_to_yuv (&k, g.color, c);
    for (j = 0; j < g.n_rects; j++)
      yuv420_fill_rect (&p, &g.rects[j], c);
    if (g.lm)
      yuv420_blend_mask (
          &p, g.lm, g.lx, g.ty, &g.tab, g.dark_text ? black[0] : white[0]);
    if (g.sm)
      yuv420_blend_mask (
          &p, g.sm, g.sx, g.ty, &g.tab, g.dark_text ? black[0] : white[0]);
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
      GST_VIDEO_FRAME_HEIGHT (frame), style, boxes, n, swap_rb, NULL);
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
  draw_boxes (r, cr, W, H, style, boxes, n, FALSE, r->dirty);
  cairo_destroy (cr);
  cairo_surface_flush (r->layer);

  /* each rectangle is blended and cleared: overlaps blend once */
  for (i = 0; i < r->dirty->len; i++)
    blend_packed (r, frame, &g_array_index (r->dirty, SiRect, i));
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
  if (format == GST_VIDEO_FORMAT_NV12 || format == GST_VIDEO_FORMAT_I420) {
    render_yuv420 (render, frame, style, boxes, n_boxes);
    return TRUE;
  }
  if (direct_format (format, &cformat, &swap_rb) &&
      render_direct (render, frame, cformat, swap_rb, style, boxes, n_boxes))
    return TRUE;
  return render_layer (render, frame, style, boxes, n_boxes, error);
}
