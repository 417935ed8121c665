/* model_backbone.c: the loader's backbones: ResNet / ResNeXt with
 * optional DCNv1 (model-spec 3.1, 3.2) and the Swin Transformer
 * (model-spec 3.3): their config, then every tensor checked against it.
 */
#include "model_load.h"

#include <string.h>

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
parse_dcn_cfg (SiLd *ld, JsonObject *bb, ResNetCfg *rc, GError **error)
{
  JsonObject *dcn;
  const char *type;
  gboolean fallback, any = FALSE;
  JsonNode *swd = si_cfg_member (bb, "stage_with_dcn");

  memset (rc->stage_dcn, 0, sizeof rc->stage_dcn);
  rc->deform_groups = 0;
  rc->dcn_fallback = false;
  if (swd != NULL) {
    JsonArray *a =
        JSON_NODE_HOLDS_ARRAY (swd) ? json_node_get_array (swd) : NULL;
    if (a == NULL || json_array_get_length (a) != 4)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone.stage_with_dcn is not an array of 4 booleans");
    for (guint i = 0; i < 4; i++) {
      JsonNode *e = json_array_get_element (a, i);
      if (!JSON_NODE_HOLDS_VALUE (e) ||
          json_node_get_value_type (e) != G_TYPE_BOOLEAN)
        return si_cfg_err (ld, error, SI_ERROR_CONFIG,
            "backbone.stage_with_dcn[%u] is not a boolean", i);
      rc->stage_dcn[i] = json_node_get_boolean (e);
      any |= rc->stage_dcn[i];
    }
  }
  if (!si_cfg_obj (ld, bb, "backbone", "dcn", FALSE, &dcn, error))
    return FALSE;
  if (dcn == NULL) {
    if (any)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone.stage_with_dcn asks for DCN but backbone.dcn is absent");
    return TRUE;
  }
  if (!si_cfg_str (ld, dcn, "backbone.dcn", "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "DCN") != 0)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.dcn.type \"%s\" is not supported (only \"DCN\", "
        "deformable convolution v1)",
        type);
  if (!si_cfg_int (ld, dcn, "backbone.dcn", "deform_groups", FALSE, 1, 1, 64,
          &rc->deform_groups, error) ||
      !si_cfg_bool (ld, dcn, "backbone.dcn", "fallback_on_stride", FALSE,
          &fallback, error))
    return FALSE;
  rc->dcn_fallback = fallback;
  if (!ld->m->backbone.bottleneck && any)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.dcn: DCN needs bottleneck blocks (depth >= 50)");
  return TRUE;
}

static gboolean
parse_resnet_cfg (SiLd *ld, JsonObject *bb, ResNetCfg *rc, GError **error)
{
  SiBackbone *b = &ld->m->backbone;
  const char *p = "backbone", *type, *style;
  static const int def_out[4] = { 0, 1, 2, 3 };
  static const int def_strides[4] = { 1, 2, 2, 2 };
  static const int def_dil[4] = { 1, 1, 1, 1 };
  const ResNetArch *arch = NULL;
  bool resnext;

  if (!si_cfg_str (ld, bb, p, "type", TRUE, &type, error))
    return FALSE;
  resnext = strcmp (type, "ResNeXt") == 0;
  if (!resnext && strcmp (type, "ResNet") != 0)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone type \"%s\" is not supported (only ResNet, ResNeXt and "
        "SwinTransformer)",
        type);
  if (!si_cfg_int (ld, bb, p, "depth", TRUE, 0, 0, 1000, &b->depth, error))
    return FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS (resnet_archs); i++)
    if (resnet_archs[i].depth == b->depth &&
        (!resnext || resnet_archs[i].bottleneck))
      arch = &resnet_archs[i];
  if (arch == NULL)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "backbone.depth = %d (expected %s)", b->depth,
        resnext ? "50, 101 or 152" : "18, 34, 50, 101 or 152");
  b->bottleneck = arch->bottleneck;
  memcpy (b->n_blocks, arch->blocks, sizeof b->n_blocks);

  if (!si_cfg_int (ld, bb, p, "base_channels", FALSE, 64, 1, MAX_CHANNELS / 8,
          &b->base_channels, error) ||
      !si_cfg_int (ld, bb, p, "stem_channels", FALSE, b->base_channels, 1,
          MAX_CHANNELS, &b->stem_channels, error) ||
      !si_cfg_int_fixed (ld, bb, p, "in_channels", 3, error) ||
      !si_cfg_int_fixed (ld, bb, p, "num_stages", 4, error) ||
      !si_cfg_false (ld, bb, p, "deep_stem", error) ||
      !si_cfg_false (ld, bb, p, "avg_down", error))
    return FALSE;
  b->groups = 1;
  b->base_width = 4;
  if (resnext &&
      (!si_cfg_int (
           ld, bb, p, "groups", FALSE, 1, 1, MAX_CHANNELS, &b->groups, error) ||
          !si_cfg_int (ld, bb, p, "base_width", FALSE, 4, 1, MAX_CHANNELS,
              &b->base_width, error)))
    return FALSE;
  if (!si_cfg_int4_fixed (
          ld, bb, p, "out_indices", def_out, 0, 3, NULL, error) ||
      !si_cfg_int4_fixed (
          ld, bb, p, "strides", def_strides, 1, 2, rc->strides, error) ||
      !si_cfg_int4_fixed (ld, bb, p, "dilations", def_dil, 1, 64, NULL, error))
    return FALSE;
  if (!si_cfg_str (ld, bb, p, "style", FALSE, &style, error))
    return FALSE;
  if (style != NULL && strcmp (style, "pytorch") != 0)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.style \"%s\" is not supported (only \"pytorch\")", style);
  if (si_cfg_member (bb, "plugins") != NULL)
    return si_cfg_err (
        ld, error, SI_ERROR_UNSUPPORTED, "backbone.plugins are not supported");
  if (!parse_dcn_cfg (ld, bb, rc, error))
    return FALSE;

  static const char *const bn[] = { "BN", "SyncBN", NULL };
  JsonObject *norm;
  rc->eps = 1e-5;
  if (!si_cfg_sub_type (ld, bb, p, "norm_cfg", bn, &norm, error))
    return FALSE;
  JsonNode *eps = si_cfg_member (norm, "eps");
  if (eps != NULL) {
    if (!si_json_is_number (eps) || !(si_json_number (eps) > 0.0) ||
        si_json_number (eps) > 1.0)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone.norm_cfg.eps is not a number in (0, 1]");
    rc->eps = si_json_number (eps);
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
load_resnet (SiLd *ld, const ResNetCfg *rc, GError **error)
{
  SiBackbone *b = &ld->m->backbone;
  int expansion = b->bottleneck ? 4 : 1;
  int inplanes = b->stem_channels;
  char conv[128], bn[128], pre[96];

  if (!si_ld_conv_bn (ld, &b->stem, "backbone.conv1.weight", "backbone.bn1",
          b->stem_channels, 3, 7, 2, 3, rc->eps, error))
    return FALSE;

  for (int i = 0; i < 4; i++) {
    int planes = b->base_channels << i;
    int width = b->bottleneck ? bottleneck_width (b, planes) : planes;
    if (width < b->groups || width % b->groups != 0 || width > MAX_CHANNELS)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone: layer%d's width %d is not a positive multiple of "
          "groups (%d)",
          i + 1, width, b->groups);
    if (rc->deform_groups > 0 && rc->stage_dcn[i] &&
        width % rc->deform_groups != 0)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
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
      si_ld_conv_bn_groups (                                                   \
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
        if (!si_ld_forbid (ld, "basic blocks have two convolutions", error,
                "%s.conv3.weight", pre))
          return FALSE;
      }
#undef CONV_BN
      g_snprintf (conv, sizeof conv, "%s.conv2.conv_offset", pre);
      if (deform) {
        blk->deform_groups = rc->deform_groups;
        if (!si_ld_conv_bias (ld, &blk->conv2_offset, conv,
                18 * rc->deform_groups, width, 3, stride, 1, error))
          return FALSE;
      } else if (!si_ld_forbid (ld, "this block's conv2 is not deformable",
                     error, "%s.weight", conv)) {
        return FALSE;
      }
      blk->has_downsample =
          j == 0 && (stride != 1 || inplanes != planes * expansion);
      g_snprintf (conv, sizeof conv, "%s.downsample.0.weight", pre);
      g_snprintf (bn, sizeof bn, "%s.downsample.1", pre);
      if (blk->has_downsample) {
        if (!si_ld_conv_bn (ld, &blk->downsample, conv, bn, planes * expansion,
                inplanes, 1, stride, 0, rc->eps, error))
          return FALSE;
      } else if (!si_ld_forbid (ld, "this block has an identity shortcut",
                     error, "%s", conv)) {
        return FALSE;
      }
      inplanes = planes * expansion;
    }
    if (!si_ld_forbid (ld, "more blocks than backbone.depth implies", error,
            "backbone.layer%d.%d.conv1.weight", i + 1, b->n_blocks[i]))
      return FALSE;
    b->out_channels[i] = planes * expansion;
  }
  return TRUE;
}

/* ---- Swin backbone (model-spec 3.3) ---- */

/* `key` must be absent or the boolean want. */
static gboolean
cfg_bool_fixed (SiLd *ld, JsonObject *o, const char *path, const char *key,
    gboolean want, GError **error)
{
  gboolean v = want;
  if (!si_cfg_bool (ld, o, path, key, want, &v, error))
    return FALSE;
  if (v != want)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.%s = %s is not supported", path, key, v ? "true" : "false");
  return TRUE;
}

static gboolean
parse_swin_cfg (SiLd *ld, JsonObject *bb, GError **error)
{
  SiSwin *sw = &ld->m->backbone.swin;
  const char *p = "backbone";
  static const int def_depths[4] = { 2, 2, 6, 2 };
  static const int def_heads[4] = { 3, 6, 12, 24 };
  static const int def_out[4] = { 0, 1, 2, 3 };
  static const int def_strides[4] = { 4, 2, 2, 2 };
  JsonObject *sub;
  JsonNode *n;

  if (!si_cfg_int (ld, bb, p, "embed_dims", FALSE, 96, 1, MAX_CHANNELS / 8,
          &sw->embed_dims, error) ||
      !si_cfg_int_array (
          ld, bb, p, "depths", 4, def_depths, 1, 1000, sw->depths, error) ||
      !si_cfg_int_array (ld, bb, p, "num_heads", 4, def_heads, 1, MAX_CHANNELS,
          sw->heads, error) ||
      !si_cfg_int (ld, bb, p, "window_size", FALSE, 7, 2, SI_SWIN_MAX_WINDOW,
          &sw->window_size, error) ||
      !si_cfg_int_fixed (ld, bb, p, "in_channels", 3, error) ||
      !si_cfg_int_fixed (ld, bb, p, "patch_size", 4, error) ||
      !cfg_bool_fixed (ld, bb, p, "qkv_bias", TRUE, error) ||
      !cfg_bool_fixed (ld, bb, p, "patch_norm", TRUE, error) ||
      !cfg_bool_fixed (ld, bb, p, "use_abs_pos_embed", FALSE, error))
    return FALSE;
  if (si_cfg_member (bb, "qk_scale") != NULL)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "backbone.qk_scale must be null (head_dim^-0.5)");
  n = si_cfg_member (bb, "mlp_ratio");
  sw->mlp_ratio = 4;
  if (n != NULL) {
    double r = si_json_is_number (n) ? si_json_number (n) : -1.0;
    if (!(r >= 1.0 && r <= 64.0) || r != floor (r))
      return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
          "backbone.mlp_ratio must be an integer in [1, 64]");
    sw->mlp_ratio = (int) r;
  }
  if (!si_cfg_int4_fixed (
          ld, bb, p, "out_indices", def_out, 0, 3, NULL, error) ||
      !si_cfg_int4_fixed (ld, bb, p, "strides", def_strides, 1, 8, NULL, error))
    return FALSE;
  static const char *const gelu[] = { "GELU", NULL };
  static const char *const ln[] = { "LN", NULL };
  if (!si_cfg_sub_type (ld, bb, p, "act_cfg", gelu, &sub, error) ||
      !si_cfg_sub_type (ld, bb, p, "norm_cfg", ln, &sub, error))
    return FALSE;
  for (int i = 0; i < 4; i++) {
    int c = sw->embed_dims << i;
    if (c > MAX_CHANNELS || c % sw->heads[i] != 0)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "backbone: stage %d's %d channels are not a multiple of "
          "num_heads[%d] = %d",
          i, c, i, sw->heads[i]);
  }
  return TRUE;
}

static gboolean
load_swin (SiLd *ld, GError **error)
{
  SiBackbone *b = &ld->m->backbone;
  SiSwin *sw = &b->swin;
  int ws = sw->window_size, e = sw->embed_dims;
  int n_rel = (2 * ws - 1) * (2 * ws - 1);
  char pre[128], name[160];

  if (!si_ld_conv_bias (ld, &sw->patch_embed, "backbone.patch_embed.projection",
          e, 3, 4, 4, 0, error) ||
      !si_ld_norm (ld, &sw->patch_norm, "backbone.patch_embed.norm", e, error))
    return FALSE;
  for (int i = 0; i < 4; i++) {
    int c = e << i, hid = c * sw->mlp_ratio;
    sw->blocks[i] = g_new0 (SiSwinBlock, sw->depths[i]);
    for (int j = 0; j < sw->depths[i]; j++) {
      SiSwinBlock *blk = &sw->blocks[i][j];
      blk->shift = j % 2 ? ws / 2 : 0;
      g_snprintf (pre, sizeof pre, "backbone.stages.%d.blocks.%d", i, j);
#define SUB(s) (g_snprintf (name, sizeof name, "%s." s, pre), name)
      if (!si_ld_norm (ld, &blk->norm1, SUB ("norm1"), c, error) ||
          !si_ld_norm (ld, &blk->norm2, SUB ("norm2"), c, error) ||
          !si_ld_linear (
              ld, &blk->qkv, SUB ("attn.w_msa.qkv"), 3 * c, c, TRUE, error) ||
          !si_ld_linear (
              ld, &blk->proj, SUB ("attn.w_msa.proj"), c, c, TRUE, error) ||
          !si_ld_linear (
              ld, &blk->fc1, SUB ("ffn.layers.0.0"), hid, c, TRUE, error) ||
          !si_ld_linear (
              ld, &blk->fc2, SUB ("ffn.layers.1"), c, hid, TRUE, error))
        return FALSE;
#undef SUB
      blk->rel_bias = si_ld_tensor (ld, error, 2, SHAPE (n_rel, sw->heads[i]),
          "%s.attn.w_msa.relative_position_bias_table", pre);
      if (blk->rel_bias == NULL)
        return FALSE;
    }
    if (!si_ld_forbid (ld, "more blocks than backbone.depths says", error,
            "backbone.stages.%d.blocks.%d.norm1.weight", i, sw->depths[i]))
      return FALSE;
    g_snprintf (pre, sizeof pre, "backbone.stages.%d.downsample", i);
    if (i < 3) {
      g_snprintf (name, sizeof name, "%s.norm", pre);
      if (!si_ld_norm (ld, &sw->merge_norm[i], name, 4 * c, error))
        return FALSE;
      g_snprintf (name, sizeof name, "%s.reduction", pre);
      if (!si_ld_linear (
              ld, &sw->merge_reduce[i], name, 2 * c, 4 * c, FALSE, error))
        return FALSE;
    } else if (!si_ld_forbid (ld, "the last stage has no patch merging", error,
                   "%s.reduction.weight", pre)) {
      return FALSE;
    }
    g_snprintf (name, sizeof name, "backbone.norm%d", i);
    if (!si_ld_norm (ld, &sw->out_norm[i], name, c, error))
      return FALSE;
    b->out_channels[i] = c;
  }
  return TRUE;
}

gboolean
si_ld_backbone (SiLd *ld, JsonObject *model, GError **error)
{
  JsonObject *bb;
  ResNetCfg rc;
  const char *type;

  if (!si_cfg_obj (ld, model, "model", "backbone", TRUE, &bb, error) ||
      !si_cfg_str (ld, bb, "backbone", "type", TRUE, &type, error))
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
