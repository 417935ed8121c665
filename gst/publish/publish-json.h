/* Detection message: one frame's detections as a plain C struct and its JSON
 * form, built with json-glib. No GStreamer here. The wire format is specified
 * by docs/detection-message.schema.json (version 1); keep both in step. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define SI_PUBLISH_JSON_VERSION 1

/* One detection. Pixel box with a top-left origin in frame coordinates. */
typedef struct
{
  const gchar *label; /* nullable: unknown label */
  gint class_id;      /* < 0: unknown class */
  gdouble score;      /* [0, 1]; < 0: unknown */
  gdouble x, y, w, h; /* pixels */
} SiPublishDetection;

/* One frame; every pointer is borrowed for the duration of the call. */
typedef struct
{
  const gchar *source_id; /* camera name, never NULL */
  guint64 frame_number;   /* 0-based, counted by the element */
  gint64 pts_ns;          /* < 0: no pts */
  gint64 wall_time_us;    /* microseconds since the Unix epoch */
  gint width, height;     /* frame size in pixels */
  const gchar *model;     /* nullable */
  gboolean repeated;      /* detections carried over from an earlier frame */
  const SiPublishDetection *dets; /* (n_dets) */
  guint n_dets;
} SiPublishFrame;

/* Returns the compact JSON text (no trailing newline), owned by the caller
 * (g_free); its length in *len when len is not NULL. Never fails. */
gchar *si_publish_json_build (const SiPublishFrame *frame, gsize *len);

G_END_DECLS
