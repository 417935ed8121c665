/* model.h: the loaded model (internal).  Owns the mmap'ed safetensors file,
 * the parsed configuration and typed views of every weight the network
 * reads.  Backbone convs keep views of their raw conv and eval-BatchNorm
 * tensors; each backend folds them (si_conv_fold, below) into its own copy
 * when it prepares the conv, so the model holds no folded copy.
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

#include <math.h>
#include <stdbool.h>
#include <string.h>
#ifdef G_OS_UNIX
#include <sys/mman.h>
#include <unistd.h>
#endif

#define SI_NUM_LEVELS 4

/* Eval BatchNorm after a conv (model-spec 3.1), as views:
 * y' = (y - mean) * gamma / sqrt (var + eps) + beta.  var NULL: none. */
typedef struct
{
  const float *gamma, *beta, *mean, *var; /* (cout) each */
  double eps; /* the loader checked var + eps > 0 and finite */
} SiConvBn;

/* The file tensors behind an SiConv's views (conv weight, conv bias, BN
 * gamma, beta, mean, var), for si_conv_release_pages; NULL: none. */
#define SI_CONV_N_SRC 6

/* A convolution y = BN (conv (x, w) + b).  The views are the mapping
 * itself or owned float32 copies (F16/BF16/unaligned tensors); backends
 * never read w as the folded weight: they call si_conv_fold.  Convs built
 * by hand (tests, the neck's laterals) have no BN: w and b are used as is. */
typedef struct
{
  const float *w; /* (cout, cin/groups, kh, kw) the conv's own weight */
  const float *b; /* (cout) the conv's own bias, or NULL */
  SiConvBn bn;
  const SiTensorInfo *src[SI_CONV_N_SRC];
  int cout, cin, kh, kw, stride, pad, groups;
} SiConv;

static inline bool
si_conv_has_bn (const SiConv *conv)
{
  return conv->bn.var != NULL;
}

/* Floats of the (cout, cin/groups, kh, kw) weight. */
static inline size_t
si_conv_weight_numel (const SiConv *conv)
{
  return (size_t) conv->cout * (size_t) (conv->cin / conv->groups) *
      (size_t) conv->kh * (size_t) conv->kw;
}

/* The folded weight w_out (cout, cin/groups, kh, kw) and bias b_out (cout)
 * of y = BN (conv (x, w) + b) written as conv (x, w_out) + b_out; either
 * may be NULL (not wanted).  Without BN: w and b copied (b NULL: zeros).
 * Double arithmetic, rounded once per value, so every backend gets the
 * same bits:
 *   s = gamma / sqrt (var + eps),  w' = w s,  b' = beta - mean s
 *   (b' = beta + (b - mean) s with a conv bias).
 * Header-inline so that every backend (a separate CUDA module included)
 * has it without linking model.c. */
static inline void
si_conv_fold (const SiConv *conv, float *w_out, float *b_out)
{
  size_t per = si_conv_weight_numel (conv) / (size_t) conv->cout;

  if (!si_conv_has_bn (conv)) {
    if (w_out != NULL)
      memcpy (w_out, conv->w, per * conv->cout * sizeof (float));
    for (int o = 0; b_out != NULL && o < conv->cout; o++)
      b_out[o] = conv->b != NULL ? conv->b[o] : 0.0f;
    return;
  }
  for (int o = 0; o < conv->cout; o++) {
    const SiConvBn *bn = &conv->bn;
    double scale = (double) bn->gamma[o] / sqrt ((double) bn->var[o] + bn->eps);
    if (w_out != NULL)
      for (size_t i = 0; i < per; i++)
        w_out[o * per + i] = (float) ((double) conv->w[o * per + i] * scale);
    if (b_out != NULL && conv->b == NULL)
      b_out[o] = (float) ((double) bn->beta[o] - (double) bn->mean[o] * scale);
    else if (b_out != NULL)
      b_out[o] = (float) ((double) bn->beta[o] +
          ((double) conv->b[o] - (double) bn->mean[o]) * scale);
  }
}

/* Drops the resident pages of the conv's file tensors (conv->src) once
 * their content has been copied (folded) elsewhere.  The mapping is
 * read-only and private (safetensors.c): clean file pages, which a later
 * read simply faults in again from the file, so this is safe while other
 * threads read the same model.  Rounded out to whole pages (a neighbour's
 * pages may go too: harmless for the same reason).  Advice only. */
static inline void
si_conv_release_pages (const SiConv *conv)
{
#if defined(G_OS_UNIX) && defined(MADV_DONTNEED)
  long page = sysconf (_SC_PAGESIZE);

  for (int i = 0; page > 0 && i < SI_CONV_N_SRC; i++) {
    const SiTensorInfo *t = conv->src[i];
    if (t == NULL || t->nbytes == 0)
      continue;
    uintptr_t lo = (uintptr_t) t->data & ~((uintptr_t) page - 1);
    uintptr_t hi = ((uintptr_t) t->data + t->nbytes + (uintptr_t) page - 1) &
        ~((uintptr_t) page - 1);
    /* a failure leaves the pages resident, nothing else */
    (void) madvise ((void *) lo, hi - lo, MADV_DONTNEED);
  }
#else
  (void) conv;
#endif
}

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
  /* DCNv1 (model-spec 3.2): conv2 (3x3, pad 1, BN) samples its input at
   * positions moved by offsets that conv2_offset (an ordinary 3x3 conv,
   * same stride, pad 1, bias, no BN: 18 * deform_groups outputs) computes
   * from the same input; deform_groups input-channel groups share each
   * set of offsets.  0: conv2 is an ordinary conv. */
  int deform_groups;
  SiConv conv2_offset;
} SiBottleneck;

/* One Swin block (model-spec 3.3): x += WMSA (LN1 (x)) in (shifted)
 * windows, x += FFN (LN2 (x)) with GELU. */
typedef struct
{
  SiNorm norm1, norm2;
  SiLinear qkv;  /* (3C, C), rows [3][heads][head_dim] */
  SiLinear proj; /* (C, C) */
  /* ((2 ws - 1)^2, heads): bias of the relative offset
   * (dy + ws - 1) * (2 ws - 1) + (dx + ws - 1) */
  const float *rel_bias;
  SiLinear fc1, fc2; /* (mlp_ratio C, C), (C, mlp_ratio C) */
  int shift;         /* 0 or ws / 2 (odd blocks) */
} SiSwinBlock;

/* The largest window_size the loader accepts. */
#define SI_SWIN_MAX_WINDOW 64

/* mmdet's SwinTransformer at inference (model-spec 3.3). */
typedef struct
{
  int embed_dims, window_size, mlp_ratio;
  int depths[4], heads[4];
  SiConv patch_embed; /* 4x4 / 4, bias, no BN */
  SiNorm patch_norm;
  SiSwinBlock *blocks[4];
  SiNorm merge_norm[3];     /* LN (4 C_i) of the 2x2 patch merging */
  SiLinear merge_reduce[3]; /* (2 C_i, 4 C_i), no bias */
  SiNorm out_norm[4];       /* norm{i}: the stage's output */
} SiSwin;

typedef enum
{
  SI_BACKBONE_RESNET, /* ResNet and ResNeXt (optionally DCN) */
  SI_BACKBONE_SWIN,
} SiBackboneType;

typedef struct
{
  SiBackboneType type;
  SiSwin swin;       /* SI_BACKBONE_SWIN; the ResNet fields are unused then */
  int depth;         /* 18, 34, 50, 101, 152 */
  bool bottleneck;   /* depth >= 50 */
  int base_channels; /* 64 in official configs */
  int stem_channels;
  int groups;     /* ResNeXt conv2 groups (1: ResNet) */
  int base_width; /* ResNeXt width rule (model-spec 3.2) */
  SiConv stem;    /* 7x7/2, BN folded; ReLU then maxpool 3x3/2 */
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

  GPtrArray *owned; /* buffers the model allocated (F16/BF16/unaligned
                     * tensors converted to float32) */
};

#endif /* SI_MODEL_H */
