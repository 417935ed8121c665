/* decoder.c: the query side of the forward pass: SiDecoder lifetime (stage
 * weights as backend pointers, every activation buffer allocated once for
 * N queries and the largest stage), the initial queries (model-spec 5),
 * the stage loop (6.1, one stage in decoder_stage.c), dumps and the
 * post-processing (7, host part in postprocess.c), on the CPU backend the
 * return of each stage's weight pages after the stage, and on backends
 * with record and replay (CUDA graphs, graph_cache.h) the recorded
 * decoder runs.
 * Shapes use the legend of decoder_stage.h.
 */
#include "decoder_stage.h"
#include "postprocess.h"

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct
{
  guintptr lo, hi; /* page-aligned */
} SiPageRange;

/* Notes the pages of the model mapping that [p, p + bytes) covers (none
 * for weights the loader converted into owned memory). */
static void
note_pages (gpointer user_data, const void *p, size_t bytes)
{
  SiDecoder *dec = user_data;
  const void *base;
  size_t size;
  guintptr page = (guintptr) sysconf (_SC_PAGESIZE), lo, hi, b;
  SiPageRange r;

  si_safetensors_mapping (dec->model->file, &base, &size);
  b = (guintptr) base;
  lo = (guintptr) p;
  hi = lo + bytes;
  if (dec->collecting == NULL || base == NULL || lo < b || hi > b + size ||
      bytes == 0)
    return;
  r.lo = lo / page * page;
  r.hi = (hi + page - 1) / page * page;
  g_array_append_val (dec->collecting, r);
}

static gint
compare_ranges (gconstpointer a, gconstpointer b)
{
  const SiPageRange *x = a, *y = b;
  return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorts and merges overlapping or adjacent ranges. */
static void
merge_ranges (GArray *ranges)
{
  guint n = 0;

  g_array_sort (ranges, compare_ranges);
  for (guint i = 0; i < ranges->len; i++) {
    SiPageRange *r = &g_array_index (ranges, SiPageRange, i);
    SiPageRange *last = n ? &g_array_index (ranges, SiPageRange, n - 1) : NULL;
    if (last != NULL && r->lo <= last->hi)
      last->hi = MAX (last->hi, r->hi);
    else
      g_array_index (ranges, SiPageRange, n++) = *r;
  }
  g_array_set_size (ranges, n);
}

/* clean pages of a read-only private mapping: nothing is lost, a later
 * read maps them again from the page cache.  (Mapping them back with
 * MADV_POPULATE_READ before the stage was measured slower than letting
 * the GEMMs fault them in: decoder 293-308 vs 284-291 ms at R-50.) */
static void
release_stage_pages (SiDecoder *dec, int s)
{
  GArray *ranges = dec->stage_pages ? dec->stage_pages[s] : NULL;

  for (guint i = 0; ranges != NULL && i < ranges->len; i++) {
    const SiPageRange *r = &g_array_index (ranges, SiPageRange, i);
    (void) madvise ((void *) r->lo, r->hi - r->lo, MADV_DONTNEED);
  }
}

void
si_decoder_set_release_weights (SiDecoder *dec, gboolean release)
{
  g_return_if_fail (dec != NULL);
  dec->release_weights = release;
}

/* Host array copy freed with the decoder (arrays of SiLinear / SiNorm). */
static gpointer
host_dup (SiDecoder *dec, gconstpointer src, size_t bytes)
{
  gpointer p = g_memdup2 (src, bytes);
  dec->host_arrays = g_list_prepend (dec->host_arrays, p);
  return p;
}

static gboolean
stage_weights (SiDecoder *dec, SiStage *st, SiLinear *pack, GError **error)
{
  SiLinear *lins[] = { &st->in_proj, &st->out_proj, &st->param_gen, &st->Wv,
    &st->ffn1, &st->ffn2, &st->fc_cls, &st->fc_reg };
  SiLinear *heads[SI_Q1_HEADS];
  SiNorm *norms[] = { &st->attn_norm, &st->Wv_norm, &st->ffn_norm };

  st->subbox_local =
      host_dup (dec, st->subbox_local, st->L * sizeof (SiLinear));
  st->axis_atten = host_dup (dec, st->axis_atten, st->L * sizeof (SiLinear));
  st->cls_fc = host_dup (dec, st->cls_fc, st->n_cls_fcs * sizeof (SiLinear));
  st->cls_ln = host_dup (dec, st->cls_ln, st->n_cls_fcs * sizeof (SiNorm));
  st->reg_fc = host_dup (dec, st->reg_fc, st->n_reg_fcs * sizeof (SiLinear));
  st->reg_ln = host_dup (dec, st->reg_ln, st->n_reg_fcs * sizeof (SiNorm));

  for (guint i = 0; i < G_N_ELEMENTS (lins); i++)
    if (!si_uploads_linear (&dec->uploads, lins[i], error))
      return FALSE;
  si_stage_q1_heads (st, heads);
  if (!si_uploads_linears_stacked (
          &dec->uploads, heads, SI_Q1_HEADS, pack, error))
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (norms); i++)
    if (!si_uploads_norm (&dec->uploads, norms[i], error))
      return FALSE;
  for (int m = 0; m < st->L; m++)
    if (!si_uploads_linear (&dec->uploads, &st->subbox_local[m], error) ||
        !si_uploads_linear (&dec->uploads, &st->axis_atten[m], error))
      return FALSE;
  for (int i = 0; i < st->n_cls_fcs; i++)
    if (!si_uploads_linear (&dec->uploads, &st->cls_fc[i], error) ||
        !si_uploads_norm (&dec->uploads, &st->cls_ln[i], error))
      return FALSE;
  for (int i = 0; i < st->n_reg_fcs; i++)
    if (!si_uploads_linear (&dec->uploads, &st->reg_fc[i], error) ||
        !si_uploads_norm (&dec->uploads, &st->reg_ln[i], error))
      return FALSE;
  return si_uploads_weight (&dec->uploads, &st->iof_tau, st->Ha, error);
}

#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      g_set_error (error, SI_ERROR, SI_ERROR_UNSUPPORTED, __VA_ARGS__);        \
      return FALSE;                                                            \
    }                                                                          \
  } while (0)

/* The size relations the stage code relies on (model-spec 6.0 NOTEs). */
static gboolean
check_sizes (SiDecoder *dec, GError **error)
{
  const SiModel *m = dec->model;

  CHECK (m->use_sigmoid, "decoder: only sigmoid classification is supported");
  CHECK (m->num_stages >= 1 && m->num_stages <= SI_MAX_STAGES,
      "decoder: %d stages (1..%d supported)", m->num_stages, SI_MAX_STAGES);
  for (int s = 0; s < m->num_stages; s++) {
    const SiStage *st = &m->stages[s];
    CHECK (st->C == m->content_dim && st->D == st->C &&
            st->G * st->Dg == st->C && st->C % st->Ha == 0 && st->C % 8 == 0,
        "stage %d: content dim %d, feature dim %d, %d groups, %d heads", s,
        st->C, st->D, st->G, st->Ha);
    CHECK (st->R == st->P * st->K && st->O_tot == st->O,
        "stage %d: R %d != P %d * K %d or O_tot %d != O %d", s, st->R, st->P,
        st->K, st->O_tot, st->O);
    CHECK (st->param_gen.out == st->G * (st->Dg * st->Dg + st->Sg * st->R) &&
            st->mix_bias.out == st->G * (st->Dg + st->O) &&
            st->Wv.in == st->O * st->D && st->fc_cls.out == m->num_classes &&
            st->fc_reg.out == 4 && st->gen_one_d.out == 3 * st->G * st->P &&
            st->gen_double_d.out == 3 * st->K,
        "stage %d: generator sizes do not match the stage sizes", s);
    if (st->reuse) {
      const SiStage *prev = &m->stages[s - 1 >= 0 ? s - 1 : 0];
      CHECK (s >= 1 && st->lim == 1 && 2 * st->Sg == st->O &&
              st->L == s - dec->reuse_st + 1 && prev->R == st->R &&
              prev->Sg >= st->Sg && st->Sg == dec->bank_sg,
          "stage %d: filter reuse with lim %d, Sg %d, O %d, L %d "
          "(only lim 1 with reuse from stage %d is supported)",
          s, st->lim, st->Sg, st->O, st->L, dec->reuse_st);
      CHECK (st->M_score.out == st->G * st->Dg * 2 * st->L &&
              st->M_score_mix_bias.out == st->G * st->Dg * st->L &&
              st->S_score.out == st->G * st->Sg &&
              st->S_score2.out == st->G * st->R,
          "stage %d: reuse score sizes do not match the stage sizes", s);
    } else {
      CHECK (dec->reuse_st > s, "stage %d: no reuse after a reuse stage", s);
    }
  }
  return TRUE;
}

static gboolean
alloc_buffers (SiDecoder *dec, GError **error)
{
  const SiModel *m = dec->model;
  size_t n = m->num_query, c = m->content_dim, nc = m->num_classes;
  size_t pmax = 0, rmax = 0, kmax = 0, pg = 0, mb = 0, ms = 0, mmb = 0;
  size_t rreuse = 0; /* R of the stages that reuse filters (static layers) */
  size_t ss1 = 0, ss2 = 0, off1 = 0, off2 = 0, f = 0, z = 0, ha = 0;
  size_t g = m->stages[0].G, dg = m->stages[0].Dg, nb, dump = 0, pack = 0;

  for (int s = 0; s < m->num_stages; s++) {
    const SiStage *st = &m->stages[s];
    pmax = MAX (pmax, (size_t) st->P);
    rmax = MAX (rmax, (size_t) st->R);
    if (st->reuse)
      rreuse = MAX (rreuse, (size_t) st->R);
    kmax = MAX (kmax, (size_t) st->K);
    pg = MAX (pg, (size_t) st->param_gen.out);
    mb = MAX (mb, (size_t) st->mix_bias.out);
    ms = MAX (ms, (size_t) st->M_score.out);
    mmb = MAX (mmb, (size_t) st->M_score_mix_bias.out);
    ss1 = MAX (ss1, (size_t) st->S_score.out);
    ss2 = MAX (ss2, (size_t) st->S_score2.out);
    off1 = MAX (off1, (size_t) st->gen_one_d.out);
    off2 = MAX (off2, (size_t) st->gen_double_d.out);
    f = MAX (f, (size_t) st->F);
    pack = MAX (pack, (size_t) dec->q1_pack[s].out);
    z = MAX (z, (size_t) st->Wv.in);
    ha = MAX (ha, (size_t) st->Ha);
    CHECK (
        st->G == (int) g, "stage %d: %d groups, stage 0 has %zu", s, st->G, g);
  }
  nb = n * g;
  dec->top_k = MAX (0, MIN (m->max_per_img, (int) (n * nc)));

#define BUF(field, count)                                                      \
  if (!(dec->field = si_uploads_alloc (                                        \
            &dec->uploads, MAX ((size_t) (count), 1), error)))                 \
  return FALSE
  BUF (q, n * c);
  BUF (xyzr, n * 4);
  BUF (a, n * c);
  BUF (qkv, n * 3 * c);
  BUF (attn, 2 * ha * n * n);
  BUF (attn_cat, n * c);
  BUF (tmp_c, n * c);
  BUF (q1, n * c);
  if (pack > 0)
    BUF (heads, n * pack);
  BUF (off1, n * off1);
  BUF (off2, n * off2);
  BUF (pts, n * g * pmax * kmax * 3);
  BUF (x0, nb * rmax * dg);
  BUF (pg, n * pg);
  BUF (mb, n * mb);
  BUF (y, nb * rmax * dg);
  BUF (ms, n * ms);
  BUF (mmb, n * mmb);
  BUF (ss1, n * ss1);
  BUF (ss2, n * ss2);
  BUF (lc, nb * rreuse * dg);
  BUF (ax_in, nb * rreuse * dg);
  BUF (ax_out, nb * rreuse * dg);
  BUF (mmix, nb * dg * dg);
  for (int i = 0; i < dec->max_L; i++)
    BUF (pg_bank[i], n * m->stages[dec->reuse_st - 1 + i].param_gen.out);
  BUF (smix, nb * dec->bank_sg * rreuse);
  BUF (z, n * z);
  BUF (q2, n * c);
  BUF (ffn_h, n * f);
  BUF (br_a, n * c);
  BUF (br_b, n * c);
  BUF (cls, n * nc);
  BUF (delta, n * 4);
  /* the results block: [scores (k) | idx (k) | xyxy (N, 4)], downloaded at
   * once by the post-processing; int32 and float have the same size */
  dec->results_size = (2 * (size_t) dec->top_k + n * 4) * sizeof (float);
  BUF (top_scores, 2 * (size_t) dec->top_k + n * 4);
  dec->top_idx = (int32_t *) (dec->top_scores + dec->top_k);
  dec->xyxy = dec->top_scores + 2 * dec->top_k;
  if (!(dec->top_scratch = si_uploads_alloc (&dec->uploads, 2 * n * nc, error)))
    return FALSE;
#undef BUF

  /* host: the largest dumped tensor, the points permutation, results */
  dump = MAX (n * c, n * nc);
  dump = MAX (dump, nb * rmax * dg);
  dump = MAX (dump, nb * dg * dg);
  dump = MAX (dump, nb * pmax * kmax * 3);
  dump = MAX (dump, (size_t) dec->top_k * 4);
  dec->dump_host = g_new (float, dump);
  dec->dump_host2 = g_new (float, nb *pmax *kmax * 2);
  dec->host_results = g_malloc (dec->results_size);
  dec->dets = g_new0 (SiDetection, MAX (dec->top_k, 1));
  return TRUE;
}

SiDecoder *
si_decoder_new (SiBackend *be, const SiModel *model, GError **error)
{
  SiDecoder *dec;

  g_return_val_if_fail (be != NULL && model != NULL, NULL);

  dec = g_new0 (SiDecoder, 1);
  dec->be = be;
  dec->model = model;
  dec->n_stages = model->num_stages;
  si_uploads_init (&dec->uploads, be);
  dec->uploads.note_host = note_pages;
  dec->uploads.user_data = dec;
  si_graph_cache_init (&dec->graphs, be, "decoder", sizeof (SiDecoderGraphKey));
  dec->reuse_st = model->num_stages;
  for (int s = model->num_stages - 1; s >= 0; s--)
    if (model->stages[s].reuse) {
      dec->reuse_st = s;
      dec->bank_sg = model->stages[s].Sg;
    }
  for (int s = 0; s < model->num_stages; s++)
    dec->max_L = MAX (dec->max_L, model->stages[s].L);

  if (!check_sizes (dec, error))
    goto fail;
  dec->stages = g_new0 (SiStage, dec->n_stages);
  dec->q1_pack = g_new0 (SiLinear, dec->n_stages);
  dec->stage_pages = g_new0 (GArray *, dec->n_stages);
  for (int s = 0; s < dec->n_stages; s++) {
    dec->stages[s] = model->stages[s];
    dec->stage_pages[s] = g_array_new (FALSE, FALSE, sizeof (SiPageRange));
    dec->collecting = dec->stage_pages[s];
    if (!stage_weights (dec, &dec->stages[s], &dec->q1_pack[s], error))
      goto fail;
    merge_ranges (dec->stage_pages[s]);
  }
  dec->collecting = NULL;
  dec->init_content = model->init_content;
  dec->init_boxes = model->init_boxes;
  if (!si_uploads_weight (&dec->uploads, &dec->init_content,
          (size_t) model->num_query * model->content_dim, error) ||
      !si_uploads_weight (&dec->uploads, &dec->init_boxes,
          (size_t) model->num_query * 4, error) ||
      !alloc_buffers (dec, error))
    goto fail;
  return dec;

fail:
  si_decoder_free (&dec);
  return NULL;
}

void
si_decoder_free (SiDecoder **pdec)
{
  SiDecoder *dec;

  if (pdec == NULL || (dec = *pdec) == NULL)
    return;
  si_graph_cache_clear (&dec->graphs);
  si_uploads_clear (&dec->uploads);
  g_list_free_full (dec->host_arrays, g_free);
  g_free (dec->stages);
  g_free (dec->q1_pack);
  for (int s = 0; dec->stage_pages != NULL && s < dec->n_stages; s++)
    if (dec->stage_pages[s] != NULL)
      g_array_unref (dec->stage_pages[s]);
  g_free (dec->stage_pages);
  g_free (dec->dump_host);
  g_free (dec->dump_host2);
  g_free (dec->host_results);
  g_free (dec->dets);
  g_free (dec);
  *pdec = NULL;
}

gboolean
si_decoder_dump (SiDecoder *dec, SiDumpFunc dump, void *user_data,
    const char *name, const float *dev, const int64_t *shape, int ndim,
    GError **error)
{
  size_t count = 1;

  for (int i = 0; i < ndim; i++)
    count *= (size_t) shape[i];
  if (!dec->be->ops->download (
          dec->be, dec->dump_host, dev, count * sizeof (float), error))
    return FALSE;
  dump (name, shape, ndim, dec->dump_host, user_data);
  return TRUE;
}

static gboolean
query_init (SiDecoder *dec, const SiImageInfo *info, SiDumpFunc dump,
    void *user_data, GError **error)
{
  SiBackend *be = dec->be;
  int n = dec->model->num_query, c = dec->model->content_dim;
  float w = (float) info->new_w, h = (float) info->new_h;

  be->ops->layer_norm (
      be, dec->init_content, NULL, NULL, NULL, dec->q, n, c, false);
  be->ops->init_boxes (be, dec->init_boxes, n, w, h, dec->xyzr, dec->xyxy);
  if (dump) {
    const int64_t s_c[] = { 1, n, c }, s_b[] = { 1, n, 4 }, s_w[] = { 1, 1, 4 };
    const float whwh[4] = { w, h, w, h };
    if (!si_decoder_dump (
            dec, dump, user_data, "init.content", dec->q, s_c, 3, error) ||
        !si_decoder_dump (
            dec, dump, user_data, "init.xyzr", dec->xyzr, s_b, 3, error) ||
        !si_decoder_dump (
            dec, dump, user_data, "init.xyxy", dec->xyxy, s_b, 3, error))
      return FALSE;
    dump ("init.imgs_whwh", s_w, 3, whwh, user_data);
  }
  return TRUE;
}

/* ---- record and replay ---- */

G_STATIC_ASSERT (sizeof (SiDecoderGraphKey) <= SI_GRAPH_KEY_MAX);

typedef struct
{
  SiDecoder *dec;
  const float *const *levels;
  const int *level_h, *level_w;
  const SiImageInfo *info;
} SiDecoderWork;

/* The recorded work: query_init and every stage, without dumps (nothing
 * then syncs, downloads or allocates). */
static gboolean
decoder_work (void *data, GError **error)
{
  SiDecoderWork *w = data;
  SiDecoder *dec = w->dec;

  if (!query_init (dec, w->info, NULL, NULL, error))
    return FALSE;
  for (int s = 0; s < dec->n_stages; s++)
    if (!si_decoder_stage_run (
            dec, s, w->levels, w->level_h, w->level_w, NULL, NULL, error))
      return FALSE;
  return TRUE;
}

gboolean
si_decoder_run (SiDecoder *dec, const float *const levels[SI_NUM_LEVELS],
    const int level_h[SI_NUM_LEVELS], const int level_w[SI_NUM_LEVELS],
    const SiImageInfo *info, SiTimings *timings, SiDumpFunc dump,
    void *user_data, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();

  g_return_val_if_fail (dec != NULL && levels != NULL && info != NULL, FALSE);
  for (int l = 0; l < SI_NUM_LEVELS; l++)
    if (levels[l] == NULL || level_h[l] <= 0 || level_w[l] <= 0) {
      g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
          "decoder: level %d is empty (%d x %d)", l, level_h[l], level_w[l]);
      return FALSE;
    }
  if (info->new_w <= 0 || info->new_h <= 0) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "decoder: image size %d x %d", info->new_w, info->new_h);
    return FALSE;
  }

  if (dump == NULL) {
    SiDecoderGraphKey key;
    SiDecoderWork work = { dec, levels, level_h, level_w, info };
    gboolean replayed;

    memset (&key, 0, sizeof (key)); /* compared bytewise */
    for (int l = 0; l < SI_NUM_LEVELS; l++) {
      key.levels[l] = levels[l];
      key.level_h[l] = level_h[l];
      key.level_w[l] = level_w[l];
    }
    key.new_w = info->new_w;
    key.new_h = info->new_h;
    if (!si_graph_cache_replay (
            &dec->graphs, &key, decoder_work, &work, &replayed, error))
      return FALSE;
    if (replayed) {
      /* one figure for the whole decoder (SiTimings) */
      if (!si_backend_lap (
              dec->be, &t0, timings ? &timings->query_init : NULL, error))
        return FALSE;
      if (timings) {
        memset (timings->stage, 0, sizeof (timings->stage));
        timings->num_stages = 0;
      }
      return TRUE;
    }
  }

  if (!query_init (dec, info, dump, user_data, error) ||
      !si_backend_lap (
          dec->be, &t0, timings ? &timings->query_init : NULL, error))
    return FALSE;
  for (int s = 0; s < dec->n_stages; s++) {
    if (!si_decoder_stage_run (
            dec, s, levels, level_h, level_w, dump, user_data, error))
      return FALSE;
    if (dec->release_weights)
      release_stage_pages (dec, s);
    if (!si_backend_lap (
            dec->be, &t0, timings ? &timings->stage[s] : NULL, error))
      return FALSE;
  }
  if (timings)
    timings->num_stages = dec->n_stages;
  return TRUE;
}

static void
dump_detections (SiDecoder *dec, SiDumpFunc dump, void *user_data)
{
  int k = dec->top_k;
  float *h = dec->dump_host;
  const int64_t s_box[] = { k, 4 }, s_k[] = { k };

  for (int i = 0; i < k; i++)
    memcpy (h + 4 * i, dec->dets[i].box, 4 * sizeof (float));
  dump ("det_boxes", s_box, 2, h, user_data);
  for (int i = 0; i < k; i++)
    h[i] = dec->dets[i].score;
  dump ("det_scores", s_k, 1, h, user_data);
  for (int i = 0; i < k; i++)
    h[i] = (float) dec->dets[i].class_id;
  dump ("det_labels", s_k, 1, h, user_data);
  for (int i = 0; i < k; i++)
    h[i] = (float) dec->dets[i].query_index;
  dump ("det_query_index", s_k, 1, h, user_data);
}

gboolean
si_decoder_postprocess (SiDecoder *dec, const SiImageInfo *info,
    const SiRunParams *params, SiTimings *timings, SiDumpFunc dump,
    void *user_data, const SiDetection **out, size_t *n_out, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  SiBackend *be;
  const SiModel *m;
  int n, k;

  g_return_val_if_fail (dec != NULL && info != NULL && params != NULL &&
          out != NULL && n_out != NULL,
      FALSE);
  be = dec->be;
  m = dec->model;
  n = m->num_query;
  k = dec->top_k;

  be->ops->topk_sigmoid (be, dec->cls, n * m->num_classes, k, dec->top_scores,
      dec->top_idx, dec->top_scratch);
  if (!be->ops->download (
          be, dec->host_results, dec->top_scores, dec->results_size, error))
    return FALSE;
  si_postprocess_detections (m, dec->host_results,
      (const int32_t *) (dec->host_results + k), k, dec->host_results + 2 * k,
      info, dec->dets);
  if (dump)
    dump_detections (dec, dump, user_data);
  *out = dec->dets;
  *n_out = si_postprocess_select (dec->dets, k, params);
  if (timings)
    timings->postprocess = (g_get_monotonic_time () - t0) / 1000.0;
  return TRUE;
}
