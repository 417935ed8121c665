/* decoder_stage.h: state shared by decoder.c (buffers, stage loop, dumps)
 * and decoder_stage.c (one StageInteractor stage, model-spec 6.2-6.9).
 * Internal to engine/.
 *
 * Legend: N queries, C content dim (= D), G groups, Dg = C/G, Ha heads,
 * P first-level points, K sub-points, R = P*K, O out points, Sg generated
 * S rows, L reused filters, F FFN width, NC classes, B = N*G.
 * "max" sizes are the maxima over the stages.
 */
#ifndef SI_DECODER_STAGE_H
#define SI_DECODER_STAGE_H

#include "decoder.h"
#include "graph_cache.h"
#include "uploads.h"

/* What a recorded decoder run (the query init and every stage, replayed
 * as one graph) depends on besides the decoder's own buffers and weights:
 * the values the ops took from the host at record time (the neck levels'
 * addresses and sizes, the image size given to init_boxes by value). */
typedef struct
{
  const float *levels[SI_NUM_LEVELS];
  int level_h[SI_NUM_LEVELS];
  int level_w[SI_NUM_LEVELS];
  int new_w, new_h;
} SiDecoderGraphKey;

/* The Linears on q1 (the attention output) besides param_gen, in the
 * order of their columns in a packed GEMM (SiDecoder.q1_pack): sampling
 * offsets, mixing biases, then the filter reuse's scores (zero-sized in
 * stages without reuse). */
#define SI_Q1_HEADS 7
static inline void
si_stage_q1_heads (SiStage *st, SiLinear *heads[SI_Q1_HEADS])
{
  heads[0] = &st->gen_one_d;
  heads[1] = &st->gen_double_d;
  heads[2] = &st->mix_bias;
  heads[3] = &st->M_score;
  heads[4] = &st->M_score_mix_bias;
  heads[5] = &st->S_score;
  heads[6] = &st->S_score2;
}

struct _SiDecoder
{
  SiBackend *be;
  const SiModel *model;
  int n_stages;
  SiStage *stages;    /* weights as backend pointers (views on the CPU) */
  SiUploads uploads;  /* backend allocations (buffers, uploaded weights) */
  GList *host_arrays; /* host copies of the per-stage SiLinear arrays */
  int reuse_st;       /* first stage that reuses filters (num_stages: none) */
  int max_L;          /* bank slots for M */
  int bank_sg;        /* rows of the banked S (Sg of the reuse stages) */
  /* per stage, the q1 heads' weights and biases stacked in one upload
   * (out = the sum of theirs), so that one GEMM makes them all into
   * dec->heads; w NULL where they stay apart (the CPU: weights used in
   * place in the model's mapping) */
  SiLinear *q1_pack;

  /* CPU backend: page ranges (SiPageRange) of the model mapping that each
   * stage reads, given back to the page cache after the stage when
   * release_weights is set (si_decoder_set_release_weights) */
  GArray **stage_pages; /* n_stages arrays */
  GArray *collecting;   /* the stage's array while its weights are set up */
  gboolean release_weights;

  /* Backends with record and replay (graph_cache.h): si_decoder_run
   * without a dump records the query init and the stages once per
   * SiDecoderGraphKey and replays them afterwards. */
  SiGraphCache graphs;

  /* device copies of the query generator parameters */
  const float *init_content; /* (N, C) */
  const float *init_boxes;   /* (N, 4) */

  /* activations (backend memory) */
  float *q;        /* (N, C) content: stage input, then stage output */
  float *xyzr;     /* (N, 4) */
  float *xyxy;     /* (N, 4) in the results block */
  float *a;        /* (N, C) q + pe */
  float *qkv;      /* (N, 3C) */
  float *attn;     /* (2, Ha, N, N) self_attention's scratch */
  float *attn_cat; /* (N, C) heads concatenated */
  float *tmp_c;    /* (N, C) projection outputs before LN */
  float *q1;       /* (N, C) attention output */
  float *heads;    /* (N, max q1_pack.out): packed q1 heads */
  float *off1;     /* (N, 3*G*Pmax) */
  float *off2;     /* (N, 3*K) */
  float *pts;      /* (N, G, Pmax, K, 3) */
  float *x0;       /* (B, Rmax, Dg) sampled features, then cascade residual */
  float *pg;       /* (N, G*(Dg*Dg + Sg*R)) max over stages */
  /* the bank (model-spec 6.6 (f)): stage reuse_st-1+i's pg in slot i <
   * max_L (decoder_stage.c, stage_pg) */
  float *pg_bank[SI_MAX_STAGES];
  float *mb;         /* (N, G*(Dg + O)) */
  float *y;          /* (B, Rmax, Dg) */
  float *ms;         /* (N, G*Dg*2*Lmax) */
  float *mmb;        /* (N, G*Lmax*Dg) */
  float *ss1;        /* (N, G*Sg) */
  float *ss2;        /* (N, G*Rmax) */
  float *lc;         /* (B, R, Dg) local layer out (R of reuse stages) */
  float *ax_in;      /* (B, K, P, Dg) axis layer in */
  float *ax_out;     /* (B, K, P, Dg) axis layer out */
  float *mmix;       /* (B, Dg, Dg) */
  float *smix;       /* (B, bank_sg, R) */
  float *z;          /* (B, O, Dg) = (N, O*D) */
  float *q2;         /* (N, C) */
  float *ffn_h;      /* (N, F) */
  float *br_a;       /* (N, C) branch hidden */
  float *br_b;       /* (N, C) */
  float *cls;        /* (N, NC) */
  float *delta;      /* (N, 4) */
  float *top_scores; /* (k) start of the results block */
  int32_t *top_idx;  /* (k) in the results block */
  void *top_scratch; /* N*NC*8 bytes */

  /* host */
  float *dump_host;    /* largest dumped tensor */
  float *dump_host2;   /* (G, N*Pmax, K, 2) */
  float *host_results; /* the results block: scores, idx, xyxy */
  size_t results_size; /* bytes */
  SiDetection *dets;   /* (k) */
  int top_k;
};

/* Dumps one backend tensor (downloads it into dec->dump_host). */
gboolean si_decoder_dump (SiDecoder *dec, SiDumpFunc dump, void *user_data,
    const char *name, const float *dev, const int64_t *shape, int ndim,
    GError **error);

/* Runs stage s on dec->q / dec->xyzr (updated in place) with the neck
 * levels; dumps stage{s}.* when dump is set. */
gboolean si_decoder_stage_run (SiDecoder *dec, int s,
    const float *const levels[SI_NUM_LEVELS], const int level_h[SI_NUM_LEVELS],
    const int level_w[SI_NUM_LEVELS], SiDumpFunc dump, void *user_data,
    GError **error);

#endif /* SI_DECODER_STAGE_H */
