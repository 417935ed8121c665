/* net.h: the forward pass of one context (internal): preprocessing,
 * backbone, neck, query generator, decoder stages and post-processing on
 * one backend, with every activation allocated in si_net_new().
 * si-engine.c wraps it into the public SiContext.
 */
#ifndef SI_NET_H
#define SI_NET_H

#include "model.h"

typedef struct _SiNet SiNet;

/* Geometry of one preprocessed frame (model-spec 2.6). */
typedef struct
{
  int width, height;     /* original frame (ori_shape) */
  int new_w, new_h;      /* resized, unpadded (img_shape) */
  int pad_w, pad_h;      /* padded network input (pad_shape) */
  float scale_factor[4]; /* w, h, w, h scales as float32 */
} SiImageInfo;

/* Computes the keep-ratio resize geometry of model-spec 2.2 / 2.4. */
void si_image_info_compute (
    const SiModel *model, int width, int height, SiImageInfo *info);

SiNet *si_net_new (
    SiModel *model, const SiContextOptions *options, GError **error);
void si_net_free (SiNet **net);
SiBackendKind si_net_get_backend (const SiNet *net);

/* Runs a frame end to end.  On success out/n_out hold the detections
 * (out has room for max_per_img entries, owned by the net). */
gboolean si_net_run_frame (SiNet *net, const SiFrame *frame,
    const SiRunParams *params, const SiDetection **out, size_t *n_out,
    GError **error);

/* Runs from an already preprocessed input: (1, 3, pad_h, pad_w) NCHW
 * float32 on the host, with the geometry in info (golden tests). */
gboolean si_net_run_input (SiNet *net, const float *input_nchw,
    const SiImageInfo *info, const SiRunParams *params, const SiDetection **out,
    size_t *n_out, GError **error);

void si_net_get_timings (const SiNet *net, SiTimings *timings);
void si_net_set_dump (SiNet *net, SiDumpFunc func, void *user_data);

#endif /* SI_NET_H */
