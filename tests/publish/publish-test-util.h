/* Shared helpers of the stagemetapublish tests: free ports, the frame
 * generator (metas attached with the meta API), the JSON Schema subset
 * validator and the check of one message against the metas of its frame. */
#pragma once

#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define PT_WIDTH 64
#define PT_HEIGHT 48
#define PT_MODEL "stageinteractor-tiny"
#define PT_FRAME_NS (40 * GST_MSECOND)

/* A TCP port on 127.0.0.1 that nothing listens on right now. */
guint16 pt_free_port (void);

/* Adds frame i's metas to buf (writable): SiDetectionMeta with i % 3
 * detections except when i % 4 == 3, mirrored as ROI metas on even frames,
 * and a foreign ROI meta when i % 5 is 0 (with a "detection" structure) or
 * 1 (without). */
void pt_attach_metas (GstBuffer *buf, guint i);
/* A PT_WIDTH x PT_HEIGHT RGBA frame with pts i * PT_FRAME_NS and i's metas. */
GstBuffer *pt_make_frame (guint i);
const gchar *pt_caps_string (void);

/* Validates instance against schema (the subset of JSON Schema 2020-12 that
 * docs/detection-message.schema.json uses; an unknown keyword is an error).
 * FALSE with *why set (g_free) on the first violation. */
gboolean pt_schema_validate (JsonNode *schema, JsonNode *instance, gchar **why);
/* The schema of docs/, parsed once; never NULL (aborts the test). */
JsonNode *pt_schema (void);

/* Asserts that text is a valid message for frame i of source_id, equal to
 * the metas pt_attach_metas put on it (frame size w x h). Returns the frame
 * number it carries. */
guint64 pt_check_message (const gchar *text, gsize len, guint i,
    const gchar *source_id, gint w, gint h);
/* Parses text (asserting it is a JSON object) and returns frame_number. */
guint64 pt_message_frame (const gchar *text, gsize len);

/* A harness on e (sink -> src) with pt_caps_string () caps. */
GstHarness *pt_new_harness (GstElement *e);
/* Pushes frames first .. first + n - 1 (pt_make_frame), asserting that
 * each comes out as it went in (the publisher is passthrough). */
void pt_push_frames (GstHarness *h, guint first, guint n);
/* A guint64 property of e. */
guint64 pt_get_u64 (GstElement *e, const gchar *name);
/* Asserts that e fails to start with a bus error whose message contains
 * every needle (NULL-terminated), and leaves e in NULL. */
void pt_expect_start_error (GstElement *e, const gchar *const *needles);

/* Runs prog with args, returns its pid; stdout/stderr to the test's. */
GPid pt_spawn (const gchar *const *argv);
/* SIGTERM, then waits for the process. */
void pt_kill (GPid pid);
/* Waits until a TCP connect to 127.0.0.1:port succeeds, up to timeout_ms. */
gboolean pt_wait_port (guint16 port, guint timeout_ms);

G_END_DECLS
