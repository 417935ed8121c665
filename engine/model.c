/* model.c: si_model_load() and the model's public getters.  Reads the
 * safetensors __metadata__ (format, model config, img_norm, test_scale,
 * classes; model-spec 10), derives the per-stage sizes (model-spec 6.0)
 * and loads the neck, the query generator and the decoder stages, every
 * tensor checked against the config; the backbones are read by
 * model_backbone.c, the shared checks and config readers are in
 * model_load.c.  Weights stay views of the mapping where they can; the
 * backbone's convs and eval BatchNorms are kept as views too (backends
 * fold them).
 */
#include "model.h"
#include "model_load.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

/* ---- neck (model-spec 4) ---- */

static gboolean
load_neck (SiLd *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  SiNeck *nk = &m->neck;
  JsonObject *o;
  const char *p = "neck";
  int in_ch[SI_NUM_LEVELS], v;
  char name[96];

  if (!si_cfg_obj (ld, model, "model", "neck", TRUE, &o, error) ||
      !si_cfg_type (ld, o, p, "ChannelMapping", error))
    return FALSE;
  JsonNode *ic = si_cfg_member (o, "in_channels");
  if (ic != NULL && JSON_NODE_HOLDS_ARRAY (ic) &&
      json_array_get_length (json_node_get_array (ic)) != SI_NUM_LEVELS)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "neck.in_channels has %u levels (only %d supported)",
        json_array_get_length (json_node_get_array (ic)), SI_NUM_LEVELS);
  if (!si_cfg_int_array (ld, o, p, "in_channels", SI_NUM_LEVELS, NULL, 1,
          MAX_CHANNELS, in_ch, error) ||
      !si_cfg_int (ld, o, p, "out_channels", TRUE, 0, 1, MAX_CHANNELS,
          &nk->out_channels, error) ||
      !si_cfg_int_fixed (ld, o, p, "num_outs", SI_NUM_LEVELS, error) ||
      !si_cfg_int_fixed (ld, o, p, "start_level", 0, error))
    return FALSE;
  if (!si_cfg_int (
          ld, o, p, "end_level", FALSE, -1, -1, SI_NUM_LEVELS, &v, error))
    return FALSE;
  if (v != -1 && v != SI_NUM_LEVELS - 1)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "neck.end_level = %d is not supported", v);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    if (in_ch[l] != m->backbone.out_channels[l])
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "neck.in_channels[%d] = %d but the backbone gives %d channels", l,
          in_ch[l], m->backbone.out_channels[l]);
  if (nk->out_channels != m->content_dim)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "neck.out_channels (%d) != content_dim (%d)", nk->out_channels,
        m->content_dim);
  nk->gn_groups = 32;
  if (nk->out_channels % nk->gn_groups != 0)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "neck.out_channels (%d) is not a multiple of 32 (GroupNorm groups)",
        nk->out_channels);

  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    g_snprintf (name, sizeof name, "neck.lateral_convs.%d.conv", l);
    if (!si_ld_conv_bias (ld, &nk->lateral[l], name, nk->out_channels, in_ch[l],
            1, 1, 0, error))
      return FALSE;
  }
  return si_ld_norm (ld, &nk->gn, "neck.gn_out", nk->out_channels, error);
}

/* ---- query generator (model-spec 5) ---- */

static gboolean
parse_rpn (SiLd *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  JsonObject *o;

  if (!si_cfg_obj (ld, model, "model", "rpn_head", TRUE, &o, error) ||
      !si_cfg_type (ld, o, "rpn_head", "SubInitialQueryGenerator", error) ||
      !si_cfg_int (ld, o, "rpn_head", "num_query", TRUE, 0, 1, MAX_QUERIES,
          &m->num_query, error) ||
      !si_cfg_int (ld, o, "rpn_head", "content_dim", TRUE, 0, 8, MAX_CHANNELS,
          &m->content_dim, error))
    return FALSE;
  if (m->content_dim % 8 != 0)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "rpn_head.content_dim = %d is not a multiple of 8", m->content_dim);
  return TRUE;
}

static gboolean
load_rpn (SiLd *ld, GError **error)
{
  SiModel *m = ld->m;
  m->init_content =
      si_ld_tensor (ld, error, 2, SHAPE (m->num_query, m->content_dim), "%s",
          "rpn_head.init_content_features.weight");
  if (m->init_content == NULL)
    return FALSE;
  m->init_boxes = si_ld_tensor (ld, error, 2, SHAPE (m->num_query, 4), "%s",
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
    SiLd *ld, JsonObject *o, int s, SiStage *st, StageExtra *x, GError **error)
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
  if (!si_cfg_type (ld, o, p, "StageInteractorHead", error) ||
      !si_cfg_int (
          ld, o, p, "stage_idx", FALSE, s, 0, SI_MAX_STAGES, &v, error))
    return FALSE;
  if (v != s)
    return si_cfg_err (
        ld, error, SI_ERROR_CONFIG, "%s.stage_idx = %d (expected %d)", p, v, s);
  if (!si_cfg_int (
          ld, o, p, "content_dim", TRUE, 0, 1, MAX_CHANNELS, &v, error))
    return FALSE;
  if (v != C)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.content_dim (%d) != content_dim (%d)", p, v, C);
  if (!si_cfg_int (
          ld, o, p, "feat_channels", TRUE, 0, 1, MAX_CHANNELS, &st->D, error))
    return FALSE;
  if (st->D != C)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.feat_channels (%d) != content_dim (%d)", p, st->D, C);
  if (!si_cfg_int (ld, o, p, "n_heads", TRUE, 0, 1, C, &st->G, error) ||
      !si_cfg_int (ld, o, p, "num_heads", TRUE, 0, 1, C, &st->Ha, error) ||
      !si_cfg_int (
          ld, o, p, "in_points", TRUE, 0, 1, MAX_POINTS, &st->P, error) ||
      !si_cfg_int (
          ld, o, p, "subbox_poolsize", TRUE, 0, 1, MAX_POINTS, &st->K, error) ||
      !si_cfg_int (
          ld, o, p, "out_points", TRUE, 0, 1, 4 * MAX_POINTS, &st->O, error) ||
      !si_cfg_int (ld, o, p, "feedforward_channels", TRUE, 0, 1,
          16 * MAX_CHANNELS, &st->F, error) ||
      !si_cfg_int (
          ld, o, p, "num_classes", TRUE, 0, 1, MAX_CLASSES, &st->NC, error) ||
      !si_cfg_int (ld, o, p, "num_cls_fcs", FALSE, 1, 0, MAX_FCS,
          &st->n_cls_fcs, error) ||
      !si_cfg_int (ld, o, p, "num_reg_fcs", FALSE, 1, 0, MAX_FCS,
          &st->n_reg_fcs, error) ||
      !si_cfg_int_fixed (ld, o, p, "num_ffn_fcs", 2, error) ||
      !si_cfg_int_fixed (ld, o, p, "in_point_sampling_rate", 1, error) ||
      !si_cfg_int (ld, o, p, "reuse_st_id", FALSE, 2, 0, SI_MAX_STAGES,
          &x->reuse_st, error))
    return FALSE;
  if (C % st->G != 0)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.n_heads = %d does not divide content_dim %d", p, st->G, C);
  if (C % st->Ha != 0)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "%s.num_heads = %d does not divide content_dim %d", p, st->Ha, C);
  if (si_cfg_member (o, "prefix_M_len") != NULL)
    return si_cfg_err (
        ld, error, SI_ERROR_UNSUPPORTED, "%s.prefix_M_len is not supported", p);
  for (size_t i = 0; i < G_N_ELEMENTS (forbidden); i++)
    if (!si_cfg_false (ld, o, p, forbidden[i], error))
      return FALSE;

  static const char *const relu[] = { "ReLU", NULL };
  JsonObject *sub;
  if (!si_cfg_sub_type (ld, o, p, "ffn_act_cfg", relu, &sub, error))
    return FALSE;
  if (!si_cfg_obj (ld, o, p, "loss_cls", FALSE, &sub, error) ||
      !si_cfg_bool (ld, sub, p, "use_sigmoid", TRUE, &x->use_sigmoid, error) ||
      !si_cfg_bool (
          ld, o, p, "use_bg_idx_classifier", FALSE, &x->bg_logit, error))
    return FALSE;
  if (!x->use_sigmoid)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.loss_cls.use_sigmoid = false (softmax scoring) is not supported",
        p);
  if (x->bg_logit)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "%s.use_bg_idx_classifier = true is not supported", p);

  /* sizes */
  st->Dg = st->D / st->G;
  st->R = st->P * st->K;
  int lim;
  JsonNode *ln = si_cfg_member (o, "lim_outpoints_times");
  if (ln == NULL) {
    lim = st->O / st->R - 1; /* the head's default */
  } else if (!si_cfg_int (ld, o, p, "lim_outpoints_times", TRUE, 0, 0, 64, &lim,
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
      return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
          "%s.lim_outpoints_times = %d is not supported (only 1)", p, lim);
    if (st->O % (lim + 1) != 0)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "%s.out_points = %d is not divisible by lim_outpoints_times + 1", p,
          st->O);
    st->Sg = st->O / (lim + 1);
    st->O_tot = st->Sg * MIN (s, lim + 1);
    if (st->O_tot != st->O)
      return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
          "%s: mixed spatial rows O_tot = %d != out_points = %d (the "
          "official code cannot run this config)",
          p, st->O_tot, st->O);
  }
  return TRUE;
}

static gboolean
load_stage_tensors (SiLd *ld, SiStage *st, GError **error)
{
  int C = st->C, G = st->G, Dg = st->Dg, P = st->P, K = st->K, R = st->R;
  char p[64], n[160];

  g_snprintf (p, sizeof p, "roi_head.bbox_head.%d", st->idx);
#define LIN(field, suffix, out, in)                                            \
  (g_snprintf (n, sizeof n, "%s.%s", p, suffix),                               \
      si_ld_linear (ld, &st->field, n, out, in, TRUE, error))
#define NORM(field, suffix, len)                                               \
  (g_snprintf (n, sizeof n, "%s.%s", p, suffix),                               \
      si_ld_norm (ld, &st->field, n, len, error))

  /* self-attention: packed q|k|v projection */
  st->in_proj.out = 3 * C;
  st->in_proj.in = C;
  st->in_proj.w = si_ld_tensor (
      ld, error, 2, SHAPE (3 * C, C), "%s.attention.attn.in_proj_weight", p);
  if (st->in_proj.w == NULL)
    return FALSE;
  st->in_proj.b = si_ld_tensor (
      ld, error, 1, SHAPE (3 * C), "%s.attention.attn.in_proj_bias", p);
  if (st->in_proj.b == NULL)
    return FALSE;
  if (!LIN (out_proj, "attention.attn.out_proj", C, C) ||
      !NORM (attn_norm, "attention_norm", C))
    return FALSE;
  st->iof_tau = si_ld_tensor (ld, error, 1, SHAPE (st->Ha), "%s.iof_tau", p);
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
      if (!si_ld_linear (
              ld, &st->subbox_local[m], n, K * Dg, K * Dg, TRUE, error))
        return FALSE;
      g_snprintf (n, sizeof n, "%s.dynamic_conv.axis_atten_list.%d", p, m);
      if (!si_ld_linear (
              ld, &st->axis_atten[m], n, P * Dg, P * Dg, TRUE, error))
        return FALSE;
    }
    if (!LIN (M_score, "dynamic_conv.M_score_list", G * Dg * 2 * st->L, C) ||
        !LIN (M_score_mix_bias, "dynamic_conv.M_score_list_mix_bias",
            G * Dg * st->L, C) ||
        !LIN (S_score, "dynamic_conv.S_score_list", G * st->Sg * st->lim, C) ||
        !LIN (S_score2, "dynamic_conv.S_score_list2", G * R * st->lim, C))
      return FALSE;
  }
  if (!si_ld_forbid (ld, "more reuse steps than the stage index implies", error,
          "%s.dynamic_conv.subbox_local_list.%d.weight", p, st->L) ||
      !si_ld_forbid (ld, "more reuse steps than the stage index implies", error,
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
  if (!si_ld_forbid (ld, "more cls fcs than num_cls_fcs", error,
          "%s.cls_fcs.%d.weight", p, 3 * st->n_cls_fcs) ||
      !si_ld_forbid (ld, "more reg fcs than num_reg_fcs", error,
          "%s.reg_fcs.%d.weight", p, 3 * st->n_reg_fcs))
    return FALSE;
  if (!LIN (fc_cls, "fc_cls", st->NC, C) || !LIN (fc_reg, "fc_reg", 4, C))
    return FALSE;
#undef LIN
#undef NORM
  return TRUE;
}

static gboolean
load_decoder (SiLd *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  JsonObject *rh;
  const char *p = "roi_head";
  static const int def_strides[SI_NUM_LEVELS] = { 4, 8, 16, 32 };
  int v;

  if (!si_cfg_obj (ld, model, "model", "roi_head", TRUE, &rh, error) ||
      !si_cfg_type (ld, rh, p, "StageInteractorDecoder", error) ||
      !si_cfg_int (ld, rh, p, "num_stages", TRUE, 0, 1, SI_MAX_STAGES,
          &m->num_stages, error) ||
      !si_cfg_int (ld, rh, p, "content_dim", FALSE, m->content_dim, 1,
          MAX_CHANNELS, &v, error) ||
      !si_cfg_int_array (ld, rh, p, "featmap_strides", SI_NUM_LEVELS,
          def_strides, 1, 1024, m->featmap_strides, error))
    return FALSE;
  if (v != m->content_dim)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "roi_head.content_dim (%d) != rpn_head.content_dim (%d)", v,
        m->content_dim);
  JsonNode *nms = si_cfg_member (rh, "nms_thres");
  if (nms != NULL && (!si_json_is_number (nms) || si_json_number (nms) > 0.0))
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "roi_head.nms_thres > 0 (class-wise NMS) is not supported");

  JsonNode *bh = si_cfg_member (rh, "bbox_head");
  if (bh == NULL ||
      !(JSON_NODE_HOLDS_ARRAY (bh) || JSON_NODE_HOLDS_OBJECT (bh)))
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
        "roi_head.bbox_head is missing or not a list");
  if (JSON_NODE_HOLDS_ARRAY (bh) &&
      (int) json_array_get_length (json_node_get_array (bh)) != m->num_stages)
    return si_cfg_err (ld, error, SI_ERROR_CONFIG,
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
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "roi_head.bbox_head[%d] is not an object", s);
    if (!parse_stage_cfg (ld, json_node_get_object (e), s, st, &x, error))
      return FALSE;
    if (s > 0 && st->NC != m->stages[0].NC)
      return si_cfg_err (ld, error, SI_ERROR_CONFIG,
          "roi_head.bbox_head[%d].num_classes (%d) != bbox_head[0]'s (%d)", s,
          st->NC, m->stages[0].NC);
    m->use_sigmoid = x.use_sigmoid;
    if (!load_stage_tensors (ld, st, error))
      return FALSE;
  }
  if (!si_ld_forbid (ld, "more stages than roi_head.num_stages", error,
          "roi_head.bbox_head.%d.fc_cls.weight", m->num_stages))
    return FALSE;
  m->num_classes = m->stages[0].NC;
  return TRUE;
}

static gboolean
parse_max_per_img (SiLd *ld, JsonObject *model, GError **error)
{
  SiModel *m = ld->m;
  JsonObject *tc = NULL, *rcnn = NULL;
  gint64 limit = (gint64) m->num_query * m->num_classes;

  if (!si_cfg_obj (ld, model, "model", "test_cfg", FALSE, &tc, error) ||
      !si_cfg_obj (ld, tc, "test_cfg", "rcnn", FALSE, &rcnn, error))
    return FALSE;
  if (rcnn == NULL) { /* mmdet 1.x style: roi_head.test_cfg */
    JsonObject *rh;
    if (!si_cfg_obj (ld, model, "model", "roi_head", TRUE, &rh, error) ||
        !si_cfg_obj (ld, rh, "roi_head", "test_cfg", FALSE, &rcnn, error))
      return FALSE;
  }
  return si_cfg_int (ld, rcnn, "test_cfg.rcnn", "max_per_img", FALSE,
      m->num_query, 1, (int) MIN (limit, G_MAXINT), &m->max_per_img, error);
}

/* ---- __metadata__ ---- */

/* Parses metadata value `key` as JSON; the returned parser owns the root. */
static JsonParser *
meta_json (SiLd *ld, const char *key, JsonNode **root, GError **error)
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
parse_format (SiLd *ld, GError **error)
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
parse_img_norm (SiLd *ld, GError **error)
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
    JsonNode *n = si_cfg_member (o, keys[k]);
    if (n == NULL || !JSON_NODE_HOLDS_ARRAY (n) ||
        json_array_get_length (json_node_get_array (n)) != 3) {
      g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
          "%s: img_norm.%s is not an array of 3 numbers", ld->path, keys[k]);
      goto out;
    }
    for (int c = 0; c < 3; c++) {
      JsonNode *e = json_array_get_element (json_node_get_array (n), c);
      double v = si_json_is_number (e) ? si_json_number (e) : NAN;
      if (!isfinite (v) || (k == 1 && !(fabs (v) > 1e-12))) {
        g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
            "%s: img_norm.%s[%d] is not a valid number", ld->path, keys[k], c);
        goto out;
      }
      dst[k][c] = (float) v;
    }
  }
  gboolean to_rgb;
  if (!si_cfg_bool (ld, o, "img_norm", "to_rgb", TRUE, &to_rgb, error))
    goto out;
  m->to_rgb = to_rgb;
  ok = TRUE;
out:
  g_object_unref (parser);
  return ok;
}

static gboolean
parse_test_scale (SiLd *ld, GError **error)
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
    if (!si_json_is_int (e) || json_node_get_int (e) < 1 ||
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
parse_classes (SiLd *ld, GError **error)
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
parse_size_divisor (SiLd *ld, GError **error)
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
load_model_config (SiLd *ld, GError **error)
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
  if (!si_cfg_str (ld, model, "model", "type", TRUE, &type, error))
    return FALSE;
  if (strcmp (type, "SubQueryDeformableRCNN") != 0)
    return si_cfg_err (ld, error, SI_ERROR_UNSUPPORTED,
        "model type \"%s\" is not supported (expected "
        "\"SubQueryDeformableRCNN\")",
        type);
  /* Config first (cheap, precise messages), then the tensors. */
  return parse_rpn (ld, model, error) && si_ld_backbone (ld, model, error) &&
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
  SiLd ld = { 0 };

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
