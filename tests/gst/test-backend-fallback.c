/* test-backend-fallback.c: stageinteractor with backend=auto goes on on
 * the CPU, with a warning on the bus, when CUDA fails: a kernel's fault in
 * the middle of the stream (the device context is lost: that frame is run
 * again on the CPU, and every frame after it), or a CUDA context that
 * cannot be made (out of device memory).  Without a device it runs on the
 * CPU without a warning; an engine reloaded after a fallback tries CUDA
 * again.  backend=cuda posts the fault as an error instead.  Real pipelines
 *   videotestsrc ! NV12 caps ! stageinteractor backend=... ! fakesink
 * under the CUDA emulation (SI_CUDA_MODULE names the emulated module; its
 * hooks inject the failures), compared frame by frame with pipelines that
 * ran clean on each backend.  Skips without the emulation: faults cannot
 * be injected on a device.
 */
#include <dlfcn.h>
#include <gst/gst.h>
#include <si-detection-meta.h>
#include <si-engine.h>
#include <stdio.h>
#include <string.h>

#include "../si-check.h"
/* the hooks' types only: nothing of the emulation is linked in */
#include "../parity/cuda-emu/cuda_runtime.h"

#define N_FRAMES 5
#define FAULT_FRAME 2 /* (0-based) graphs are replayed from frame 2 on */

/* the emulation's hooks, looked up in its module */
static struct
{
  void (*counts) (SiEmuCounts *counts);
  void (*set_launch_error) (cudaError_t error);
  void (*fail_launch_after) (int launches);
  void (*fail_malloc_after) (int calls);
  void (*set_device_count) (int count);
  void (*recover) (void);
  int (*context_lost) (void);
} emu;

typedef struct
{
  int fault_frame;  /* -1: none */
  int reload_frame; /* the context recovers and the engine is reloaded
                       before this frame (-1: never) */
  int frames_in, frames_out;
  int uploads_after_fault; /* copies up from the fault's frame on */
  SiEmuCounts at_fault;
  gchar *backend_before_fault; /* the stats' backend on the frame before */
  gchar *backend_after;        /* and at the end */
  GString *dets[N_FRAMES];     /* each frame's detections, printed */
  GString *warnings, *errors;  /* the bus's messages, one a line */
} Run;

static gchar *
stats_backend (GstElement *det)
{
  GstStructure *stats = NULL;
  gchar *backend = NULL;

  g_object_get (det, "stats", &stats, NULL);
  if (stats) {
    backend = g_strdup (gst_structure_get_string (stats, "backend"));
    gst_structure_free (stats);
  }
  return backend;
}

static GstPadProbeReturn
before_detector (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  Run *r = data;

  (void) info;
  if (r->frames_in == r->reload_frame) {
    /* a property of the engine: reloaded before this frame */
    emu.recover ();
    g_object_set (GST_PAD_PARENT (pad), "num-threads", 1, NULL);
  }
  if (r->frames_in == r->fault_frame) {
    /* a fault in the middle of this frame's kernels */
    emu.counts (&r->at_fault);
    emu.set_launch_error (cudaErrorIllegalAddress);
    emu.fail_launch_after (100);
  }
  r->frames_in++;
  return GST_PAD_PROBE_OK;
}

static GstPadProbeReturn
after_detector (GstPad *pad, GstPadProbeInfo *info, gpointer data)
{
  Run *r = data;
  SiDetectionMeta *meta =
      si_buffer_get_detection_meta (GST_PAD_PROBE_INFO_BUFFER (info));
  GString *out;

  if (r->frames_out >= N_FRAMES)
    return GST_PAD_PROBE_OK;
  out = r->dets[r->frames_out];
  if (r->frames_out + 1 == r->fault_frame)
    r->backend_before_fault =
        stats_backend (GST_ELEMENT (GST_PAD_PARENT (pad)));
  r->frames_out++;
  if (meta == NULL) {
    g_string_append (out, "no meta");
    return GST_PAD_PROBE_OK;
  }
  for (guint i = 0; i < si_detection_meta_get_count (meta); i++) {
    const SiMetaDetection *d = si_detection_meta_get (meta, i);
    g_string_append_printf (out, "%d %a %a %a %a %a,", d->class_id, d->score,
        d->x1, d->y1, d->x2, d->y2);
  }
  return GST_PAD_PROBE_OK;
}

static void
run_clear (Run *r)
{
  for (int i = 0; i < N_FRAMES; i++)
    g_string_free (r->dets[i], TRUE);
  g_string_free (r->warnings, TRUE);
  g_string_free (r->errors, TRUE);
  g_free (r->backend_before_fault);
  g_free (r->backend_after);
}

/* The emulation as it was before a test injected its failure. */
static void
emu_reset (void)
{
  emu.fail_launch_after (-1);
  emu.set_launch_error (cudaErrorLaunchOutOfResources);
  emu.recover ();
}

/* Runs the pipeline until EOS or an error, keeping the bus's warnings and
 * errors, and the stats' backend at the end. */
static void
run_pipeline (const char *backend, int fault_frame, int reload_frame, Run *r)
{
  char *model = g_build_filename (
      g_getenv ("SI_GOLDEN_DIR"), "tiny", "model.safetensors", NULL);
  char *desc = g_strdup_printf (
      "videotestsrc num-buffers=%d pattern=ball ! "
      "video/x-raw,format=NV12,width=150,height=110 ! "
      "stageinteractor name=det model=%s backend=%s threshold=0.0 ! "
      "fakesink",
      N_FRAMES, model, backend);
  GError *error = NULL;
  GstElement *pipe = gst_parse_launch (desc, &error), *det;
  GstPad *sink, *src;
  gboolean done = FALSE;

  memset (r, 0, sizeof (*r));
  r->fault_frame = fault_frame;
  r->reload_frame = reload_frame;
  for (int i = 0; i < N_FRAMES; i++)
    r->dets[i] = g_string_new (NULL);
  r->warnings = g_string_new (NULL);
  r->errors = g_string_new (NULL);
  if (pipe == NULL) {
    CHECK (FALSE, "%s: %s", desc, error->message);
    g_clear_error (&error);
    g_free (desc);
    g_free (model);
    return;
  }
  det = gst_bin_get_by_name (GST_BIN (pipe), "det");
  sink = gst_element_get_static_pad (det, "sink");
  src = gst_element_get_static_pad (det, "src");
  gst_pad_add_probe (sink, GST_PAD_PROBE_TYPE_BUFFER, before_detector, r, NULL);
  gst_pad_add_probe (src, GST_PAD_PROBE_TYPE_BUFFER, after_detector, r, NULL);
  gst_element_set_state (pipe, GST_STATE_PLAYING);
  while (!done) {
    GstMessage *msg =
        gst_bus_timed_pop_filtered (GST_ELEMENT_BUS (pipe), GST_CLOCK_TIME_NONE,
            GST_MESSAGE_EOS | GST_MESSAGE_ERROR | GST_MESSAGE_WARNING);

    if (msg == NULL)
      break;
    switch (GST_MESSAGE_TYPE (msg)) {
      case GST_MESSAGE_WARNING:
        gst_message_parse_warning (msg, &error, NULL);
        g_string_append_printf (r->warnings, "%s\n", error->message);
        g_clear_error (&error);
        break;
      case GST_MESSAGE_ERROR:
        gst_message_parse_error (msg, &error, NULL);
        g_string_append_printf (r->errors, "%s\n", error->message);
        g_clear_error (&error);
        done = TRUE;
        break;
      default:
        done = TRUE;
        break;
    }
    gst_message_unref (msg);
  }
  if (fault_frame >= 0) {
    SiEmuCounts now;

    emu.counts (&now);
    r->uploads_after_fault = now.h2d - r->at_fault.h2d;
  }
  r->backend_after = stats_backend (det);
  gst_element_set_state (pipe, GST_STATE_NULL);
  gst_object_unref (sink);
  gst_object_unref (src);
  gst_object_unref (det);
  gst_object_unref (pipe);
  g_free (desc);
  g_free (model);
}

static int
count_lines (const GString *s)
{
  int n = 0;

  for (gsize i = 0; i < s->len; i++)
    n += s->str[i] == '\n';
  return n;
}

static gboolean
frame_equal (const Run *a, const Run *b, int i)
{
  return strcmp (a->dets[i]->str, b->dets[i]->str) == 0 &&
      strstr (a->dets[i]->str, "no meta") == NULL;
}

/* Frames [0, n) of r: those in [cpu_from, cpu_to) must be the clean CPU
 * run's, the others the clean CUDA run's. */
static void
check_frames (const char *what, const Run *r, int n, int cpu_from, int cpu_to,
    const Run *cuda, const Run *cpu)
{
  for (int i = 0; i < n; i++) {
    const Run *want = i >= cpu_from && i < cpu_to ? cpu : cuda;
    CHECK (frame_equal (r, want, i),
        "%s: frame %d differs from the clean %s run:\n  %s\n  %s", what, i,
        want == cpu ? "cpu" : "cuda", r->dets[i]->str, want->dets[i]->str);
  }
}

/* backend=auto, a fault on frame FAULT_FRAME: one warning, the fault's
 * frame and the ones after it from the CPU, nothing sent to the device
 * after the fault's frame; then backend=cuda: the fault is an error. */
static void
test_fault (const Run *cuda, const Run *cpu)
{
  Run r;
  int expected_uploads = 1; /* the fault's frame went up before it */

  run_pipeline ("auto", FAULT_FRAME, -1, &r);
  printf ("auto, fault on frame %d: %d frames out; warnings:\n%s", FAULT_FRAME,
      r.frames_out, r.warnings->str);
  CHECK (r.errors->len == 0, "auto, fault: an error on the bus: %s",
      r.errors->str);
  CHECK (r.frames_out == N_FRAMES, "auto, fault: %d of %d frames came out",
      r.frames_out, N_FRAMES);
  CHECK (emu.context_lost (), "the injected fault did not lose the context");
  CHECK (count_lines (r.warnings) == 1 &&
          strstr (r.warnings->str, "cudaErrorIllegalAddress") &&
          strstr (r.warnings->str, "continues on the CPU") &&
          strstr (r.warnings->str, "context is lost"),
      "auto, fault: not one warning naming the fault and the CPU:\n%s",
      r.warnings->str);
  CHECK (g_strcmp0 (r.backend_before_fault, "cuda") == 0 &&
          g_strcmp0 (r.backend_after, "cpu") == 0,
      "auto, fault: the stats' backend went from %s to %s, expected cuda to "
      "cpu",
      r.backend_before_fault, r.backend_after);
  CHECK (r.uploads_after_fault == expected_uploads,
      "auto, fault: %d copies up from the fault's frame on, expected %d",
      r.uploads_after_fault, expected_uploads);
  check_frames ("auto, fault", &r, N_FRAMES, FAULT_FRAME, N_FRAMES, cuda, cpu);
  run_clear (&r);
  emu_reset ();

  run_pipeline ("cuda", FAULT_FRAME, -1, &r);
  printf ("cuda, fault on frame %d: %d frames out; error: %s", FAULT_FRAME,
      r.frames_out, r.errors->str);
  CHECK (strstr (r.errors->str, "cudaErrorIllegalAddress") &&
          strstr (r.errors->str, "Inference failed on frame"),
      "cuda, fault: no error naming the fault: %s", r.errors->str);
  CHECK (r.warnings->len == 0, "cuda, fault: warnings: %s", r.warnings->str);
  CHECK (r.frames_out == FAULT_FRAME, "cuda, fault: %d frames out, expected %d",
      r.frames_out, FAULT_FRAME);
  check_frames (
      "cuda, fault", &r, MIN (r.frames_out, FAULT_FRAME), 0, 0, cuda, cpu);
  run_clear (&r);
  emu_reset ();
}

/* backend=auto, a fault on frame 1, then (the context recovered, as in a
 * new process) an engine property changed before frame 3: the reloaded
 * engine tries CUDA again and gets it. */
static void
test_reload_after_fault (const Run *cuda, const Run *cpu)
{
  const int fault = 1, reload = 3;
  Run r;

  run_pipeline ("auto", fault, reload, &r);
  printf ("auto, fault on frame %d, reload before frame %d: %d frames out, "
          "backend %s at the end\n",
      fault, reload, r.frames_out, r.backend_after);
  CHECK (r.errors->len == 0 && count_lines (r.warnings) == 1,
      "auto, reload: expected one warning and no error:\n%s%s", r.warnings->str,
      r.errors->str);
  CHECK (g_strcmp0 (r.backend_after, "cuda") == 0,
      "auto, reload: backend %s at the end, expected cuda", r.backend_after);
  CHECK (r.frames_out == N_FRAMES, "auto, reload: %d of %d frames",
      r.frames_out, N_FRAMES);
  check_frames ("auto, reload", &r, N_FRAMES, fault, reload, cuda, cpu);
  run_clear (&r);
  emu_reset ();
}

/* Checks a backend=auto run that was on the CPU from its first frame:
 * no error, the stats' backend, every frame the clean CPU run's. */
static void
check_cpu_run (const char *what, const Run *r, const Run *cuda, const Run *cpu)
{
  CHECK (
      r->errors->len == 0, "%s: an error on the bus: %s", what, r->errors->str);
  CHECK (g_strcmp0 (r->backend_after, "cpu") == 0, "%s: backend %s", what,
      r->backend_after);
  CHECK (r->frames_out == N_FRAMES, "%s: %d of %d frames", what, r->frames_out,
      N_FRAMES);
  check_frames (what, r, N_FRAMES, 0, N_FRAMES, cuda, cpu);
}

/* backend=auto with no device memory to make a context: one warning,
 * every frame from the CPU; without a device: no warning. */
static void
test_no_memory_no_device (const Run *cuda, const Run *cpu)
{
  Run r;

  emu.fail_malloc_after (0);
  run_pipeline ("auto", -1, -1, &r);
  emu.fail_malloc_after (-1);
  printf ("auto, no device memory: %d frames out; warnings:\n%s", r.frames_out,
      r.warnings->str);
  check_cpu_run ("auto, no memory", &r, cuda, cpu);
  CHECK (count_lines (r.warnings) == 1 &&
          strstr (r.warnings->str, "cudaErrorMemoryAllocation") &&
          strstr (r.warnings->str, "Could not create a CUDA context") &&
          strstr (r.warnings->str, "backend=auto runs on the CPU"),
      "auto, no memory: not one warning naming the failure and the CPU:\n%s",
      r.warnings->str);
  run_clear (&r);

  emu.set_device_count (0);
  run_pipeline ("auto", -1, -1, &r);
  emu.set_device_count (1);
  printf ("auto, no device: %d frames out, backend %s\n", r.frames_out,
      r.backend_after);
  check_cpu_run ("auto, no device", &r, cuda, cpu);
  CHECK (
      r.warnings->len == 0, "auto, no device: warnings: %s", r.warnings->str);
  run_clear (&r);
}

static gboolean
lookup_hooks (const char *module)
{
  void *handle = module ? dlopen (module, RTLD_NOW | RTLD_NOLOAD) : NULL;

  if (handle == NULL)
    return FALSE;
  emu.counts = (void (*) (SiEmuCounts *)) dlsym (handle, "si_emu_counts");
  emu.set_launch_error =
      (void (*) (cudaError_t)) dlsym (handle, "si_emu_set_launch_error");
  emu.fail_launch_after =
      (void (*) (int)) dlsym (handle, "si_emu_fail_launch_after");
  emu.fail_malloc_after =
      (void (*) (int)) dlsym (handle, "si_emu_fail_malloc_after");
  emu.set_device_count =
      (void (*) (int)) dlsym (handle, "si_emu_set_device_count");
  emu.recover = (void (*) (void)) dlsym (handle, "si_emu_recover");
  emu.context_lost = (int (*) (void)) dlsym (handle, "si_emu_context_lost");
  return emu.counts && emu.set_launch_error && emu.fail_launch_after &&
      emu.fail_malloc_after && emu.set_device_count && emu.recover &&
      emu.context_lost;
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  Run cuda, cpu;

  gst_init (&argc, &argv);
  if (g_getenv ("SI_GOLDEN_DIR") == NULL) {
    printf ("FAIL: SI_GOLDEN_DIR is not set\n");
    return 1;
  }
  /* loads the module (SI_CUDA_MODULE) */
  if (!si_backend_available (SI_BACKEND_CUDA, &error)) {
    printf ("skipped: no CUDA device (%s)\n", error->message);
    g_clear_error (&error);
    return 77;
  }
  if (!lookup_hooks (g_getenv ("SI_CUDA_MODULE"))) {
    printf ("skipped: needs the CUDA emulation (SI_CUDA_MODULE) to inject "
            "failures\n");
    return 77;
  }

  run_pipeline ("cuda", -1, -1, &cuda);
  run_pipeline ("cpu", -1, -1, &cpu);
  CHECK (cuda.errors->len == 0 && cpu.errors->len == 0 &&
          cuda.warnings->len == 0 && cpu.warnings->len == 0,
      "clean runs: %s%s%s%s", cuda.errors->str, cpu.errors->str,
      cuda.warnings->str, cpu.warnings->str);
  CHECK (g_strcmp0 (cuda.backend_after, "cuda") == 0 &&
          g_strcmp0 (cpu.backend_after, "cpu") == 0,
      "clean runs: the stats' backends are %s and %s", cuda.backend_after,
      cpu.backend_after);
  CHECK (cuda.frames_out == N_FRAMES && cpu.frames_out == N_FRAMES,
      "clean runs: %d and %d frames", cuda.frames_out, cpu.frames_out);
  {
    /* else the frames compared below could not tell the backends apart */
    int differ = 0;

    for (int i = 0; i < N_FRAMES; i++)
      differ += !frame_equal (&cuda, &cpu, i);
    printf ("clean runs: %d of %d frames differ between cuda and cpu\n", differ,
        N_FRAMES);
    CHECK (differ > 0, "clean runs: cuda and cpu detections are identical");
  }
  test_fault (&cuda, &cpu);
  test_reload_after_fault (&cuda, &cpu);
  test_no_memory_no_device (&cuda, &cpu);
  run_clear (&cuda);
  run_clear (&cpu);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
