/* conv_cpu.c: 2-D convolution with BN folded, bias, residual sum, ReLU (the
 * ResNet backbone).  si_conv2d_reference (NHWC plain loops) is the
 * definition; the fast path runs cached oneDNN primitives on the map layout
 * of backend.h (blocked (C/16, H, W, 16), Winograd for 3x3 stride 1, ReLU and
 * the sum fused as post-ops, weights folded into a temporary and reordered
 * once: the reordered copy is the only one kept). */
#include "si-config.h"

#include "backend_cpu.h"

#include <stdlib.h>
#include <string.h>
#ifdef SI_HAVE_DNNL
#include <dnnl.h>
#endif

#include "si-math.h"

#define CONV_CACHE 8

#ifdef SI_HAVE_DNNL
static void *
aligned_try_alloc (size_t bytes)
{
  void *p = NULL;
  if (posix_memalign (&p, 64, bytes ? bytes : 64) != 0)
    return NULL;
  return p;
}

typedef enum
{
  SRC_COPY_NONE,
  /* a (cin, H, W) copy of an NHWC input with cin % 16 != 0: oneDNN's
   * fast first-layer kernels want plain NCHW */
  SRC_COPY_NCHW,
  /* an NHWC copy of a blocked input (see plan_entry) */
  SRC_COPY_NHWC,
} SrcCopy;

typedef struct
{
  int h, w;
  bool acc, relu, nhwc_maps;
  dnnl_primitive_t prim;
  dnnl_memory_t src, wei, bias, dst, scratch;
  size_t scratch_bytes;
  /* The copies live in the backend's shared scratch area after the
   * scratchpad.  dst_copy: the primitive writes an NHWC copy of a blocked
   * output (filled from it first when accumulating), converted after. */
  SrcCopy src_copy;
  bool dst_copy;
  size_t src_copy_bytes, dst_copy_bytes;
  char impl[64]; /* oneDNN's name of the kernel, for logs and tests */
} ConvEntry;

typedef struct
{
  dnnl_memory_desc_t md;
  void *data;
} ConvWeights;
#endif

struct _SiConvPlan
{
  SiConv conv; /* geometry and the model's views (raw conv weight, BN) */
  float *b;    /* (cout) folded bias, owned */
  /* The plain-loop path: conv with BN folded, w (cout, cin/groups, kh, kw)
   * owned and made at its first use (w NULL until then; a test path). */
  SiConv folded;
#ifdef SI_HAVE_DNNL
  ConvEntry cache[CONV_CACHE];
  int n_cache, next_evict;
  ConvWeights weights[CONV_CACHE]; /* one per layout asked for */
  int n_weights;
  const ConvEntry *last; /* the entry of the last run */
#endif
};

/* cv: a conv without BN (its w and b are used as they are; b NULL: no
 * bias); the plan passes its folded copy. */
void
si_conv2d_reference (const SiConv *cv, const float *x, int h, int w, float *y,
    bool accumulate, bool relu)
{
  int ho = (h + 2 * cv->pad - cv->kh) / cv->stride + 1;
  int wo = (w + 2 * cv->pad - cv->kw) / cv->stride + 1;
  int cin_g = cv->cin / cv->groups, cout_g = cv->cout / cv->groups;

#pragma omp parallel for schedule(static)
  for (int oy = 0; oy < ho; oy++) {
    for (int ox = 0; ox < wo; ox++) {
      float *o = y + ((size_t) oy * wo + ox) * cv->cout;
      for (int co = 0; co < cv->cout; co++) {
        int g = co / cout_g;
        const float *wc = cv->w + (size_t) co * cin_g * cv->kh * cv->kw;
        float acc = cv->b != NULL ? cv->b[co] : 0.0f;
        for (int ky = 0; ky < cv->kh; ky++) {
          int iy = oy * cv->stride - cv->pad + ky;
          if (iy < 0 || iy >= h)
            continue;
          for (int kx = 0; kx < cv->kw; kx++) {
            int ix = ox * cv->stride - cv->pad + kx;
            if (ix < 0 || ix >= w)
              continue;
            const float *s = x + ((size_t) iy * w + ix) * cv->cin + g * cin_g;
            for (int ci = 0; ci < cin_g; ci++)
              acc += wc[((size_t) ci * cv->kh + ky) * cv->kw + kx] * s[ci];
          }
        }
        if (accumulate)
          acc += o[co];
        o[co] = relu ? si_relu (acc) : acc;
      }
    }
  }
}

SiConvPlan *
si_conv_prepare_cpu (SiBackend *be, const SiConv *conv, GError **error)
{
  SiConvPlan *plan;

  if (conv->w == NULL || conv->groups < 1 || conv->cout < 1 ||
      conv->cin % conv->groups || conv->cout % conv->groups ||
      conv->stride < 1) {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "conv: bad description (%d -> %d, %dx%d, groups %d)", conv->cin,
        conv->cout, conv->kh, conv->kw, conv->groups);
    return NULL;
  }
  plan = g_new0 (SiConvPlan, 1);
  plan->conv = *conv;
  plan->b = g_try_new (float, conv->cout);
  if (plan->b == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "conv: cannot allocate %d bias floats", conv->cout);
    g_free (plan);
    return NULL;
  }
  /* the weight is folded when it is reordered (first frame) */
  si_conv_fold (conv, NULL, plan->b);
  si_conv_release_pages (conv);
  plan->folded = *conv;
  plan->folded.w = NULL;
  plan->folded.b = plan->b;
  memset (&plan->folded.bn, 0, sizeof (plan->folded.bn));
  memset (plan->folded.src, 0, sizeof (plan->folded.src));
  return plan;
}

/* The conv's weight with BN folded, (cout, cin/groups, kh, kw): the model's
 * view itself when there is no BN, else a new buffer in *tmp that the
 * caller frees (then si_conv_release_pages: the raw pages are dead). */
static const float *
folded_weights (const SiConv *cv, float **tmp, GError **error)
{
  *tmp = NULL;
  if (!si_conv_has_bn (cv))
    return cv->w;
  *tmp = g_try_new (float, si_conv_weight_numel (cv));
  if (*tmp == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
        "conv: cannot allocate %zu floats to fold the weights",
        si_conv_weight_numel (cv));
    return NULL;
  }
  si_conv_fold (cv, *tmp, NULL);
  return *tmp;
}

#ifdef SI_HAVE_DNNL
static void
entry_clear (ConvEntry *e)
{
  if (e->prim)
    dnnl_primitive_destroy (e->prim);
  if (e->src)
    dnnl_memory_destroy (e->src);
  if (e->wei)
    dnnl_memory_destroy (e->wei);
  if (e->bias)
    dnnl_memory_destroy (e->bias);
  if (e->dst)
    dnnl_memory_destroy (e->dst);
  if (e->scratch)
    dnnl_memory_destroy (e->scratch);
  memset (e, 0, sizeof (*e));
}
#endif

void
si_conv_release_cpu (SiBackend *be, SiConvPlan *plan)
{
  if (plan == NULL)
    return;
#ifdef SI_HAVE_DNNL
  for (int i = 0; i < plan->n_cache; i++)
    entry_clear (&plan->cache[i]);
  for (int i = 0; i < plan->n_weights; i++)
    free (plan->weights[i].data);
#endif
  if (plan->folded.w != plan->conv.w)
    g_free ((float *) plan->folded.w);
  g_free (plan->b);
  g_free (plan);
}

#ifdef SI_HAVE_DNNL

#define DNNL_TRY(call, what)                                                   \
  do {                                                                         \
    dnnl_status_t st_ = (call);                                                \
    if (st_ != dnnl_success) {                                                 \
      g_set_error (error, SI_ERROR, SI_ERROR_BACKEND,                          \
          "oneDNN: %s failed (status %d)", what, (int) st_);                   \
      goto fail;                                                               \
    }                                                                          \
  } while (0)

/* Weights in the layout md, reordered from the host (g)oihw once. */
static void *
plan_weights (SiConvPlan *plan, SiCpuBackend *cpu, const dnnl_memory_desc_t *md,
    GError **error)
{
  const SiConv *cv = &plan->conv;
  dnnl_engine_t eng = cpu->dnnl_engine;
  dnnl_memory_desc_t user_md;
  dnnl_primitive_desc_t rpd = NULL;
  dnnl_primitive_t reorder = NULL;
  dnnl_memory_t from = NULL, to = NULL;
  void *data = NULL;
  float *tmp = NULL;
  const float *folded;

  for (int i = 0; i < plan->n_weights; i++)
    if (dnnl_memory_desc_equal (&plan->weights[i].md, md))
      return plan->weights[i].data;
  if (plan->n_weights == CONV_CACHE) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_BACKEND, "conv: too many weight layouts");
    return NULL;
  }
  if (cv->groups == 1) {
    dnnl_dims_t d = { cv->cout, cv->cin, cv->kh, cv->kw };
    DNNL_TRY (
        dnnl_memory_desc_init_by_tag (&user_md, 4, d, dnnl_f32, dnnl_oihw),
        "weights md");
  } else {
    dnnl_dims_t d = { cv->groups, cv->cout / cv->groups, cv->cin / cv->groups,
      cv->kh, cv->kw };
    DNNL_TRY (
        dnnl_memory_desc_init_by_tag (&user_md, 5, d, dnnl_f32, dnnl_goihw),
        "weights md");
  }
  data = aligned_try_alloc (dnnl_memory_desc_get_size (md));
  if (data == NULL) {
    g_set_error (
        error, SI_ERROR, SI_ERROR_NO_MEMORY, "conv: cannot allocate weights");
    return NULL;
  }
  if ((folded = folded_weights (cv, &tmp, error)) == NULL)
    goto fail;
  DNNL_TRY (
      dnnl_memory_create (&from, &user_md, eng, (void *) folded), "memory");
  DNNL_TRY (dnnl_memory_create (&to, md, eng, data), "memory");
  DNNL_TRY (
      dnnl_reorder_primitive_desc_create (&rpd, &user_md, eng, md, eng, NULL),
      "reorder pd");
  DNNL_TRY (dnnl_primitive_create (&reorder, rpd), "reorder");
  {
    dnnl_exec_arg_t args[2] = { { DNNL_ARG_FROM, from }, { DNNL_ARG_TO, to } };
    DNNL_TRY (
        dnnl_primitive_execute (reorder, cpu->dnnl_stream, 2, args), "reorder");
    DNNL_TRY (dnnl_stream_wait (cpu->dnnl_stream), "stream wait");
  }
  dnnl_primitive_destroy (reorder);
  dnnl_primitive_desc_destroy (rpd);
  dnnl_memory_destroy (from);
  dnnl_memory_destroy (to);
  g_free (tmp);
  si_conv_release_pages (cv);
  plan->weights[plan->n_weights].md = *md;
  plan->weights[plan->n_weights].data = data;
  plan->n_weights++;
  return data;

fail:
  if (reorder)
    dnnl_primitive_destroy (reorder);
  if (rpd)
    dnnl_primitive_desc_destroy (rpd);
  if (from)
    dnnl_memory_destroy (from);
  if (to)
    dnnl_memory_destroy (to);
  free (data);
  g_free (tmp);
  return NULL;
}

static size_t
round_up_64 (size_t bytes)
{
  return (bytes + 63) / 64 * 64;
}

/* Offsets of an entry's input and output copies in the shared scratch
 * area: [scratchpad | input copy | output copy]. */
static size_t
src_copy_offset (const ConvEntry *e)
{
  return round_up_64 (e->scratch_bytes);
}

static size_t
dst_copy_offset (const ConvEntry *e)
{
  return src_copy_offset (e) + round_up_64 (e->src_copy_bytes);
}

/* The convolution's primitive descriptor with source and destination in
 * the layouts src_tag and dst_tag; Winograd when asked and available. */
static gboolean
create_pd (SiConvPlan *plan, SiCpuBackend *cpu, int h, int w,
    dnnl_format_tag_t src_tag, dnnl_format_tag_t dst_tag, bool try_winograd,
    const_dnnl_primitive_attr_t attr, dnnl_primitive_desc_t *pd, bool *winograd,
    GError **error)
{
  const SiConv *cv = &plan->conv;
  int ho = (h + 2 * cv->pad - cv->kh) / cv->stride + 1;
  int wo = (w + 2 * cv->pad - cv->kw) / cv->stride + 1;
  dnnl_memory_desc_t src_md, wei_md, bias_md, dst_md;
  dnnl_convolution_desc_t desc, wdesc;
  dnnl_dims_t sd = { 1, cv->cin, h, w }, dd = { 1, cv->cout, ho, wo };
  dnnl_dims_t bd = { cv->cout };
  dnnl_dims_t strides = { cv->stride, cv->stride };
  dnnl_dims_t pad = { cv->pad, cv->pad };
  /* right/bottom padding so that the output size matches exactly */
  dnnl_dims_t pad_r = { (ho - 1) * cv->stride + cv->kh - h - cv->pad,
    (wo - 1) * cv->stride + cv->kw - w - cv->pad };

  *pd = NULL;
  *winograd = false;
  DNNL_TRY (dnnl_memory_desc_init_by_tag (&src_md, 4, sd, dnnl_f32, src_tag),
      "src md");
  DNNL_TRY (dnnl_memory_desc_init_by_tag (&dst_md, 4, dd, dnnl_f32, dst_tag),
      "dst md");
  DNNL_TRY (dnnl_memory_desc_init_by_tag (&bias_md, 1, bd, dnnl_f32, dnnl_x),
      "bias md");
  if (cv->groups == 1) {
    dnnl_dims_t wd = { cv->cout, cv->cin, cv->kh, cv->kw };
    DNNL_TRY (dnnl_memory_desc_init_by_tag (
                  &wei_md, 4, wd, dnnl_f32, dnnl_format_tag_any),
        "weights md");
  } else {
    dnnl_dims_t wd = { cv->groups, cv->cout / cv->groups, cv->cin / cv->groups,
      cv->kh, cv->kw };
    DNNL_TRY (dnnl_memory_desc_init_by_tag (
                  &wei_md, 5, wd, dnnl_f32, dnnl_format_tag_any),
        "weights md");
  }
  /* Winograd F(4x4, 3x3) for 3x3 stride-1 convs on blocked maps:
   * about twice as fast as the direct conv on AVX-512; direct when the
   * library has no Winograd kernel for the shape. */
  if (try_winograd && cv->kh == 3 && cv->kw == 3 && cv->stride == 1 &&
      cv->groups == 1 && (long) cv->cin * cv->cout <= cpu->winograd_max_cc &&
      dnnl_convolution_forward_desc_init (&wdesc, dnnl_forward_inference,
          dnnl_convolution_winograd, &src_md, &wei_md, &bias_md, &dst_md,
          strides, pad, pad_r) == dnnl_success &&
      dnnl_primitive_desc_create (pd, &wdesc, attr, cpu->dnnl_engine, NULL) ==
          dnnl_success) {
    *winograd = true;
    return TRUE;
  }
  *pd = NULL;
  DNNL_TRY (dnnl_convolution_forward_desc_init (&desc, dnnl_forward_inference,
                dnnl_convolution_direct, &src_md, &wei_md, &bias_md, &dst_md,
                strides, pad, pad_r),
      "convolution desc");
  DNNL_TRY (
      dnnl_primitive_desc_create (pd, &desc, attr, cpu->dnnl_engine, NULL),
      "convolution pd");
  return TRUE;

fail:
  *pd = NULL;
  return FALSE;
}

/* TRUE when oneDNN picked its plain-loop reference kernel for pd. */
static bool
pd_is_reference (const_dnnl_primitive_desc_t pd)
{
  const char *impl = NULL;

  return dnnl_primitive_desc_query (pd, dnnl_query_impl_info_str, 0, &impl) ==
      dnnl_success &&
      impl != NULL && strncmp (impl, "ref", 3) == 0;
}

static ConvEntry *
plan_entry (SiConvPlan *plan, SiCpuBackend *cpu, int h, int w, bool acc,
    bool relu, GError **error)
{
  const SiConv *cv = &plan->conv;
  dnnl_engine_t eng = cpu->dnnl_engine;
  int ho = (h + 2 * cv->pad - cv->kh) / cv->stride + 1;
  int wo = (w + 2 * cv->pad - cv->kw) / cv->stride + 1;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t pd = NULL;
  ConvEntry *e;
  void *wdata;
  bool winograd = false;
  size_t need;
  /* map layout (backend.h): blocked for C % 16 == 0 unless nhwc_maps */
  bool bin = !cpu->nhwc_maps && cv->cin % 16 == 0;
  bool bout = !cpu->nhwc_maps && cv->cout % 16 == 0;
  /* plain-NCHW copy of a small-C NHWC input (first layer) */
  bool nchw_in = bout && cv->cin % 16 != 0;

  for (int i = 0; i < plan->n_cache; i++) {
    e = &plan->cache[i];
    if (e->h == h && e->w == w && e->acc == acc && e->relu == relu &&
        e->nhwc_maps == cpu->nhwc_maps)
      return e;
  }
  if (plan->n_cache < CONV_CACHE) {
    e = &plan->cache[plan->n_cache++];
  } else {
    e = &plan->cache[plan->next_evict];
    plan->next_evict = (plan->next_evict + 1) % CONV_CACHE;
    entry_clear (e);
  }

  DNNL_TRY (dnnl_primitive_attr_create (&attr), "attr");
  DNNL_TRY (
      dnnl_primitive_attr_set_scratchpad_mode (attr, dnnl_scratchpad_mode_user),
      "scratchpad mode");
  DNNL_TRY (dnnl_post_ops_create (&po), "post ops");
  if (acc)
    DNNL_TRY (dnnl_post_ops_append_sum (po, 1.0f), "sum post-op");
  if (relu)
    DNNL_TRY (
        dnnl_post_ops_append_eltwise (po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f),
        "relu post-op");
  DNNL_TRY (dnnl_primitive_attr_set_post_ops (attr, po), "set post ops");
  /* the map layout of backend.h: blocked when C % 16 == 0 */
  if (!create_pd (plan, cpu, h, w,
          bin ? dnnl_nChw16c : (nchw_in ? dnnl_nchw : dnnl_nhwc),
          bout ? dnnl_nChw16c : dnnl_nhwc, cpu->winograd && bin && bout, attr,
          &pd, &winograd, error))
    goto fail;
  e->src_copy = nchw_in ? SRC_COPY_NCHW : SRC_COPY_NONE;
  if ((bin || bout) && pd_is_reference (pd)) {
    /* No JIT kernel for this shape on blocked maps (groups of fewer than
     * 16 channels; a blocked source with a few output channels, as DCN's
     * offset convs): oneDNN's reference loops are ~100x slower than its
     * NHWC kernels, so the conv runs on NHWC copies of its maps. */
    dnnl_primitive_desc_t npd = NULL;
    bool unused;
    if (create_pd (plan, cpu, h, w, dnnl_nhwc, dnnl_nhwc, false, attr, &npd,
            &unused, NULL) &&
        !pd_is_reference (npd)) {
      dnnl_primitive_desc_destroy (pd);
      pd = npd;
      e->src_copy = bin ? SRC_COPY_NHWC : SRC_COPY_NONE;
      e->dst_copy = bout;
    } else if (npd) {
      dnnl_primitive_desc_destroy (npd);
    }
  }

  {
    const dnnl_memory_desc_t *wmd =
        dnnl_primitive_desc_query_md (pd, dnnl_query_weights_md, 0);
    const dnnl_memory_desc_t *smd =
        dnnl_primitive_desc_query_md (pd, dnnl_query_scratchpad_md, 0);
    const char *impl = "?";
    dnnl_primitive_desc_query (pd, dnnl_query_impl_info_str, 0, &impl);
    g_snprintf (e->impl, sizeof (e->impl), "%s%s", impl,
        e->dst_copy || e->src_copy == SRC_COPY_NHWC ? " (NHWC copies)" : "");
    wdata = plan_weights (plan, cpu, wmd, error);
    if (wdata == NULL)
      goto fail;
    DNNL_TRY (dnnl_memory_create (&e->wei, wmd, eng, wdata), "memory");
    e->scratch_bytes = smd ? dnnl_memory_desc_get_size (smd) : 0;
    e->src_copy_bytes =
        e->src_copy != SRC_COPY_NONE ? sizeof (float) * cv->cin * h * w : 0;
    e->dst_copy_bytes = e->dst_copy ? sizeof (float) * cv->cout * ho * wo : 0;
    g_debug ("conv %d -> %d %dx%d/%d groups %d at %dx%d: %s %s, weights "
             "%zu B, scratchpad %zu B",
        cv->cin, cv->cout, cv->kh, cv->kw, cv->stride, cv->groups, h, w,
        winograd ? "winograd" : "direct", e->impl,
        dnnl_memory_desc_get_size (wmd), e->scratch_bytes);
    /* one scratch area for every primitive of the backend: [scratchpad,
     * input copy, output copy], sized to the largest; its content is dead
     * between two convolutions */
    need = dst_copy_offset (e) + e->dst_copy_bytes;
    if (need > cpu->scratch_bytes) {
      free (cpu->scratch);
      cpu->scratch = aligned_try_alloc (need);
      cpu->scratch_bytes = cpu->scratch ? need : 0;
      g_debug ("oneDNN scratchpad: %zu bytes", cpu->scratch_bytes);
      if (cpu->scratch == NULL) {
        g_set_error (error, SI_ERROR, SI_ERROR_NO_MEMORY,
            "conv: cannot allocate %zu bytes of scratchpad", need);
        goto fail;
      }
    }
    if (e->scratch_bytes > 0)
      DNNL_TRY (dnnl_memory_create (&e->scratch, smd, eng, DNNL_MEMORY_NONE),
          "memory");
  }
  DNNL_TRY (dnnl_memory_create (&e->src,
                dnnl_primitive_desc_query_md (pd, dnnl_query_src_md, 0), eng,
                DNNL_MEMORY_NONE),
      "memory");
  DNNL_TRY (dnnl_memory_create (&e->dst,
                dnnl_primitive_desc_query_md (pd, dnnl_query_dst_md, 0), eng,
                DNNL_MEMORY_NONE),
      "memory");
  DNNL_TRY (dnnl_memory_create (&e->bias,
                dnnl_primitive_desc_query_md (pd, dnnl_query_weights_md, 1),
                eng, plan->b),
      "memory");
  DNNL_TRY (dnnl_primitive_create (&e->prim, pd), "convolution primitive");
  dnnl_primitive_desc_destroy (pd);
  dnnl_post_ops_destroy (po);
  dnnl_primitive_attr_destroy (attr);
  e->h = h;
  e->w = w;
  e->acc = acc;
  e->relu = relu;
  e->nhwc_maps = cpu->nhwc_maps;
  return e;

fail:
  if (pd)
    dnnl_primitive_desc_destroy (pd);
  if (po)
    dnnl_post_ops_destroy (po);
  if (attr)
    dnnl_primitive_attr_destroy (attr);
  entry_clear (e);
  /* keep the cache dense: move the last entry into the hole */
  if (e != &plan->cache[plan->n_cache - 1]) {
    *e = plan->cache[plan->n_cache - 1];
    memset (&plan->cache[plan->n_cache - 1], 0, sizeof (ConvEntry));
  }
  plan->n_cache--;
  plan->next_evict = 0;
  plan->last = NULL;
  return NULL;
}

static gboolean
conv2d_dnnl (SiBackend *be, SiConvPlan *plan, const float *x, int h, int w,
    float *y, bool acc, bool relu, GError **error)
{
  SiCpuBackend *cpu = si_cpu_priv (be);
  const SiConv *cv = &plan->conv;
  ConvEntry *e = plan_entry (plan, cpu, h, w, acc, relu, error);
  dnnl_exec_arg_t args[5];
  float *dst = y;
  int n = 0, ho, wo;

  if (e == NULL)
    return FALSE;
  plan->last = e;
  ho = (h + 2 * cv->pad - cv->kh) / cv->stride + 1;
  wo = (w + 2 * cv->pad - cv->kw) / cv->stride + 1;
  if (e->src_copy != SRC_COPY_NONE) {
    float *copy = (float *) ((char *) cpu->scratch + src_copy_offset (e));
    if (e->src_copy == SRC_COPY_NCHW)
      si_transpose_cpu (be, x, h * w, cv->cin, copy); /* (HW, C) -> (C, HW) */
    else
      si_map_to_nhwc_cpu (be, x, h, w, cv->cin, copy);
    x = copy;
  }
  if (e->dst_copy) {
    dst = (float *) ((char *) cpu->scratch + dst_copy_offset (e));
    if (acc)
      si_map_to_nhwc_cpu (be, y, ho, wo, cv->cout, dst);
  }
  DNNL_TRY (dnnl_memory_set_data_handle (e->src, (void *) x), "set handle");
  DNNL_TRY (dnnl_memory_set_data_handle (e->dst, dst), "set handle");
  args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SRC, e->src };
  args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_WEIGHTS, e->wei };
  args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_BIAS, e->bias };
  args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_DST, e->dst };
  if (e->scratch) {
    DNNL_TRY (
        dnnl_memory_set_data_handle (e->scratch, cpu->scratch), "set handle");
    args[n++] = (dnnl_exec_arg_t){ DNNL_ARG_SCRATCHPAD, e->scratch };
  }
  DNNL_TRY (dnnl_primitive_execute (e->prim, cpu->dnnl_stream, n, args),
      "convolution");
  DNNL_TRY (dnnl_stream_wait (cpu->dnnl_stream), "stream wait");
  if (e->dst_copy)
    si_map_from_nhwc_cpu (be, dst, ho, wo, cv->cout, y);
  return TRUE;

fail:
  return FALSE;
}
#endif /* SI_HAVE_DNNL */

const char *
si_conv_impl_cpu (const SiConvPlan *plan)
{
#ifdef SI_HAVE_DNNL
  return plan->last ? plan->last->impl : NULL;
#else
  return NULL;
#endif
}

gboolean
si_conv2d_cpu (SiBackend *be, SiConvPlan *plan, const float *x, int h, int w,
    float *y, bool accumulate, bool relu, GError **error)
{
  si_cpu_apply_threads (be);
#ifdef SI_HAVE_DNNL
  if (!si_cpu_priv (be)->reference)
    return conv2d_dnnl (be, plan, x, h, w, y, accumulate, relu, error);
  plan->last = NULL;
#endif
  if (plan->folded.w == NULL) {
    float *tmp;
    plan->folded.w = folded_weights (&plan->conv, &tmp, error);
    if (plan->folded.w == NULL)
      return FALSE;
    si_conv_release_pages (&plan->conv);
  }
  si_conv2d_reference (&plan->folded, x, h, w, y, accumulate, relu);
  return TRUE;
}
