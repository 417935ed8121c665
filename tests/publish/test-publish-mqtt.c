/* stagemetapublish, method=mqtt, against a real mosquitto broker started
 * here on 127.0.0.1 with a free port: N frames in, N messages out in order
 * at every qos; a broker restart with qos 1 loses only what max-queued could
 * not hold, counted in "dropped"; connection, login and TLS errors name the
 * address and the reason. */
#include "publish-test-util.h"

#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <glib/gstdio.h>
#include <mosquitto.h>

#define N_FRAMES 50
#define TOPIC "cams/detections"

static const gchar *mosquitto_bin;

/* ---- broker ---------------------------------------------------------- */

typedef struct
{
  GPid pid;
  guint16 port;
  gchar *dir, *conf;
} Broker;

static void
broker_start (Broker *b)
{
  const gchar *argv[] = { mosquitto_bin, "-c", b->conf, NULL };

  b->pid = pt_spawn (argv);
  fail_unless (pt_wait_port (b->port, 10000),
      "mosquitto did not start on "
      "port %u",
      b->port);
}

/* extra: more configuration lines (authentication). */
static void
broker_new (Broker *b, const gchar *extra)
{
  gchar *text;

  b->dir = g_dir_make_tmp ("si-mosquitto-XXXXXX", NULL);
  b->conf = g_build_filename (b->dir, "mosquitto.conf", NULL);
  b->port = pt_free_port ();
  /* persistence: an offline subscriber's queued messages survive restarts;
   * user: mosquitto started by root would switch to user "mosquitto". */
  text = g_strdup_printf ("listener %u 127.0.0.1\n"
                          "persistence true\npersistence_location %s/\n"
                          "user %s\nlog_type error\nlog_type warning\n%s\n",
      b->port, b->dir, g_get_user_name (),
      extra != NULL ? extra : "allow_anonymous true");
  fail_unless (g_file_set_contents (b->conf, text, -1, NULL));
  g_free (text);
  broker_start (b);
}

static void
broker_free (Broker *b)
{
  GDir *d;
  const gchar *name;

  if (b->pid != 0)
    pt_kill (b->pid);
  b->pid = 0;
  d = g_dir_open (b->dir, 0, NULL);
  while (d != NULL && (name = g_dir_read_name (d)) != NULL) {
    gchar *p = g_build_filename (b->dir, name, NULL);
    g_unlink (p);
    g_free (p);
  }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (b->dir);
  g_free (b->dir);
  g_free (b->conf);
}

/* ---- subscriber ------------------------------------------------------ */

typedef struct
{
  struct mosquitto *mosq;
  GMutex lock;
  GCond cond;
  GPtrArray *msgs;    /* GBytes, repeats included */
  GHashTable *frames; /* frame numbers seen: qos 1 may repeat a message */
  gboolean subscribed;
  gint qos;
} Sub;

static void
sub_on_connect (struct mosquitto *mosq, void *obj, int rc)
{
  Sub *s = obj;

  if (rc == 0)
    mosquitto_subscribe (mosq, NULL, TOPIC, s->qos);
}

static void
sub_on_subscribe (
    struct mosquitto *mosq, void *obj, int mid, int n, const int *granted)
{
  Sub *s = obj;

  g_mutex_lock (&s->lock);
  s->subscribed = TRUE;
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
}

static void
sub_on_message (
    struct mosquitto *mosq, void *obj, const struct mosquitto_message *m)
{
  Sub *s = obj;
  guint64 f = pt_message_frame (m->payload, m->payloadlen);

  g_mutex_lock (&s->lock);
  g_ptr_array_add (s->msgs, g_bytes_new (m->payload, m->payloadlen));
  g_hash_table_add (s->frames, GUINT_TO_POINTER (f));
  g_cond_broadcast (&s->cond);
  g_mutex_unlock (&s->lock);
}

/* client_id != NULL: a persistent session (clean_session false). */
static Sub *
sub_new (const Broker *b, const gchar *client_id, gint qos)
{
  Sub *s = g_new0 (Sub, 1);
  gint64 end = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;

  g_mutex_init (&s->lock);
  g_cond_init (&s->cond);
  s->msgs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  s->frames = g_hash_table_new (NULL, NULL);
  s->qos = qos;
  s->mosq = mosquitto_new (client_id, client_id == NULL, s);
  fail_unless (s->mosq != NULL);
  mosquitto_connect_callback_set (s->mosq, sub_on_connect);
  mosquitto_subscribe_callback_set (s->mosq, sub_on_subscribe);
  mosquitto_message_callback_set (s->mosq, sub_on_message);
  mosquitto_reconnect_delay_set (s->mosq, 1, 1, false);
  fail_unless_equals_int (
      mosquitto_connect (s->mosq, "127.0.0.1", b->port, 30), MOSQ_ERR_SUCCESS);
  fail_unless_equals_int (mosquitto_loop_start (s->mosq), MOSQ_ERR_SUCCESS);
  g_mutex_lock (&s->lock);
  while (!s->subscribed)
    fail_unless (g_cond_wait_until (&s->cond, &s->lock, end), "no SUBACK");
  g_mutex_unlock (&s->lock);
  return s;
}

/* Waits until n distinct frames have arrived, up to timeout_s.  Counting
 * messages would stop early when qos 1 repeats some after a reconnect. */
static void
sub_wait (Sub *s, guint n, guint timeout_s)
{
  gint64 end = g_get_monotonic_time () + timeout_s * G_USEC_PER_SEC;

  g_mutex_lock (&s->lock);
  while (g_hash_table_size (s->frames) < n)
    if (!g_cond_wait_until (&s->cond, &s->lock, end))
      break;
  g_mutex_unlock (&s->lock);
}

static void
sub_free (Sub *s)
{
  mosquitto_disconnect (s->mosq);
  mosquitto_loop_stop (s->mosq, false);
  mosquitto_destroy (s->mosq);
  g_ptr_array_unref (s->msgs);
  g_hash_table_unref (s->frames);
  g_mutex_clear (&s->lock);
  g_cond_clear (&s->cond);
  g_free (s);
}

/* ---- element --------------------------------------------------------- */

static GstElement *
new_publisher (const Broker *b, gint qos)
{
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);
  gchar *address = g_strdup_printf ("127.0.0.1:%u", b->port);

  gst_util_set_object_arg (G_OBJECT (e), "method", "mqtt");
  g_object_set (e, "address", address, "topic", TOPIC, "qos", qos, "source-id",
      "cam-m", NULL);
  g_free (address);
  return e;
}

static gboolean
wait_published (GstElement *e, guint64 n, guint timeout_s)
{
  gint64 end = g_get_monotonic_time () + timeout_s * G_USEC_PER_SEC;

  while (pt_get_u64 (e, "published") < n) {
    if (g_get_monotonic_time () > end)
      return FALSE;
    g_usleep (20 * 1000);
  }
  return TRUE;
}

/* ---- tests ----------------------------------------------------------- */

GST_START_TEST (test_mqtt_frames_arrive_in_order)
{
  gint qos = __i__;
  Broker b = { 0 };
  Sub *s;
  GstElement *e;
  GstHarness *h;
  guint i;

  broker_new (&b, NULL);
  s = sub_new (&b, NULL, 2);
  e = new_publisher (&b, qos);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, N_FRAMES);
  gst_harness_teardown (h); /* stop() waits for the deliveries */
  sub_wait (s, N_FRAMES, 10);

  fail_unless_equals_int (s->msgs->len, N_FRAMES);
  for (i = 0; i < N_FRAMES; i++) {
    gsize len;
    const gchar *data = g_bytes_get_data (s->msgs->pdata[i], &len);
    pt_check_message (data, len, i, "cam-m", PT_WIDTH, PT_HEIGHT);
  }
  fail_unless_equals_uint64 (pt_get_u64 (e, "published"), N_FRAMES);
  fail_unless_equals_uint64 (pt_get_u64 (e, "dropped"), 0);
  sub_free (s);
  broker_free (&b);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_mqtt_broker_restart_qos1_loses_only_overflow)
{
  const guint before = 10, during = 30, max_queued = 20, after = 5;
  Broker b = { 0 };
  GstBus *bus = gst_bus_new ();
  GstMessage *msg;
  GstElement *e;
  GstHarness *h;
  Sub *s;
  GHashTable *seen = g_hash_table_new (NULL, NULL);
  gint64 t0, last = -1;
  guint i, n_unique = 0;

  broker_new (&b, NULL);
  /* Persistent session: the broker keeps what arrives while the
   * subscriber reconnects after the restart. */
  s = sub_new (&b, "restart-sub", 1);
  e = new_publisher (&b, 1);
  g_object_set (e, "max-queued", max_queued, "client-id", "restart-pub", NULL);
  h = pt_new_harness (e);
  gst_element_set_bus (e, bus);

  pt_push_frames (h, 0, before);
  fail_unless (wait_published (e, before, 10));

  pt_kill (b.pid);
  b.pid = 0;
  /* The video never waits for the broker. */
  t0 = g_get_monotonic_time ();
  pt_push_frames (h, before, during);
  fail_unless (g_get_monotonic_time () - t0 < G_USEC_PER_SEC,
      "pushing blocked while the broker was down");
  fail_unless_equals_uint64 (pt_get_u64 (e, "dropped"), during - max_queued);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "no warning about drops");
  gst_message_unref (msg);

  broker_start (&b);
  fail_unless (wait_published (e, before + max_queued, 30),
      "queued messages not delivered after the restart (published "
      "%" G_GUINT64_FORMAT ")",
      pt_get_u64 (e, "published"));
  pt_push_frames (h, before + during, after);
  gst_harness_teardown (h);

  /* qos 1 may repeat a message; every accepted frame arrives, in order. */
  sub_wait (s, before + max_queued + after, 20);
  g_mutex_lock (&s->lock);
  for (i = 0; i < s->msgs->len; i++) {
    gsize len;
    const gchar *data = g_bytes_get_data (s->msgs->pdata[i], &len);
    guint64 f = pt_message_frame (data, len);

    if (g_hash_table_contains (seen, GUINT_TO_POINTER (f)))
      continue;
    g_hash_table_add (seen, GUINT_TO_POINTER (f));
    n_unique++;
    fail_unless ((gint64) f > last,
        "frame %" G_GUINT64_FORMAT " after %" G_GINT64_FORMAT, f, last);
    last = (gint64) f;
    /* accepted: before the outage, the first max_queued during it, after */
    fail_unless (f < before + max_queued || f >= before + during,
        "frame %" G_GUINT64_FORMAT " should have been dropped", f);
    pt_check_message (data, len, (guint) f, "cam-m", PT_WIDTH, PT_HEIGHT);
  }
  g_mutex_unlock (&s->lock);
  fail_unless_equals_int (n_unique, before + max_queued + after);
  fail_unless_equals_uint64 (
      pt_get_u64 (e, "published"), before + max_queued + after);
  fail_unless_equals_uint64 (pt_get_u64 (e, "dropped"), during - max_queued);

  g_hash_table_unref (seen);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  sub_free (s);
  broker_free (&b);
  gst_object_unref (e);
}

GST_END_TEST;

/* Stopping while the broker is away takes flush-timeout, not a reconnect
 * backoff, and counts what never went out. */
GST_START_TEST (test_mqtt_stop_while_broker_down_counts_unsent)
{
  Broker b = { 0 };
  GstElement *e;
  GstHarness *h;
  gint64 t0, took;

  broker_new (&b, NULL);
  e = new_publisher (&b, 1);
  g_object_set (e, "flush-timeout", 300, NULL);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, 5);
  fail_unless (wait_published (e, 5, 10));
  pt_kill (b.pid);
  b.pid = 0;
  pt_push_frames (h, 5, 3);
  /* let libmosquitto notice and enter its reconnect backoff */
  g_usleep (1500 * 1000);
  t0 = g_get_monotonic_time ();
  gst_harness_teardown (h);
  took = g_get_monotonic_time () - t0;
  fail_unless (
      took < 3 * G_USEC_PER_SEC, "stop took %" G_GINT64_FORMAT " us", took);
  fail_unless_equals_uint64 (pt_get_u64 (e, "published"), 5);
  fail_unless_equals_uint64 (pt_get_u64 (e, "dropped"), 3);
  broker_free (&b);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_mqtt_wrong_address_is_named_error)
{
  guint16 port = pt_free_port ();
  gchar *address = g_strdup_printf ("127.0.0.1:%u", port);
  const gchar *needles[] = { address, "Connection refused", NULL };
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);

  gst_util_set_object_arg (G_OBJECT (e), "method", "mqtt");
  g_object_set (e, "address", address, NULL);
  pt_expect_start_error (e, needles);
  gst_object_unref (e);
  g_free (address);
}

GST_END_TEST;

GST_START_TEST (test_mqtt_login)
{
  Broker b = { 0 };
  gchar *dir = g_dir_make_tmp ("si-mqtt-pw-XXXXXX", NULL);
  gchar *pwfile = g_build_filename (dir, "passwd", NULL);
  gchar *extra =
      g_strdup_printf ("allow_anonymous false\npassword_file %s", pwfile);
  const gchar *argv[] = { "mosquitto_passwd", "-c", "-b", pwfile, "cam",
    "secret", NULL };
  gchar *address;
  const gchar *needles[3] = { NULL, "not authori", NULL };
  GstElement *e;
  GstHarness *h;
  gint status;

  if (!g_spawn_sync (NULL, (gchar **) argv, NULL, G_SPAWN_SEARCH_PATH, NULL,
          NULL, NULL, NULL, &status, NULL) ||
      status != 0) {
    GST_WARNING ("mosquitto_passwd unavailable: login not tested");
    goto out;
  }
  broker_new (&b, extra);
  address = g_strdup_printf ("127.0.0.1:%u", b.port);
  needles[0] = address;

  e = new_publisher (&b, 1);
  g_object_set (e, "username", "cam", "password", "wrong", NULL);
  pt_expect_start_error (e, needles);
  gst_object_unref (e);

  e = new_publisher (&b, 1);
  g_object_set (e, "username", "cam", "password", "secret", NULL);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, 3);
  gst_harness_teardown (h);
  fail_unless_equals_uint64 (pt_get_u64 (e, "published"), 3);
  gst_object_unref (e);
  g_free (address);
  broker_free (&b);
out:
  g_unlink (pwfile);
  g_rmdir (dir);
  g_free (extra);
  g_free (pwfile);
  g_free (dir);
}

GST_END_TEST;

static gboolean
run_quiet (const gchar *cmdline)
{
  gint status = -1;
  gchar *argv[] = { (gchar *) "sh", (gchar *) "-c", (gchar *) cmdline, NULL };

  return g_spawn_sync (NULL, argv, NULL,
             G_SPAWN_SEARCH_PATH | G_SPAWN_STDOUT_TO_DEV_NULL |
                 G_SPAWN_STDERR_TO_DEV_NULL,
             NULL, NULL, NULL, NULL, &status, NULL) &&
      status == 0;
}

/* A CA, a server certificate for 127.0.0.1 and a client certificate. */
static gboolean
make_certs (const gchar *dir)
{
  gchar *cmd = g_strdup_printf (
      "set -e; cd '%s'; "
      "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes'; "
      "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 "
      "-subj /CN=si-test-ca; "
      "for who in server client; do "
      "openssl req $K -keyout $who.key -out $who.csr -subj /CN=127.0.0.1; "
      "echo subjectAltName=IP:127.0.0.1 > $who.ext; "
      "openssl x509 -req -in $who.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out $who.pem -days 2 -extfile $who.ext; done",
      dir);
  gboolean ok = run_quiet (cmd);

  g_free (cmd);
  return ok;
}

GST_START_TEST (test_mqtt_tls_with_client_certificate)
{
  Broker b = { 0 };
  gchar *dir = g_dir_make_tmp ("si-mqtt-tls-XXXXXX", NULL);
  gchar *extra, *ca, *cert, *key, *rm;
  GstElement *e;
  GstHarness *h;

  if (!make_certs (dir)) {
    GST_WARNING ("openssl unavailable: TLS not tested");
    goto out;
  }
  ca = g_build_filename (dir, "ca.pem", NULL);
  cert = g_build_filename (dir, "client.pem", NULL);
  key = g_build_filename (dir, "client.key", NULL);
  extra = g_strdup_printf ("allow_anonymous true\ncafile %s\n"
                           "certfile %s/server.pem\nkeyfile %s/server.key\n"
                           "require_certificate true",
      ca, dir, dir);
  broker_new (&b, extra);

  e = new_publisher (&b, 1);
  g_object_set (e, "ca-file", ca, "cert-file", cert, "key-file", key, NULL);
  h = pt_new_harness (e);
  pt_push_frames (h, 0, 4);
  gst_harness_teardown (h);
  /* qos 1: published counts the broker's acknowledgements */
  fail_unless_equals_uint64 (pt_get_u64 (e, "published"), 4);
  gst_object_unref (e);

  broker_free (&b);
  g_free (extra);
  g_free (ca);
  g_free (cert);
  g_free (key);
out:
  rm = g_strdup_printf ("rm -rf '%s'", dir);
  run_quiet (rm);
  g_free (rm);
  g_free (dir);
}

GST_END_TEST;

GST_START_TEST (test_mqtt_wildcard_topic_is_named_error)
{
  const gchar *needles[] = { "cams/+/detections", NULL };
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);

  gst_util_set_object_arg (G_OBJECT (e), "method", "mqtt");
  g_object_set (
      e, "address", "127.0.0.1:1", "topic", "cams/+/detections", NULL);
  pt_expect_start_error (e, needles);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_mqtt_missing_ca_file_is_named_error)
{
  const gchar *needles[] = { "127.0.0.1:1", "/nonexistent/ca.pem", NULL };
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);

  gst_util_set_object_arg (G_OBJECT (e), "method", "mqtt");
  g_object_set (
      e, "address", "127.0.0.1:1", "ca-file", "/nonexistent/ca.pem", NULL);
  pt_expect_start_error (e, needles);
  gst_object_unref (e);
}

GST_END_TEST;

static Suite *
publish_mqtt_suite (void)
{
  Suite *s = suite_create ("stagemetapublish-mqtt");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_loop_test (tc, test_mqtt_frames_arrive_in_order, 0, 3);
  tcase_add_test (tc, test_mqtt_broker_restart_qos1_loses_only_overflow);
  tcase_add_test (tc, test_mqtt_stop_while_broker_down_counts_unsent);
  tcase_add_test (tc, test_mqtt_wrong_address_is_named_error);
  tcase_add_test (tc, test_mqtt_login);
  tcase_add_test (tc, test_mqtt_missing_ca_file_is_named_error);
  tcase_add_test (tc, test_mqtt_wildcard_topic_is_named_error);
  tcase_add_test (tc, test_mqtt_tls_with_client_certificate);
  return s;
}

int
main (int argc, char **argv)
{
  mosquitto_bin = g_getenv ("MOSQUITTO");
  if (mosquitto_bin == NULL)
    mosquitto_bin = "/usr/sbin/mosquitto";
  if (!g_file_test (mosquitto_bin, G_FILE_TEST_IS_EXECUTABLE)) {
    g_print (
        "skipped: %s not found (Debian package mosquitto)\n", mosquitto_bin);
    return 77;
  }
  gst_check_init (&argc, &argv);
  mosquitto_lib_init ();
  {
    int ret =
        gst_check_run_suite (publish_mqtt_suite (), "publish_mqtt", __FILE__);
    mosquitto_lib_cleanup ();
    return ret;
  }
}
