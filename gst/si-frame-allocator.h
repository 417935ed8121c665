/* si-frame-allocator.h: a GstAllocator of the engine's frame memory
 * (si_frame_memory_alloc: pinned host memory for the CUDA backend), so
 * that the buffers upstream decodes into are the blocks the engine
 * uploads from without a host copy.  The memory is ordinary mappable
 * system memory for everyone else.
 */
#ifndef SI_FRAME_ALLOCATOR_H
#define SI_FRAME_ALLOCATOR_H

#include <gst/gst.h>
#include <gst/video/video.h>

#include "si-engine.h"

G_BEGIN_DECLS

#define SI_FRAME_ALLOCATOR_NAME "SiFrameMemory"

#define SI_TYPE_FRAME_ALLOCATOR (si_frame_allocator_get_type ())
G_DECLARE_FINAL_TYPE (
    SiFrameAllocator, si_frame_allocator, SI, FRAME_ALLOCATOR, GstAllocator)

/* An allocator of @backend's frame memory. transfer full. */
GstAllocator *si_frame_allocator_new (SiBackendKind backend);

/* A video buffer pool of frames of @caps in frame memory of @allocator
 * with @params (NULL: defaults), with video meta; NULL (and *error) for
 * caps that are not raw video. */
GstBufferPool *si_frame_pool_new (GstAllocator *allocator,
    const GstAllocationParams *params, GstCaps *caps, guint min_buffers,
    GError **error);

G_END_DECLS

#endif /* SI_FRAME_ALLOCATOR_H */
