/* stagemetapublish, method=kafka, against librdkafka's mock cluster
 * (rdkafka_mock.h: real Kafka protocol on 127.0.0.1, free ports): two
 * cameras' frames come back through a consumer, each camera keyed by its
 * source-id in one partition and in order; start errors name the address
 * and the reason; failed deliveries are counted and reported. */
#include "publish-test-util.h"

#include <gst/check/gstcheck.h>
#include <gst/check/gstharness.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define N_FRAMES 30
#define TOPIC "detections"
#define N_PARTITIONS 4
#define N_BROKERS 3

typedef struct
{
  rd_kafka_t *rk; /* owns the mock cluster */
  rd_kafka_mock_cluster_t *mc;
  gchar *bootstraps;
} Cluster;

static void
cluster_new (Cluster *c)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  char errstr[256];

  c->rk = rd_kafka_new (RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  fail_unless (c->rk != NULL, "%s", errstr);
  c->mc = rd_kafka_mock_cluster_new (c->rk, N_BROKERS);
  fail_unless (c->mc != NULL);
  c->bootstraps = g_strdup (rd_kafka_mock_cluster_bootstraps (c->mc));
  fail_unless (
      g_str_has_prefix (c->bootstraps, "127.0.0.1:"), "%s", c->bootstraps);
  fail_unless_equals_int (
      rd_kafka_mock_topic_create (c->mc, TOPIC, N_PARTITIONS, 1),
      RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void
cluster_free (Cluster *c)
{
  rd_kafka_mock_cluster_destroy (c->mc);
  rd_kafka_destroy (c->rk);
  g_free (c->bootstraps);
}

typedef struct
{
  gint32 partition;
  gint64 offset;
  gchar *key;
  GBytes *value;
} Record;

static void
record_free (Record *r)
{
  g_free (r->key);
  g_bytes_unref (r->value);
  g_free (r);
}

/* Reads every partition from the beginning until n records came or
 * timeout_s passed. */
static GPtrArray *
consume (const Cluster *c, guint n, guint timeout_s)
{
  rd_kafka_conf_t *conf = rd_kafka_conf_new ();
  rd_kafka_topic_partition_list_t *parts;
  GPtrArray *out =
      g_ptr_array_new_with_free_func ((GDestroyNotify) record_free);
  gint64 end = g_get_monotonic_time () + timeout_s * G_USEC_PER_SEC;
  char errstr[256];
  rd_kafka_t *rk;
  gint p;

  rd_kafka_conf_set (
      conf, "bootstrap.servers", c->bootstraps, errstr, sizeof errstr);
  rd_kafka_conf_set (conf, "group.id", "si-test", errstr, sizeof errstr);
  rd_kafka_conf_set (
      conf, "enable.auto.commit", "false", errstr, sizeof errstr);
  rk = rd_kafka_new (RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
  fail_unless (rk != NULL, "%s", errstr);
  rd_kafka_poll_set_consumer (rk);
  parts = rd_kafka_topic_partition_list_new (N_PARTITIONS);
  for (p = 0; p < N_PARTITIONS; p++)
    rd_kafka_topic_partition_list_add (parts, TOPIC, p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  fail_unless_equals_int (rd_kafka_assign (rk, parts), 0);
  rd_kafka_topic_partition_list_destroy (parts);

  while (out->len < n && g_get_monotonic_time () < end) {
    rd_kafka_message_t *m = rd_kafka_consumer_poll (rk, 200);
    Record *r;

    if (m == NULL)
      continue;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      GST_INFO ("consumer: %s", rd_kafka_message_errstr (m));
      rd_kafka_message_destroy (m);
      continue;
    }
    r = g_new0 (Record, 1);
    r->partition = m->partition;
    r->offset = m->offset;
    r->key = g_strndup (m->key, m->key_len);
    r->value = g_bytes_new (m->payload, m->len);
    g_ptr_array_add (out, r);
    rd_kafka_message_destroy (m);
  }
  rd_kafka_consumer_close (rk);
  rd_kafka_destroy (rk);
  return out;
}

static GstElement *
new_publisher (const gchar *address, const gchar *source_id)
{
  GstElement *e = gst_element_factory_make ("stagemetapublish", NULL);

  gst_util_set_object_arg (G_OBJECT (e), "method", "kafka");
  g_object_set (
      e, "address", address, "topic", TOPIC, "source-id", source_id, NULL);
  return e;
}

GST_START_TEST (test_kafka_two_cameras_keyed_and_ordered)
{
  static const gchar *const cams[] = { "cam-a", "cam-b" };
  Cluster c = { 0 };
  GstElement *e[2];
  GstHarness *h[2];
  GPtrArray *recs;
  gint32 partition[2] = { -1, -1 };
  gint64 last_offset[2] = { -1, -1 };
  guint next[2] = { 0, 0 };
  guint i, k;

  cluster_new (&c);
  for (k = 0; k < 2; k++) {
    e[k] = new_publisher (c.bootstraps, cams[k]);
    h[k] = pt_new_harness (e[k]);
  }
  /* interleaved, as two cameras would be */
  for (i = 0; i < N_FRAMES; i++)
    for (k = 0; k < 2; k++)
      pt_push_frames (h[k], i, 1);
  for (k = 0; k < 2; k++) {
    gst_harness_teardown (h[k]);
    fail_unless_equals_uint64 (pt_get_u64 (e[k], "published"), N_FRAMES);
    fail_unless_equals_uint64 (pt_get_u64 (e[k], "dropped"), 0);
  }

  recs = consume (&c, 2 * N_FRAMES, 30);
  fail_unless_equals_int (recs->len, 2 * N_FRAMES);
  /* The consumer returns each partition in offset order. */
  for (i = 0; i < recs->len; i++) {
    Record *r = recs->pdata[i];
    gsize len;
    const gchar *data = g_bytes_get_data (r->value, &len);

    k = g_strcmp0 (r->key, cams[0]) == 0 ? 0 : 1;
    fail_unless_equals_string (r->key, cams[k]);
    if (partition[k] < 0)
      partition[k] = r->partition;
    fail_unless_equals_int (r->partition, partition[k]);
    fail_unless (r->offset > last_offset[k]);
    last_offset[k] = r->offset;
    pt_check_message (data, len, next[k]++, cams[k], PT_WIDTH, PT_HEIGHT);
  }
  fail_unless_equals_int (next[0], N_FRAMES);
  fail_unless_equals_int (next[1], N_FRAMES);

  g_ptr_array_unref (recs);
  cluster_free (&c);
  gst_object_unref (e[0]);
  gst_object_unref (e[1]);
}

GST_END_TEST;

GST_START_TEST (test_kafka_wrong_address_is_named_error)
{
  guint16 port = pt_free_port ();
  gchar *address = g_strdup_printf ("127.0.0.1:%u", port);
  const gchar *needles[] = { address, "Connection refused", NULL };
  GstElement *e = new_publisher (address, "cam");

  pt_expect_start_error (e, needles);
  gst_object_unref (e);
  g_free (address);
}

GST_END_TEST;

GST_START_TEST (test_kafka_bad_config_is_named_error)
{
  const gchar *needles[] = { "no.such.setting", "127.0.0.1:9", NULL };
  const gchar *needles2[] = { "kafka-config", "garbage", NULL };
  GstElement *e = new_publisher ("127.0.0.1:9", "cam");

  g_object_set (e, "kafka-config", "linger.ms=5; no.such.setting=1", NULL);
  pt_expect_start_error (e, needles);
  g_object_set (e, "kafka-config", "garbage", NULL);
  pt_expect_start_error (e, needles2);
  gst_object_unref (e);
}

GST_END_TEST;

GST_START_TEST (test_kafka_delivery_failures_are_counted)
{
  const guint n = 5;
  Cluster c = { 0 };
  GstBus *bus = gst_bus_new ();
  GstElement *e;
  GstHarness *h;
  GstMessage *msg;
  GError *err = NULL;
  gchar *debug = NULL;
  gint b;

  cluster_new (&c);
  e = new_publisher (c.bootstraps, "cam-down");
  g_object_set (e, "kafka-config", "message.timeout.ms=1000", NULL);
  h = pt_new_harness (e);
  gst_element_set_bus (e, bus);
  for (b = 1; b <= N_BROKERS; b++)
    rd_kafka_mock_broker_set_down (c.mc, b);
  pt_push_frames (h, 0, n);
  gst_harness_teardown (h);

  fail_unless_equals_uint64 (pt_get_u64 (e, "published"), 0);
  fail_unless_equals_uint64 (pt_get_u64 (e, "dropped"), n);
  msg = gst_bus_pop_filtered (bus, GST_MESSAGE_WARNING);
  fail_unless (msg != NULL, "no warning about failed deliveries");
  gst_message_parse_warning (msg, &err, &debug);
  GST_INFO ("warning: %s (%s)", err->message, debug);
  fail_unless (strstr (debug, c.bootstraps) != NULL, "%s", debug);
  g_error_free (err);
  g_free (debug);
  gst_message_unref (msg);
  gst_element_set_bus (e, NULL);
  gst_object_unref (bus);
  cluster_free (&c);
  gst_object_unref (e);
}

GST_END_TEST;

static Suite *
publish_kafka_suite (void)
{
  Suite *s = suite_create ("stagemetapublish-kafka");
  TCase *tc = tcase_create ("general");

  suite_add_tcase (s, tc);
  tcase_add_test (tc, test_kafka_two_cameras_keyed_and_ordered);
  tcase_add_test (tc, test_kafka_wrong_address_is_named_error);
  tcase_add_test (tc, test_kafka_bad_config_is_named_error);
  tcase_add_test (tc, test_kafka_delivery_failures_are_counted);
  return s;
}

GST_CHECK_MAIN (publish_kafka);
