/* The bounded send queue between the streaming thread and the network: push
 * never blocks (a full queue drops the new message and counts it), one sender
 * thread hands messages to a transport, and every message pushed ends up
 * counted exactly once as delivered or dropped. */
#pragma once

#include "publish-transport.h"

G_BEGIN_DECLS

typedef struct _SiPublishQueue SiPublishQueue;

/* n messages were lost for reason; called from any thread, no lock held. */
typedef void (*SiPublishLossFunc) (
    gpointer user_data, guint n, const gchar *reason);

/* max_queued: messages pushed but not yet settled (waiting here or in flight
 * in the transport), at least 1. */
SiPublishQueue *si_publish_queue_new (
    guint max_queued, SiPublishLossFunc loss, gpointer user_data);
/* The SiPublishDoneFunc to put in SiPublishConfig, with the queue as data. */
void si_publish_queue_done (
    gpointer queue, guint n, gboolean ok, const gchar *reason);
/* Starts the sender thread on an opened transport; the queue owns it from
 * now on and closes it in si_publish_queue_stop(). */
gboolean si_publish_queue_start (
    SiPublishQueue *q, const SiPublishTransport *transport, GError **error);
/* Takes data (transfer full). FALSE: the queue was full or stopped, the
 * message was freed and counted as dropped. Never blocks on the network. */
gboolean si_publish_queue_push (SiPublishQueue *q, gchar *data, gsize len);
/* Waits up to timeout_ms for every pushed message to settle; TRUE if all
 * did. */
gboolean si_publish_queue_drain (SiPublishQueue *q, guint timeout_ms);
/* Stops the sender thread, closes the transport; whatever was not delivered
 * is counted as dropped. Safe to call twice. */
void si_publish_queue_stop (SiPublishQueue *q);
void si_publish_queue_free (SiPublishQueue **q);

guint64 si_publish_queue_get_delivered (SiPublishQueue *q);
guint64 si_publish_queue_get_dropped (SiPublishQueue *q);

G_END_DECLS
