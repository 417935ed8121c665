/* MQTT transport on libmosquitto: connects at open (a bus error names the
 * address and reason), then libmosquitto's own thread keeps the connection,
 * reconnecting with exponential backoff; QoS 1/2 messages it holds are
 * resent after a reconnect and settled on the broker's acknowledgement. */
#include "publish-transport.h"

#include "si-engine.h"

#ifdef SI_HAVE_MOSQUITTO

#include <errno.h>
#include <mosquitto.h>
#include <string.h>

#define SI_MQTT_KEEPALIVE_S 30
#define SI_MQTT_BACKOFF_MIN_S 1
#define SI_MQTT_BACKOFF_MAX_S 30

typedef struct
{
  struct mosquitto *mosq;
  GMutex lock;
  GCond cond;
  gboolean connected, cancelled, got_connack;
  gint connack_rc;
  guint inflight; /* QoS > 0 messages published, not acknowledged */
  gint qos;
  gchar *topic, *address;
  SiPublishDoneFunc done;
  gpointer done_data;
} SiPublishMqtt;

static void
on_connect (struct mosquitto *mosq, void *obj, int rc)
{
  SiPublishMqtt *m = obj;

  g_mutex_lock (&m->lock);
  m->got_connack = TRUE;
  m->connack_rc = rc;
  m->connected = rc == 0;
  g_cond_broadcast (&m->cond);
  g_mutex_unlock (&m->lock);
}

static void
on_disconnect (struct mosquitto *mosq, void *obj, int rc)
{
  SiPublishMqtt *m = obj;

  g_mutex_lock (&m->lock);
  m->connected = FALSE;
  g_mutex_unlock (&m->lock);
}

static void
on_publish (struct mosquitto *mosq, void *obj, int mid)
{
  SiPublishMqtt *m = obj;

  /* QoS 0 messages are settled when handed over (see mqtt_send). */
  if (m->qos == 0)
    return;
  g_mutex_lock (&m->lock);
  if (m->inflight > 0)
    m->inflight--;
  g_mutex_unlock (&m->lock);
  m->done (m->done_data, 1, TRUE, NULL);
}

static gboolean
mqtt_send (gpointer ctx, const gchar *data, gsize len)
{
  SiPublishMqtt *m = ctx;
  int rc;

  for (;;) {
    /* Messages wait in our queue, not in libmosquitto, while the broker is
     * away: the queue bound and the drop counter stay exact. */
    g_mutex_lock (&m->lock);
    while (!m->connected && !m->cancelled)
      g_cond_wait (&m->cond, &m->lock);
    if (m->cancelled) {
      g_mutex_unlock (&m->lock);
      return FALSE;
    }
    if (m->qos > 0)
      m->inflight++;
    g_mutex_unlock (&m->lock);

    rc = mosquitto_publish (
        m->mosq, NULL, m->topic, (int) len, data, m->qos, false);
    if (rc == MOSQ_ERR_SUCCESS) {
      if (m->qos == 0)
        m->done (m->done_data, 1, TRUE, NULL);
      return TRUE;
    }
    g_mutex_lock (&m->lock);
    if (m->qos > 0)
      m->inflight--;
    if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST) {
      /* Lost the connection since the check (QoS 0 only: libmosquitto
       * keeps QoS 1/2 messages itself). on_disconnect may not have run yet
       * and on_connect may already have: retry shortly rather than trust
       * the flag. */
      if (!m->cancelled)
        g_cond_wait_until (&m->cond, &m->lock,
            g_get_monotonic_time () + 100 * G_TIME_SPAN_MILLISECOND);
      g_mutex_unlock (&m->lock);
      continue;
    }
    g_mutex_unlock (&m->lock);
    {
      gchar *reason = g_strdup_printf (
          "MQTT publish to %s failed: %s", m->address, mosquitto_strerror (rc));
      m->done (m->done_data, 1, FALSE, reason);
      g_free (reason);
    }
    return TRUE;
  }
}

static void
mqtt_cancel (gpointer ctx)
{
  SiPublishMqtt *m = ctx;

  g_mutex_lock (&m->lock);
  m->cancelled = TRUE;
  g_cond_broadcast (&m->cond);
  g_mutex_unlock (&m->lock);
}

static void
mqtt_free (SiPublishMqtt *m)
{
  if (m->mosq != NULL)
    mosquitto_destroy (m->mosq);
  g_mutex_clear (&m->lock);
  g_cond_clear (&m->cond);
  g_free (m->topic);
  g_free (m->address);
  g_free (m);
}

static void
mqtt_close (gpointer ctx)
{
  SiPublishMqtt *m = ctx;
  guint lost;

  mqtt_cancel (m);
  mosquitto_disconnect (m->mosq);
  mosquitto_loop_stop (m->mosq, false);
  g_mutex_lock (&m->lock);
  lost = m->inflight;
  m->inflight = 0;
  g_mutex_unlock (&m->lock);
  if (lost > 0)
    m->done (m->done_data, lost, FALSE,
        "not acknowledged by the MQTT broker before shutdown");
  mqtt_free (m);
}

static const SiPublishOps mqtt_ops = {
  .name = "mqtt",
  .send = mqtt_send,
  .service = NULL,
  .cancel = mqtt_cancel,
  .close = mqtt_close,
};

static gpointer
lib_init (gpointer unused)
{
  mosquitto_lib_init ();
  return NULL;
}

/* host[:port], host may be a bracketed IPv6 address. */
static gboolean
parse_address (const gchar *address, gint default_port, gchar **host,
    gint *port, GError **error)
{
  const gchar *colon;
  gchar *end = NULL;
  gint64 p;

  if (address == NULL || address[0] == '\0') {
    *host = g_strdup ("localhost");
    *port = default_port;
    return TRUE;
  }
  if (address[0] == '[') {
    const gchar *close = strchr (address, ']');
    if (close == NULL)
      goto bad;
    *host = g_strndup (address + 1, close - address - 1);
    colon = close[1] == ':' ? close + 1 : NULL;
    if (colon == NULL && close[1] != '\0') {
      g_clear_pointer (host, g_free);
      goto bad;
    }
  } else {
    colon = strrchr (address, ':');
    *host = colon != NULL ? g_strndup (address, colon - address)
                          : g_strdup (address);
  }
  if (colon == NULL) {
    *port = default_port;
    return TRUE;
  }
  p = g_ascii_strtoll (colon + 1, &end, 10);
  if (end == colon + 1 || *end != '\0' || p <= 0 || p > 65535) {
    g_clear_pointer (host, g_free);
    goto bad;
  }
  *port = (gint) p;
  return TRUE;
bad:
  g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
      "invalid MQTT address \"%s\" (want host:port)", address);
  return FALSE;
}

static gboolean
configure (SiPublishMqtt *m, const SiPublishConfig *cfg, GError **error)
{
  int rc;

  if (cfg->username != NULL) {
    rc = mosquitto_username_pw_set (m->mosq, cfg->username, cfg->password);
    if (rc != MOSQ_ERR_SUCCESS) {
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "MQTT username/password for %s: %s", m->address,
          mosquitto_strerror (rc));
      return FALSE;
    }
  }
  if (cfg->ca_file != NULL || cfg->cert_file != NULL || cfg->key_file != NULL) {
    if (cfg->ca_file == NULL) {
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "MQTT TLS to %s: cert-file/key-file need a ca-file", m->address);
      return FALSE;
    }
    rc = mosquitto_tls_set (
        m->mosq, cfg->ca_file, NULL, cfg->cert_file, cfg->key_file, NULL);
    if (rc != MOSQ_ERR_SUCCESS) {
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "MQTT TLS to %s: cannot use ca-file \"%s\" / cert-file \"%s\" / "
          "key-file \"%s\": %s",
          m->address, cfg->ca_file, cfg->cert_file ? cfg->cert_file : "",
          cfg->key_file ? cfg->key_file : "", mosquitto_strerror (rc));
      return FALSE;
    }
  }
  mosquitto_connect_callback_set (m->mosq, on_connect);
  mosquitto_disconnect_callback_set (m->mosq, on_disconnect);
  mosquitto_publish_callback_set (m->mosq, on_publish);
  mosquitto_reconnect_delay_set (
      m->mosq, SI_MQTT_BACKOFF_MIN_S, SI_MQTT_BACKOFF_MAX_S, true);
  return TRUE;
}

/* Waits for the broker's CONNACK so that a refused login is a start error. */
static gboolean
wait_connack (SiPublishMqtt *m, guint timeout_ms, GError **error)
{
  gint64 end = g_get_monotonic_time () + (gint64) timeout_ms * 1000;
  gboolean got;
  gint rc;

  g_mutex_lock (&m->lock);
  while (!m->got_connack)
    if (!g_cond_wait_until (&m->cond, &m->lock, end))
      break;
  got = m->got_connack;
  rc = m->connack_rc;
  g_mutex_unlock (&m->lock);
  if (!got) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO,
        "no answer from MQTT broker at %s within %u ms", m->address,
        timeout_ms);
    return FALSE;
  }
  if (rc != 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO,
        "MQTT broker at %s refused the connection: %s", m->address,
        mosquitto_connack_string (rc));
    return FALSE;
  }
  return TRUE;
}

gboolean
si_publish_mqtt_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error)
{
  static GOnce once = G_ONCE_INIT;
  SiPublishMqtt *m;
  gboolean tls = cfg->ca_file != NULL;
  gchar *host = NULL;
  gint port = 0, rc;

  g_once (&once, lib_init, NULL);
  if (cfg->qos < 0 || cfg->qos > 2) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "MQTT qos must be 0, 1 or 2, not %d", cfg->qos);
    return FALSE;
  }
  if (cfg->topic == NULL ||
      mosquitto_pub_topic_check (cfg->topic) != MOSQ_ERR_SUCCESS) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "invalid MQTT topic \"%s\" (empty, or with + or # wildcards)",
        cfg->topic ? cfg->topic : "");
    return FALSE;
  }
  if (!parse_address (cfg->address, tls ? 8883 : 1883, &host, &port, error))
    return FALSE;

  m = g_new0 (SiPublishMqtt, 1);
  g_mutex_init (&m->lock);
  g_cond_init (&m->cond);
  m->qos = cfg->qos;
  m->topic = g_strdup (cfg->topic);
  m->address = g_strdup_printf ("%s:%d", host, port);
  m->done = cfg->done;
  m->done_data = cfg->done_data;
  m->mosq = mosquitto_new (cfg->client_id, true, m);
  if (m->mosq == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "cannot create MQTT client \"%s\" for %s: %s",
        cfg->client_id ? cfg->client_id : "", m->address, g_strerror (errno));
    goto fail;
  }
  if (!configure (m, cfg, error))
    goto fail;

  rc = mosquitto_connect (m->mosq, host, port, SI_MQTT_KEEPALIVE_S);
  if (rc != MOSQ_ERR_SUCCESS) {
    int err = errno;
    g_set_error (error, SI_ERROR, SI_ERROR_IO,
        "cannot connect to MQTT broker at %s: %s", m->address,
        rc == MOSQ_ERR_ERRNO ? g_strerror (err) : mosquitto_strerror (rc));
    goto fail;
  }
  rc = mosquitto_loop_start (m->mosq);
  if (rc != MOSQ_ERR_SUCCESS) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO,
        "cannot start the MQTT network thread for %s: %s", m->address,
        mosquitto_strerror (rc));
    goto fail;
  }
  if (!wait_connack (m, cfg->connect_timeout_ms, error)) {
    mosquitto_disconnect (m->mosq);
    mosquitto_loop_stop (m->mosq, false);
    goto fail;
  }
  g_free (host);
  out->ops = &mqtt_ops;
  out->ctx = m;
  return TRUE;

fail:
  g_free (host);
  mqtt_free (m);
  return FALSE;
}

#else /* !SI_HAVE_MOSQUITTO */

gboolean
si_publish_mqtt_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error)
{
  g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
      "method=mqtt: built without libmosquitto");
  return FALSE;
}

#endif
