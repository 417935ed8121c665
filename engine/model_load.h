/* model_load.h: what the parts of the model loader share (internal to
 * engine/): the loader's state, the tensor checks (presence, dtype, shape
 * against the config; float32 views or converted copies) and the config
 * readers (typed members of the __metadata__ model config, with messages
 * that name the member).  model.c drives the load; model_backbone.c reads
 * the backbones.
 */
#ifndef SI_MODEL_LOAD_H
#define SI_MODEL_LOAD_H

#include "model.h"

#include <json-glib/json-glib.h>
#include <stdint.h>

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
} SiLd;

/* ---- tensors (model_load.c) ---- */

#define SHAPE(...) ((const int64_t[]){ __VA_ARGS__ })

/* The float32 data of tensor `name` (printf format), which must exist
 * with exactly the given shape and a floating-point dtype. */
const float *si_ld_tensor (SiLd *ld, GError **error, int ndim,
    const int64_t *shape, const char *fmt, ...) G_GNUC_PRINTF (5, 6);
/* A tensor the config says must not exist (e.g. an extra block). */
gboolean si_ld_forbid (SiLd *ld, const char *why, GError **error,
    const char *fmt, ...) G_GNUC_PRINTF (4, 5);
/* prefix.weight (out, in) and, when bias, prefix.bias (out). */
gboolean si_ld_linear (SiLd *ld, SiLinear *l, const char *prefix, int out,
    int in, gboolean bias, GError **error);
/* LayerNorm / GroupNorm affine: prefix.weight (n), prefix.bias (n). */
gboolean si_ld_norm (
    SiLd *ld, SiNorm *nrm, const char *prefix, int n, GError **error);
/* Conv (no bias; groups) followed by an eval BatchNorm, as views. */
gboolean si_ld_conv_bn_groups (SiLd *ld, SiConv *c, const char *conv_name,
    const char *bn_prefix, int cout, int cin, int groups, int k, int stride,
    int pad, double eps, GError **error);
gboolean si_ld_conv_bn (SiLd *ld, SiConv *c, const char *conv_name,
    const char *bn_prefix, int cout, int cin, int k, int stride, int pad,
    double eps, GError **error);
/* Conv with a bias and no BN. */
gboolean si_ld_conv_bias (SiLd *ld, SiConv *c, const char *prefix, int cout,
    int cin, int k, int stride, int pad, GError **error);

/* ---- config (model_load.c) ---- */

/* Member `key` of o; NULL when o is NULL or the member absent or null. */
JsonNode *si_cfg_member (JsonObject *o, const char *key);
gboolean si_json_is_int (JsonNode *n);
gboolean si_json_is_number (JsonNode *n);
double si_json_number (JsonNode *n);
/* Sets error to "PATH: model config: MESSAGE"; returns FALSE. */
gboolean si_cfg_err (SiLd *ld, GError **error, SiErrorCode code,
    const char *fmt, ...) G_GNUC_PRINTF (4, 5);
/* Typed member readers: path names o in messages; see model_load.c for
 * what absence means for each. */
gboolean si_cfg_int (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, int def, int lo, int hi, int *out, GError **error);
gboolean si_cfg_bool (SiLd *ld, JsonObject *o, const char *path,
    const char *key, gboolean def, gboolean *out, GError **error);
gboolean si_cfg_str (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, const char **out, GError **error);
gboolean si_cfg_obj (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean required, JsonObject **out, GError **error);
gboolean si_cfg_sub_type (SiLd *ld, JsonObject *o, const char *path,
    const char *key, const char *const *accepted, JsonObject **sub,
    GError **error);
gboolean si_cfg_int_array (SiLd *ld, JsonObject *o, const char *path,
    const char *key, int n, const int *def, int lo, int hi, int *out,
    GError **error);
gboolean si_cfg_type (SiLd *ld, JsonObject *o, const char *path,
    const char *want, GError **error);
gboolean si_cfg_int_fixed (SiLd *ld, JsonObject *o, const char *path,
    const char *key, int want, GError **error);
/* Integer array `key` of 4 in [lo, hi] that must be @want (also its
 * default); the values into @out (may be NULL). */
gboolean si_cfg_int4_fixed (SiLd *ld, JsonObject *o, const char *path,
    const char *key, const int want[4], int lo, int hi, int *out,
    GError **error);
gboolean si_cfg_false (
    SiLd *ld, JsonObject *o, const char *path, const char *key, GError **error);

/* ---- backbones (model_backbone.c: ResNet / ResNeXt (+ DCN), Swin) ---- */

/* model.backbone of the config and its tensors into ld->m->backbone. */
gboolean si_ld_backbone (SiLd *ld, JsonObject *model, GError **error);

#endif /* SI_MODEL_LOAD_H */
