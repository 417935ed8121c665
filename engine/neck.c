/* neck.c: ChannelMapping (model-spec 4): F_l = GN (X_l W_l^T + b_l) with
 * X_l (HW, Cin_l) NHWC, W_l (D, Cin_l), one GroupNorm (32 groups, affine)
 * shared by the four levels; no activation, no top-down path.
 */
#include "neck.h"

#include <string.h>

#include "gemm.h"
#include "graph_cache.h"

struct _SiNeckNet
{
  SiBackend *be;
  int cin[SI_NUM_LEVELS];
  int d;                   /* D output channels */
  int groups;              /* 32 */
  float *w[SI_NUM_LEVELS]; /* (D, Cin_l) backend memory */
  float *b[SI_NUM_LEVELS]; /* (D) */
  float *gamma, *beta;     /* (D) */
  SiGraphCache graphs;
};

/* What a recorded neck run depends on: the arguments of si_neck_run. */
typedef struct
{
  const float *in[SI_NUM_LEVELS];
  int h[SI_NUM_LEVELS], w[SI_NUM_LEVELS];
  float *scratch;
  float *out[SI_NUM_LEVELS];
} SiNeckGraphKey;

G_STATIC_ASSERT (sizeof (SiNeckGraphKey) <= SI_GRAPH_KEY_MAX);

static float *
upload (SiBackend *be, const float *src, size_t n, GError **error)
{
  float *dst;

  if (src == NULL)
    return NULL;
  dst = be->ops->alloc (be, n * sizeof (float), error);
  if (dst && !be->ops->upload (be, dst, src, n * sizeof (float), error)) {
    be->ops->free (be, dst);
    return NULL;
  }
  return dst;
}

SiNeckNet *
si_neck_net_new (SiBackend *be, const SiModel *model, GError **error)
{
  const SiNeck *nk = &model->neck;
  SiNeckNet *nn = g_new0 (SiNeckNet, 1);

  nn->be = be;
  si_graph_cache_init (&nn->graphs, be, "neck", sizeof (SiNeckGraphKey));
  nn->d = nk->out_channels;
  nn->groups = nk->gn_groups;
  if (nn->groups <= 0 || nn->d % nn->groups) {
    g_set_error (error, SI_ERROR, SI_ERROR_CONFIG,
        "neck: %d channels do not split into %d groups", nn->d, nn->groups);
    goto fail;
  }
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    const SiConv *cv = &nk->lateral[l];
    if (cv->kh != 1 || cv->kw != 1 || cv->stride != 1 || cv->groups != 1 ||
        cv->cout != nn->d || cv->b == NULL) {
      g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED,
          "neck: lateral conv %d is not a 1x1 conv to %d channels with bias", l,
          nn->d);
      goto fail;
    }
    nn->cin[l] = cv->cin;
    if (!(nn->w[l] = upload (be, cv->w, (size_t) cv->cout * cv->cin, error)) ||
        !(nn->b[l] = upload (be, cv->b, cv->cout, error)))
      goto fail;
  }
  if (nk->gn.gamma &&
      (!(nn->gamma = upload (be, nk->gn.gamma, nn->d, error)) ||
          !(nn->beta = upload (be, nk->gn.beta, nn->d, error))))
    goto fail;
  return nn;

fail:
  si_neck_net_free (&nn);
  return NULL;
}

void
si_neck_net_free (SiNeckNet **pnn)
{
  SiNeckNet *nn = pnn ? *pnn : NULL;

  if (nn == NULL)
    return;
  si_graph_cache_clear (&nn->graphs);
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    if (nn->w[l])
      nn->be->ops->free (nn->be, nn->w[l]);
    if (nn->b[l])
      nn->be->ops->free (nn->be, nn->b[l]);
  }
  if (nn->gamma)
    nn->be->ops->free (nn->be, nn->gamma);
  if (nn->beta)
    nn->be->ops->free (nn->be, nn->beta);
  g_free (nn);
  *pnn = NULL;
}

/* The ops of si_neck_run (the work a recording holds). */
static void
neck_ops (SiNeckNet *nn, const float *const in[SI_NUM_LEVELS],
    const int h[SI_NUM_LEVELS], const int w[SI_NUM_LEVELS], float *scratch,
    float *const out[SI_NUM_LEVELS])
{
  SiBackend *be = nn->be;

  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    int hw = h[l] * w[l];
    const float *x = in[l];
    /* the one layout change after the backbone: C_l -> NHWC (HW, Cin) */
    if (be->ops->map_to_nhwc) {
      be->ops->map_to_nhwc (be, in[l], h[l], w[l], nn->cin[l], scratch);
      x = scratch;
    } else if (in[l] == out[l]) {
      be->ops->copy (be, scratch, in[l], sizeof (float) * hw * nn->cin[l]);
      x = scratch;
    }
    /* (HW, D) = (HW, Cin) (Cin, D): W stored (D, Cin) -> trans_b */
    SiGemm g = {
      .trans_a = false,
      .trans_b = true,
      .m = hw,
      .n = nn->d,
      .k = nn->cin[l],
      .alpha = 1.0f,
      .beta = 0.0f,
      .a = x,
      .lda = nn->cin[l],
      .b = nn->w[l],
      .ldb = nn->cin[l],
      .c = out[l],
      .ldc = nn->d,
    };
    be->ops->gemm (be, &g);
    be->ops->group_norm (be, out[l], hw, nn->d, nn->groups, nn->b[l], nn->gamma,
        nn->beta, 1e-5f, out[l]);
  }
}

typedef struct
{
  SiNeckNet *nn;
  const SiNeckGraphKey *key;
} SiNeckWork;

static gboolean
neck_work (void *data, GError **error)
{
  SiNeckWork *work = data;
  const SiNeckGraphKey *k = work->key;

  (void) error;
  neck_ops (work->nn, k->in, k->h, k->w, k->scratch, k->out);
  return TRUE;
}

gboolean
si_neck_run (SiNeckNet *nn, const float *const in[SI_NUM_LEVELS],
    const int h[SI_NUM_LEVELS], const int w[SI_NUM_LEVELS], float *scratch,
    float *const out[SI_NUM_LEVELS], GError **error)
{
  SiNeckGraphKey key;
  SiNeckWork work = { nn, &key };
  gboolean replayed;

  memset (&key, 0, sizeof (key)); /* compared bytewise */
  for (int l = 0; l < SI_NUM_LEVELS; l++) {
    key.in[l] = in[l];
    key.h[l] = h[l];
    key.w[l] = w[l];
    key.out[l] = out[l];
  }
  key.scratch = scratch;
  if (!si_graph_cache_replay (
          &nn->graphs, &key, neck_work, &work, &replayed, error))
    return FALSE;
  if (!replayed)
    neck_ops (nn, in, h, w, scratch, out);
  return TRUE;
}
