/* test-loader.c: si_model_load() and the public API's argument checks
 * (suite unit).  Loads the golden model, then copies of it with one defect
 * each (a missing tensor, a wrong shape or dtype, a bad config value, ...)
 * written by the test itself; each must fail with the specific SiErrorCode
 * and a message naming the problem.  Also F16 and unaligned weights, the
 * public getters and defaults, and si_context_run()'s frame validation.
 * Usage: test-loader [GOLDEN_CASE_DIR] (default: SI_GOLDEN_TINY).
 */
#include "model.h"
#include "safetensors.h"
#include "si-engine.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *case_dir;
static char *golden_model;
static char *tmpdir;

/* ---- writing edited copies of the golden model ---- */

static const char *const meta_keys[] = {
  "format",
  "format_version",
  "model",
  "img_norm",
  "test_scale",
  "classes",
  "size_divisor",
  "source",
};

typedef struct
{
  const char *drop;    /* omit this tensor */
  const char *retype;  /* relabel this F32 tensor as I32 (same bytes) */
  const char *reshape; /* give this tensor new_shape (same numel) */
  int64_t new_shape[4];
  int new_ndim;
  const char *meta_key;   /* replace this __metadata__ value */
  const char *meta_value; /* NULL removes the key */
  /* edit the parsed `model` config; path like "neck.out_channels" */
  const char *cfg_path;
  JsonNode *cfg_value;   /* taken; NULL removes the member */
  const char *cfg_path2; /* a second edit of the config (or NULL) */
  JsonNode *cfg_value2;
  gboolean f16;      /* store every F32 tensor as F16 */
  gboolean misalign; /* shift the data by 2 bytes (a U8 pad tensor) */
} Edit;

static guint16
float_to_half (float f)
{
  guint32 x;
  memcpy (&x, &f, 4);
  guint32 sign = (x >> 16) & 0x8000u;
  int exp = (int) ((x >> 23) & 0xff) - 127 + 15;
  guint32 mant = x & 0x7fffffu;
  if (exp <= 0) {
    if (exp < -10)
      return (guint16) sign;
    mant |= 0x800000u;
    int shift = 14 - exp;
    guint32 h = mant >> shift;
    if ((mant >> (shift - 1)) & 1u)
      h++;
    return (guint16) (sign | h);
  }
  if (exp >= 31)
    return (guint16) (sign | 0x7c00u);
  guint32 h = sign | ((guint32) exp << 10) | (mant >> 13);
  if (mant & 0x1000u)
    h++; /* round half up: good enough for a test */
  return (guint16) h;
}

/* Walks "a.b.c" in obj, then sets or removes the last member. */
static void
edit_config (JsonObject *obj, const char *path, JsonNode *value)
{
  char **parts = g_strsplit (path, ".", -1);
  guint n = g_strv_length (parts);
  for (guint i = 0; i + 1 < n; i++) {
    JsonNode *child;
    char *idx = strchr (parts[i], '[');
    if (idx != NULL) { /* "bbox_head[2]" */
      *idx = '\0';
      child = json_object_get_member (obj, parts[i]);
      g_assert_nonnull (child);
      child = json_array_get_element (
          json_node_get_array (child), (guint) atoi (idx + 1));
    } else {
      child = json_object_get_member (obj, parts[i]);
    }
    g_assert_nonnull (child);
    obj = json_node_get_object (child);
  }
  if (value != NULL)
    json_object_set_member (obj, parts[n - 1], value);
  else
    json_object_remove_member (obj, parts[n - 1]);
  g_strfreev (parts);
}

static char *
edited_model_json (const char *text, const Edit *e)
{
  JsonParser *p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
  JsonNode *root = json_parser_get_root (p);
  edit_config (json_node_get_object (root), e->cfg_path, e->cfg_value);
  if (e->cfg_path2 != NULL)
    edit_config (json_node_get_object (root), e->cfg_path2, e->cfg_value2);
  char *out = json_to_string (root, FALSE);
  g_object_unref (p);
  return out;
}

static void
add_tensor_header (JsonBuilder *b, const char *name, const char *dtype,
    const int64_t *shape, int ndim, guint64 begin, guint64 end)
{
  json_builder_set_member_name (b, name);
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "dtype");
  json_builder_add_string_value (b, dtype);
  json_builder_set_member_name (b, "shape");
  json_builder_begin_array (b);
  for (int d = 0; d < ndim; d++)
    json_builder_add_int_value (b, shape[d]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "data_offsets");
  json_builder_begin_array (b);
  json_builder_add_int_value (b, (gint64) begin);
  json_builder_add_int_value (b, (gint64) end);
  json_builder_end_array (b);
  json_builder_end_object (b);
}

/* Writes an edited copy of the golden model; returns its path. */
static char *
write_model (const char *name, const Edit *e)
{
  GError *error = NULL;
  SiSafetensors *src = si_safetensors_open (golden_model, &error);
  g_assert_no_error (error);
  JsonBuilder *b = json_builder_new ();
  GByteArray *data = g_byte_array_new ();

  json_builder_begin_object (b);
  json_builder_set_member_name (b, "__metadata__");
  json_builder_begin_object (b);
  for (size_t i = 0; i < G_N_ELEMENTS (meta_keys); i++) {
    const char *v = si_safetensors_metadata (src, meta_keys[i]);
    char *owned = NULL;
    if (e->meta_key != NULL && strcmp (e->meta_key, meta_keys[i]) == 0)
      v = e->meta_value;
    if (v != NULL && e->cfg_path != NULL && strcmp (meta_keys[i], "model") == 0)
      v = owned = edited_model_json (v, e);
    if (v != NULL) {
      json_builder_set_member_name (b, meta_keys[i]);
      json_builder_add_string_value (b, v);
    }
    g_free (owned);
  }
  json_builder_end_object (b);

  if (e->misalign) {
    static const guint8 pad[2] = { 0, 0 };
    int64_t shape[1] = { 2 };
    add_tensor_header (b, "zz.pad", "U8", shape, 1, 0, 2);
    g_byte_array_append (data, pad, 2);
  }
  for (guint i = 0; i < si_safetensors_n_tensors (src); i++) {
    const SiTensorInfo *t = si_safetensors_get (src, i);
    const char *dtype = si_dtype_name (t->dtype);
    const int64_t *shape = t->shape;
    int ndim = t->ndim;
    guint64 begin = data->len;

    if (e->drop != NULL && strcmp (t->name, e->drop) == 0)
      continue;
    if (e->retype != NULL && strcmp (t->name, e->retype) == 0)
      dtype = "I32";
    if (e->reshape != NULL && strcmp (t->name, e->reshape) == 0) {
      shape = e->new_shape;
      ndim = e->new_ndim;
    }
    if (e->f16 && t->dtype == SI_DTYPE_F32) {
      dtype = "F16";
      for (int64_t k = 0; k < t->numel; k++) {
        float f;
        memcpy (&f, (const guint8 *) t->data + 4 * k, 4);
        guint16 h = float_to_half (f);
        g_byte_array_append (data, (const guint8 *) &h, 2);
      }
    } else {
      g_byte_array_append (data, t->data, (guint) t->nbytes);
    }
    add_tensor_header (b, t->name, dtype, shape, ndim, begin, data->len);
  }
  json_builder_end_object (b);

  JsonNode *root = json_builder_get_root (b);
  char *header = json_to_string (root, FALSE);
  json_node_unref (root);
  g_object_unref (b);
  GString *hdr = g_string_new (header);
  while ((8 + hdr->len) % 8 != 0)
    g_string_append_c (hdr, ' ');
  g_free (header);

  char *path = g_build_filename (tmpdir, name, NULL);
  g_unlink (path); /* avoid ext4's flush of truncated files on close */
  FILE *fp = fopen (path, "wb");
  g_assert_nonnull (fp);
  guint8 lenbuf[8];
  for (int i = 0; i < 8; i++)
    lenbuf[i] = (guint8) ((guint64) hdr->len >> (8 * i));
  g_assert_cmpuint (fwrite (lenbuf, 1, 8, fp), ==, 8);
  g_assert_cmpuint (fwrite (hdr->str, 1, hdr->len, fp), ==, hdr->len);
  g_assert_cmpuint (fwrite (data->data, 1, data->len, fp), ==, data->len);
  g_assert_cmpint (fclose (fp), ==, 0);
  g_string_free (hdr, TRUE);
  g_byte_array_unref (data);
  si_safetensors_close (&src);
  return path;
}

/* Loading must fail with code and a message naming every needle. */
static void
expect_load_error (const char *name, const Edit *e, SiErrorCode code, ...)
{
  char *path = write_model (name, e);
  GError *error = NULL;
  SiModel *m = si_model_load (path, &error);
  g_assert_null (m);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  if (!g_error_matches (error, SI_ERROR, (gint) code))
    g_error ("expected error code %d, got %d: %s", (int) code, error->code,
        error->message);
  g_assert_nonnull (strstr (error->message, path));
  va_list ap;
  va_start (ap, code);
  for (const char *s = va_arg (ap, const char *); s != NULL;
       s = va_arg (ap, const char *)) {
    if (strstr (error->message, s) == NULL)
      g_error ("message \"%s\" does not mention \"%s\"", error->message, s);
  }
  va_end (ap);
  g_error_free (error);
  g_unlink (path);
  g_free (path);
}

static JsonNode *
int_node (gint64 v)
{
  JsonNode *n = json_node_new (JSON_NODE_VALUE);
  json_node_set_int (n, v);
  return n;
}

static JsonNode *
str_node (const char *v)
{
  JsonNode *n = json_node_new (JSON_NODE_VALUE);
  json_node_set_string (n, v);
  return n;
}

/* A node parsed from JSON text (objects, arrays). */
static JsonNode *
json_node (const char *text)
{
  JsonParser *p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, text, -1, NULL));
  JsonNode *n = json_node_copy (json_parser_get_root (p));
  g_object_unref (p);
  return n;
}

static JsonNode *
bool_node (gboolean v)
{
  JsonNode *n = json_node_new (JSON_NODE_VALUE);
  json_node_set_boolean (n, v);
  return n;
}

/* ---- tests ---- */

static SiModel *
load_golden (void)
{
  GError *error = NULL;
  SiModel *m = si_model_load (golden_model, &error);
  g_assert_no_error (error);
  g_assert_nonnull (m);
  return m;
}

static void
test_golden_loads (void)
{
  SiModel *m = load_golden ();
  SiSafetensors *f = si_safetensors_open (golden_model, NULL);
  g_assert_nonnull (f);

  g_assert_cmpint (si_model_get_num_classes (m), >, 0);
  g_assert_cmpint (si_model_get_num_queries (m), ==, m->num_query);
  g_assert_cmpint (si_model_get_num_stages (m), ==, m->num_stages);
  g_assert_cmpstr (si_model_get_name (m), ==, "model");
  g_assert_null (si_model_get_class_name (m, -1));
  g_assert_null (si_model_get_class_name (m, m->num_classes));
  g_assert_nonnull (si_model_get_class_name (m, m->num_classes - 1));

  /* init_content is the raw tensor (no folding) */
  const SiTensorInfo *t =
      si_safetensors_find (f, "rpn_head.init_content_features.weight");
  g_assert_nonnull (t);
  g_assert_cmpint (t->shape[0], ==, m->num_query);
  g_assert_cmpint (t->shape[1], ==, m->content_dim);
  g_assert_cmpmem (m->init_content, t->nbytes, t->data, t->nbytes);

  /* every backbone conv carries its raw weight, a BatchNorm (no conv
   * bias) and sane geometry */
  SiBackbone *bb = &m->backbone;
  g_assert_nonnull (bb->stem.w);
  g_assert_null (bb->stem.b);
  g_assert_true (si_conv_has_bn (&bb->stem));
  g_assert_nonnull (bb->stem.bn.gamma);
  g_assert_nonnull (bb->stem.bn.beta);
  g_assert_nonnull (bb->stem.bn.mean);
  g_assert_cmpint (bb->stem.kh, ==, 7);
  g_assert_cmpint (bb->stem.stride, ==, 2);
  g_assert_cmpint (bb->stem.pad, ==, 3);
  int prev = bb->stem_channels;
  for (int i = 0; i < 4; i++) {
    g_assert_cmpint (bb->n_blocks[i], >, 0);
    for (int j = 0; j < bb->n_blocks[i]; j++) {
      SiBottleneck *blk = &bb->blocks[i][j];
      int stride = (j == 0 && i > 0) ? 2 : 1;
      int out = bb->bottleneck ? blk->conv3.cout : blk->conv2.cout;
      g_assert_cmpint (blk->conv1.cin, ==, prev);
      g_assert_true (si_conv_has_bn (&blk->conv1));
      g_assert_true (si_conv_has_bn (&blk->conv2));
      g_assert_true (!bb->bottleneck || si_conv_has_bn (&blk->conv3));
      g_assert_true (!blk->has_downsample || si_conv_has_bn (&blk->downsample));
      /* pytorch style: bottlenecks stride on conv2, basic blocks on conv1 */
      g_assert_cmpint (blk->conv2.stride, ==, bb->bottleneck ? stride : 1);
      g_assert_cmpint (blk->conv1.stride, ==, bb->bottleneck ? 1 : stride);
      g_assert_true (blk->has_downsample == (stride != 1 || prev != out));
      if (blk->has_downsample)
        g_assert_cmpint (blk->downsample.stride, ==, stride);
      prev = out;
    }
    g_assert_cmpint (bb->out_channels[i], ==, prev);
  }

  /* the stem's views are the file's tensors; folded (si_conv_fold), it
   * equals conv * g / sqrt (var + eps) */
  const SiTensorInfo *w = si_safetensors_find (f, "backbone.conv1.weight");
  const SiTensorInfo *g = si_safetensors_find (f, "backbone.bn1.weight");
  const SiTensorInfo *bt = si_safetensors_find (f, "backbone.bn1.bias");
  const SiTensorInfo *mu = si_safetensors_find (f, "backbone.bn1.running_mean");
  const SiTensorInfo *var = si_safetensors_find (f, "backbone.bn1.running_var");
  const float *wf = w->data, *gf = g->data, *bf = bt->data, *mf = mu->data,
              *vf = var->data;
  size_t per = (size_t) w->numel / (size_t) w->shape[0];
  /* views of the model's own mapping (f is a second one) */
  g_assert_true (bb->stem.src[0] ==
      si_safetensors_find (m->file, "backbone.conv1.weight"));
  g_assert_true (bb->stem.w == bb->stem.src[0]->data);
  g_assert_true (bb->stem.bn.var == bb->stem.src[5]->data);
  g_assert_cmpmem (bb->stem.w, w->nbytes, wf, w->nbytes);
  g_assert_cmpmem (bb->stem.bn.var, var->nbytes, vf, var->nbytes);
  g_assert_cmpuint (si_conv_weight_numel (&bb->stem), ==, (guint64) w->numel);
  float *fw = g_new (float, w->numel), *fb = g_new (float, w->shape[0]);
  si_conv_fold (&bb->stem, fw, fb);
  for (int o = 0; o < (int) w->shape[0]; o++) {
    double s = gf[o] / sqrt ((double) vf[o] + 1e-5);
    for (size_t i = 0; i < per; i++)
      g_assert_cmpfloat_with_epsilon (fw[o * per + i], wf[o * per + i] * s,
          1e-6 * (1 + fabs (wf[o * per + i] * s)));
    g_assert_cmpfloat_with_epsilon (
        fb[o], bf[o] - mf[o] * s, 1e-6 * (1 + fabs (bf[o])));
  }
  /* released pages are refaulted from the file: the same bits again */
  float *fw2 = g_new (float, w->numel), *fb2 = g_new (float, w->shape[0]);
  si_conv_release_pages (&bb->stem);
  si_conv_fold (&bb->stem, fw2, NULL);
  si_conv_fold (&bb->stem, NULL, fb2);
  g_assert_cmpmem (fw, w->numel * 4, fw2, w->numel * 4);
  g_assert_cmpmem (fb, w->shape[0] * 4, fb2, w->shape[0] * 4);
  g_free (fw);
  g_free (fb);
  g_free (fw2);
  g_free (fb2);

  /* stage sizes follow model-spec 6.0 */
  for (int s = 0; s < m->num_stages; s++) {
    SiStage *st = &m->stages[s];
    g_assert_cmpint (st->idx, ==, s);
    g_assert_cmpint (st->R, ==, st->P * st->K);
    g_assert_cmpint (st->Dg * st->G, ==, st->D);
    g_assert_cmpint (st->L, ==, MAX (0, s - 1));
    g_assert_true (st->reuse == (s >= 2));
    g_assert_cmpint (st->Sg, ==, s >= 2 ? st->O / 2 : st->O);
    g_assert_cmpint (st->O_tot, ==, st->O);
    g_assert_cmpint (
        st->param_gen.out, ==, st->G * (st->Dg * st->Dg + st->Sg * st->R));
    g_assert_cmpint (st->Wv.in, ==, st->O_tot * st->D);
    g_assert_cmpint (st->fc_cls.out, ==, m->num_classes);
  }
  g_assert_cmpint (m->max_per_img, >, 0);
  g_assert_cmpint (m->size_divisor, ==, 32);
  g_assert_cmpint (m->test_scale[0], >=, m->test_scale[1]);
  g_assert_true (m->to_rgb);
  g_assert_cmpfloat_with_epsilon (m->mean[0], 123.675f, 1e-4);
  g_assert_cmpfloat_with_epsilon (m->std[2], 57.375f, 1e-4);

  SiModel *r = si_model_ref (m);
  g_assert_true (r == m);
  si_model_unref (r);
  si_model_clear (&m);
  g_assert_null (m);
  si_model_clear (&m); /* NULL is fine */
  si_safetensors_close (&f);
}

static void
test_missing_file (void)
{
  GError *error = NULL;
  char *path = g_build_filename (tmpdir, "nope.safetensors", NULL);
  g_assert_null (si_model_load (path, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_IO);
  g_assert_nonnull (strstr (error->message, path));
  g_clear_error (&error);
  g_free (path);
  g_assert_null (si_model_load (NULL, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
}

static void
test_truncated (void)
{
  /* the golden model cut in its data buffer, and inside its header */
  char *bytes;
  gsize len;
  GError *error = NULL;
  g_assert_true (g_file_get_contents (golden_model, &bytes, &len, NULL));
  char *path = g_build_filename (tmpdir, "cut.safetensors", NULL);
  gsize cuts[3] = { len - 1000, 4, 200 };
  SiErrorCode codes[3] = { SI_ERROR_FORMAT, SI_ERROR_FORMAT, SI_ERROR_FORMAT };
  const char *needles[3] = { "out of range", "too short", "exceeds" };
  for (int i = 0; i < 3; i++) {
    g_assert_true (g_file_set_contents (path, bytes, cuts[i], NULL));
    g_assert_null (si_model_load (path, &error));
    g_assert_nonnull (error);
    g_test_message ("%s", error->message);
    g_assert_error (error, SI_ERROR, (gint) codes[i]);
    g_assert_nonnull (strstr (error->message, needles[i]));
    g_clear_error (&error);
  }
  g_unlink (path);
  g_free (path);
  g_free (bytes);
}

/* Small broken safetensors files through si_model_load(): the reader's
 * checks reach the public API as SI_ERROR_FORMAT naming the problem. */
static void
test_corrupt_header (void)
{
  static const struct
  {
    const char *header;
    guint64 hlen; /* 0: the header's length */
    size_t data;
    const char *needle;
  } cases[] = {
    { "{\"a\": {\"dtype\": ", 0, 4, "JSON" },
    { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 5000,
        4, "header length 5000" },
    { "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
      "\"y\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
        0, 12, "overlap" },
    { "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 0, 8,
        "out of range" },
    { "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 0, 8,
        "needs 12 bytes" },
  };
  char *path = g_build_filename (tmpdir, "corrupt.safetensors", NULL);
  for (size_t i = 0; i < G_N_ELEMENTS (cases); i++) {
    GByteArray *b = g_byte_array_new ();
    guint64 hlen = cases[i].hlen ? cases[i].hlen : strlen (cases[i].header);
    for (int k = 0; k < 8; k++) {
      guint8 byte = (guint8) (hlen >> (8 * k));
      g_byte_array_append (b, &byte, 1);
    }
    g_byte_array_append (
        b, (const guint8 *) cases[i].header, (guint) strlen (cases[i].header));
    for (size_t k = 0; k < cases[i].data; k++) {
      guint8 zero = 0;
      g_byte_array_append (b, &zero, 1);
    }
    g_assert_true (
        g_file_set_contents (path, (const char *) b->data, b->len, NULL));
    g_byte_array_unref (b);

    GError *error = NULL;
    g_assert_null (si_model_load (path, &error));
    g_assert_nonnull (error);
    g_test_message ("%s", error->message);
    g_assert_error (error, SI_ERROR, SI_ERROR_FORMAT);
    g_assert_nonnull (strstr (error->message, path));
    if (strstr (error->message, cases[i].needle) == NULL)
      g_error ("message \"%s\" does not mention \"%s\"", error->message,
          cases[i].needle);
    g_error_free (error);
  }
  g_unlink (path);
  g_free (path);
}

static void
test_missing_tensor (void)
{
  Edit e = { .drop = "roi_head.bbox_head.3.fc_reg.weight" };
  expect_load_error ("missing.safetensors", &e, SI_ERROR_MISSING_TENSOR,
      "roi_head.bbox_head.3.fc_reg.weight", NULL);
  Edit e2 = { .drop = "backbone.layer2.0.bn2.running_var" };
  expect_load_error ("missing2.safetensors", &e2, SI_ERROR_MISSING_TENSOR,
      "backbone.layer2.0.bn2.running_var", NULL);
}

static void
test_unused_tensors_not_required (void)
{
  Edit e = { .drop = "roi_head.bbox_head.2.iou_snyc_statistics.running_mean" };
  char *path = write_model ("unused.safetensors", &e);
  GError *error = NULL;
  SiModel *m = si_model_load (path, &error);
  g_assert_no_error (error);
  si_model_clear (&m);
  g_unlink (path);
  g_free (path);
}

static void
test_wrong_shape (void)
{
  SiModel *m = load_golden ();
  int C = m->content_dim;
  si_model_clear (&m);
  /* same element count, other shape: the file itself stays valid */
  Edit e = { .reshape = "roi_head.bbox_head.1.fc_reg.weight",
    .new_shape = { 2, 2 * C },
    .new_ndim = 2 };
  char want[64], got[64];
  g_snprintf (want, sizeof want, "expected [4, %d]", C);
  g_snprintf (got, sizeof got, "got [2, %d]", 2 * C);
  expect_load_error ("shape.safetensors", &e, SI_ERROR_TENSOR_SHAPE,
      "roi_head.bbox_head.1.fc_reg.weight", want, got, NULL);
}

static void
test_wrong_dtype (void)
{
  Edit e = { .retype = "neck.lateral_convs.2.conv.weight" };
  expect_load_error ("dtype.safetensors", &e, SI_ERROR_TENSOR_DTYPE,
      "neck.lateral_convs.2.conv.weight", "I32", NULL);
}

static void
test_backbone_config (void)
{
  /* ResNeXt with groups 1 is the ResNet: the golden file loads */
  Edit e = { .cfg_path = "backbone.type", .cfg_value = str_node ("ResNeXt") };
  char *path = write_model ("resnext1.safetensors", &e);
  GError *error = NULL;
  SiModel *m = si_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (m->backbone.groups, ==, 1);
  si_model_clear (&m);
  g_unlink (path);
  g_free (path);
  /* groups 4 changes the widths and conv2's shape (model-spec 3.2) */
  Edit eg = { .cfg_path = "backbone.type",
    .cfg_value = str_node ("ResNeXt"),
    .cfg_path2 = "backbone.groups",
    .cfg_value2 = int_node (4) };
  expect_load_error ("resnext4.safetensors", &eg, SI_ERROR_TENSOR_SHAPE,
      "backbone.layer1.0.conv", NULL);
  /* DCN: v1 only, named stages, the offset convs in the file */
  Edit ed = { .cfg_path = "backbone.dcn",
    .cfg_value = json_node ("{\"type\": \"DCNv2\", \"deform_groups\": 1}"),
    .cfg_path2 = "backbone.stage_with_dcn",
    .cfg_value2 = json_node ("[false, true, true, true]") };
  expect_load_error ("dcnv2.safetensors", &ed, SI_ERROR_UNSUPPORTED,
      "backbone.dcn.type", "DCNv2", NULL);
  Edit ed2 = { .cfg_path = "backbone.stage_with_dcn",
    .cfg_value = json_node ("[false, true, true, true]") };
  expect_load_error ("dcn-absent.safetensors", &ed2, SI_ERROR_CONFIG,
      "backbone.dcn is absent", NULL);
  Edit ed3 = { .cfg_path = "backbone.dcn",
    .cfg_value = json_node ("{\"type\": \"DCN\", \"deform_groups\": 1}"),
    .cfg_path2 = "backbone.stage_with_dcn",
    .cfg_value2 = json_node ("[false, true, true, true]") };
  expect_load_error ("dcn-no-offsets.safetensors", &ed3,
      SI_ERROR_MISSING_TENSOR, "backbone.layer2.0.conv2.conv_offset.weight",
      NULL);
  Edit ed4 = { .cfg_path = "backbone.stage_with_dcn",
    .cfg_value = json_node ("[false, true]") };
  expect_load_error ("dcn-stages.safetensors", &ed4, SI_ERROR_CONFIG,
      "backbone.stage_with_dcn", NULL);
  /* the fixed arrays: other values are refused by name, values out of
   * their range as a config error */
  Edit ea1 = { .cfg_path = "backbone.strides",
    .cfg_value = json_node ("[1, 2, 2, 1]") };
  expect_load_error ("strides.safetensors", &ea1, SI_ERROR_UNSUPPORTED,
      "backbone.strides must be [1, 2, 2, 2]", NULL);
  Edit ea2 = { .cfg_path = "backbone.dilations",
    .cfg_value = json_node ("[1, 1, 1, 2]") };
  expect_load_error ("dilations.safetensors", &ea2, SI_ERROR_UNSUPPORTED,
      "backbone.dilations must be [1, 1, 1, 1]", NULL);
  Edit ea3 = { .cfg_path = "backbone.out_indices",
    .cfg_value = json_node ("[1, 2, 3, 3]") };
  expect_load_error ("out-indices.safetensors", &ea3, SI_ERROR_UNSUPPORTED,
      "backbone.out_indices must be [0, 1, 2, 3]", NULL);
  Edit ea4 = { .cfg_path = "backbone.strides",
    .cfg_value = json_node ("[1, 2, 2, 3]") };
  expect_load_error ("strides-range.safetensors", &ea4, SI_ERROR_CONFIG,
      "backbone.strides[3] is not an integer in [1, 2]", NULL);
  Edit e2 = { .cfg_path = "backbone.type", .cfg_value = str_node ("VGG") };
  expect_load_error ("vgg.safetensors", &e2, SI_ERROR_UNSUPPORTED, "\"VGG\"",
      "SwinTransformer", NULL);
  /* a Swin config over ResNet weights: its BN is refused, then (LN) the
   * Swin tensors are missing */
  Edit es1 = { .cfg_path = "backbone.type",
    .cfg_value = str_node ("SwinTransformer") };
  expect_load_error ("swin-bn.safetensors", &es1, SI_ERROR_UNSUPPORTED,
      "backbone.norm_cfg.type \"BN\"", NULL);
  Edit es2 = { .cfg_path = "backbone.type",
    .cfg_value = str_node ("SwinTransformer"),
    .cfg_path2 = "backbone.norm_cfg.type",
    .cfg_value2 = str_node ("LN") };
  expect_load_error ("swin.safetensors", &es2, SI_ERROR_MISSING_TENSOR,
      "backbone.patch_embed.projection.weight", NULL);
  Edit e3 = { .cfg_path = "backbone.depth", .cfg_value = int_node (42) };
  expect_load_error (
      "depth.safetensors", &e3, SI_ERROR_CONFIG, "backbone.depth", NULL);
  /* depth 101 has more layer3 blocks than this file */
  Edit e4 = { .cfg_path = "backbone.depth", .cfg_value = int_node (101) };
  expect_load_error ("depth101.safetensors", &e4, SI_ERROR_MISSING_TENSOR,
      "backbone.layer3.6.", NULL);
}

static void
test_bad_config_value (void)
{
  Edit e = { .cfg_path = "neck.out_channels", .cfg_value = int_node (96) };
  expect_load_error ("neckout.safetensors", &e, SI_ERROR_CONFIG,
      "neck.out_channels", "content_dim", NULL);
  Edit e2 = { .cfg_path = "roi_head.bbox_head[3].use_pre_feats",
    .cfg_value = bool_node (TRUE) };
  expect_load_error (
      "prefeats.safetensors", &e2, SI_ERROR_UNSUPPORTED, "use_pre_feats", NULL);
  Edit e3 = { .cfg_path = "roi_head.bbox_head[2].in_points",
    .cfg_value = str_node ("four") };
  expect_load_error ("inpoints.safetensors", &e3, SI_ERROR_CONFIG,
      "roi_head.bbox_head[2].in_points", NULL);
  Edit e4 = { .cfg_path = "rpn_head.content_dim", .cfg_value = NULL };
  expect_load_error (
      "nocdim.safetensors", &e4, SI_ERROR_CONFIG, "rpn_head.content_dim", NULL);
  Edit e5 = { .cfg_path = "backbone.style", .cfg_value = str_node ("caffe") };
  expect_load_error (
      "caffe.safetensors", &e5, SI_ERROR_UNSUPPORTED, "caffe", NULL);
  Edit e6 = { .cfg_path = "roi_head.num_stages", .cfg_value = int_node (5) };
  expect_load_error (
      "stages.safetensors", &e6, SI_ERROR_CONFIG, "num_stages", NULL);
  /* bigger out_points changes every stage's sizes: caught by the shape
   * cross-checks */
  Edit e7 = { .cfg_path = "roi_head.bbox_head[0].out_points",
    .cfg_value = int_node (128) };
  expect_load_error ("outpoints.safetensors", &e7, SI_ERROR_TENSOR_SHAPE,
      "roi_head.bbox_head.0.", "expected", NULL);
  Edit e8 = { .cfg_path = "type", .cfg_value = str_node ("SparseRCNN") };
  expect_load_error (
      "type.safetensors", &e8, SI_ERROR_UNSUPPORTED, "SparseRCNN", NULL);
  Edit e9 = { .meta_key = "format", .meta_value = "something-else" };
  expect_load_error (
      "format.safetensors", &e9, SI_ERROR_CONFIG, "format", NULL);
  Edit e10 = { .meta_key = "model", .meta_value = "{not json" };
  expect_load_error (
      "modeljson.safetensors", &e10, SI_ERROR_CONFIG, "model", NULL);
  Edit e11 = { .meta_key = "img_norm",
    .meta_value = "{\"mean\": [1, 2], \"std\": [1, 2, 3]}" };
  expect_load_error (
      "imgnorm.safetensors", &e11, SI_ERROR_CONFIG, "img_norm.mean", NULL);
  Edit e12 = { .meta_key = "test_scale", .meta_value = NULL };
  expect_load_error (
      "noscale.safetensors", &e12, SI_ERROR_CONFIG, "test_scale", NULL);
  Edit e13 = { .cfg_path = "roi_head.bbox_head[1].ffn_act_cfg.type",
    .cfg_value = str_node ("GELU") };
  expect_load_error ("ffnact.safetensors", &e13, SI_ERROR_UNSUPPORTED,
      "roi_head.bbox_head[1].ffn_act_cfg.type \"GELU\"", "only ReLU", NULL);
  Edit e14 = { .cfg_path = "backbone.norm_cfg.type",
    .cfg_value = int_node (3) };
  expect_load_error ("normtype.safetensors", &e14, SI_ERROR_CONFIG,
      "backbone.norm_cfg.type is not a string", NULL);
}

static void
test_absurd_sizes (void)
{
  Edit e = { .cfg_path = "rpn_head.num_query", .cfg_value = int_node (20000) };
  expect_load_error ("nq.safetensors", &e, SI_ERROR_CONFIG,
      "rpn_head.num_query", "20000", NULL);
  Edit e2 = { .cfg_path = "rpn_head.num_query", .cfg_value = int_node (-1) };
  expect_load_error (
      "nqneg.safetensors", &e2, SI_ERROR_CONFIG, "rpn_head.num_query", NULL);
  Edit e3 = { .meta_key = "test_scale", .meta_value = "[100000, 800]" };
  expect_load_error (
      "scale.safetensors", &e3, SI_ERROR_CONFIG, "test_scale", NULL);
  Edit e4 = { .cfg_path = "roi_head.bbox_head[0].num_classes",
    .cfg_value = int_node (200000) };
  expect_load_error (
      "nc.safetensors", &e4, SI_ERROR_CONFIG, "num_classes", NULL);
  Edit e5 = { .meta_key = "size_divisor", .meta_value = "0" };
  expect_load_error (
      "sd.safetensors", &e5, SI_ERROR_CONFIG, "size_divisor", NULL);
}

static void
test_classes_mismatch (void)
{
  Edit e = { .meta_key = "classes", .meta_value = "[\"a\", \"b\", \"c\"]" };
  expect_load_error (
      "classes.safetensors", &e, SI_ERROR_CONFIG, "classes", "3", NULL);
  Edit e2 = { .meta_key = "classes", .meta_value = "{\"a\": 1}" };
  expect_load_error (
      "classes2.safetensors", &e2, SI_ERROR_CONFIG, "classes", NULL);
}

/* The stem with BN folded: w (cout, 3, 7, 7) then b (cout), one buffer. */
static float *
fold_stem (SiModel *m)
{
  const SiConv *c = &m->backbone.stem;
  size_t n = si_conv_weight_numel (c);
  float *wb = g_new (float, n + c->cout);
  si_conv_fold (c, wb, wb + n);
  return wb;
}

static void
test_f16_weights (void)
{
  Edit e = { .f16 = TRUE };
  char *path = write_model ("f16.safetensors", &e);
  GError *error = NULL;
  SiModel *m16 = si_model_load (path, &error);
  g_assert_no_error (error);
  SiModel *m = load_golden ();
  /* F16 keeps ~3 decimal digits */
  size_t n = (size_t) m->num_query * m->content_dim;
  for (size_t i = 0; i < n; i++)
    g_assert_cmpfloat (fabsf (m16->init_content[i] - m->init_content[i]), <=,
        1e-3f * (1.0f + fabsf (m->init_content[i])));
  SiLinear *a = &m->stages[0].fc_cls, *b = &m16->stages[0].fc_cls;
  for (int i = 0; i < a->out * a->in; i++)
    g_assert_cmpfloat (
        fabsf (a->w[i] - b->w[i]), <=, 1e-3f * (1.0f + fabsf (a->w[i])));
  /* the backbone's convs fold from the converted float32 copies */
  float *s32 = fold_stem (m), *s16 = fold_stem (m16);
  size_t ns = si_conv_weight_numel (&m->backbone.stem) + m->backbone.stem.cout;
  for (size_t i = 0; i < ns; i++)
    g_assert_cmpfloat (
        fabsf (s32[i] - s16[i]), <=, 2e-3f * (1.0f + fabsf (s32[i])));
  g_free (s32);
  g_free (s16);
  si_model_clear (&m16);
  si_model_clear (&m);
  g_unlink (path);
  g_free (path);
}

static void
test_unaligned_weights (void)
{
  Edit e = { .misalign = TRUE };
  char *path = write_model ("misaligned.safetensors", &e);
  GError *error = NULL;
  SiModel *mu = si_model_load (path, &error);
  g_assert_no_error (error);
  SiModel *m = load_golden ();
  g_assert_cmpuint ((uintptr_t) mu->init_content % 4, ==, 0);
  g_assert_cmpuint ((uintptr_t) mu->stages[1].Wv.w % 4, ==, 0);
  size_t n = (size_t) m->num_query * m->content_dim;
  g_assert_cmpmem (mu->init_content, n * 4, m->init_content, n * 4);
  SiLinear *a = &m->stages[1].Wv, *b = &mu->stages[1].Wv;
  g_assert_cmpmem (
      a->w, (size_t) a->out * a->in * 4, b->w, (size_t) a->out * a->in * 4);
  /* unaligned BN / conv tensors: owned aligned copies, the same folds */
  g_assert_cmpuint ((uintptr_t) mu->backbone.stem.w % 4, ==, 0);
  float *sa = fold_stem (m), *su = fold_stem (mu);
  size_t ns = si_conv_weight_numel (&m->backbone.stem) + m->backbone.stem.cout;
  g_assert_cmpmem (sa, ns * 4, su, ns * 4);
  g_free (sa);
  g_free (su);
  si_model_clear (&mu);
  si_model_clear (&m);
  g_unlink (path);
  g_free (path);
}

/* Collects "a.b[2].c" paths of every scalar or array member reachable
 * through objects and arrays of objects. */
static void
collect_paths (JsonObject *o, const char *prefix, GPtrArray *out)
{
  GList *members = json_object_get_members (o);
  for (GList *l = members; l != NULL; l = l->next) {
    const char *k = l->data;
    JsonNode *n = json_object_get_member (o, k);
    char *path = *prefix ? g_strdup_printf ("%s.%s", prefix, k) : g_strdup (k);
    if (JSON_NODE_HOLDS_OBJECT (n)) {
      collect_paths (json_node_get_object (n), path, out);
      g_free (path);
    } else if (JSON_NODE_HOLDS_ARRAY (n) &&
        json_array_get_length (json_node_get_array (n)) > 0 &&
        JSON_NODE_HOLDS_OBJECT (
            json_array_get_element (json_node_get_array (n), 0))) {
      JsonArray *a = json_node_get_array (n);
      for (guint i = 0; i < json_array_get_length (a); i++) {
        char *sub = g_strdup_printf ("%s[%u]", path, i);
        JsonNode *e = json_array_get_element (a, i);
        if (JSON_NODE_HOLDS_OBJECT (e))
          collect_paths (json_node_get_object (e), sub, out);
        g_free (sub);
      }
      g_free (path);
    } else {
      g_ptr_array_add (out, path);
    }
  }
  g_list_free (members);
}

/* Random values in random config fields: loading must succeed or fail
 * with an SI_ERROR and a message; never crash (ASan in CI). */
static void
test_fuzz_config (void)
{
  SiSafetensors *f = si_safetensors_open (golden_model, NULL);
  JsonParser *p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (
      p, si_safetensors_metadata (f, "model"), -1, NULL));
  GPtrArray *paths = g_ptr_array_new_with_free_func (g_free);
  collect_paths (json_node_get_object (json_parser_get_root (p)), "", paths);
  g_assert_cmpuint (paths->len, >, 50);
  static const gint64 ints[] = { -1, 0, 1, 2, 3, 5, 7, 8, 16, 64, 100000,
    G_MAXINT32, (gint64) G_MAXINT32 + 1, G_MININT64 };
  GRand *rand = g_rand_new_with_seed (99);
  int ok = 0, refused = 0;
  int iters = g_test_slow () ? 200 : 40;
  for (int it = 0; it < iters; it++) {
    const char *path =
        paths->pdata[g_rand_int_range (rand, 0, (gint32) paths->len)];
    JsonNode *v = NULL;
    switch (g_rand_int_range (rand, 0, 5)) {
      case 0:
      case 1:
        v = int_node (ints[g_rand_int_range (rand, 0, G_N_ELEMENTS (ints))]);
        break;
      case 2:
        v = str_node ("garbage");
        break;
      case 3:
        v = json_node_new (JSON_NODE_NULL);
        break;
      default:
        v = NULL; /* remove the member */
    }
    Edit e = { .cfg_path = path, .cfg_value = v };
    char *file = write_model ("fuzz.safetensors", &e);
    GError *error = NULL;
    SiModel *m = si_model_load (file, &error);
    if (m != NULL) {
      ok++;
      si_model_clear (&m);
    } else {
      g_assert_nonnull (error);
      g_assert_true (error->domain == SI_ERROR);
      g_test_message ("%s -> %s", path, error->message);
      g_error_free (error);
      refused++;
    }
    g_unlink (file);
    g_free (file);
  }
  g_test_message ("config fuzz: %d loaded, %d refused", ok, refused);
  g_rand_free (rand);
  g_ptr_array_unref (paths);
  g_object_unref (p);
  si_safetensors_close (&f);
}

static void
test_defaults (void)
{
  SiContextOptions o;
  SiRunParams p;
  memset (&o, 0xff, sizeof o);
  si_context_options_init (&o);
  g_assert_cmpint (o.backend, ==, SI_BACKEND_AUTO);
  g_assert_cmpint (o.precision, ==, SI_PRECISION_FP32);
  g_assert_cmpint (o.max_width, ==, 3840);
  g_assert_cmpint (o.max_height, ==, 2160);
  g_assert_cmpint (o.num_threads, ==, 0);
  g_assert_cmpint (o.device_id, ==, 0);
  si_run_params_init (&p);
  g_assert_cmpfloat (p.threshold, ==, 0.3f);
  g_assert_cmpint (p.max_detections, ==, 0);
  g_assert_cmpstr (g_quark_to_string (SI_ERROR), ==, "si-engine-error-quark");
  g_assert_nonnull (strstr (si_engine_backends (), "cpu"));
  g_assert_cmpstr (si_engine_version (), !=, "");
  g_assert_true (si_backend_available (SI_BACKEND_CPU, NULL));
  GError *error = NULL;
  g_assert_false (si_backend_available ((SiBackendKind) 42, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  if (strstr (si_engine_backends (), "cuda") == NULL) {
    g_assert_false (si_backend_available (SI_BACKEND_CUDA, &error));
    g_assert_error (error, SI_ERROR, SI_ERROR_NO_DEVICE);
    g_clear_error (&error);
  }
}

static void
test_context_bad_options (void)
{
  SiModel *m = load_golden ();
  SiContextOptions o;
  GError *error = NULL;

  g_assert_null (si_context_new (NULL, NULL, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  si_context_options_init (&o);
  o.max_width = 0;
  g_assert_null (si_context_new (m, &o, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  si_context_options_init (&o);
  o.backend = (SiBackendKind) 17;
  g_assert_null (si_context_new (m, &o, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  si_context_options_init (&o);
  o.num_threads = -2;
  g_assert_null (si_context_new (m, &o, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  si_model_clear (&m);
}

static void
expect_run_error (SiContext *ctx, const SiFrame *f, const char *needle)
{
  GError *error = NULL;
  g_assert_false (si_context_run (ctx, f, NULL, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  if (needle != NULL && strstr (error->message, needle) == NULL)
    g_error ("message \"%s\" does not mention \"%s\"", error->message, needle);
  g_error_free (error);
}

static void
test_frame_validation (void)
{
  SiModel *m = load_golden ();
  SiContextOptions o;
  GError *error = NULL;
  si_context_options_init (&o);
  o.backend = SI_BACKEND_CPU;
  o.max_width = 64;
  o.max_height = 48;
  o.num_threads = 1;
  SiContext *ctx = si_context_new (m, &o, &error);
  g_assert_no_error (error);
  g_assert_nonnull (ctx);
  si_model_clear (&m); /* the context keeps its own reference */
  g_assert_cmpint (si_context_get_backend (ctx), ==, SI_BACKEND_CPU);

  static guint8 pix[64 * 48 * 4];
  SiFrame f = { 0 };
  f.format = SI_FORMAT_RGB;
  f.width = 64;
  f.height = 48;
  f.planes[0] = pix;
  f.strides[0] = 64 * 3;

  expect_run_error (ctx, NULL, "NULL");
  SiFrame g = f;
  g.planes[0] = NULL;
  expect_run_error (ctx, &g, "plane 0");
  g = f;
  g.width = 0;
  expect_run_error (ctx, &g, "0x48");
  g = f;
  g.height = -5;
  expect_run_error (ctx, &g, "-5");
  g = f;
  g.width = 65;
  g.strides[0] = 65 * 3;
  expect_run_error (ctx, &g, "maximum");
  g = f;
  g.strides[0] = 64 * 3 - 1;
  expect_run_error (ctx, &g, "stride");
  g = f;
  g.format = SI_FORMAT_BGRX;
  expect_run_error (ctx, &g, "stride"); /* 4 bytes per pixel now */
  g = f;
  g.format = SI_FORMAT_NV12;
  g.strides[0] = 64;
  expect_run_error (ctx, &g, "plane 1");
  g.planes[1] = pix;
  g.strides[1] = 31;
  expect_run_error (ctx, &g, "plane 1");
  g = f;
  g.format = SI_FORMAT_I420;
  g.strides[0] = 64;
  g.planes[1] = g.planes[2] = pix;
  g.strides[1] = 32;
  g.strides[2] = 16;
  expect_run_error (ctx, &g, "plane 2");
  g = f;
  g.format = (SiPixelFormat) 99;
  expect_run_error (ctx, &g, "format");
  g_assert_false (si_context_run (NULL, &f, NULL, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);
  SiRunParams p;
  si_run_params_init (&p);
  p.max_detections = -1;
  g_assert_false (si_context_run (ctx, &f, &p, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT);
  g_clear_error (&error);

  /* a valid frame runs; failures above left no stale detections */
  size_t n = 99;
  g_assert_null (si_context_get_detections (ctx, &n));
  g_assert_cmpuint (n, ==, 0);
  si_run_params_init (&p);
  p.threshold = 0.0f;
  p.max_detections = 3;
  g_assert_true (si_context_run (ctx, &f, &p, &error));
  g_assert_no_error (error);
  const SiDetection *d = si_context_get_detections (ctx, &n);
  g_assert_cmpuint (n, ==, 3);
  for (size_t i = 0; i < n; i++) {
    g_assert_cmpint (d[i].class_id, >=, 0);
    g_assert_nonnull (d[i].label);
    if (i > 0)
      g_assert_cmpfloat (d[i].score, <=, d[i - 1].score);
  }
  /* an odd-sized NV12 frame (chroma rounded up) is accepted */
  g = f;
  g.format = SI_FORMAT_NV12;
  g.width = 63;
  g.height = 47;
  g.planes[1] = pix;
  g.strides[0] = 63;
  g.strides[1] = 64;
  g_assert_true (si_context_run (ctx, &g, &p, &error));
  g_assert_no_error (error);
  SiTimings t;
  si_context_get_timings (ctx, &t);
  g_assert_cmpfloat (t.total, >, 0.0);
  si_context_free (&ctx);
  g_assert_null (ctx);
  si_context_free (&ctx);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  case_dir = argc > 1 ? argv[1] : SI_GOLDEN_TINY;
  golden_model = g_build_filename (case_dir, "model.safetensors", NULL);
  if (!g_file_test (golden_model, G_FILE_TEST_EXISTS))
    g_error ("golden model %s is missing (set -Dgolden_dir)", golden_model);
  tmpdir = g_dir_make_tmp ("si-loader-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);

  g_test_add_func ("/loader/golden-loads", test_golden_loads);
  g_test_add_func ("/loader/missing-file", test_missing_file);
  g_test_add_func ("/loader/truncated", test_truncated);
  g_test_add_func ("/loader/corrupt-header", test_corrupt_header);
  g_test_add_func ("/loader/missing-tensor", test_missing_tensor);
  g_test_add_func (
      "/loader/unused-tensors-not-required", test_unused_tensors_not_required);
  g_test_add_func ("/loader/wrong-shape", test_wrong_shape);
  g_test_add_func ("/loader/wrong-dtype", test_wrong_dtype);
  g_test_add_func ("/loader/backbone-config", test_backbone_config);
  g_test_add_func ("/loader/bad-config-value", test_bad_config_value);
  g_test_add_func ("/loader/absurd-sizes", test_absurd_sizes);
  g_test_add_func ("/loader/classes-mismatch", test_classes_mismatch);
  g_test_add_func ("/loader/f16-weights", test_f16_weights);
  g_test_add_func ("/loader/unaligned-weights", test_unaligned_weights);
  g_test_add_func ("/loader/fuzz-config", test_fuzz_config);
  g_test_add_func ("/api/defaults", test_defaults);
  g_test_add_func ("/api/context-bad-options", test_context_bad_options);
  g_test_add_func ("/api/frame-validation", test_frame_validation);

  int rc = g_test_run ();
  g_rmdir (tmpdir); /* each test removes its own files */
  g_free (tmpdir);
  g_free (golden_model);
  return rc;
}
