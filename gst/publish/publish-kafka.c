/* Kafka transport on librdkafka: one producer per element, messages keyed by
 * source-id (one camera stays in one partition, in order; idempotence on by
 * default), extra settings from kafka-config, broker reachability checked at
 * open, delivery reports served by the sender thread through service(). */
#include "publish-transport.h"

#include "si-engine.h"

#ifdef SI_HAVE_RDKAFKA

#include <librdkafka/rdkafka.h>
#include <string.h>

/* Slice of the connect timeout per metadata request at open. */
#define SI_KAFKA_PROBE_MS 200

typedef struct
{
  rd_kafka_t *rk;
  rd_kafka_topic_t *rkt;
  gchar *address, *key;
  gint cancelled; /* atomic */
  GMutex err_lock;
  gchar *last_error; /* from error_cb, for the open error */
  gboolean all_down; /* every broker unreachable (error_cb) */
  SiPublishDoneFunc done;
  gpointer done_data;
} SiPublishKafka;

static void
on_delivery (rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque)
{
  SiPublishKafka *k = opaque;

  if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
    k->done (k->done_data, 1, TRUE, NULL);
  } else {
    gchar *reason = g_strdup_printf ("Kafka delivery to %s failed: %s",
        k->address, rd_kafka_err2str (msg->err));
    k->done (k->done_data, 1, FALSE, reason);
    g_free (reason);
  }
}

static void
on_error (rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
  SiPublishKafka *k = opaque;

  g_mutex_lock (&k->err_lock);
  /* "n/n brokers are down" says less than the connect error before it. */
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
    k->all_down = TRUE;
  if (err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || k->last_error == NULL) {
    g_free (k->last_error);
    k->last_error = g_strdup (reason);
  }
  g_mutex_unlock (&k->err_lock);
}

static gboolean
kafka_send (gpointer ctx, const gchar *data, gsize len)
{
  SiPublishKafka *k = ctx;

  for (;;) {
    rd_kafka_resp_err_t err;
    gchar *reason;

    if (g_atomic_int_get (&k->cancelled))
      return FALSE;
    err = rd_kafka_producev (k->rk, RD_KAFKA_V_RKT (k->rkt),
        RD_KAFKA_V_KEY (k->key, strlen (k->key)),
        RD_KAFKA_V_VALUE ((void *) data, len),
        RD_KAFKA_V_MSGFLAGS (RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
      return TRUE;
    if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      /* librdkafka's own buffer is full: let deliveries drain it. */
      rd_kafka_poll (k->rk, 100);
      continue;
    }
    reason = g_strdup_printf (
        "Kafka produce to %s failed: %s", k->address, rd_kafka_err2str (err));
    k->done (k->done_data, 1, FALSE, reason);
    g_free (reason);
    return TRUE;
  }
}

static void
kafka_service (gpointer ctx, guint timeout_ms)
{
  SiPublishKafka *k = ctx;

  rd_kafka_poll (k->rk, (int) timeout_ms);
}

static void
kafka_cancel (gpointer ctx)
{
  SiPublishKafka *k = ctx;

  g_atomic_int_set (&k->cancelled, 1);
}

static void
kafka_free (SiPublishKafka *k)
{
  if (k->rkt != NULL)
    rd_kafka_topic_destroy (k->rkt);
  if (k->rk != NULL)
    rd_kafka_destroy (k->rk);
  g_mutex_clear (&k->err_lock);
  g_free (k->last_error);
  g_free (k->address);
  g_free (k->key);
  g_free (k);
}

static void
kafka_close (gpointer ctx)
{
  SiPublishKafka *k = ctx;

  /* The queue already waited for deliveries (flush-timeout): what is left
   * is purged, and its failed delivery reports settle it as lost. */
  rd_kafka_purge (k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_flush (k->rk, 1000);
  kafka_free (k);
}

static const SiPublishOps kafka_ops = {
  .name = "kafka",
  .send = kafka_send,
  .service = kafka_service,
  .cancel = kafka_cancel,
  .close = kafka_close,
};

static gboolean
conf_set (rd_kafka_conf_t *conf, const gchar *key, const gchar *value,
    const gchar *address, GError **error)
{
  char errstr[512];

  if (rd_kafka_conf_set (conf, key, value, errstr, sizeof errstr) !=
      RD_KAFKA_CONF_OK) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "Kafka setting %s=%s for %s: %s", key, value, address, errstr);
    return FALSE;
  }
  return TRUE;
}

/* kafka-config: "key=value;key=value", blanks around items ignored. */
static gboolean
apply_config_string (rd_kafka_conf_t *conf, const gchar *text,
    const gchar *address, GError **error)
{
  gchar **items;
  gboolean ok = TRUE;
  guint i;

  if (text == NULL)
    return TRUE;
  items = g_strsplit (text, ";", -1);
  for (i = 0; ok && items[i] != NULL; i++) {
    gchar *item = g_strstrip (items[i]);
    gchar *eq;

    if (item[0] == '\0')
      continue;
    eq = strchr (item, '=');
    if (eq == NULL || eq == item) {
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "kafka-config item \"%s\" is not key=value", item);
      ok = FALSE;
      break;
    }
    *eq = '\0';
    ok =
        conf_set (conf, g_strstrip (item), g_strstrip (eq + 1), address, error);
  }
  g_strfreev (items);
  return ok;
}

/* Asks the cluster for metadata until it answers, every broker is reported
 * down, or timeout_ms passes; error_cb runs from rd_kafka_poll(). */
static gboolean
probe_brokers (SiPublishKafka *k, guint timeout_ms, GError **error)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  rd_kafka_resp_err_t err;

  for (;;) {
    const struct rd_kafka_metadata *md = NULL;
    gboolean down;

    err = rd_kafka_metadata (k->rk, 0, k->rkt, &md, SI_KAFKA_PROBE_MS);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      rd_kafka_metadata_destroy (md);
      return TRUE;
    }
    rd_kafka_poll (k->rk, 0);
    g_mutex_lock (&k->err_lock);
    down = k->all_down;
    g_mutex_unlock (&k->err_lock);
    if (down || g_get_monotonic_time () >= end)
      break;
  }
  g_mutex_lock (&k->err_lock);
  g_set_error (error, SI_ERROR, SI_ERROR_IO,
      "cannot reach Kafka brokers at %s: %s", k->address,
      k->last_error != NULL ? k->last_error : rd_kafka_err2str (err));
  g_mutex_unlock (&k->err_lock);
  return FALSE;
}

gboolean
si_publish_kafka_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error)
{
  SiPublishKafka *k;
  rd_kafka_conf_t *conf;
  char errstr[512];
  gchar *buffered;
  gboolean ok;

  if (cfg->address == NULL || cfg->address[0] == '\0') {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "method=kafka needs an address (bootstrap servers host:port,...)");
    return FALSE;
  }
  k = g_new0 (SiPublishKafka, 1);
  g_mutex_init (&k->err_lock);
  k->address = g_strdup (cfg->address);
  k->key = g_strdup (cfg->source_id);
  k->done = cfg->done;
  k->done_data = cfg->done_data;

  conf = rd_kafka_conf_new ();
  /* librdkafka's buffer holds at least what our queue lets through. */
  buffered = g_strdup_printf ("%u", MAX (cfg->max_queued, 1000));
  ok = conf_set (conf, "bootstrap.servers", cfg->address, k->address, error) &&
      conf_set (conf, "enable.idempotence", "true", k->address, error) &&
      conf_set (
          conf, "queue.buffering.max.messages", buffered, k->address, error) &&
      apply_config_string (conf, cfg->kafka_config, k->address, error);
  g_free (buffered);
  if (!ok) {
    rd_kafka_conf_destroy (conf);
    goto fail;
  }
  rd_kafka_conf_set_opaque (conf, k);
  rd_kafka_conf_set_dr_msg_cb (conf, on_delivery);
  rd_kafka_conf_set_error_cb (conf, on_error);

  /* rd_kafka_new() owns conf on success only. */
  k->rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (k->rk == NULL) {
    rd_kafka_conf_destroy (conf);
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "cannot create Kafka producer for %s: %s", k->address, errstr);
    goto fail;
  }
  k->rkt = rd_kafka_topic_new (k->rk, cfg->topic, NULL);
  if (k->rkt == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "invalid Kafka topic \"%s\" for %s: %s", cfg->topic, k->address,
        rd_kafka_err2str (rd_kafka_last_error ()));
    goto fail;
  }
  if (!probe_brokers (k, cfg->connect_timeout_ms, error))
    goto fail;
  out->ops = &kafka_ops;
  out->ctx = k;
  return TRUE;

fail:
  kafka_free (k);
  return FALSE;
}

#else /* !SI_HAVE_RDKAFKA */

gboolean
si_publish_kafka_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error)
{
  g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
      "method=kafka: built without librdkafka");
  return FALSE;
}

#endif
