/* model.h: the loaded model (internal).  Owns the mmap'ed safetensors file,
 * the parsed configuration and typed views of every weight the network
 * reads.  BatchNorm is folded into the preceding convolution at load, so
 * backbone convs carry a (possibly owned) weight and a bias.
 *
 * Dimension legend used in shape comments:
 *   N queries, C content dim, D feature channels (== C), G mixing groups,
 *   Dg = D/G, P first-level points, K second-level points, R = P*K,
 *   O out points, Sg generated S rows, L reused filters, F FFN width,
 *   NC classes, Ha attention heads.
 */
#ifndef SI_MODEL_H
#define SI_MODEL_H

#include "si-engine.h"
#include "safetensors.h"

#include <stdbool.h>

#define SI_NUM_LEVELS 4

/* A convolution with BN folded in: y = conv(x, w) + b. */
typedef struct
{
  const float *w; /* (cout, cin/groups, kh, kw) */
  const float *b; /* (cout), never NULL after folding */
  int cout, cin, kh, kw, stride, pad, groups;
} SiConv;

typedef struct
{
  const float *w; /* (out, in) */
  const float *b; /* (out) or NULL */
  int out, in;
} SiLinear;

typedef struct
{
  const float *gamma; /* (n) or NULL: no affine */
  const float *beta;
  int n;
} SiNorm;

typedef struct
{
  SiConv conv1, conv2, conv3;
  SiConv downsample;
  bool has_downsample;
} SiBottleneck;

typedef struct
{
  int depth;         /* 18, 34, 50, 101, 152 */
  bool bottleneck;   /* depth >= 50 */
  int base_channels; /* 64 in official configs */
  int stem_channels;
  SiConv stem; /* 7x7/2, BN folded; ReLU then maxpool 3x3/2 */
  int n_blocks[4];
  SiBottleneck *blocks[4]; /* basic blocks use conv1, conv2 only */
  int out_channels[4];
} SiBackbone;

typedef struct
{
  SiConv lateral[SI_NUM_LEVELS]; /* 1x1, bias */
  SiNorm gn;                     /* one GroupNorm shared by the levels */
  int gn_groups;                 /* 32 */
  int out_channels;
} SiNeck;

typedef struct
{
  int idx;
  /* sizes (model-spec 6.0) */
  int C, D, G, Dg, Ha, P, K, R, O, Sg, O_tot, L, lim, F, NC;
  bool reuse; /* idx >= reuse_st */

  SiLinear in_proj;  /* (3C, C) */
  SiLinear out_proj; /* (C, C) */
  SiNorm attn_norm;
  const float *iof_tau; /* (Ha) */

  SiLinear gen_one_d;    /* (3*G*P, C) */
  SiLinear gen_double_d; /* (3*K, C) */

  SiLinear param_gen; /* (G*(Dg*Dg + Sg*R), C) */
  SiLinear mix_bias;  /* (G*(Dg + O), C) */
  SiLinear Wv;        /* (D, O_tot*D) */
  SiNorm Wv_norm;

  SiLinear *subbox_local;    /* L of (K*Dg, K*Dg) */
  SiLinear *axis_atten;      /* L of (P*Dg, P*Dg) */
  SiLinear M_score;          /* (G*Dg*2*L, C) */
  SiLinear M_score_mix_bias; /* (G*Dg*L, C) */
  SiLinear S_score;          /* (G*Sg*lim, C) */
  SiLinear S_score2;         /* (G*R*lim, C) */

  SiLinear ffn1; /* (F, C) */
  SiLinear ffn2; /* (C, F) */
  SiNorm ffn_norm;

  int n_cls_fcs, n_reg_fcs;
  SiLinear *cls_fc; /* n_cls_fcs of (C, C), each followed by LN + ReLU */
  SiNorm *cls_ln;
  SiLinear *reg_fc;
  SiNorm *reg_ln;
  SiLinear fc_cls; /* (NC, C) (NC+1 with a background logit) */
  SiLinear fc_reg; /* (4, C) */
} SiStage;

struct _SiModel
{
  gint refcount;
  char *path;
  char *name;
  SiSafetensors *file;

  /* configuration */
  int num_query;   /* N */
  int content_dim; /* C */
  int num_stages;
  int num_classes;
  int max_per_img;
  bool use_sigmoid;
  float mean[3], std[3]; /* RGB order */
  bool to_rgb;
  int test_scale[2]; /* (long max, short max) */
  int size_divisor;  /* 32 */
  int featmap_strides[SI_NUM_LEVELS];
  char **classes; /* num_classes, NULL-terminated */

  SiBackbone backbone;
  SiNeck neck;
  const float *init_content; /* (N, C) */
  const float *init_boxes;   /* (N, 4) normalised cx, cy, w, h */
  SiStage *stages;

  GPtrArray *owned; /* buffers the model allocated (folded convs, ...) */
};

#endif /* SI_MODEL_H */
