/* si-overlay-render.h: draws detection boxes with Cairo into a video frame.
 * Packed formats whose bytes Cairo can address are drawn in place; every
 * other format is drawn into an ARGB layer and blended over the frame
 * (touched rectangles only).  Used by the stageoverlay element and bench.
 */
#ifndef SI_OVERLAY_RENDER_H
#define SI_OVERLAY_RENDER_H

#include <gst/video/video.h>

G_BEGIN_DECLS

typedef struct _SiOverlayRender SiOverlayRender;

/* One box to draw, in frame pixels. */
typedef struct
{
  gfloat x1, y1, x2, y2;
  guint32 class_key;  /* picks the colour: the class id, or a label hash */
  const gchar *label; /* interned string (g_intern_string) or NULL */
  gfloat score;       /* < 0: no score */
} SiOverlayBox;

typedef struct
{
  gdouble line_width;
  gboolean show_labels;
  gboolean show_scores;
  const gchar *font_desc;
} SiOverlayStyle;

SiOverlayRender *si_overlay_render_new (void);
void si_overlay_render_free (SiOverlayRender **render);

/* TRUE when the renderer can draw on this format (all formats it knows). */
gboolean si_overlay_render_supports (GstVideoFormat format);

/* Draws n boxes on a frame mapped for writing.  FALSE (and a message in
 * *error) on an unsupported format or an allocation failure. */
gboolean si_overlay_render_frame (SiOverlayRender *render, GstVideoFrame *frame,
    const SiOverlayStyle *style, const SiOverlayBox *boxes, guint n_boxes,
    GError **error);

/* The stable colour of a class key, as 0xRRGGBB. */
guint32 si_overlay_class_color (guint32 class_key);

G_END_DECLS

#endif /* SI_OVERLAY_RENDER_H */
