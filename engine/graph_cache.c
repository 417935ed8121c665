/* graph_cache.c: the recordings of one part of the forward pass and
 * their replay (graph_cache.h).
 */
#include "graph_cache.h"

#include <string.h>

void
si_graph_cache_init (
    SiGraphCache *cache, SiBackend *be, const char *part, size_t key_size)
{
  const SiBackendOps *ops = be->ops;

  g_return_if_fail (key_size > 0 && key_size <= SI_GRAPH_KEY_MAX);
  memset (cache, 0, sizeof (*cache));
  cache->be = be;
  cache->part = part;
  cache->key_size = key_size;
  cache->enabled = ops->capture_begin != NULL && ops->capture_end != NULL &&
      ops->graph_launch != NULL && ops->graph_free != NULL &&
      g_strcmp0 (g_getenv ("SI_CUDA_GRAPHS"), "0") != 0;
}

void
si_graph_cache_clear (SiGraphCache *cache)
{
  for (int i = 0; i < SI_GRAPH_SLOTS; i++) {
    if (cache->slots[i].graph != NULL)
      cache->be->ops->graph_free (cache->be, cache->slots[i].graph);
    cache->slots[i].graph = NULL;
    cache->slots[i].seen = FALSE;
  }
}

int
si_graph_cache_count (const SiGraphCache *cache)
{
  int n = 0;

  for (int i = 0; i < SI_GRAPH_SLOTS; i++)
    n += cache->slots[i].graph != NULL;
  return n;
}

/* After a failed recording the direct path runs instead, now and on every
 * later frame. */
static void
graphs_off (SiGraphCache *cache, const GError *why)
{
  g_warning ("%s: recording the %s backend's %s run failed (%s); running it "
             "op by op from now on",
      cache->part, cache->be->ops->name, cache->part,
      why ? why->message : "unknown error");
  cache->enabled = FALSE;
}

/* Records work(data) into @slot (its key set).  FALSE when the recording
 * failed (the cache is off then). */
static gboolean
record (
    SiGraphCache *cache, SiGraphSlot *slot, SiGraphWorkFunc work, void *data)
{
  SiBackend *be = cache->be;
  GError *why = NULL;
  gboolean ok;
  void *graph;

  if (!be->ops->capture_begin (be, &why)) {
    graphs_off (cache, why);
    g_error_free (why);
    return FALSE;
  }
  ok = work (data, &why);
  /* always end the capture, even after a failure */
  graph = be->ops->capture_end (be, ok ? &why : NULL);
  if (!ok || graph == NULL) {
    be->ops->graph_free (be, graph);
    graphs_off (cache, why);
    g_clear_error (&why);
    return FALSE;
  }
  slot->graph = graph;
  return TRUE;
}

/* The slot for a new key: a free one, else the least recently used (its
 * recording freed). */
static SiGraphSlot *
take_slot (SiGraphCache *cache, const void *key)
{
  SiGraphSlot *slot = &cache->slots[0];

  for (int i = 1; i < SI_GRAPH_SLOTS && slot->seen; i++)
    if (!cache->slots[i].seen || cache->slots[i].used < slot->used)
      slot = &cache->slots[i];
  if (slot->graph != NULL)
    cache->be->ops->graph_free (cache->be, slot->graph);
  slot->graph = NULL;
  slot->seen = TRUE;
  memcpy (slot->key, key, cache->key_size);
  return slot;
}

gboolean
si_graph_cache_replay (SiGraphCache *cache, const void *key,
    SiGraphWorkFunc work, void *data, gboolean *replayed, GError **error)
{
  SiGraphSlot *slot = NULL;

  *replayed = FALSE;
  if (!cache->enabled)
    return TRUE;
  for (int i = 0; i < SI_GRAPH_SLOTS && slot == NULL; i++)
    if (cache->slots[i].seen &&
        memcmp (cache->slots[i].key, key, cache->key_size) == 0)
      slot = &cache->slots[i];
  if (slot == NULL) {
    /* the key's first run: op by op, outside any capture */
    take_slot (cache, key)->used = ++cache->clock;
    return TRUE;
  }
  slot->used = ++cache->clock;
  if (slot->graph == NULL) {
    /* failures of the work before belong to this frame, not to the
     * recording */
    if (!cache->be->ops->sync (cache->be, error))
      return FALSE;
    if (!record (cache, slot, work, data))
      return TRUE;
  }
  if (!cache->be->ops->graph_launch (cache->be, slot->graph, error))
    return FALSE;
  *replayed = TRUE;
  return TRUE;
}
