/* model.c: si_model_load() and the model's public getters.  Reads the
 * safetensors __metadata__ (format, model config, img_norm, test_scale,
 * classes; model-spec 10), derives the per-stage sizes (model-spec 6.0),
 * checks every tensor's presence, dtype and shape against the config,
 * converts F16/BF16 or unaligned weights to owned float32 and keeps the
 * backbone's convs and eval BatchNorms as views (backends fold them).
 */
#include "model.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* Sanity limits: larger values are rejected as corrupt configs. */
#define MAX_QUERIES 10000
#define MAX_CLASSES 100000
#define MAX_SCALE 8192
#define MAX_CHANNELS 16384
#define MAX_POINTS 1024
#define MAX_FCS 16

typedef struct
{
  SiModel *m;
  const char *path;
  JsonParser *parser; /* keeps the parsed model config alive */
} Ld;

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
ld_alloc (Ld *ld, size_t n, const char *what, GError **error)
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
ld_as_f32 (Ld *ld, const SiTensorInfo *t, GError **error)
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
G_GNUC_PRINTF (5, 6)
static const float *
ld_tensor (Ld *ld, GError **error, int ndim, const int64_t *shape,
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

#define SHAPE(...) ((const int64_t[]){ __VA_ARGS__ })

/* A tensor the config says must not exist (e.g. an extra block). */
static gboolean ld_forbid (Ld *ld, const char *why, GError **error,
    const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
ld_forbid (Ld *ld, const char *why, GError **error, const char *fmt, ...)
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
static gboolean
ld_linear (Ld *ld, SiLinear *l, const char *prefix, int out, int in,
    gboolean bias, GError **error)
{
  l->out = out;
  l->in = in;
  l->w = ld_tensor (ld, error, 2, SHAPE (out, in), "%s.weight", prefix);
  if (l->w == NULL)
    return FALSE;
  l->b = NULL;
  if (bias) {
    l->b = ld_tensor (ld, error, 1, SHAPE (out), "%s.bias", prefix);
    if (l->b == NULL)
      return FALSE;
  }
  return TRUE;
}

/* LayerNorm / GroupNorm affine: prefix.weight (n), prefix.bias (n). */
static gboolean
ld_norm (Ld *ld, SiNorm *nrm, const char *prefix, int n, GError **error)
{
  nrm->n = n;
  nrm->gamma = ld_tensor (ld, error, 1, SHAPE (n), "%s.weight", prefix);
  if (nrm->gamma == NULL)
    return FALSE;
  nrm->beta = ld_tensor (ld, error, 1, SHAPE (n), "%s.bias", prefix);
  return nrm->beta != NULL;
}

/* Conv (no bias) followed by an eval BatchNorm: views of the five tensors
 * (conv: (cout, cin/groups, k, k), bn.*: (cout)), checked here; the
 * backends fold them (si_conv_fold) into their own copies when they
 * prepare the conv. */
static gboolean
ld_conv_bn_groups (Ld *ld, SiConv *c, const char *conv_name,
    const char *bn_prefix, int cout, int cin, int groups, int k, int stride,
    int pad, double eps, GError **error)
{
  static const char *const bn_keys[4] = { "weight", "bias", "running_mean",
    "running_var" };
  const float *bnv[4];
  char name[256];

  memset (c, 0, sizeof (*c));
  c->w = ld_tensor (
      ld, error, 4, SHAPE (cout, cin / groups, k, k), "%s", conv_name);
  if (c->w == NULL)
    return FALSE;
  c->src[0] = si_safetensors_find (ld->m->file, conv_name);
  for (int i = 0; i < 4; i++) {
    g_snprintf (name, sizeof name, "%s.%s", bn_prefix, bn_keys[i]);
    bnv[i] = ld_tensor (ld, error, 1, SHAPE (cout), "%s", name);
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

static gboolean
ld_conv_bn (Ld *ld, SiConv *c, const char *conv_name, const char *bn_prefix,
    int cout, int cin, int k, int stride, int pad, double eps, GError **error)
{
  return ld_conv_bn_groups (
      ld, c, conv_name, bn_prefix, cout, cin, 1, k, stride, pad, eps, error);
}

/* Conv with a bias and no BN: prefix.weight (cout, cin, k, k),
 * prefix.bias (cout). */
static gboolean
ld_conv_bias (Ld *ld, SiConv *c, const char *prefix, int cout, int cin, int k,
    int stride, int pad, GError **error)
{
  memset (c, 0, sizeof (*c));
  c->w = ld_tensor (ld, error, 4, SHAPE (cout, cin, k, k), "%s.weight", prefix);
  if (c->w == NULL)
    return FALSE;
  c->b = ld_tensor (ld, error, 1, SHAPE (cout), "%s.bias", prefix);
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

static JsonNode *
cfg_member (JsonObject *o, const char *key)
{
  if (o == NULL || !json_object_has_member (o, key))
    return NULL;
  JsonNode *n = json_object_get_member (o, key);
  return JSON_NODE_HOLDS_NULL (n) ? NULL : n;
}

static gboolean
node_is_int (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) &&
      json_node_get_value_type (n) == G_TYPE_INT64;
}

static gboolean
node_is_number (JsonNode *n)
{
  return n != NULL && JSON_NODE_HOLDS_VALUE (n) &&
      (json_node_get_value_type (n) == G_TYPE_INT64 ||
          json_node_get_value_type (n) == G_TYPE_DOUBLE);
}

static double
node_number (JsonNode *n)
{
  if (json_node_get_value_type (n) == G_TYPE_INT64)
    return (double) json_node_get_int (n);
  return json_node_get_double (n);
}

static gboolean cfg_err (Ld *ld, GError **error, SiErrorCode code,
    const char *fmt, ...) G_GNUC_PRINTF (4, 5);

static gboolean
cfg_err (Ld *ld, GError **error, SiErrorCode code, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_set_error (error, SI_ERROR, code, "%s: model config: %s", ld->path, msg);
  g_free (msg);
  return FALSE;
}

/* Integer `key` of o (path names o in messages).  Absent or null: def when
 * !required.  Must lie in [lo, hi]. */
static gboolean
cfg_int (Ld *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, int def, int lo, int hi, int *out, GError **error)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL) {
    if (required)
      return cfg_err (ld, error, SI_ERROR_CONFIG, "missing %s.%s", path, key);
    *out = def;
    return TRUE;
  }
  if (!node_is_int (n))
    return cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.%s is not an integer", path, key);
  gint64 v = json_node_get_int (n);
  if (v < lo || v > hi)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.%s = %" G_GINT64_FORMAT " is out of range [%d, %d]", path, key, v,
        lo, hi);
  *out = (int) v;
  return TRUE;
}

static gboolean
cfg_bool (Ld *ld, JsonObject *o, const char *path, const char *key,
    gboolean def, gboolean *out, GError **error)
{
  JsonNode *n = cfg_member (o, key);
  if (n == NULL) {
    *out = def;
    return TRUE;
  }
  if (JSON_NODE_HOLDS_VALUE (n) &&
      json_node_get_value_type (n) == G_TYPE_BOOLEAN) {
    *out = json_node_get_boolean (n);
    return TRUE;
  }
  if (node_is_int (n)) { /* Python's 0 / 1 */
    *out = json_node_get_int (n) != 0;
    return TRUE;
  }
  return cfg_err (
      ld, error, SI_ERROR_CONFIG, "%s.%s is not a boolean", path, key);
}

/* String `key`; NULL (and TRUE) when absent and !required. */
static gboolean
cfg_str (Ld *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, const char **out, GError **error)
{
  JsonNode *n = cfg_member (o, key);
  *out = NULL;
  if (n == NULL) {
    if (required)
      return cfg_err (ld, error, SI_ERROR_CONFIG, "missing %s.%s", path, key);
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_VALUE (n) ||
      json_node_get_value_type (n) != G_TYPE_STRING)
    return cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.%s is not a string", path, key);
  *out = json_node_get_string (n);
  return TRUE;
}

/* Object `key`; NULL (and TRUE) when absent and !required. */
static gboolean
cfg_obj (Ld *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, JsonObject **out, GError **error)
{
  JsonNode *n = cfg_member (o, key);
  *out = NULL;
  if (n == NULL) {
    if (required)
      return cfg_err (ld, error, SI_ERROR_CONFIG, "missing %s.%s", path, key);
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_OBJECT (n))
    return cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.%s is not an object", path, key);
  *out = json_node_get_object (n);
  return TRUE;
}

/* Optional object `key` whose optional "type" must be one of the
 * NULL-terminated names in accepted (the refusal names the first);
 * *sub: the object, NULL when absent. */
static gboolean
cfg_sub_type (Ld *ld, JsonObject *o, const char *path, const char *key,
    const char *const *accepted, JsonObject **sub, GError **error)
{
  const char *type = NULL;
  char *sub_path = g_strdup_printf ("%s.%s", path, key);
  gboolean ok = cfg_obj (ld, o, path, key, FALSE, sub, error) &&
      cfg_str (ld, *sub, sub_path, "type", FALSE, &type, error);

  g_free (sub_path);
  if (!ok || type == NULL)
    return ok;
  for (const char *const *a = accepted; *a != NULL; a++)
    if (strcmp (type, *a) == 0)
      return TRUE;
  return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
      "%s.%s.type \"%s\" is not supported (only %s)", path, key, type,
      accepted[0]);
}

/* Integer array `key` of length n, each in [lo, hi]; def when absent (or
 * an error when def is NULL). */
static gboolean
cfg_int_array (Ld *ld, JsonObject *o, const char *path, const char *key, int n,
    const int *def, int lo, int hi, int *out, GError **error)
{
  JsonNode *node = cfg_member (o, key);
  if (node == NULL) {
    if (def == NULL)
      return cfg_err (ld, error, SI_ERROR_CONFIG, "missing %s.%s", path, key);
    memcpy (out, def, n * sizeof (int));
    return TRUE;
  }
  if (!JSON_NODE_HOLDS_ARRAY (node) ||
      (int) json_array_get_length (json_node_get_array (node)) != n)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.%s is not an array of %d integers", path, key, n);
  JsonArray *a = json_node_get_array (node);
  for (int i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!node_is_int (e) || json_node_get_int (e) < lo ||
        json_node_get_int (e) > hi)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "%s.%s[%d] is not an integer in [%d, %d]", path, key, i, lo, hi);
    out[i] = (int) json_node_get_int (e);
  }
  return TRUE;
}

/* `key` must be absent, null or the string want (a module type). */
static gboolean
cfg_type (
    Ld *ld, JsonObject *o, const char *path, const char *want, GError **error)
{
  const char *type;
  if (!cfg_str (ld, o, path, "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, want) != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.type \"%s\" is not supported (expected \"%s\")", path, type, want);
  return TRUE;
}

/* Must be absent or equal to the given default. */
static gboolean
cfg_int_fixed (Ld *ld, JsonObject *o, const char *path, const char *key,
    int want, GError **error)
{
  int v = want;
  if (!cfg_int (ld, o, path, key, FALSE, want, G_MININT, G_MAXINT, &v, error))
    return FALSE;
  if (v != want)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s = %d is not supported (only %d)", path, key, v, want);
  return TRUE;
}

static gboolean
cfg_false (
    Ld *ld, JsonObject *o, const char *path, const char *key, GError **error)
{
  gboolean v;
  if (!cfg_bool (ld, o, path, key, FALSE, &v, error))
    return FALSE;
  if (v)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s = true is not supported", path, key);
  return TRUE;
}

/* ---- backbone (model-spec 3.1) ---- */

typedef struct
{
  int depth;
  int blocks[4];
  bool bottleneck;
} ResNetArch;

static const ResNetArch resnet_archs[] = {
  { 18, { 2, 2, 2, 2 }, false },
  { 34, { 3, 4, 6, 3 }, false },
  { 50, { 3, 4, 6, 3 }, true },
  { 101, { 3, 4, 23, 3 }, true },
  { 152, { 3, 8, 36, 3 }, true },
};

typedef struct
{
  int strides[4];
  double eps;
  int deform_groups; /* 0: no DCN */
  bool stage_dcn[4]; /* stage_with_dcn */
  bool dcn_fallback; /* fallback_on_stride: no DCN on strided convs */
} ResNetCfg;

/* dcn / stage_with_dcn (model-spec 3.2, mmdet's ResNet): DCNv1 in the
 * 3x3 conv of every bottleneck of the stages asked for. */
static gboolean
parse_dcn_cfg (Ld *ld, JsonObject *bb, ResNetCfg *rc, GError **error)
{
  JsonObject *dcn;
  const char *type;
  gboolean fallback, any = FALSE;
  JsonNode *swd = cfg_member (bb, "stage_with_dcn");

  memset (rc->stage_dcn, 0, sizeof rc->stage_dcn);
  rc->deform_groups = 0;
  rc->dcn_fallback = false;
  if (swd != NULL) {
    JsonArray *a =
        JSON_NODE_HOLDS_ARRAY (swd) ? json_node_get_array (swd) : NULL;
    if (a == NULL || json_array_get_length (a) != 4)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone.stage_with_dcn is not an array of 4 booleans");
    for (guint i = 0; i < 4; i++) {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) ||
          json_node_get_value_type (e) != G_TYPE_BOOLEAN)
        return cfg_err (ld, error, SI_ERROR_CONFIG,
            "backbone.stage_with_dcn[%u] is not a boolean", i);
      rc->stage_dcn[i] = json_node_get_boolean (e);
      any |= rc->stage_dcn[i];
    }
  }
  if (!cfg_obj (ld, bb, "backbone", "dcn", FALSE, &dcn, error))
    return FALSE;
  if (dcn == NULL) {
    if (any)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone.stage_with_dcn asks for DCN but backbone.dcn is absent");
    return TRUE;
  }
  if (!cfg_str (ld, dcn, "backbone.dcn", "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "DCN") != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.dcn.type \"%s\" is not supported (only \"DCN\", "
        "deformable convolution v1)",
        type);
  if (!cfg_int (ld, dcn, "backbone.dcn", "deform_groups", FALSE, 1, 1, 64,
          &rc->deform_groups, error) ||
      !cfg_bool (ld, dcn, "backbone.dcn", "fallback_on_stride", FALSE,
          &fallback, error))
    return FALSE;
  rc->dcn_fallback = fallback;
  if (!ld->m->backbone.bottleneck && any)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.dcn: DCN needs bottleneck blocks (depth >= 50)");
  return TRUE;
}

static gboolean
parse_resnet_cfg (Ld *ld, JsonObject *bb, ResNetCfg *rc, GError **error)
{
  SiBackbone *b = &ld->m->backbone;
  const char *p = "backbone", *type, *style;
  static const int def_out[4] = { 0, 1, 2, 3 };
  static const int def_strides[4] = { 1, 2, 2, 2 };
  static const int def_dil[4] = { 1, 1, 1, 1 };
  int arr[4];
  const ResNetArch *arch = NULL;
  bool resnext;

  if (!cfg_str (ld, bb, p, "type", TRUE, &type, error))
    return FALSE;
  resnext = strcmp (type, "ResNeXt") == 0;
  if (!resnext && strcmp (type, "ResNet") != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone type \"%s\" is not supported (only ResNet, ResNeXt and "
        "SwinTransformer)",
        type);
  if (!cfg_int (ld, bb, p, "depth", TRUE, 0, 0, 1000, &b->depth, error))
    return FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS (resnet_archs); i++)
    if (resnet_archs[i].depth == b->depth &&
        (!resnext || resnet_archs[i].bottleneck))
      arch = &resnet_archs[i];
  if (arch == NULL)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "backbone.depth = %d (expected %s)", b->depth,
        resnext ? "50, 101 or 152" : "18, 34, 50, 101 or 152");
  b->bottleneck = arch->bottleneck;
  memcpy (b->n_blocks, arch->blocks, sizeof b->n_blocks);

  if (!cfg_int (ld, bb, p, "base_channels", FALSE, 64, 1, MAX_CHANNELS / 8,
          &b->base_channels, error) ||
      !cfg_int (ld, bb, p, "stem_channels", FALSE, b->base_channels, 1,
          MAX_CHANNELS, &b->stem_channels, error) ||
      !cfg_int_fixed (ld, bb, p, "in_channels", 3, error) ||
      !cfg_int_fixed (ld, bb, p, "num_stages", 4, error) ||
      !cfg_false (ld, bb, p, "deep_stem", error) ||
      !cfg_false (ld, bb, p, "avg_down", error))
    return FALSE;
  b->groups = 1;
  b->base_width = 4;
  if (resnext &&
      (!cfg_int (
           ld, bb, p, "groups", FALSE, 1, 1, MAX_CHANNELS, &b->groups, error) ||
          !cfg_int (ld, bb, p, "base_width", FALSE, 4, 1, MAX_CHANNELS,
              &b->base_width, error)))
    return FALSE;
  if (!cfg_int_array (ld, bb, p, "out_indices", 4, def_out, 0, 3, arr, error))
    return FALSE;
  if (memcmp (arr, def_out, sizeof arr) != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.out_indices must be [0, 1, 2, 3]");
  if (!cfg_int_array (
          ld, bb, p, "strides", 4, def_strides, 1, 2, rc->strides, error))
    return FALSE;
  if (memcmp (rc->strides, def_strides, sizeof arr) != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.strides must be [1, 2, 2, 2]");
  if (!cfg_int_array (ld, bb, p, "dilations", 4, def_dil, 1, 64, arr, error))
    return FALSE;
  if (memcmp (arr, def_dil, sizeof arr) != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.dilations must be [1, 1, 1, 1]");
  if (!cfg_str (ld, bb, p, "style", FALSE, &style, error))
    return FALSE;
  if (style != NULL && strcmp (style, "pytorch") != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.style \"%s\" is not supported (only \"pytorch\")", style);
  if (cfg_member (bb, "plugins") != NULL)
    return cfg_err (
        ld, error, SI_ERROR_UNSUPPORTED, "backbone.plugins are not supported");
  if (!parse_dcn_cfg (ld, bb, rc, error))
    return FALSE;

  static const char *const bn[] = { "BN", "SyncBN", NULL };
  JsonObject *norm;
  rc->eps = 1e-5;
  if (!cfg_sub_type (ld, bb, p, "norm_cfg", bn, &norm, error))
    return FALSE;
  JsonNode *eps = cfg_member (norm, "eps");
  if (eps != NULL) {
    if (!node_is_number (eps) || !(node_number (eps) > 0.0) ||
        node_number (eps) > 1.0)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone.norm_cfg.eps is not a number in (0, 1]");
    rc->eps = node_number (eps);
  }
  return TRUE;
}

/* The bottleneck's conv1/conv2 width (mmdet's ResNeXt): planes for plain
 * ResNets, floor (planes * base_width / base_channels) * groups for
 * ResNeXt (2 * planes for 32x4d). */
static int
bottleneck_width (const SiBackbone *b, int planes)
{
  if (b->groups == 1)
    return planes;
  return (int) ((long) planes * b->base_width / b->base_channels) * b->groups;
}

static gboolean
load_resnet (Ld *ld, const ResNetCfg *rc, GError **error)
{
  SiBackbone *b = &ld->m->backbone;
  int expansion = b->bottleneck ? 4 : 1;
  int inplanes = b->stem_channels;
  char conv[128], bn[128], pre[96];

  if (!ld_conv_bn (ld, &b->stem, "backbone.conv1.weight", "backbone.bn1",
          b->stem_channels, 3, 7, 2, 3, rc->eps, error))
    return FALSE;

  for (int i = 0; i < 4; i++) {
    int planes = b->base_channels << i;
    int width = b->bottleneck ? bottleneck_width (b, planes) : planes;
    if (width < b->groups || width % b->groups != 0 || width > MAX_CHANNELS)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone: layer%d's width %d is not a positive multiple of "
          "groups (%d)",
          i + 1, width, b->groups);
    if (rc->deform_groups > 0 && rc->stage_dcn[i] &&
        width % rc->deform_groups != 0)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone: layer%d's width %d is not a multiple of "
          "dcn.deform_groups (%d)",
          i + 1, width, rc->deform_groups);
    b->blocks[i] = g_new0 (SiBottleneck, b->n_blocks[i]);
    for (int j = 0; j < b->n_blocks[i]; j++) {
      SiBottleneck *blk = &b->blocks[i][j];
      int stride = j == 0 ? rc->strides[i] : 1;
      bool deform = rc->deform_groups > 0 && rc->stage_dcn[i] &&
          !(rc->dcn_fallback && stride != 1);
      g_snprintf (pre, sizeof pre, "backbone.layer%d.%d", i + 1, j);
#define CONV_BN(field, idx, co, ci, grp, k, s, pd)                             \
  (g_snprintf (conv, sizeof conv, "%s.conv%d.weight", pre, idx),               \
      g_snprintf (bn, sizeof bn, "%s.bn%d", pre, idx),                         \
      ld_conv_bn_groups (                                                      \
          ld, &blk->field, conv, bn, co, ci, grp, k, s, pd, rc->eps, error))
      if (b->bottleneck) {
        /* pytorch style: the stride sits on the 3x3 conv2 */
        if (!CONV_BN (conv1, 1, width, inplanes, 1, 1, 1, 0) ||
            !CONV_BN (conv2, 2, width, width, b->groups, 3, stride, 1) ||
            !CONV_BN (conv3, 3, planes * 4, width, 1, 1, 1, 0))
          return FALSE;
      } else {
        if (!CONV_BN (conv1, 1, planes, inplanes, 1, 3, stride, 1) ||
            !CONV_BN (conv2, 2, planes, planes, 1, 3, 1, 1))
          return FALSE;
        if (!ld_forbid (ld, "basic blocks have two convolutions", error,
                "%s.conv3.weight", pre))
          return FALSE;
      }
#undef CONV_BN
      g_snprintf (conv, sizeof conv, "%s.conv2.conv_offset", pre);
      if (deform) {
        blk->deform_groups = rc->deform_groups;
        if (!ld_conv_bias (ld, &blk->conv2_offset, conv, 18 * rc->deform_groups,
                width, 3, stride, 1, error))
          return FALSE;
      } else if (!ld_forbid (ld, "this block's conv2 is not deformable", error,
                     "%s.weight", conv)) {
        return FALSE;
      }
      blk->has_downsample =
          j == 0 && (stride != 1 || inplanes != planes * expansion);
      g_snprintf (conv, sizeof conv, "%s.downsample.0.weight", pre);
      g_snprintf (bn, sizeof bn, "%s.downsample.1", pre);
      if (blk->has_downsample) {
        if (!ld_conv_bn (ld, &blk->downsample, conv, bn, planes * expansion,
                inplanes, 1, stride, 0, rc->eps, error))
          return FALSE;
      } else if (!ld_forbid (ld, "this block has an identity shortcut", error,
                     "%s", conv)) {
        return FALSE;
      }
      inplanes = planes * expansion;
    }
    if (!ld_forbid (ld, "more blocks than backbone.depth implies", error,
            "backbone.layer%d.%d.conv1.weight", i + 1, b->n_blocks[i]))
      return FALSE;
    b->out_channels[i] = planes * expansion;
  }
  return TRUE;
}

/* ---- Swin backbone (model-spec 3.3) ---- */

/* `key` must be absent or the boolean want. */
static gboolean
cfg_bool_fixed (Ld *ld, JsonObject *o, const char *path, const char *key,
    gboolean want, GError **error)
{
  gboolean v = want;
  if (!cfg_bool (ld, o, path, key, want, &v, error))
    return FALSE;
  if (v != want)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s = %s is not supported", path, key, v ? "true" : "false");
  return TRUE;
}

static gboolean
parse_swin_cfg (Ld *ld, JsonObject *bb, GError **error)
{
  SiSwin *sw = &ld->m->backbone.swin;
  const char *p = "backbone";
  static const int def_depths[4] = { 2, 2, 6, 2 };
  static const int def_heads[4] = { 3, 6, 12, 24 };
  static const int def_out[4] = { 0, 1, 2, 3 };
  static const int def_strides[4] = { 4, 2, 2, 2 };
  JsonObject *sub;
  JsonNode *n;
  int arr[4];

  if (!cfg_int (ld, bb, p, "embed_dims", FALSE, 96, 1, MAX_CHANNELS / 8,
          &sw->embed_dims, error) ||
      !cfg_int_array (
          ld, bb, p, "depths", 4, def_depths, 1, 1000, sw->depths, error) ||
      !cfg_int_array (ld, bb, p, "num_heads", 4, def_heads, 1, MAX_CHANNELS,
          sw->heads, error) ||
      !cfg_int (ld, bb, p, "window_size", FALSE, 7, 2, SI_SWIN_MAX_WINDOW,
          &sw->window_size, error) ||
      !cfg_int_fixed (ld, bb, p, "in_channels", 3, error) ||
      !cfg_int_fixed (ld, bb, p, "patch_size", 4, error) ||
      !cfg_bool_fixed (ld, bb, p, "qkv_bias", TRUE, error) ||
      !cfg_bool_fixed (ld, bb, p, "patch_norm", TRUE, error) ||
      !cfg_bool_fixed (ld, bb, p, "use_abs_pos_embed", FALSE, error))
    return FALSE;
  if (cfg_member (bb, "qk_scale") != NULL)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.qk_scale must be null (head_dim^-0.5)");
  n = cfg_member (bb, "mlp_ratio");
  sw->mlp_ratio = 4;
  if (n != NULL) {
    double r = node_is_number (n) ? node_number (n) : -1.0;
    if (!(r >= 1.0 && r <= 64.0) || r != floor (r))
      return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
          "backbone.mlp_ratio must be an integer in [1, 64]");
    sw->mlp_ratio = (int) r;
  }
  if (!cfg_int_array (ld, bb, p, "out_indices", 4, def_out, 0, 3, arr, error))
    return FALSE;
  if (memcmp (arr, def_out, sizeof arr) != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.out_indices must be [0, 1, 2, 3]");
  if (!cfg_int_array (ld, bb, p, "strides", 4, def_strides, 1, 8, arr, error))
    return FALSE;
  if (memcmp (arr, def_strides, sizeof arr) != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.strides must be [4, 2, 2, 2]");
  static const char *const gelu[] = { "GELU", NULL };
  static const char *const ln[] = { "LN", NULL };
  if (!cfg_sub_type (ld, bb, p, "act_cfg", gelu, &sub, error) ||
      !cfg_sub_type (ld, bb, p, "norm_cfg", ln, &sub, error))
    return FALSE;
  for (int i = 0; i < 4; i++) {
    int c = sw->embed_dims << i;
    if (c > MAX_CHANNELS || c % sw->heads[i] != 0)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone: stage %d's %d channels are not a multiple of "
          "num_heads[%d] = %d",
          i, c, i, sw->heads[i]);
  }
  return TRUE;
}

static gboolean
load_swin (Ld *ld, GError **error)
{
  SiBackbone *b = &ld->m->backbone;
  SiSwin *sw = &b->swin;
  int ws = sw->window_size, e = sw->embed_dims;
  int n_rel = (2 * ws - 1) * (2 * ws - 1);
  char pre[128], name[160];

  if (!ld_conv_bias (ld, &sw->patch_embed, "backbone.patch_embed.projection", e,
          3, 4, 4, 0, error) ||
      !ld_norm (ld, &sw->patch_norm, "backbone.patch_embed.norm", e, error))
    return FALSE;
  for (int i = 0; i < 4; i++) {
    int c = e << i, hid = c * sw->mlp_ratio;
    sw->blocks[i] = g_new0 (SiSwinBlock, sw->depths[i]);
    for (int j = 0; j < sw->depths[i]; j++) {
      SiSwinBlock *blk = &sw->blocks[i][j];
      blk->shift = j % 2 ? ws / 2 : 0;
      g_snprintf (pre, sizeof pre, "backbone.stages.%d.blocks.%d", i, j);
#define SUB(s) (g_snprintf (name, sizeof name, "%s." s, pre), name)
      if (!ld_norm (ld, &blk->norm1, SUB ("norm1"), c, error) ||
          !ld_norm (ld, &blk->norm2, SUB ("norm2"), c, error) ||
          !ld_linear (
              ld, &blk->qkv, SUB ("attn.w_msa.qkv"), 3 * c, c, TRUE, error) ||
          !ld_linear (
              ld, &blk->proj, SUB ("attn.w_msa.proj"), c, c, TRUE, error) ||
          !ld_linear (
              ld, &blk->fc1, SUB ("ffn.layers.0.0"), hid, c, TRUE, error) ||
          !ld_linear (ld, &blk->fc2, SUB ("ffn.layers.1"), c, hid, TRUE, error))
        return FALSE;
#undef SUB
      blk->rel_bias = ld_tensor (ld, error, 2, SHAPE (n_rel, sw->heads[i]),
          "%s.attn.w_msa.relative_position_bias_table", pre);
      if (blk->rel_bias == NULL)
        return FALSE;
    }
    if (!ld_forbid (ld, "more blocks than backbone.depths says", error,
            "backbone.stages.%d.blocks.%d.norm1.weight", i, sw->depths[i]))
      return FALSE;
    g_snprintf (pre, sizeof pre, "backbone.stages.%d.downsample", i);
    if (i < 3) {
      g_snprintf (name, sizeof name, "%s.norm", pre);
      if (!ld_norm (ld, &sw->merge_norm[i], name, 4 * c, error))
        return FALSE;
      g_snprintf (name, sizeof name, "%s.reduction", pre);
      if (!ld_linear (
              ld, &sw->merge_reduce[i], name, 2 * c, 4 * c, FALSE, error))
        return FALSE;
    } else if (!ld_forbid (ld, "the last stage has no patch merging", error,
                   "%s.reduction.weight", pre)) {
      return FALSE;
    }
    g_snprintf (name, sizeof name, "backbone.norm%d", i);
    if (!ld_norm (ld, &sw->out_norm[i], name, c, error))
      return FALSE;
    b->out_channels[i] = c;
  }
  return TRUE;
}

static gboolean
load_backbone (Ld *ld, JsonObject *model, GError **error)
{
  JsonObject *bb;
  ResNetCfg rc;
  const char *type;

  if (!cfg_obj (ld, model, "model", "backbone", TRUE, &bb, error) ||
      !cfg_str (ld, bb, "backbone", "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "SwinTransformer") == 0) {
    ld->m->backbone.type = SI_BACKBONE_SWIN;
    return parse_swin_cfg (ld, bb, error) && load_swin (ld, error);
  }
  ld->m->backbone.type = SI_BACKBONE_RESNET;
  if (!parse_resnet_cfg (ld, bb, &rc, error))
    return FALSE;
  return load_resnet (ld, &rc, error);
}

/* ---- neck (model-spec 4) ---- */

static gboolean
load_neck (Ld *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  SiNeck *nk = &m->neck;
  JsonObject *o;
  const char *p = "neck";
  int in_ch[SI_NUM_LEVELS], v;
  char name[96];

  if (!cfg_obj (ld, model, "model", "neck", TRUE, &o, error) ||
      !cfg_type (ld, o, p, "ChannelMapping", error))
    return FALSE;
  JsonNode *ic = cfg_member (o, "in_channels");
  if (ic != NULL && JSON_NODE_HOLDS_ARRAY (ic) &&
      json_array_get_length (json_node_get_array (ic)) != SI_NUM_LEVELS)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "neck.in_channels has %u levels (only %d supported)",
        json_array_get_length (json_node_get_array (ic)), SI_NUM_LEVELS);
  if (!cfg_int_array (ld, o, p, "in_channels", SI_NUM_LEVELS, NULL, 1,
          MAX_CHANNELS, in_ch, error) ||
      !cfg_int (ld, o, p, "out_channels", TRUE, 0, 1, MAX_CHANNELS,
          &nk->out_channels, error) ||
      !cfg_int_fixed (ld, o, p, "num_outs", SI_NUM_LEVELS, error) ||
      !cfg_int_fixed (ld, o, p, "start_level", 0, error))
    return FALSE;
  if (!cfg_int (ld, o, p, "end_level", FALSE, -1, -1, SI_NUM_LEVELS, &v, error))
    return FALSE;
  if (v != -1 && v != SI_NUM_LEVELS - 1)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "neck.end_level = %d is not supported", v);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    if (in_ch[l] != m->backbone.out_channels[l])
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "neck.in_channels[%d] = %d but the backbone gives %d channels", l,
          in_ch[l], m->backbone.out_channels[l]);
  if (nk->out_channels != m->content_dim)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "neck.out_channels (%d) != content_dim (%d)", nk->out_channels,
        m->content_dim);
  nk->gn_groups = 32;
  if (nk->out_channels % nk->gn_groups != 0)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "neck.out_channels (%d) is not a multiple of 32 (GroupNorm groups)",
        nk->out_channels);

  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    g_snprintf (name, sizeof name, "neck.lateral_convs.%d.conv", l);
    if (!ld_conv_bias (ld, &nk->lateral[l], name, nk->out_channels, in_ch[l], 1,
            1, 0, error))
      return FALSE;
  }
  return ld_norm (ld, &nk->gn, "neck.gn_out", nk->out_channels, error);
}

/* ---- query generator (model-spec 5) ---- */

static gboolean
parse_rpn (Ld *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  JsonObject *o;

  if (!cfg_obj (ld, model, "model", "rpn_head", TRUE, &o, error) ||
      !cfg_type (ld, o, "rpn_head", "SubInitialQueryGenerator", error) ||
      !cfg_int (ld, o, "rpn_head", "num_query", TRUE, 0, 1, MAX_QUERIES,
          &m->num_query, error) ||
      !cfg_int (ld, o, "rpn_head", "content_dim", TRUE, 0, 8, MAX_CHANNELS,
          &m->content_dim, error))
    return FALSE;
  if (m->content_dim % 8 != 0)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "rpn_head.content_dim = %d is not a multiple of 8", m->content_dim);
  return TRUE;
}

static gboolean
load_rpn (Ld *ld, GError **error)
{
  SiModel *m = ld->m;
  m->init_content =
      ld_tensor (ld, error, 2, SHAPE (m->num_query, m->content_dim), "%s",
          "rpn_head.init_content_features.weight");
  if (m->init_content == NULL)
    return FALSE;
  m->init_boxes = ld_tensor (ld, error, 2, SHAPE (m->num_query, 4), "%s",
      "rpn_head.init_proposal_bboxes");
  return m->init_boxes != NULL;
}

/* ---- decoder stages (model-spec 6.0) ---- */

typedef struct
{
  int reuse_st;
  gboolean use_sigmoid;
  gboolean bg_logit;
} StageExtra;

static gboolean
parse_stage_cfg (
    Ld *ld, JsonObject *o, int s, SiStage *st, StageExtra *x, GError **error)
{
  int C = ld->m->content_dim, v;
  char p[64];
  static const char *const forbidden[] = {
    "share_W_dygen",
    "decompose_S",
    "use_pre_feats",
    "no_previous_filters",
    "abla_use_static_spatial_mix",
    "abla_use_static_channel_mix",
    "use_holistic_sampling_points",
    "shrinkS1",
  };

  g_snprintf (p, sizeof p, "roi_head.bbox_head[%d]", s);
  st->idx = s;
  st->C = C;
  if (!cfg_type (ld, o, p, "StageInteractorHead", error) ||
      !cfg_int (ld, o, p, "stage_idx", FALSE, s, 0, SI_MAX_STAGES, &v, error))
    return FALSE;
  if (v != s)
    return cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.stage_idx = %d (expected %d)", p, v, s);
  if (!cfg_int (ld, o, p, "content_dim", TRUE, 0, 1, MAX_CHANNELS, &v, error))
    return FALSE;
  if (v != C)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.content_dim (%d) != content_dim (%d)", p, v, C);
  if (!cfg_int (
          ld, o, p, "feat_channels", TRUE, 0, 1, MAX_CHANNELS, &st->D, error))
    return FALSE;
  if (st->D != C)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.feat_channels (%d) != content_dim (%d)", p, st->D, C);
  if (!cfg_int (ld, o, p, "n_heads", TRUE, 0, 1, C, &st->G, error) ||
      !cfg_int (ld, o, p, "num_heads", TRUE, 0, 1, C, &st->Ha, error) ||
      !cfg_int (ld, o, p, "in_points", TRUE, 0, 1, MAX_POINTS, &st->P, error) ||
      !cfg_int (
          ld, o, p, "subbox_poolsize", TRUE, 0, 1, MAX_POINTS, &st->K, error) ||
      !cfg_int (
          ld, o, p, "out_points", TRUE, 0, 1, 4 * MAX_POINTS, &st->O, error) ||
      !cfg_int (ld, o, p, "feedforward_channels", TRUE, 0, 1, 16 * MAX_CHANNELS,
          &st->F, error) ||
      !cfg_int (
          ld, o, p, "num_classes", TRUE, 0, 1, MAX_CLASSES, &st->NC, error) ||
      !cfg_int (ld, o, p, "num_cls_fcs", FALSE, 1, 0, MAX_FCS, &st->n_cls_fcs,
          error) ||
      !cfg_int (ld, o, p, "num_reg_fcs", FALSE, 1, 0, MAX_FCS, &st->n_reg_fcs,
          error) ||
      !cfg_int_fixed (ld, o, p, "num_ffn_fcs", 2, error) ||
      !cfg_int_fixed (ld, o, p, "in_point_sampling_rate", 1, error) ||
      !cfg_int (ld, o, p, "reuse_st_id", FALSE, 2, 0, SI_MAX_STAGES,
          &x->reuse_st, error))
    return FALSE;
  if (C % st->G != 0)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.n_heads = %d does not divide content_dim %d", p, st->G, C);
  if (C % st->Ha != 0)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.num_heads = %d does not divide content_dim %d", p, st->Ha, C);
  if (cfg_member (o, "prefix_M_len") != NULL)
    return cfg_err (
        ld, error, SI_ERROR_UNSUPPORTED, "%s.prefix_M_len is not supported", p);
  for (size_t i = 0; i < G_N_ELEMENTS (forbidden); i++)
    if (!cfg_false (ld, o, p, forbidden[i], error))
      return FALSE;

  static const char *const relu[] = { "ReLU", NULL };
  JsonObject *sub;
  if (!cfg_sub_type (ld, o, p, "ffn_act_cfg", relu, &sub, error))
    return FALSE;
  if (!cfg_obj (ld, o, p, "loss_cls", FALSE, &sub, error) ||
      !cfg_bool (ld, sub, p, "use_sigmoid", TRUE, &x->use_sigmoid, error) ||
      !cfg_bool (ld, o, p, "use_bg_idx_classifier", FALSE, &x->bg_logit, error))
    return FALSE;
  if (!x->use_sigmoid)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.loss_cls.use_sigmoid = false (softmax scoring) is not supported",
        p);
  if (x->bg_logit)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.use_bg_idx_classifier = true is not supported", p);

  /* sizes */
  st->Dg = st->D / st->G;
  st->R = st->P * st->K;
  int lim;
  JsonNode *ln = cfg_member (o, "lim_outpoints_times");
  if (ln == NULL) {
    lim = st->O / st->R - 1; /* the head's default */
  } else if (!cfg_int (ld, o, p, "lim_outpoints_times", TRUE, 0, 0, 64, &lim,
                 error)) {
    return FALSE;
  }
  st->reuse = s >= x->reuse_st;
  st->lim = st->reuse ? lim : 0;
  st->L = MAX (0, s - x->reuse_st + 1);
  if (!st->reuse) {
    st->Sg = st->O;
    st->O_tot = st->O;
  } else {
    if (st->lim != 1)
      return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
          "%s.lim_outpoints_times = %d is not supported (only 1)", p, lim);
    if (st->O % (lim + 1) != 0)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "%s.out_points = %d is not divisible by lim_outpoints_times + 1", p,
          st->O);
    st->Sg = st->O / (lim + 1);
    st->O_tot = st->Sg * MIN (s, lim + 1);
    if (st->O_tot != st->O)
      return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
          "%s: mixed spatial rows O_tot = %d != out_points = %d (the "
          "official code cannot run this config)",
          p, st->O_tot, st->O);
  }
  return TRUE;
}

static gboolean
load_stage_tensors (Ld *ld, SiStage *st, GError **error)
{
  int C = st->C, G = st->G, Dg = st->Dg, P = st->P, K = st->K, R = st->R;
  char p[64], n[160];

  g_snprintf (p, sizeof p, "roi_head.bbox_head.%d", st->idx);
#define LIN(field, suffix, out, in)                                            \
  (g_snprintf (n, sizeof n, "%s.%s", p, suffix),                               \
      ld_linear (ld, &st->field, n, out, in, TRUE, error))
#define NORM(field, suffix, len)                                               \
  (g_snprintf (n, sizeof n, "%s.%s", p, suffix),                               \
      ld_norm (ld, &st->field, n, len, error))

  /* self-attention: packed q|k|v projection */
  st->in_proj.out = 3 * C;
  st->in_proj.in = C;
  st->in_proj.w = ld_tensor (
      ld, error, 2, SHAPE (3 * C, C), "%s.attention.attn.in_proj_weight", p);
  if (st->in_proj.w == NULL)
    return FALSE;
  st->in_proj.b = ld_tensor (
      ld, error, 1, SHAPE (3 * C), "%s.attention.attn.in_proj_bias", p);
  if (st->in_proj.b == NULL)
    return FALSE;
  if (!LIN (out_proj, "attention.attn.out_proj", C, C) ||
      !NORM (attn_norm, "attention_norm", C))
    return FALSE;
  st->iof_tau = ld_tensor (ld, error, 1, SHAPE (st->Ha), "%s.iof_tau", p);
  if (st->iof_tau == NULL)
    return FALSE;

  /* sampler, mixing */
  if (!LIN (gen_one_d, "feat_extractor.gen_one_d.0", 3 * G * P, C) ||
      !LIN (gen_double_d, "feat_extractor.gen_double_d.0", 3 * K, C) ||
      !LIN (param_gen, "dynamic_conv.parameter_generator",
          G * (Dg * Dg + st->Sg * R), C) ||
      !LIN (mix_bias, "dynamic_conv.mix_bias", G * (Dg + st->O), C) ||
      !LIN (Wv, "dynamic_conv.Wv", st->D, st->O_tot * st->D) ||
      !NORM (Wv_norm, "dynamic_conv.Wv_layer_norm", st->D))
    return FALSE;

  if (st->L > 0) {
    st->subbox_local = g_new0 (SiLinear, st->L);
    st->axis_atten = g_new0 (SiLinear, st->L);
    for (int m = 0; m < st->L; m++) {
      g_snprintf (n, sizeof n, "%s.dynamic_conv.subbox_local_list.%d", p, m);
      if (!ld_linear (ld, &st->subbox_local[m], n, K * Dg, K * Dg, TRUE, error))
        return FALSE;
      g_snprintf (n, sizeof n, "%s.dynamic_conv.axis_atten_list.%d", p, m);
      if (!ld_linear (ld, &st->axis_atten[m], n, P * Dg, P * Dg, TRUE, error))
        return FALSE;
    }
    if (!LIN (M_score, "dynamic_conv.M_score_list", G * Dg * 2 * st->L, C) ||
        !LIN (M_score_mix_bias, "dynamic_conv.M_score_list_mix_bias",
            G * Dg * st->L, C) ||
        !LIN (S_score, "dynamic_conv.S_score_list", G * st->Sg * st->lim, C) ||
        !LIN (S_score2, "dynamic_conv.S_score_list2", G * R * st->lim, C))
      return FALSE;
  }
  if (!ld_forbid (ld, "more reuse steps than the stage index implies", error,
          "%s.dynamic_conv.subbox_local_list.%d.weight", p, st->L) ||
      !ld_forbid (ld, "more reuse steps than the stage index implies", error,
          "%s.dynamic_conv.axis_atten_list.%d.weight", p, st->L))
    return FALSE;

  /* FFN, branches */
  if (!LIN (ffn1, "ffn.layers.0.0", st->F, C) ||
      !LIN (ffn2, "ffn.layers.1", C, st->F) || !NORM (ffn_norm, "ffn_norm", C))
    return FALSE;
  st->cls_fc = g_new0 (SiLinear, MAX (st->n_cls_fcs, 1));
  st->cls_ln = g_new0 (SiNorm, MAX (st->n_cls_fcs, 1));
  st->reg_fc = g_new0 (SiLinear, MAX (st->n_reg_fcs, 1));
  st->reg_ln = g_new0 (SiNorm, MAX (st->n_reg_fcs, 1));
  for (int i = 0; i < st->n_cls_fcs; i++) {
    char s1[32], s2[32];
    g_snprintf (s1, sizeof s1, "cls_fcs.%d", 3 * i);
    g_snprintf (s2, sizeof s2, "cls_fcs.%d", 3 * i + 1);
    if (!LIN (cls_fc[i], s1, C, C) || !NORM (cls_ln[i], s2, C))
      return FALSE;
  }
  for (int i = 0; i < st->n_reg_fcs; i++) {
    char s1[32], s2[32];
    g_snprintf (s1, sizeof s1, "reg_fcs.%d", 3 * i);
    g_snprintf (s2, sizeof s2, "reg_fcs.%d", 3 * i + 1);
    if (!LIN (reg_fc[i], s1, C, C) || !NORM (reg_ln[i], s2, C))
      return FALSE;
  }
  if (!ld_forbid (ld, "more cls fcs than num_cls_fcs", error,
          "%s.cls_fcs.%d.weight", p, 3 * st->n_cls_fcs) ||
      !ld_forbid (ld, "more reg fcs than num_reg_fcs", error,
          "%s.reg_fcs.%d.weight", p, 3 * st->n_reg_fcs))
    return FALSE;
  if (!LIN (fc_cls, "fc_cls", st->NC, C) || !LIN (fc_reg, "fc_reg", 4, C))
    return FALSE;
#undef LIN
#undef NORM
  return TRUE;
}

static gboolean
load_decoder (Ld *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  JsonObject *rh;
  const char *p = "roi_head";
  static const int def_strides[SI_NUM_LEVELS] = { 4, 8, 16, 32 };
  int v;

  if (!cfg_obj (ld, model, "model", "roi_head", TRUE, &rh, error) ||
      !cfg_type (ld, rh, p, "StageInteractorDecoder", error) ||
      !cfg_int (ld, rh, p, "num_stages", TRUE, 0, 1, SI_MAX_STAGES,
          &m->num_stages, error) ||
      !cfg_int (ld, rh, p, "content_dim", FALSE, m->content_dim, 1,
          MAX_CHANNELS, &v, error) ||
      !cfg_int_array (ld, rh, p, "featmap_strides", SI_NUM_LEVELS, def_strides,
          1, 1024, m->featmap_strides, error))
    return FALSE;
  if (v != m->content_dim)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "roi_head.content_dim (%d) != rpn_head.content_dim (%d)", v,
        m->content_dim);
  JsonNode *nms = cfg_member (rh, "nms_thres");
  if (nms != NULL && (!node_is_number (nms) || node_number (nms) > 0.0))
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "roi_head.nms_thres > 0 (class-wise NMS) is not supported");

  JsonNode *bh = cfg_member (rh, "bbox_head");
  if (bh == NULL ||
      !(JSON_NODE_HOLDS_ARRAY (bh) || JSON_NODE_HOLDS_OBJECT (bh)))
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "roi_head.bbox_head is missing or not a list");
  if (JSON_NODE_HOLDS_ARRAY (bh) &&
      (int) json_array_get_length (json_node_get_array (bh)) != m->num_stages)
    return cfg_err (ld, error, SI_ERROR_CONFIG,
        "roi_head.bbox_head has %u entries but num_stages = %d",
        json_array_get_length (json_node_get_array (bh)), m->num_stages);

  m->stages = g_new0 (SiStage, m->num_stages);
  for (int s = 0; s < m->num_stages; s++) {
    SiStage *st = &m->stages[s];
    StageExtra x;
    JsonNode *e = JSON_NODE_HOLDS_ARRAY (bh)
        ? json_array_get_element (json_node_get_array (bh), s)
        : bh;
    if (!JSON_NODE_HOLDS_OBJECT (e))
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "roi_head.bbox_head[%d] is not an object", s);
    if (!parse_stage_cfg (ld, json_node_get_object (e), s, st, &x, error))
      return FALSE;
    if (s > 0 && st->NC != m->stages[0].NC)
      return cfg_err (ld, error, SI_ERROR_CONFIG,
          "roi_head.bbox_head[%d].num_classes (%d) != bbox_head[0]'s (%d)", s,
          st->NC, m->stages[0].NC);
    m->use_sigmoid = x.use_sigmoid;
    if (!load_stage_tensors (ld, st, error))
      return FALSE;
  }
  if (!ld_forbid (ld, "more stages than roi_head.num_stages", error,
          "roi_head.bbox_head.%d.fc_cls.weight", m->num_stages))
    return FALSE;
  m->num_classes = m->stages[0].NC;
  return TRUE;
}

static gboolean
parse_max_per_img (Ld *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  JsonObject *tc = NULL, *rcnn = NULL;
  gint64 limit = (gint64) m->num_query * m->num_classes;

  if (!cfg_obj (ld, model, "model", "test_cfg", FALSE, &tc, error) ||
      !cfg_obj (ld, tc, "test_cfg", "rcnn", FALSE, &rcnn, error))
    return FALSE;
  if (rcnn == NULL) { /* mmdet 1.x style: roi_head.test_cfg */
    JsonObject *rh;
    if (!cfg_obj (ld, model, "model", "roi_head", TRUE, &rh, error) ||
        !cfg_obj (ld, rh, "roi_head", "test_cfg", FALSE, &rcnn, error))
      return FALSE;
  }
  return cfg_int (ld, rcnn, "test_cfg.rcnn", "max_per_img", FALSE, m->num_query,
      1, (int) MIN (limit, G_MAXINT), &m->max_per_img, error);
}

/* ---- __metadata__ ---- */

/* Parses metadata value `key` as JSON; the returned parser owns the root. */
static JsonParser *
meta_json (Ld *ld, const char *key, JsonNode **root, GError **error)
{
  const char *text = si_safetensors_metadata (ld->m->file, key);
  GError *jerr = NULL;

  if (text == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: __metadata__ has no \"%s\"", ld->path, key);
    return NULL;
  }
  JsonParser *parser = json_parser_new ();
  if (!json_parser_load_from_data (parser, text, -1, &jerr)) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: __metadata__ \"%s\" is not valid JSON: %s", ld->path, key,
        jerr->message);
    g_error_free (jerr);
    g_object_unref (parser);
    return NULL;
  }
  *root = json_parser_get_root (parser);
  if (*root == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: __metadata__ \"%s\" is empty", ld->path, key);
    g_object_unref (parser);
    return NULL;
  }
  return parser;
}

static gboolean
parse_format (Ld *ld, GError **error)
{
  const char *fmt = si_safetensors_metadata (ld->m->file, "format");
  const char *ver = si_safetensors_metadata (ld->m->file, "format_version");

  if (fmt == NULL || strcmp (fmt, "stageinteractor") != 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: __metadata__ \"format\" is %s%s%s, expected \"stageinteractor\" "
        "(not a StageInteractor model file?)",
        ld->path, fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
    return FALSE;
  }
  if (ver == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: __metadata__ has no \"format_version\"", ld->path);
    return FALSE;
  }
  if (strcmp (ver, "1") != 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
        "%s: format_version \"%s\" is not supported (only 1)", ld->path, ver);
    return FALSE;
  }
  return TRUE;
}

static gboolean
parse_img_norm (Ld *ld, GError **error)
{
  SiModel *m = ld->m;
  JsonNode *root;
  JsonParser *parser = meta_json (ld, "img_norm", &root, error);
  gboolean ok = FALSE;

  if (parser == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: img_norm is not a JSON object", ld->path);
    goto out;
  }
  JsonObject *o = json_node_get_object (root);
  const char *keys[2] = { "mean", "std" };
  float *dst[2] = { m->mean, m->std };
  for (int k = 0; k < 2; k++) {
    JsonNode *n = cfg_member (o, keys[k]);
    if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n) ||
        json_array_get_length (json_node_get_array (n)) != 3) {
      g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
          "%s: img_norm.%s is not an array of 3 numbers", ld->path, keys[k]);
      goto out;
    }
    for (int c = 0; c < 3; c++) {
      JsonNode *e = json_array_get_element (json_node_get_array (n), c);
      double v = node_is_number (e) ? node_number (e) : NAN;
      if (!isfinite (v) || (k == 1 && !(fabs (v) > 1e-12))) {
        g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
            "%s: img_norm.%s[%d] is not a valid number", ld->path, keys[k], c);
        goto out;
      }
      dst[k][c] = (float) v;
    }
  }
  gboolean to_rgb;
  if (!cfg_bool (ld, o, "img_norm", "to_rgb", TRUE, &to_rgb, error))
    goto out;
  m->to_rgb = to_rgb;
  ok = TRUE;
out:
  g_object_unref (parser);
  return ok;
}

static gboolean
parse_test_scale (Ld *ld, GError **error)
{
  SiModel *m = ld->m;
  JsonNode *root;
  JsonParser *parser = meta_json (ld, "test_scale", &root, error);
  gboolean ok = FALSE;
  int v[2];

  if (parser == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_ARRAY (root) ||
      json_array_get_length (json_node_get_array (root)) != 2) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: test_scale is not an array of 2 integers", ld->path);
    goto out;
  }
  for (int i = 0; i < 2; i++) {
    JsonNode *e = json_array_get_element (json_node_get_array (root), i);
    if (!node_is_int (e) || json_node_get_int (e) < 1 ||
        json_node_get_int (e) > MAX_SCALE) {
      g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
          "%s: test_scale[%d] is not an integer in [1, %d]", ld->path, i,
          MAX_SCALE);
      goto out;
    }
    v[i] = (int) json_node_get_int (e);
  }
  m->test_scale[0] = MAX (v[0], v[1]);
  m->test_scale[1] = MIN (v[0], v[1]);
  ok = TRUE;
out:
  g_object_unref (parser);
  return ok;
}

static gboolean
parse_classes (Ld *ld, GError **error)
{
  SiModel *m = ld->m;
  JsonNode *root;
  JsonParser *parser = meta_json (ld, "classes", &root, error);
  gboolean ok = FALSE;

  if (parser == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_ARRAY (root)) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: classes is not a JSON array", ld->path);
    goto out;
  }
  JsonArray *a = json_node_get_array (root);
  guint n = json_array_get_length (a);
  if (n > MAX_CLASSES || (int) n != m->num_classes) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: classes has %u names but the model has num_classes = %d", ld->path,
        n, m->num_classes);
    goto out;
  }
  m->classes = g_new0 (char *, n + 1);
  for (guint i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element (a, i);
    if (!JSON_NODE_HOLDS_VALUE (e) ||
        json_node_get_value_type (e) != G_TYPE_STRING) {
      g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
          "%s: classes[%u] is not a string", ld->path, i);
      goto out;
    }
    m->classes[i] = g_strdup (json_node_get_string (e));
  }
  ok = TRUE;
out:
  g_object_unref (parser);
  return ok;
}

static gboolean
parse_size_divisor (Ld *ld, GError **error)
{
  const char *text = si_safetensors_metadata (ld->m->file, "size_divisor");
  guint64 v;

  ld->m->size_divisor = 32;
  if (text == NULL)
    return TRUE;
  char *copy = g_strstrip (g_strdup (text));
  gboolean ok = g_ascii_string_to_unsigned (copy, 10, 1, 1024, &v, NULL);
  g_free (copy);
  if (!ok) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: size_divisor \"%s\" is not an integer in [1, 1024]", ld->path,
        text);
    return FALSE;
  }
  ld->m->size_divisor = (int) v;
  return TRUE;
}

static gboolean
load_model_config (Ld *ld, GError **error)
{
  JsonNode *root;
  const char *type;

  ld->parser = meta_json (ld, "model", &root, error);
  if (ld->parser == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (root)) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "%s: __metadata__ \"model\" is not a JSON object", ld->path);
    return FALSE;
  }
  JsonObject *model = json_node_get_object (root);
  if (!cfg_str (ld, model, "model", "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "SubQueryDeformableRCNN") != 0)
    return cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "model type \"%s\" is not supported (expected "
        "\"SubQueryDeformableRCNN\")",
        type);
  /* Config first (cheap, precise messages), then the tensors. */
  return parse_rpn (ld, model, error) && load_backbone (ld, model, error) &&
      load_neck (ld, model, error) && load_rpn (ld, error) &&
      load_decoder (ld, model, error) && parse_max_per_img (ld, model, error);
}

/* ---- public ---- */

static void
model_free (SiModel *m)
{
  if (m == NULL)
    return;
  for (int i = 0; i < 4; i++) {
    g_free (m->backbone.blocks[i]);
    g_free (m->backbone.swin.blocks[i]);
  }
  if (m->stages != NULL) {
    for (int s = 0; s < m->num_stages; s++) {
      SiStage *st = &m->stages[s];
      g_free (st->subbox_local);
      g_free (st->axis_atten);
      g_free (st->cls_fc);
      g_free (st->cls_ln);
      g_free (st->reg_fc);
      g_free (st->reg_ln);
    }
    g_free (m->stages);
  }
  g_strfreev (m->classes);
  if (m->owned != NULL)
    g_ptr_array_unref (m->owned);
  si_safetensors_close (&m->file);
  g_free (m->path);
  g_free (m->name);
  g_free (m);
}

static char *
model_name_from_path (const char *path)
{
  char *base = g_path_get_basename (path);
  char *dot = strrchr (base, '.');
  if (dot != NULL && dot != base)
    *dot = '\0';
  return base;
}

SiModel *
si_model_load (const char *path, GError **error)
{
  SiModel *m;
  Ld ld = { 0 };

  if (path == NULL) {
    g_set_error_literal (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "si_model_load: path is NULL");
    return NULL;
  }
  m = g_new0 (SiModel, 1);
  m->refcount = 1;
  m->path = g_strdup (path);
  m->name = model_name_from_path (path);
  m->owned = g_ptr_array_new_with_free_func (g_free);
  ld.m = m;
  ld.path = path;

  m->file = si_safetensors_open (path, error);
  if (m->file == NULL || !parse_format (&ld, error) ||
      !parse_img_norm (&ld, error) || !parse_test_scale (&ld, error) ||
      !parse_size_divisor (&ld, error) || !load_model_config (&ld, error) ||
      !parse_classes (&ld, error)) {
    if (ld.parser != NULL)
      g_object_unref (ld.parser);
    model_free (m);
    return NULL;
  }
  g_object_unref (ld.parser);
  return m;
}

SiModel *
si_model_ref (SiModel *model)
{
  g_return_val_if_fail (model != NULL, NULL);
  g_atomic_int_inc (&model->refcount);
  return model;
}

void
si_model_unref (SiModel *model)
{
  if (model == NULL)
    return;
  if (g_atomic_int_dec_and_test (&model->refcount))
    model_free (model);
}

void
si_model_clear (SiModel **model)
{
  if (model == NULL || *model == NULL)
    return;
  si_model_unref (*model);
  *model = NULL;
}

int
si_model_get_num_classes (const SiModel *model)
{
  return model != NULL ? model->num_classes : 0;
}

const char *
si_model_get_class_name (const SiModel *model, int class_id)
{
  if (model == NULL || class_id < 0 || class_id >= model->num_classes)
    return NULL;
  return model->classes[class_id];
}

const char *
si_model_get_name (const SiModel *model)
{
  return model != NULL ? model->name : NULL;
}

int
si_model_get_num_queries (const SiModel *model)
{
  return model != NULL ? model->num_query : 0;
}

int
si_model_get_num_stages (const SiModel *model)
{
  return model != NULL ? model->num_stages : 0;
}
