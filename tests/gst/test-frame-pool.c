/* test-frame-pool.c: stageinteractor offers upstream a pool of frame memory
 * (pinned host memory) with the cuda backend, and the engine uploads each
 * frame straight from it.  Real pipelines:
 *   videotestsrc ! NV12 / RGB caps ! stageinteractor backend=... ! fakesink
 * with frame-pool on and off, with the cpu backend, and with a videoconvert
 * downstream (whose own system-memory pool ours replaces).  Checked: the
 * memory of every buffer reaching the detector (the pool's only with cuda
 * and frame-pool=true), the detections (identical with and without the
 * pool), and, under the CUDA emulation (SI_CUDA_MODULE names the emulated
 * module, which exports si_emu_counts), that each frame made one copy up
 * and that its source lay in the frame's own buffer exactly when the pool
 * was used.  Skips ("skipped: no CUDA device") without a device.
 */
#include <dlfcn.h>
#include <gst/gst.h>
#include <gst/video/video.h>
#include <si-detection-meta.h>
#include <si-engine.h>
#include <stdio.h>
#include <string.h>

#define N_FRAMES 2

#include "../si-check.h"
/* SiEmuCounts only: nothing of the emulation is linked in */
#include "../parity/cuda-emu/cuda_runtime.h"

/* the emulation's si_emu_counts, looked up in its module */
typedef void (*EmuCountsFunc) (SiEmuCounts *counts);
static EmuCountsFunc emu_counts;

typedef struct
{
  int frames;
  int in_frame_memory; /* buffers whose memory came from the pool */
  int direct;          /* frames uploaded straight from their buffer */
  int uploads;         /* copies up, all frames */
  SiEmuCounts before;
  GString *dets; /* every frame's detections, printed */
} Run;

static gboolean
memory_is_frame_memory (GstBuffer *buf)
{
  for (guint i = 0; i < gst_buffer_n_memory (buf); i++)
    if (!gst_memory_is_type (gst_buffer_peek_memory (buf, i), "SiFrameMemory"))
      return FALSE;
  return gst_buffer_n_memory (buf) > 0;
}

static GstPadProbeReturn
before_detector (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  Run *r = data;

  (void) pad;
  r->in_frame_memory +=
      memory_is_frame_memory (GST_PAD_PROBE_INFO_BUFFER (info));
  if (emu_counts)
    emu_counts (&r->before);
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn
after_detector (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  Run *r = data;
  GstBuffer *buf = GST_PAD_PROBE_INFO_BUFFER (info);
  SiDetectionMeta *meta = si_buffer_get_detection_meta (buf);
  GstMapInfo map;

  (void) pad;
  r->frames++;
  if (emu_counts && gst_buffer_map (buf, &map, GST_MAP_READ)) {
    SiEmuCounts now;
    const guint8 *src;

    emu_counts (&now);
    src = now.last_h2d_src;
    r->uploads += now.h2d - r->before.h2d;
    r->direct += now.h2d > r->before.h2d && src >= map.data &&
        src + now.last_h2d_bytes <= map.data + map.size;
    gst_buffer_unmap (buf, &map);
  }
  if (meta == NULL) {
    g_string_append (r->dets, "no meta;");
    return GST_PAD_PROBE_OK;
  }
  for (guint i = 0; i < si_detection_meta_get_count (meta); i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);
    g_string_append_printf (r->dets, "%d %a %a %a %a %a,", d->class_id,
        d->score, d->x1, d->y1, d->x2, d->y2);
  }
  g_string_append_c (r->dets, ';');
  return GST_PAD_PROBE_OK;
}

/* Runs the pipeline to EOS; FALSE on an error message. */
static gboolean
run_pipeline (const char *format, const char *backend, gboolean pool,
    const char *tail, Run *r)
{
  char *model = g_build_filename (
      g_getenv ("SI_GOLDEN_DIR"), "tiny", "model.safetensors", NULL);
  char *desc = g_strdup_printf (
      "videotestsrc num-buffers=%d pattern=ball ! "
      "video/x-raw,format=%s,width=150,height=110 ! "
      "stageinteractor name=det model=%s backend=%s frame-pool=%s "
      "threshold=0.0 ! %s",
      N_FRAMES, format, model, backend, pool ? "true" : "false", tail);
  GError *error = NULL;
  GstElement *pipe = gst_parse_launch (desc, &error), *det;
  GstPad *sink, *src;
  GstMessage *msg;
  gboolean ok;

  memset (r, 0, sizeof (*r));
  r->dets = g_string_new (NULL);
  if (pipe == NULL) {
    CHECK (FALSE, "%s: %s", desc, error->message);
    g_clear_error (&error);
    g_free (desc);
    g_free (model);
    return FALSE;
  }
  det = gst_bin_get_by_name (GST_BIN (pipe), "det");
  sink = gst_element_get_static_pad (det, "sink");
  src = gst_element_get_static_pad (det, "src");
  gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_BUFFER, before_detector, r, NULL);
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, after_detector, r, NULL);
  gst_element_set_state (pipe, GST_STATE_PLAYING);
  msg = gst_bus_timed_pop_filtered (GST_ELEMENT_BUS (pipe), GST_CLOCK_TIME_NONE,
      GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
  ok = msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS;
  if (!ok && msg) {
    gst_message_parse_error (msg, &error, NULL);
    CHECK (FALSE, "%s: %s", desc, error->message);
    g_clear_error (&error);
  }
  if (msg)
    gst_message_unref (msg);
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (sink);
  gst_object_unref (src);
  gst_object_unref (det);
  gst_object_unref (pipe);
  g_free (desc);
  g_free (model);
  return ok;
}

static void
test_format (const char *format)
{
  Run with, without, cpu, converted;
  gboolean ok[4];

  ok[0] = run_pipeline (format, "cuda", TRUE, "fakesink", &with);
  ok[1] = run_pipeline (format, "cuda", FALSE, "fakesink", &without);
  ok[2] = run_pipeline (format, "cpu", TRUE, "fakesink", &cpu);
  /* videoconvert offers a system-memory pool of its own: ours replaces it */
  ok[3] = run_pipeline (format, "cuda", TRUE,
      "videoconvert ! video/x-raw,format=I420 ! fakesink", &converted);
  printf ("%s: cuda with the pool: %d of %d frames in frame memory", format,
      with.in_frame_memory, with.frames);
  if (emu_counts)
    printf (", %d uploaded straight from their buffer (%d copies up)",
        with.direct, with.uploads);
  printf ("; without: %d in frame memory", without.in_frame_memory);
  if (emu_counts)
    printf (", %d straight (%d copies up)", without.direct, without.uploads);
  printf ("; cpu: %d in frame memory; cuda, videoconvert downstream: %d in "
          "frame memory\n",
      cpu.in_frame_memory, converted.in_frame_memory);
  if (ok[0] && ok[1]) {
    CHECK (with.frames == N_FRAMES && without.frames == N_FRAMES,
        "%s: %d and %d frames, expected %d", format, with.frames,
        without.frames, N_FRAMES);
    CHECK (with.in_frame_memory == N_FRAMES,
        "%s: upstream did not take the frame memory pool", format);
    CHECK (without.in_frame_memory == 0,
        "%s: frame-pool=false still offered the pool", format);
    CHECK (strcmp (with.dets->str, without.dets->str) == 0 &&
            strstr (with.dets->str, "no meta") == NULL,
        "%s: detections differ with the pool:\n  %s\n  %s", format,
        with.dets->str, without.dets->str);
    if (emu_counts) {
      CHECK (with.direct == N_FRAMES && with.uploads == N_FRAMES,
          "%s: with the pool, %d of %d frames straight from their buffer "
          "(%d copies up)",
          format, with.direct, N_FRAMES, with.uploads);
      CHECK (without.direct == 0 && without.uploads == N_FRAMES,
          "%s: without the pool, %d frames straight from their buffer (%d "
          "copies up)",
          format, without.direct, without.uploads);
    }
  }
  if (ok[3])
    CHECK (converted.in_frame_memory == N_FRAMES &&
            strcmp (converted.dets->str, with.dets->str) == 0,
        "%s: with videoconvert downstream, %d of %d frames in frame memory",
        format, converted.in_frame_memory, N_FRAMES);
  if (ok[2])
    CHECK (cpu.in_frame_memory == 0, "%s: the cpu backend offered the pool",
        format);
  g_string_free (with.dets, TRUE);
  g_string_free (without.dets, TRUE);
  g_string_free (cpu.dets, TRUE);
  g_string_free (converted.dets, TRUE);
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  const char *module = g_getenv ("SI_CUDA_MODULE");

  gst_init (&argc, &argv);
  if (g_getenv ("SI_GOLDEN_DIR") == NULL) {
    printf ("FAIL: SI_GOLDEN_DIR is not set\n");
    return 1;
  }
  if (!si_backend_available (SI_BACKEND_CUDA, &error)) {
    printf ("skipped: no CUDA device (%s)\n", error->message);
    g_clear_error (&error);
    return 77;
  }
  if (module != NULL) {
    /* loaded by the engine already: the emulation's counters, if it is one */
    void *handle = dlopen (module, RTLD_NOW | RTLD_NOLOAD);
    if (handle)
      emu_counts = (EmuCountsFunc) dlsym (handle, "si_emu_counts");
  }
  printf ("%s\n",
      emu_counts ? "CUDA emulation: checking the copies up" : "CUDA device");
  test_format ("NV12");
  test_format ("RGB");
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
