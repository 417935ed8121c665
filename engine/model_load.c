/* model_load.c: the loader's tensor checks (each tensor named in its
 * error with the expected and the actual shape; F16/BF16 or unaligned
 * data converted to owned float32, aligned F32 used in place) and its
 * typed readers of the JSON model config.
 */
#include "model_load.h"

#include <math.h>
#include <stdarg.h>
#include <string.h>

/* ---- tensors ---- */

static char *
shape_str (int ndim, const int64_t *shape)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (
        s, "%s%" G_GINT64_FORMAT, i ? ", " : "", (gint64) shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

static float *
ld_alloc (SiLd *ld, size_t n, const char *what, GError **error)
{
  float *p = g_try_malloc (n > 0 ? n * sizeof (float) : 1);
  if (p == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "%s: out of memory for %s (%" G_GSIZE_FORMAT " floats)", ld->path, what,
        n);
    return NULL;
  }
  g_ptr_array_add (ld->m->owned, p);
  return p;
}

static float
half_to_float (uint16_t h)
{
  uint32_t sign = (uint32_t) (h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  uint32_t bits;
  float f;

  if (exp == 0) {
    f = ldexpf ((float) mant, -24); /* zero or subnormal */
    return sign ? -f : f;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (mant << 13);
  else
    bits = sign | ((exp + 112u) << 23) | (mant << 13);
  memcpy (&f, &bits, sizeof f);
  return f;
}

static float
bf16_to_float (uint16_t h)
{
  uint32_t bits = (uint32_t) h << 16;
  float f;
  memcpy (&f, &bits, sizeof f);
  return f;
}

/* Float32 view of a tensor: the mapping itself when it is F32 and
 * 4-byte aligned, an owned converted copy otherwise. */
static const float *
ld_as_f32 (SiLd *ld, const SiTensorInfo *t, GError **error)
{
  const guint8 *src = t->data;
  float *dst;

  if (t->dtype == SI_DTYPE_F32 && ((uintptr_t) src & 3u) == 0)
    return (const float *) src;
  dst = ld_alloc (ld, (size_t) t->numel, t->name, error);
  if (dst == NULL)
    return NULL;
  if (t->dtype == SI_DTYPE_F32) {
    memcpy (dst, src, t->nbytes);
    return dst;
  }
  for (int64_t i = 0; i < t->numel; i++) {
    uint16_t h;
    memcpy (&h, src + 2 * i, 2);
    dst[i] = t->dtype == SI_DTYPE_F16 ? half_to_float (h) : bf16_to_float (h);
  }
  return dst;
}

/* The float32 data of tensor `name` (printf format), which must exist
 * with exactly the given shape and a floating-point dtype. */
const float *
si_ld_tensor (SiLd *ld, GError **error, int ndim, const int64_t *shape,
    const char *fmt, ...)
{
  va_list ap;
  char *name;
  const SiTensorInfo *t;
  const float *res = NULL;

  va_start (ap, fmt);
  name = g_strdup_vprintf (fmt, ap);
  va_end (ap);

  t = si_safetensors_find (ld->m->file, name);
  if (t == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_MISSING_TENSOR,
        "%s: missing tensor \"%s\"", ld->path, name);
    goto out;
  }
  if (t->dtype != SI_DTYPE_F32 && t->dtype != SI_DTYPE_F16 &&
      t->dtype != SI_DTYPE_BF16) {
    g_set_error (error, SI_ERROR, SI_ERROR_TENSOR_DTYPE,
        "%s: tensor \"%s\" has dtype %s, expected F32 (or F16/BF16)", ld->path,
        name, si_dtype_name (t->dtype));
    goto out;
  }
  gboolean same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++)
    same = t->shape[i] == shape[i];
  if (!same) {
    char *want = shape_str (ndim, shape);
    char *got = shape_str (t->ndim, t->shape);
    g_set_error (error, SI_ERROR, SI_ERROR_TENSOR_SHAPE,
        "%s: tensor \"%s\": expected %s got %s", ld->path, name, want, got);
    g_free (want);
    g_free (got);
    goto out;
  }
  res = ld_as_f32 (ld, t, error);
out:
  g_free (name);
  return res;
}

/* A tensor the config says must not exist (e.g. an extra block). */
gboolean
si_ld_forbid (SiLd *ld, const char *why, GError **error, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  gboolean ok = si_safetensors_find (ld->m->file, name) == NULL;
  if (!ok)
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: unexpected tensor \"%s\": %s", ld->path, name, why);
  g_free (name);
  return ok;
}

/* prefix.weight (out, in) and, when bias, prefix.bias (out). */
gboolean
si_ld_linear (SiLd *ld, SiLinear *l, const char *prefix, int out, int in,
    gboolean bias, GError **error)
{
  l->out = out;
  l->in = in;
  l->w = si_ld_tensor (ld, error, 2, SHAPE (out, in), "%s.weight", prefix);
  if (l->w == NULL)
    return FALSE;
  l->b = NULL;
  if (bias) {
    l->b = si_ld_tensor (ld, error, 1, SHAPE (out), "%s.bias", prefix);
    if (l->b == NULL)
      return FALSE;
  }
  return TRUE;
}

/* LayerNorm / GroupNorm affine: prefix.weight (n), prefix.bias (n). */
gboolean
si_ld_norm (SiLd *ld, SiNorm *nrm, const char *prefix, int n, GError **error)
{
  nrm->n = n;
  nrm->gamma = si_ld_tensor (ld, error, 1, SHAPE (n), "%s.weight", prefix);
  if (nrm->gamma == NULL)
    return FALSE;
  nrm->beta = si_ld_tensor (ld, error, 1, SHAPE (n), "%s.bias", prefix);
  return nrm->beta != NULL;
}

/* Conv (no bias) followed by an eval BatchNorm: views of the five tensors
 * (conv: (cout, cin/groups, k, k), bn.*: (cout)), checked here; the
 * backends fold them (si_conv_fold) into their own copies when they
 * prepare the conv. */
gboolean
si_ld_conv_bn_groups (SiLd *ld, SiConv *c, const char *conv_name,
    const char *bn_prefix, int cout, int cin, int groups, int k, int stride,
    int pad, double eps, GError **error)
{
  static const char *const bn_keys[4] = { "weight", "bias", "running_mean",
    "running_var" };
  const float *bnv[4];
  char name[256];

  memset (c, 0, sizeof (*c));
  c->w = si_ld_tensor (
      ld, error, 4, SHAPE (cout, cin / groups, k, k), "%s", conv_name);
  if (c->w == NULL)
    return FALSE;
  c->src[0] = si_safetensors_find (ld->m->file, conv_name);
  for (int i = 0; i < 4; i++) {
    g_snprintf (name, sizeof name, "%s.%s", bn_prefix, bn_keys[i]);
    bnv[i] = si_ld_tensor (ld, error, 1, SHAPE (cout), "%s", name);
    if (bnv[i] == NULL)
      return FALSE;
    c->src[2 + i] = si_safetensors_find (ld->m->file, name);
  }
  c->bn.gamma = bnv[0];
  c->bn.beta = bnv[1];
  c->bn.mean = bnv[2];
  c->bn.var = bnv[3];
  c->bn.eps = eps;
  for (int o = 0; o < cout; o++) {
    double v = (double) c->bn.var[o] + eps;
    if (!(v > 0.0) || !isfinite (v)) {
      g_set_error (error, SI_ERROR, SI_ERROR_FORMAT,
          "%s: tensor \"%s.running_var\"[%d] = %g is not a valid variance",
          ld->path, bn_prefix, o, (double) c->bn.var[o]);
      return FALSE;
    }
  }
  /* nothing reads these pages until a backend prepares the conv (the
   * variance check above and fault-around touched some; an F16 conversion
   * read them all) */
  si_conv_release_pages (c);
  c->cout = cout;
  c->cin = cin;
  c->kh = c->kw = k;
  c->stride = stride;
  c->pad = pad;
  c->groups = groups;
  return TRUE;
}

gboolean
si_ld_conv_bn (SiLd *ld, SiConv *c, const char *conv_name,
    const char *bn_prefix, int cout, int cin, int k, int stride, int pad,
    double eps, GError **error)
{
  return si_ld_conv_bn_groups (
      ld, c, conv_name, bn_prefix, cout, cin, 1, k, stride, pad, eps, error);
}

/* Conv with a bias and no BN: prefix.weight (cout, cin, k, k),
 * prefix.bias (cout). */
gboolean
si_ld_conv_bias (SiLd *ld, SiConv *c, const char *prefix, int cout, int cin,
    int k, int stride, int pad, GError **error)
{
  memset (c, 0, sizeof (*c));
  c->w =
      si_ld_tensor (ld, error, 4, SHAPE (cout, cin, k, k), "%s.weight", prefix);
  if (c->w == NULL)
    return FALSE;
  c->b = si_ld_tensor (ld, error, 1, SHAPE (cout), "%s.bias", prefix);
  if (c->b == NULL)
    return FALSE;
  c->cout = cout;
  c->cin = cin;
  c->kh = c->kw = k;
  c->stride = stride;
  c->pad = pad;
  c->groups = 1;
  return TRUE;
}

/* ---- config helpers ---- */

JsonNode *
si_cfg_member (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return JSON_NODE_HOLDS_NULL (n) ? NULL : n;
}

gboolean
si_json_is_int (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) &&
      json_node_get_value_type (n) == G_TYPE_INT64;
}

gboolean
si_json_is_number (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) &&
      (json_node_get_value_type (n) == G_TYPE_INT64 ||
          json_node_get_value_type (n) == G_TYPE_DOUBLE);
}

double
si_json_number (JsonNode *n)
{
  if (json_node_get_value_type (n) == G_TYPE_INT64)
    return (double) json_node_get_int (n);
  return json_node_get_double (n);
}

gboolean
si_cfg_err (SiLd *ld, GError **error, SiErrorCode code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, SI_ERROR, code, "%s: model config: %s", ld->path, msg);
  g_free (msg);
  return FALSE;
}

/* The member `key` of o in *n, NULL when absent or null; that is an
 * error only when required. */
static gboolean
cfg_lookup (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, JsonNode **n, GError **error)
{
  *n = si_cfg_member (o, key);
  if (*n == NULL && required)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG, "missing %s.%s", path, key);
  return TRUE;
}

/* Integer `key` of o (path names o in messages).  Absent or null: def when
 * !required.  Must lie in [lo, hi]. */
gboolean
si_cfg_int (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, int def, int lo, int hi, int *out, GError **error)
{
  JsonNode *n;
  if (!cfg_lookup (ld, o, path, key, required, &n, error))
    return FALSE;
  if (n == NULL) {
    *out = def;
    return TRUE;
  }
  if (!si_json_is_int (n))
    return si_cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.%s is not an integer", path, key);
  gint64 v = json_node_get_int (n);
  if (v < lo || v > hi)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.%s = %" G_GINT64_FORMAT " is out of range [%d, %d]", path, key, v,
        lo, hi);
  *out = (int) v;
  return TRUE;
}

gboolean
si_cfg_bool (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean def, gboolean *out, GError **error)
{
  JsonNode *n = si_cfg_member (o, key);
  if (n == NULL) {
    *out = def;
    return TRUE;
  }
  if (JSON_NODE_HOLDS_VALUE (n) &&
      json_node_get_value_type (n) == G_TYPE_BOOLEAN) {
    *out = json_node_get_boolean (n);
    return TRUE;
  }
  if (si_json_is_int (n)) { /* Python's 0 / 1 */
    *out = json_node_get_int (n) != 0;
    return TRUE;
  }
  return si_cfg_err (
      ld, error, SI_ERROR_CONFIG, "%s.%s is not a boolean", path, key);
}

/* String `key`; NULL (and TRUE) when absent and !required. */
gboolean
si_cfg_str (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, const char **out, GError **error)
{
  JsonNode *n;
  *out = NULL;
  if (!cfg_lookup (ld, o, path, key, required, &n, error))
    return FALSE;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_STRING)
    return si_cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.%s is not a string", path, key);
  *out = json_node_get_string (n);
  return TRUE;
}

/* Object `key`; NULL (and TRUE) when absent and !required. */
gboolean
si_cfg_obj (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, JsonObject **out, GError **error)
{
  JsonNode *n;
  *out = NULL;
  if (!cfg_lookup (ld, o, path, key, required, &n, error))
    return FALSE;
  if (n == NULL)
    return TRUE;
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return si_cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.%s is not an object", path, key);
  *out = json_node_get_object (n);
  return TRUE;
}

/* Optional object `key` whose optional "type" must be one of the
 * NULL-terminated names in accepted (the refusal names the first);
 * *sub: the object, NULL when absent. */
gboolean
si_cfg_sub_type (SiLd *ld, JsonObject *o, const char *path, const char *key,
    const char *const *accepted, JsonObject **sub, GError **error)
{
  const char *type = NULL;
  char *sub_path = g_strdup_printf ("%s.%s", path, key);
  gboolean ok = si_cfg_obj (ld, o, path, key, FALSE, sub, error) &&
      si_cfg_str (ld, *sub, sub_path, "type", FALSE, &type, error);

  g_free (sub_path);
  if (!ok || type == NULL)
    return ok;
  for (const char *const *a = accepted; *a != NULL; a++)
    if (strcmp (type, *a) == 0)
      return TRUE;
  return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
      "%s.%s.type \"%s\" is not supported (only %s)", path, key, type,
      accepted[0]);
}

/* Integer array `key` of length n, each in [lo, hi]; def when absent (or
 * an error when def is NULL). */
gboolean
si_cfg_int_array (SiLd *ld, JsonObject *o, const char *path, const char *key,
    int n, const int *def, int lo, int hi, int *out, GError **error)
{
  JsonNode *node;
  if (!cfg_lookup (ld, o, path, key, def == NULL, &node, error))
    return FALSE;
  if (node == NULL) {
    memcpy (out, def, n * sizeof (int));
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_ARRAY (node) ||
      (int) json_array_get_length (json_node_get_array (node)) != n)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.%s is not an array of %d integers", path, key, n);
  JsonArray *a = json_node_get_array (node);
  for (int i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!si_json_is_int (e) || json_node_get_int (e) < lo ||
        json_node_get_int (e) > hi)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "%s.%s[%d] is not an integer in [%d, %d]", path, key, i, lo, hi);
    out[i] = (int) json_node_get_int (e);
  }
  return TRUE;
}

/* `key` must be absent, null or the string want (a module type). */
gboolean
si_cfg_type (
    SiLd *ld, JsonObject *o, const char *path, const char *want, GError **error)
{
  const char *type;
  if (!si_cfg_str (ld, o, path, "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, want) != 0)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.type \"%s\" is not supported (expected \"%s\")", path, type, want);
  return TRUE;
}

/* Must be absent or equal to the given default. */
gboolean
si_cfg_int_fixed (SiLd *ld, JsonObject *o, const char *path, const char *key,
    int want, GError **error)
{
  int v = want;
  if (!si_cfg_int (
          ld, o, path, key, FALSE, want, G_MININT, G_MAXINT, &v, error))
    return FALSE;
  if (v != want)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s = %d is not supported (only %d)", path, key, v, want);
  return TRUE;
}

gboolean
si_cfg_int4_fixed (SiLd *ld, JsonObject *o, const char *path, const char *key,
    const int want[4], int lo, int hi, int *out, GError **error)
{
  int v[4];
  if (!si_cfg_int_array (ld, o, path, key, 4, want, lo, hi, v, error))
    return FALSE;
  if (memcmp (v, want, sizeof v) != 0)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s must be [%d, %d, %d, %d]", path, key, want[0], want[1], want[2],
        want[3]);
  if (out != NULL)
    memcpy (out, v, sizeof v);
  return TRUE;
}

gboolean
si_cfg_false (
    SiLd *ld, JsonObject *o, const char *path, const char *key, GError **error)
{
  gboolean v;
  if (!si_cfg_bool (ld, o, path, key, FALSE, &v, error))
    return FALSE;
  if (v)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s = true is not supported", path, key);
  return TRUE;
}
