/* safetensors.c: mmap-backed safetensors reader and a small float32 writer.
 * File layout: u64 LE header length n, n bytes of JSON header (padded with
 * spaces), then the data buffer.  The reader checks every header field
 * against the file (sizes without overflow, dtype names, shapes, offsets,
 * overlaps) before exposing a tensor.
 */
#include "safetensors.h"
#include "si-engine.h"

#include <errno.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

#if G_BYTE_ORDER != G_LITTLE_ENDIAN
#error "safetensors data is little-endian; big-endian hosts are not supported"
#endif

/* Hard cap on the JSON header: the real format caps it at 100 MB. */
#define SI_SAFETENSORS_MAX_HEADER ((guint64) 100 * 1024 * 1024)

struct _SiSafetensors
{
  char *path;
  GMappedFile *map;
  const guint8 *bytes; /* whole file */
  size_t size;
  const guint8 *data; /* data buffer, after the header */
  size_t data_size;
  SiTensorInfo *tensors; /* n_tensors, sorted by data offset */
  guint n_tensors;
  GHashTable *by_name;  /* name -> SiTensorInfo* (names owned by tensors) */
  GHashTable *metadata; /* key -> value, both owned */
};

static const struct
{
  const char *name;
  SiDtype dtype;
  size_t size;
} dtype_table[] = {
  { "F32", SI_DTYPE_F32, 4 },
  { "F16", SI_DTYPE_F16, 2 },
  { "BF16", SI_DTYPE_BF16, 2 },
  { "F64", SI_DTYPE_F64, 8 },
  { "I64", SI_DTYPE_I64, 8 },
  { "I32", SI_DTYPE_I32, 4 },
  { "I16", SI_DTYPE_I16, 2 },
  { "I8", SI_DTYPE_I8, 1 },
  { "U8", SI_DTYPE_U8, 1 },
  { "BOOL", SI_DTYPE_BOOL, 1 },
};

const char *
si_dtype_name (SiDtype dtype)
{
  for (size_t i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (dtype_table[i].dtype == dtype)
      return dtype_table[i].name;
  return "?";
}

size_t
si_dtype_size (SiDtype dtype)
{
  for (size_t i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (dtype_table[i].dtype == dtype)
      return dtype_table[i].size;
  return 0;
}

static gboolean
dtype_from_name (const char *name, SiDtype *dtype)
{
  for (size_t i = 0; i < G_N_ELEMENTS (dtype_table); i++)
    if (strcmp (dtype_table[i].name, name) == 0) {
      *dtype = dtype_table[i].dtype;
      return TRUE;
    }
  return FALSE;
}

/* A non-negative JSON integer. */
static gboolean
node_get_uint (JsonNode *node, guint64 *out)
{
  if (node == NULL || !JSON_NODE_HOLDS_VALUE (node) ||
      json_node_get_value_type (node) != G_TYPE_INT64)
    return FALSE;
  gint64 v = json_node_get_int (node);
  if (v < 0)
    return FALSE;
  *out = (guint64) v;
  return TRUE;
}

static void
tensor_info_clear (SiTensorInfo *t)
{
  g_free ((char *) t->name);
  t->name = NULL;
}

void
si_safetensors_close (SiSafetensors **file)
{
  SiSafetensors *f;

  if (file == NULL || *file == NULL)
    return;
  f = *file;
  *file = NULL;
  if (f->tensors != NULL) {
    for (guint i = 0; i < f->n_tensors; i++)
      tensor_info_clear (&f->tensors[i]);
    g_free (f->tensors);
  }
  if (f->by_name != NULL)
    g_hash_table_unref (f->by_name);
  if (f->metadata != NULL)
    g_hash_table_unref (f->metadata);
  if (f->map != NULL)
    g_mapped_file_unref (f->map);
  g_free (f->path);
  g_free (f);
}

static gboolean
parse_metadata (SiSafetensors *f, JsonNode *node, GError **error)
{
  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: __metadata__ is not a JSON object", f->path);
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (node);
  GList *members = json_object_get_members (obj);
  gboolean ok = TRUE;
  for (GList *l = members; l != NULL; l = l->next) {
    const char *key = l->data;
    JsonNode *v = json_object_get_member (obj, key);
    if (!JSON_NODE_HOLDS_VALUE (v) ||
        json_node_get_value_type (v) != G_TYPE_STRING) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: __metadata__ value \"%s\" is not a string", f->path, key);
      ok = FALSE;
      break;
    }
    g_hash_table_replace (
        f->metadata, g_strdup (key), g_strdup (json_node_get_string (v)));
  }
  g_list_free (members);
  return ok;
}

/* Parses one tensor entry into t (t->name already set). */
static gboolean
parse_tensor (SiSafetensors *f, SiTensorInfo *t, JsonNode *node, guint64 *begin,
    guint64 *end, GError **error)
{
  const char *name = t->name;

  if (!JSON_NODE_HOLDS_OBJECT (node)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": header entry is not a JSON object", f->path, name);
    return FALSE;
  }
  JsonObject *obj = json_node_get_object (node);

  /* dtype */
  JsonNode *dn = json_object_get_member (obj, "dtype");
  if (dn == NULL || !JSON_NODE_HOLDS_VALUE (dn) ||
      json_node_get_value_type (dn) != G_TYPE_STRING) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": missing or non-string \"dtype\"", f->path, name);
    return FALSE;
  }
  if (!dtype_from_name (json_node_get_string (dn), &t->dtype)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": unknown dtype \"%s\"", f->path, name,
        json_node_get_string (dn));
    return FALSE;
  }

  /* shape */
  JsonNode *sn = json_object_get_member (obj, "shape");
  if (sn == NULL || !JSON_NODE_HOLDS_ARRAY (sn)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": missing or non-array \"shape\"", f->path, name);
    return FALSE;
  }
  JsonArray *sa = json_node_get_array (sn);
  guint ndim = json_array_get_length (sa);
  if (ndim > SI_TENSOR_MAX_DIMS) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": %u dimensions (at most %d supported)", f->path,
        name, ndim, SI_TENSOR_MAX_DIMS);
    return FALSE;
  }
  t->ndim = (int) ndim;
  guint64 numel = 1;
  for (guint i = 0; i < ndim; i++) {
    guint64 d;
    if (!node_get_uint (json_array_get_element (sa, i), &d)) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: tensor \"%s\": shape[%u] is not a non-negative integer", f->path,
          name, i);
      return FALSE;
    }
    if (d != 0 && numel > (guint64) G_MAXINT64 / d) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: tensor \"%s\": shape product overflows", f->path, name);
      return FALSE;
    }
    numel *= d;
    t->shape[i] = (int64_t) d;
  }
  t->numel = (int64_t) numel;
  size_t esize = si_dtype_size (t->dtype);
  if (numel > (guint64) G_MAXINT64 / esize) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": byte size overflows", f->path, name);
    return FALSE;
  }
  guint64 nbytes = numel * esize;

  /* data_offsets, relative to the data buffer */
  JsonNode *on = json_object_get_member (obj, "data_offsets");
  if (on == NULL || !JSON_NODE_HOLDS_ARRAY (on) ||
      json_array_get_length (json_node_get_array (on)) != 2) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": \"data_offsets\" is not an array of two "
        "integers",
        f->path, name);
    return FALSE;
  }
  JsonArray *oa = json_node_get_array (on);
  if (!node_get_uint (json_array_get_element (oa, 0), begin) ||
      !node_get_uint (json_array_get_element (oa, 1), end)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": \"data_offsets\" are not non-negative integers",
        f->path, name);
    return FALSE;
  }
  if (*end < *begin) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": data_offsets [%" G_GUINT64_FORMAT
        ", %" G_GUINT64_FORMAT "] end before begin",
        f->path, name, *begin, *end);
    return FALSE;
  }
  if (*end > f->data_size) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": data_offsets [%" G_GUINT64_FORMAT
        ", %" G_GUINT64_FORMAT "] out of range (data buffer is %" G_GSIZE_FORMAT
        " bytes; file truncated?)",
        f->path, name, *begin, *end, f->data_size);
    return FALSE;
  }
  if (*end - *begin != nbytes) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: tensor \"%s\": data_offsets span %" G_GUINT64_FORMAT
        " bytes but %s shape needs %" G_GUINT64_FORMAT " bytes",
        f->path, name, *end - *begin, si_dtype_name (t->dtype), nbytes);
    return FALSE;
  }
  t->nbytes = (size_t) nbytes;
  t->data = f->data + *begin;
  return TRUE;
}

typedef struct
{
  guint64 begin, end;
  guint index;
} Span;

static int
span_cmp (const void *a, const void *b)
{
  const Span *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return 0;
}

static gboolean
parse_header (SiSafetensors *f, const char *json, size_t len, GError **error)
{
  JsonParser *parser = json_parser_new ();
  GError *jerr = NULL;
  gboolean ok = FALSE;
  GList *members = NULL;
  Span *spans = NULL;
  SiTensorInfo *tmp = NULL;
  guint n = 0;

  if (len == 0 || json[0] != '{') {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: header is not a JSON object (not a safetensors file?)", f->path);
    goto out;
  }
  if (!g_utf8_validate (json, (gssize) len, NULL)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: header is not valid UTF-8", f->path);
    goto out;
  }
  if (!json_parser_load_from_data (parser, json, (gssize) len, &jerr)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT, "%s: bad JSON header: %s",
        f->path, jerr->message);
    g_clear_error (&jerr);
    goto out;
  }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: header is not a JSON object", f->path);
    goto out;
  }
  JsonObject *obj = json_node_get_object (root);
  members = json_object_get_members (obj);
  guint n_members = g_list_length (members);
  tmp = g_new0 (SiTensorInfo, n_members > 0 ? n_members : 1);
  spans = g_new0 (Span, n_members > 0 ? n_members : 1);

  for (GList *l = members; l != NULL; l = l->next) {
    const char *key = l->data;
    JsonNode *node = json_object_get_member (obj, key);
    if (strcmp (key, "__metadata__") == 0) {
      if (!parse_metadata (f, node, error))
        goto out;
      continue;
    }
    SiTensorInfo *t = &tmp[n];
    t->name = g_strdup (key);
    n++;
    if (!parse_tensor (
            f, t, node, &spans[n - 1].begin, &spans[n - 1].end, error))
      goto out;
    spans[n - 1].index = n - 1;
  }

  /* No two tensors may share bytes. */
  qsort (spans, n, sizeof (Span), span_cmp);
  for (guint i = 1; i < n; i++) {
    if (spans[i].begin < spans[i - 1].end) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: tensors \"%s\" and \"%s\" overlap in the data buffer "
          "([%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
          "] and [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "])",
          f->path, tmp[spans[i - 1].index].name, tmp[spans[i].index].name,
          spans[i - 1].begin, spans[i - 1].end, spans[i].begin, spans[i].end);
      goto out;
    }
  }

  /* Every byte of the data buffer belongs to exactly one tensor. */
  guint64 covered = 0;
  for (guint i = 0; i < n; i++) {
    if (spans[i].begin > covered) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: bytes [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
          ") of the data buffer belong to no tensor (before \"%s\")",
          f->path, covered, spans[i].begin, tmp[spans[i].index].name);
      goto out;
    }
    covered = spans[i].end;
  }
  if (covered != f->data_size) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: %" G_GUINT64_FORMAT " trailing bytes after the last tensor",
        f->path, (guint64) f->data_size - covered);
    goto out;
  }

  /* Keep tensors in file order. */
  f->tensors = g_new0 (SiTensorInfo, n > 0 ? n : 1);
  for (guint i = 0; i < n; i++) {
    f->tensors[i] = tmp[spans[i].index];
    tmp[spans[i].index].name = NULL;
  }
  f->n_tensors = n;
  for (guint i = 0; i < n; i++)
    g_hash_table_insert (
        f->by_name, (gpointer) f->tensors[i].name, &f->tensors[i]);
  ok = TRUE;

out:
  if (tmp != NULL) {
    for (guint i = 0; i < n; i++)
      tensor_info_clear (&tmp[i]);
    g_free (tmp);
  }
  g_free (spans);
  g_list_free (members);
  g_object_unref (parser);
  return ok;
}

SiSafetensors *
si_safetensors_open (const char *path, GError **error)
{
  SiSafetensors *f;
  GError *ferr = NULL;

  g_return_val_if_fail (path != NULL, NULL);

  f = g_new0 (SiSafetensors, 1);
  f->path = g_strdup (path);
  f->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  f->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free);

  if (g_file_test (path, G_FILE_TEST_IS_DIR)) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_IO, "%s: cannot open: is a directory", path);
    goto fail;
  }
  f->map = g_mapped_file_new (path, FALSE, &ferr);
  if (f->map == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO, "%s: cannot open: %s", path,
        ferr->message);
    g_clear_error (&ferr);
    goto fail;
  }
  f->bytes = (const guint8 *) g_mapped_file_get_contents (f->map);
  f->size = g_mapped_file_get_length (f->map);

  if (f->size < 8) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: file is %" G_GSIZE_FORMAT " bytes, too short for the 8-byte "
        "header length (truncated?)",
        path, f->size);
    goto fail;
  }
  guint64 hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | f->bytes[i];
  if (hlen > f->size - 8) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: header length %" G_GUINT64_FORMAT
        " exceeds the file size %" G_GSIZE_FORMAT
        " (truncated or not a safetensors file)",
        path, hlen, f->size);
    goto fail;
  }
  if (hlen > SI_SAFETENSORS_MAX_HEADER) {
    g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
        "%s: header length %" G_GUINT64_FORMAT " is too large", path, hlen);
    goto fail;
  }
  f->data = f->bytes + 8 + hlen;
  f->data_size = f->size - 8 - (size_t) hlen;

  if (!parse_header (f, (const char *) f->bytes + 8, (size_t) hlen, error))
    goto fail;
  return f;

fail:
  si_safetensors_close (&f);
  return NULL;
}

const SiTensorInfo *
si_safetensors_find (const SiSafetensors *file, const char *name)
{
  if (file == NULL || name == NULL)
    return NULL;
  return g_hash_table_lookup (file->by_name, name);
}

guint
si_safetensors_n_tensors (const SiSafetensors *file)
{
  return file != NULL ? file->n_tensors : 0;
}

const SiTensorInfo *
si_safetensors_get (const SiSafetensors *file, guint i)
{
  if (file == NULL || i >= file->n_tensors)
    return NULL;
  return &file->tensors[i];
}

void
si_safetensors_mapping (
    const SiSafetensors *file, const void **base, size_t *size)
{
  *base = file ? file->bytes : NULL;
  *size = file ? file->size : 0;
}

const char *
si_safetensors_metadata (const SiSafetensors *file, const char *key)
{
  if (file == NULL || key == NULL)
    return NULL;
  return g_hash_table_lookup (file->metadata, key);
}

/* ---- writer ---- */

typedef struct
{
  char *name;
  int ndim;
  int64_t shape[SI_TENSOR_MAX_DIMS];
  float *data; /* numel */
  size_t numel;
} WTensor;

struct _SiSafetensorsWriter
{
  GPtrArray *tensors;   /* WTensor*, in insertion order */
  GHashTable *by_name;  /* name -> WTensor* */
  GPtrArray *meta_keys; /* char*, owned */
  GHashTable *metadata; /* key -> value (key owned by meta_keys) */
};

static void
wtensor_free (gpointer p)
{
  WTensor *t = p;
  g_free (t->name);
  g_free (t->data);
  g_free (t);
}

SiSafetensorsWriter *
si_safetensors_writer_new (void)
{
  SiSafetensorsWriter *w = g_new0 (SiSafetensorsWriter, 1);
  w->tensors = g_ptr_array_new_with_free_func (wtensor_free);
  w->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  w->meta_keys = g_ptr_array_new_with_free_func (g_free);
  w->metadata = g_hash_table_new_full (g_str_hash, g_str_equal, NULL, g_free);
  return w;
}

void
si_safetensors_writer_free (SiSafetensorsWriter **w)
{
  if (w == NULL || *w == NULL)
    return;
  g_hash_table_unref ((*w)->by_name);
  g_ptr_array_unref ((*w)->tensors);
  g_hash_table_unref ((*w)->metadata);
  g_ptr_array_unref ((*w)->meta_keys);
  g_free (*w);
  *w = NULL;
}

/* Copies data; a tensor added twice under one name keeps the last copy. */
void
si_safetensors_writer_add_f32 (SiSafetensorsWriter *w, const char *name,
    const int64_t *shape, int ndim, const float *data)
{
  size_t numel = 1;

  g_return_if_fail (w != NULL && name != NULL);
  g_return_if_fail (ndim >= 0 && ndim <= SI_TENSOR_MAX_DIMS);
  for (int i = 0; i < ndim; i++) {
    g_return_if_fail (shape[i] >= 0);
    numel *= (size_t) shape[i];
  }
  g_return_if_fail (numel == 0 || data != NULL);

  WTensor *t = g_hash_table_lookup (w->by_name, name);
  if (t == NULL) {
    t = g_new0 (WTensor, 1);
    t->name = g_strdup (name);
    g_ptr_array_add (w->tensors, t);
    g_hash_table_insert (w->by_name, t->name, t);
  } else {
    g_free (t->data);
  }
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  t->numel = numel;
  t->data = numel > 0 ? g_memdup2 (data, numel * sizeof (float)) : NULL;
}

void
si_safetensors_writer_add_metadata (
    SiSafetensorsWriter *w, const char *key, const char *value)
{
  g_return_if_fail (w != NULL && key != NULL && value != NULL);
  gpointer k = NULL;
  if (!g_hash_table_lookup_extended (w->metadata, key, &k, NULL)) {
    k = g_strdup (key);
    g_ptr_array_add (w->meta_keys, k);
  }
  g_hash_table_insert (w->metadata, k, g_strdup (value));
}

/* The JSON header, padded with spaces so that 8 + length is a multiple
 * of 8 (the data buffer starts 8-byte aligned). */
static char *
writer_header (SiSafetensorsWriter *w, size_t *len)
{
  JsonBuilder *b = json_builder_new ();
  guint64 offset = 0;

  json_builder_begin_object (b);
  if (w->meta_keys->len > 0) {
    json_builder_set_member_name (b, "__metadata__");
    json_builder_begin_object (b);
    for (guint i = 0; i < w->meta_keys->len; i++) {
      const char *k = w->meta_keys->pdata[i];
      json_builder_set_member_name (b, k);
      json_builder_add_string_value (b, g_hash_table_lookup (w->metadata, k));
    }
    json_builder_end_object (b);
  }
  for (guint i = 0; i < w->tensors->len; i++) {
    WTensor *t = w->tensors->pdata[i];
    json_builder_set_member_name (b, t->name);
    json_builder_begin_object (b);
    json_builder_set_member_name (b, "dtype");
    json_builder_add_string_value (b, "F32");
    json_builder_set_member_name (b, "shape");
    json_builder_begin_array (b);
    for (int d = 0; d < t->ndim; d++)
      json_builder_add_int_value (b, t->shape[d]);
    json_builder_end_array (b);
    json_builder_set_member_name (b, "data_offsets");
    json_builder_begin_array (b);
    json_builder_add_int_value (b, (gint64) offset);
    offset += t->numel * sizeof (float);
    json_builder_add_int_value (b, (gint64) offset);
    json_builder_end_array (b);
    json_builder_end_object (b);
  }
  json_builder_end_object (b);

  JsonGenerator *gen = json_generator_new ();
  JsonNode *root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  gsize n = 0;
  char *text = json_generator_to_data (gen, &n);
  json_node_unref (root);
  g_object_unref (gen);
  g_object_unref (b);

  size_t padded = (n + 7) & ~(size_t) 7;
  text = g_realloc (text, padded + 1);
  memset (text + n, ' ', padded - n);
  text[padded] = '\0';
  *len = padded;
  return text;
}

gboolean
si_safetensors_writer_save (
    SiSafetensorsWriter *w, const char *path, GError **error)
{
  size_t hlen = 0;
  char *header;
  FILE *fp;
  guint8 lenbuf[8];
  gboolean ok = TRUE;

  g_return_val_if_fail (w != NULL && path != NULL, FALSE);

  fp = fopen (path, "wb");
  if (fp == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO, "%s: cannot create: %s", path,
        g_strerror (errno));
    return FALSE;
  }
  header = writer_header (w, &hlen);
  for (int i = 0; i < 8; i++)
    lenbuf[i] = (guint8) (((guint64) hlen >> (8 * i)) & 0xff);
  if (fwrite (lenbuf, 1, 8, fp) != 8 || fwrite (header, 1, hlen, fp) != hlen)
    ok = FALSE;
  for (guint i = 0; ok && i < w->tensors->len; i++) {
    WTensor *t = w->tensors->pdata[i];
    if (t->numel > 0 &&
        fwrite (t->data, sizeof (float), t->numel, fp) != t->numel)
      ok = FALSE;
  }
  int saved_errno = errno;
  if (fclose (fp) != 0 && ok) {
    ok = FALSE;
    saved_errno = errno;
  }
  g_free (header);
  if (!ok) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO, "%s: write failed: %s", path,
        g_strerror (saved_errno));
    return FALSE;
  }
  return TRUE;
}
