/* si-frame-allocator.c: SiFrameAllocator, GstMemory in the engine's frame
 * memory (si-frame-allocator.h), and the video buffer pool built on it
 * that stageinteractor offers upstream.
 */
#include "si-frame-allocator.h"

#include <string.h>

GST_DEBUG_CATEGORY_STATIC (si_frame_allocator_debug);
#define GST_CAT_DEFAULT si_frame_allocator_debug

typedef struct
{
  GstMemory mem;
  guint8 *data; /* the block's first byte, aligned as asked */
  void *block;  /* what si_frame_memory_alloc returned; NULL: shared */
} SiFrameMemory;

struct _SiFrameAllocator
{
  GstAllocator parent;
  SiBackendKind backend;
};

G_DEFINE_TYPE (SiFrameAllocator, si_frame_allocator, GST_TYPE_ALLOCATOR)

static GstMemory *
frame_alloc (GstAllocator *allocator, gsize size, GstAllocationParams *params)
{
  SiFrameAllocator *self = SI_FRAME_ALLOCATOR (allocator);
  gsize align = params->align | gst_memory_alignment;
  gsize maxsize = size + params->prefix + params->padding;
  GError *error = NULL;
  SiFrameMemory *m;
  void *block;

  if (maxsize < size || maxsize + align < maxsize) {
    GST_WARNING_OBJECT (self, "frame memory size overflows");
    return NULL;
  }
  block = si_frame_memory_alloc (self->backend, maxsize + align, &error);
  if (block == NULL) {
    GST_WARNING_OBJECT (self,
        "no frame memory of %" G_GSIZE_FORMAT " bytes: %s", maxsize,
        error->message);
    g_clear_error (&error);
    return NULL;
  }
  m = g_new0 (SiFrameMemory, 1);
  m->block = block;
  m->data =
      (guint8 *) block + ((align + 1 - ((guintptr) block & align)) & align);
  gst_memory_init (GST_MEMORY_CAST (m), params->flags, allocator, NULL, maxsize,
      align, params->prefix, size);
  if (params->prefix && (params->flags & GST_MEMORY_FLAG_ZERO_PREFIXED))
    memset (m->data, 0, params->prefix);
  if (params->padding && (params->flags & GST_MEMORY_FLAG_ZERO_PADDED))
    memset (m->data + params->prefix + size, 0, params->padding);
  return GST_MEMORY_CAST (m);
}

static void
frame_free (GstAllocator *allocator, GstMemory *mem)
{
  SiFrameMemory *m = (SiFrameMemory *) mem;

  (void) allocator;
  /* a shared memory holds a ref on its parent, which owns the block */
  si_frame_memory_free (m->block);
  g_free (m);
}

static gpointer
frame_map (GstMemory *mem, gsize maxsize, GstMapFlags flags)
{
  (void) maxsize;
  (void) flags;
  return ((SiFrameMemory *) mem)->data;
}

static void
frame_unmap (GstMemory *mem)
{
  (void) mem;
}

static GstMemory *
frame_share (GstMemory *mem, gssize offset, gssize size)
{
  SiFrameMemory *m = (SiFrameMemory *) mem, *sub;
  GstMemory *parent = mem->parent ? mem->parent : mem;

  if (size == -1)
    size = (gssize) mem->size > offset ? (gssize) mem->size - offset : 0;
  sub = g_new0 (SiFrameMemory, 1);
  sub->data = m->data;
  gst_memory_init (GST_MEMORY_CAST (sub),
      GST_MINI_OBJECT_FLAGS (parent) | GST_MINI_OBJECT_FLAG_LOCK_READONLY,
      mem->allocator, parent, mem->maxsize, mem->align, mem->offset + offset,
      size);
  return GST_MEMORY_CAST (sub);
}

static void
si_frame_allocator_class_init (SiFrameAllocatorClass *klass)
{
  GstAllocatorClass *alloc_class = GST_ALLOCATOR_CLASS (klass);

  alloc_class->alloc = frame_alloc;
  alloc_class->free = frame_free;
  GST_DEBUG_CATEGORY_INIT (si_frame_allocator_debug, "siframeallocator", 0,
      "stageinteractor frame memory");
}

static void
si_frame_allocator_init (SiFrameAllocator *self)
{
  GstAllocator *alloc = GST_ALLOCATOR_CAST (self);

  alloc->mem_type = SI_FRAME_ALLOCATOR_NAME;
  alloc->mem_map = frame_map;
  alloc->mem_unmap = frame_unmap;
  alloc->mem_share = frame_share;
  GST_OBJECT_FLAG_SET (self, GST_ALLOCATOR_FLAG_CUSTOM_ALLOC);
}

GstAllocator *
si_frame_allocator_new (SiBackendKind backend)
{
  SiFrameAllocator *self = g_object_new (SI_TYPE_FRAME_ALLOCATOR, NULL);

  gst_object_ref_sink (self);
  self->backend = backend;
  return GST_ALLOCATOR_CAST (self);
}

GstBufferPool *
si_frame_pool_new (GstAllocator *allocator, const GstAllocationParams *params,
    GstCaps *caps, guint min_buffers, GError **error)
{
  GstVideoInfo info;
  GstBufferPool *pool;
  GstStructure *config;

  if (caps == NULL || !gst_video_info_from_caps (&info, caps)) {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION,
        "not raw video caps: %" GST_PTR_FORMAT, caps);
    return NULL;
  }
  pool = gst_video_buffer_pool_new ();
  config = gst_buffer_pool_get_config (pool);
  gst_buffer_pool_config_set_params (
      config, caps, (guint) GST_VIDEO_INFO_SIZE (&info), min_buffers, 0);
  gst_buffer_pool_config_set_allocator (config, allocator, params);
  gst_buffer_pool_config_add_option (config, GST_BUFFER_POOL_OPTION_VIDEO_META);
  if (!gst_buffer_pool_set_config (pool, config)) {
    g_set_error (error, GST_CORE_ERROR, GST_CORE_ERROR_NEGOTIATION,
        "the frame memory pool refused its configuration");
    gst_object_unref (pool);
    return NULL;
  }
  return pool;
}
