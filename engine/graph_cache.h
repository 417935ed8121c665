/* graph_cache.h: record and replay of one part of the forward pass
 * (backbone, neck, decoder) on backends that can record a stream of work
 * (ops->capture_begin; CUDA graphs).  A part keeps up to SI_GRAPH_SLOTS
 * keys: every value its ops take from the host (sizes, buffer addresses).
 * The first run of a key is op by op, its warm-up (lazy module loading and
 * the libraries' first-call setup happen outside a capture); the second is
 * recorded, and later ones replay the recording.  A new key replaces the
 * least recently used one.  A part whose recording fails warns once and
 * runs op by op from then on; the other parts keep their recordings.
 * Internal to engine/.
 */
#ifndef SI_GRAPH_CACHE_H
#define SI_GRAPH_CACHE_H

#include "backend.h"

/* Recordings kept per part (frame sizes alternating in one stream). */
#define SI_GRAPH_SLOTS 4
/* Largest key; each user checks its key struct with G_STATIC_ASSERT. */
#define SI_GRAPH_KEY_MAX 256

/* The work of one part, queued on the backend's stream.  Called while
 * the stream records: it must not sync, download or allocate. */
typedef gboolean (*SiGraphWorkFunc) (void *data, GError **error);

typedef struct
{
  guint8 key[SI_GRAPH_KEY_MAX];
  gboolean seen; /* key is set and has had its warm-up run */
  void *graph;   /* from ops->capture_end; NULL: not recorded (yet) */
  guint64 used;  /* last use, for evicting the least recently used */
} SiGraphSlot;

typedef struct
{
  SiBackend *be;
  const char *part; /* "backbone", "neck", "decoder": for the warning */
  size_t key_size;
  /* FALSE on backends without record and replay, with SI_CUDA_GRAPHS=0
   * in the environment at init, and after a failed recording */
  gboolean enabled;
  SiGraphSlot slots[SI_GRAPH_SLOTS];
  guint64 clock;
} SiGraphCache;

void si_graph_cache_init (
    SiGraphCache *cache, SiBackend *be, const char *part, size_t key_size);
/* Frees every recording (the cache may be zero-filled, never inited). */
void si_graph_cache_clear (SiGraphCache *cache);

/* Replays the recording for @key (key_size bytes, compared bytewise: zero
 * the key's padding), recording work(data) first on the key's second run.
 * *replayed FALSE: nothing was queued, the caller runs its ops directly
 * (the key's first run, graphs off, or this recording just failed).
 * FALSE with @error only for a failure of the work queued before a
 * recording (found by the sync that precedes it) or of the launch. */
gboolean si_graph_cache_replay (SiGraphCache *cache, const void *key,
    SiGraphWorkFunc work, void *data, gboolean *replayed, GError **error);

/* Number of recordings held, warm-up keys not counted (tests). */
int si_graph_cache_count (const SiGraphCache *cache);

#endif /* SI_GRAPH_CACHE_H */
