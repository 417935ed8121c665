/* Bounded send queue and sender thread (see publish-queue.h). One lock
 * guards the pending list and the counters; the transport is called without
 * it so that its delivery callbacks may settle messages from any thread. */
#include "publish-queue.h"

/* How long an idle sender sleeps between two service() calls: bounds the
 * delay of Kafka delivery reports (not of sends). */
#define SI_PUBLISH_SERVICE_MS 50

typedef struct
{
  gchar *data;
  gsize len;
} SiPublishMsg;

struct _SiPublishQueue
{
  GMutex lock;
  GCond cond;
  GQueue pending; /* SiPublishMsg*, not yet handed to the transport */
  guint max_queued;
  guint outstanding; /* pending + taken by the transport, not settled */
  guint64 delivered, dropped;
  gboolean stopping, started;
  GThread *thread;
  SiPublishTransport transport;
  SiPublishLossFunc loss;
  gpointer loss_data;
};

static void
msg_free (SiPublishMsg *m)
{
  g_free (m->data);
  g_free (m);
}

SiPublishQueue *
si_publish_queue_new (
    guint max_queued, SiPublishLossFunc loss, gpointer user_data)
{
  SiPublishQueue *q = g_new0 (SiPublishQueue, 1);

  g_mutex_init (&q->lock);
  g_cond_init (&q->cond);
  g_queue_init (&q->pending);
  q->max_queued = MAX (max_queued, 1);
  q->loss = loss;
  q->loss_data = user_data;
  return q;
}

void
si_publish_queue_done (
    gpointer queue, guint n, gboolean ok, const gchar *reason)
{
  SiPublishQueue *q = queue;

  if (n == 0)
    return;
  g_mutex_lock (&q->lock);
  n = MIN (n, q->outstanding);
  q->outstanding -= n;
  if (ok)
    q->delivered += n;
  else
    q->dropped += n;
  g_cond_broadcast (&q->cond);
  g_mutex_unlock (&q->lock);
  if (!ok && n > 0 && q->loss != NULL)
    q->loss (q->loss_data, n, reason != NULL ? reason : "delivery failed");
}

static gpointer
sender_main (gpointer data)
{
  SiPublishQueue *q = data;
  const SiPublishOps *ops = q->transport.ops;
  gpointer ctx = q->transport.ctx;

  g_mutex_lock (&q->lock);
  while (!q->stopping) {
    SiPublishMsg *m = g_queue_pop_head (&q->pending);
    gboolean taken;

    if (m == NULL) {
      if (ops->service != NULL) {
        /* Serve delivery reports, then sleep until a push or the next
         * round: a new message never waits for the service interval. */
        g_mutex_unlock (&q->lock);
        ops->service (ctx, 0);
        g_mutex_lock (&q->lock);
        if (q->pending.length == 0 && !q->stopping)
          g_cond_wait_until (&q->cond, &q->lock,
              g_get_monotonic_time () +
                  SI_PUBLISH_SERVICE_MS * G_TIME_SPAN_MILLISECOND);
      } else {
        g_cond_wait (&q->cond, &q->lock);
      }
      continue;
    }
    g_mutex_unlock (&q->lock);
    taken = ops->send (ctx, m->data, m->len);
    msg_free (m);
    if (!taken) /* cancelled while waiting: lost at shutdown */
      si_publish_queue_done (q, 1, FALSE, "not sent before shutdown");
    else if (ops->service != NULL)
      ops->service (ctx, 0);
    g_mutex_lock (&q->lock);
  }
  g_mutex_unlock (&q->lock);
  return NULL;
}

gboolean
si_publish_queue_start (
    SiPublishQueue *q, const SiPublishTransport *t, GError **error)
{
  g_return_val_if_fail (q != NULL && t != NULL && t->ops != NULL, FALSE);
  g_return_val_if_fail (!q->started, FALSE);

  q->transport = *t;
  q->started = TRUE;
  q->thread = g_thread_try_new ("si-publish", sender_main, q, error);
  if (q->thread == NULL) {
    q->transport.ops->close (q->transport.ctx);
    q->transport.ops = NULL;
    return FALSE;
  }
  return TRUE;
}

gboolean
si_publish_queue_push (SiPublishQueue *q, gchar *data, gsize len)
{
  SiPublishMsg *m;
  const gchar *reason = NULL;

  g_mutex_lock (&q->lock);
  if (q->stopping || !q->started)
    reason = "publisher stopped";
  else if (q->outstanding >= q->max_queued)
    reason = "send queue full (max-queued reached)";
  if (reason != NULL) {
    q->dropped++;
    g_mutex_unlock (&q->lock);
    g_free (data);
    if (q->loss != NULL)
      q->loss (q->loss_data, 1, reason);
    return FALSE;
  }
  m = g_new (SiPublishMsg, 1);
  m->data = data;
  m->len = len;
  g_queue_push_tail (&q->pending, m);
  q->outstanding++;
  g_cond_broadcast (&q->cond);
  g_mutex_unlock (&q->lock);
  return TRUE;
}

gboolean
si_publish_queue_drain (SiPublishQueue *q, guint timeout_ms)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gboolean all;

  g_mutex_lock (&q->lock);
  while (q->outstanding > 0 && q->started && !q->stopping)
    if (!g_cond_wait_until (&q->cond, &q->lock, end))
      break;
  all = q->outstanding == 0;
  g_mutex_unlock (&q->lock);
  return all;
}

void
si_publish_queue_stop (SiPublishQueue *q)
{
  guint never_sent;

  g_mutex_lock (&q->lock);
  if (!q->started || q->stopping) {
    g_mutex_unlock (&q->lock);
    return;
  }
  q->stopping = TRUE;
  g_cond_broadcast (&q->cond);
  g_mutex_unlock (&q->lock);

  q->transport.ops->cancel (q->transport.ctx);
  g_thread_join (q->thread);
  q->thread = NULL;

  g_mutex_lock (&q->lock);
  never_sent = q->pending.length;
  g_queue_clear_full (&q->pending, (GDestroyNotify) msg_free);
  g_mutex_unlock (&q->lock);
  si_publish_queue_done (q, never_sent, FALSE, "not sent before shutdown");

  /* Reports what is still in flight as lost through done(). */
  q->transport.ops->close (q->transport.ctx);
  q->transport.ops = NULL;

  /* A transport that lost track of a message must not leave the counters
   * short: whatever is unsettled now is lost. */
  g_mutex_lock (&q->lock);
  never_sent = q->outstanding;
  g_mutex_unlock (&q->lock);
  si_publish_queue_done (q, never_sent, FALSE, "lost at shutdown");
}

void
si_publish_queue_free (SiPublishQueue **pq)
{
  SiPublishQueue *q;

  if (pq == NULL || *pq == NULL)
    return;
  q = *pq;
  si_publish_queue_stop (q);
  g_queue_clear_full (&q->pending, (GDestroyNotify) msg_free);
  g_cond_clear (&q->cond);
  g_mutex_clear (&q->lock);
  g_free (q);
  *pq = NULL;
}

guint64
si_publish_queue_get_delivered (SiPublishQueue *q)
{
  guint64 v;

  g_mutex_lock (&q->lock);
  v = q->delivered;
  g_mutex_unlock (&q->lock);
  return v;
}

guint64
si_publish_queue_get_dropped (SiPublishQueue *q)
{
  guint64 v;

  g_mutex_lock (&q->lock);
  v = q->dropped;
  g_mutex_unlock (&q->lock);
  return v;
}
