/* Transport table: each publish method (file, MQTT, Kafka) is one ops table
 * plus a context pointer. The sender thread (publish-queue.c) is the only
 * caller of send/service; a transport reports each message it took as
 * settled (delivered or lost) through the done callback, from any thread. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* n messages taken by send() are settled: delivered when ok, else lost
 * because of reason. Called from any thread, never under a transport lock
 * that send() may wait on. */
typedef void (*SiPublishDoneFunc) (
    gpointer user_data, guint n, gboolean ok, const gchar *reason);

/* Everything a transport may read at creation; strings are borrowed and
 * nullable unless noted. */
typedef struct
{
  const gchar *address;   /* file: unused; mqtt: host[:port]; kafka: brokers */
  const gchar *topic;     /* never NULL for mqtt/kafka */
  const gchar *source_id; /* never NULL; the Kafka message key */
  guint connect_timeout_ms;
  guint max_queued; /* the queue bound; transports size buffers by it */
  /* file */
  const gchar *file_path; /* "-": stdout */
  gboolean file_array;    /* one JSON array instead of JSON lines */
  /* mqtt */
  const gchar *client_id;
  gint qos;
  const gchar *ca_file, *cert_file, *key_file;
  const gchar *username, *password;
  /* kafka */
  const gchar *kafka_config; /* "key=value;key=value" */
  SiPublishDoneFunc done;
  gpointer done_data;
} SiPublishConfig;

typedef struct
{
  const gchar *name;
  /* Takes one message (copied). May wait until the transport can take it
   * (MQTT waits for a connection) but returns FALSE at once after cancel().
   * FALSE: not taken, done() will not be called for it. */
  gboolean (*send) (gpointer ctx, const gchar *data, gsize len);
  /* Serves delivery callbacks for up to timeout_ms; NULL when the transport
   * has a thread of its own. */
  void (*service) (gpointer ctx, guint timeout_ms);
  /* Wakes a waiting send(); send() fails from now on. */
  void (*cancel) (gpointer ctx);
  /* Closes the connection or file and frees ctx; messages still in flight
   * are reported lost through done(). */
  void (*close) (gpointer ctx);
} SiPublishOps;

typedef struct
{
  const SiPublishOps *ops;
  gpointer ctx;
} SiPublishTransport;

/* Each returns FALSE and sets error (SI_ERROR domain, naming the address or
 * path and the reason) when the output cannot be opened or configured. */
gboolean si_publish_file_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error);
gboolean si_publish_mqtt_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error);
gboolean si_publish_kafka_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error);

G_END_DECLS
