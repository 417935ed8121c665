/* test-parity-errors.c: the CUDA backend's failures come back as engine
 * errors with the CUDA message, never as an abort (issue 4), checked on the
 * emulated CUDA runtime (cuda-emu/), whose hooks inject them: no device
 * or one older than compute capability 8.0 (and backend=auto falling back
 * to the CPU), out of device memory at
 * every allocation of a context's creation, a kernel refused at several
 * points of a frame, one of them inside a replayed graph (backbone, neck
 * or decoder; the context stays usable afterwards), a frame larger than
 * the context's maximum, a kernel fault that loses the device context
 * (the message says so, the first time and after; every later call fails,
 * a new context too, and backend=auto then picks the CPU), a bad
 * SI_CUDA_IM2COL_MIB; with "direct",
 * a fault in a frame that runs op by op instead.
 * Usage: test-parity-errors CASE_DIR [direct].
 */
#include "si-engine.h"

#include "cuda_runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../si-check.h"

static SiContext *
cuda_context (
    SiModel *model, SiBackendKind kind, int max_w, int max_h, GError **error)
{
  SiContextOptions o;
  si_context_options_init (&o);
  o.backend = kind;
  o.max_width = max_w;
  o.max_height = max_h;
  return si_context_new (model, &o, error);
}

/* backend=cuda must fail with @code and a message holding @text;
 * backend=auto must then run on the CPU. */
static void
check_cuda_refused (
    SiModel *model, SiErrorCode code, const char *text, const char *what)
{
  GError *error = NULL;
  SiContext *ctx = cuda_context (model, SI_BACKEND_CUDA, 256, 256, &error);

  CHECK (ctx == NULL && g_error_matches (error, SI_ERROR, code) &&
          strstr (error->message, text) != NULL,
      "%s: backend=cuda: %s", what,
      error ? error->message : "a context was created");
  if (error)
    printf ("%s: %s\n", what, error->message);
  g_clear_error (&error);
  si_context_free (&ctx);
  ctx = cuda_context (model, SI_BACKEND_AUTO, 256, 256, &error);
  CHECK (ctx != NULL && si_context_get_backend (ctx) == SI_BACKEND_CPU,
      "%s: backend=auto must fall back to the CPU: %s", what,
      error ? error->message : "wrong backend");
  g_clear_error (&error);
  si_context_free (&ctx);
}

static void
test_no_device (SiModel *model)
{
  GError *error = NULL;
  SiContext *ctx;

  si_emu_set_device_count (0);
  CHECK (!si_backend_available (SI_BACKEND_CUDA, &error),
      "CUDA available without a device");
  CHECK (g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE),
      "no device: wrong error %s", error ? error->message : "(none)");
  if (error)
    printf ("no device, available: %s\n", error->message);
  CHECK (error && strstr (error->message, "no CUDA device"),
      "no device: message without the CUDA text");
  g_clear_error (&error);
  check_cuda_refused (model, SI_ERROR_NO_DEVICE, "no CUDA device", "no device");
  si_emu_set_device_count (1);

  /* a device the module has no code for */
  si_emu_set_compute_capability (7, 5);
  check_cuda_refused (
      model, SI_ERROR_NO_DEVICE, "compute capability 7.5", "a 7.5 device");
  si_emu_set_compute_capability (8, 0);
  ctx = cuda_context (model, SI_BACKEND_CUDA, 256, 256, &error);
  CHECK (ctx != NULL, "an 8.0 device must be taken: %s",
      error ? error->message : "");
  g_clear_error (&error);
  si_context_free (&ctx);
  si_emu_set_compute_capability (9, 0);
}

/* A bad SI_CUDA_IM2COL_MIB fails the context with a message naming it;
 * small sizes are taken (the emulation fills device memory: not 1024). */
static void
test_workspace_env (SiModel *model)
{
  const char *bad[] = { "0", "1025", "-4", "16x", "", " 8" };
  const char *good[] = { "1", "3" };
  GError *error = NULL;
  SiContext *ctx;

  for (size_t i = 0; i < G_N_ELEMENTS (bad); i++) {
    g_setenv ("SI_CUDA_IM2COL_MIB", bad[i], TRUE);
    check_cuda_refused (model, SI_ERROR_INVALID_ARGUMENT,
        "SI_CUDA_IM2COL_MIB must be a whole number of MiB from 1 to 1024",
        "a bad im2col workspace size");
  }
  for (size_t i = 0; i < G_N_ELEMENTS (good); i++) {
    g_setenv ("SI_CUDA_IM2COL_MIB", good[i], TRUE);
    ctx = cuda_context (model, SI_BACKEND_CUDA, 256, 256, &error);
    CHECK (ctx != NULL, "SI_CUDA_IM2COL_MIB=%s must be taken: %s", good[i],
        error ? error->message : "");
    g_clear_error (&error);
    si_context_free (&ctx);
  }
  g_unsetenv ("SI_CUDA_IM2COL_MIB");
}

/* Every cudaMalloc of a context's creation fails once, in turn. */
static void
test_out_of_memory (SiModel *model)
{
  int n;

  for (n = 0; n < 1000; n++) {
    GError *error = NULL;
    SiContext *ctx;

    si_emu_fail_malloc_after (n);
    ctx = cuda_context (model, SI_BACKEND_CUDA, 256, 256, &error);
    si_emu_fail_malloc_after (-1);
    if (ctx) {
      si_context_free (&ctx);
      break;
    }
    CHECK (g_error_matches (error, SI_ERROR, SI_ERROR_NO_MEMORY),
        "allocation %d failing: wrong error %s", n,
        error ? error->message : "(none)");
    CHECK (error && strstr (error->message, "cudaErrorMemoryAllocation"),
        "allocation %d failing: no CUDA message", n);
    if (n == 0 && error)
      printf ("out of memory: %s\n", error->message);
    g_clear_error (&error);
  }
  printf ("out of memory: each of the %d device allocations of a context "
          "failed in turn, cleanly\n",
      n);
  CHECK (si_emu_device_bytes () == 0,
      "%zu bytes of device memory leaked by the failed contexts",
      si_emu_device_bytes ());
}

static SiFrame
frame_of (const uint8_t *rgb, int w, int h)
{
  SiFrame f;
  memset (&f, 0, sizeof (f));
  f.format = SI_FORMAT_RGB;
  f.width = w;
  f.height = h;
  f.planes[0] = rgb;
  f.strides[0] = (size_t) w * 3;
  return f;
}

/* After an injected fault: no more injections, the context is lost, and
 * freeing it (on the lost device) frees all its device memory. */
static void
free_after_fault (SiContext **ctx)
{
  si_emu_fail_launch_after (-1);
  si_emu_set_launch_error (cudaErrorLaunchOutOfResources);
  CHECK (si_emu_context_lost (), "the fault did not lose the context");
  si_context_free (ctx);
  CHECK (si_emu_device_bytes () == 0,
      "%zu bytes of device memory not freed after the fault",
      si_emu_device_bytes ());
}

static void
test_failing_kernel (SiModel *model)
{
  const int w = 150, h = 110;
  uint8_t *rgb = g_malloc ((size_t) w * h * 3);
  SiFrame f = frame_of (rgb, w, h);
  SiRunParams params;
  GError *error = NULL;
  SiContext *ctx;
  SiDetection *clean = NULL;
  size_t n_clean = 0;
  int at[3], total, replayed = 0;

  for (size_t i = 0; i < (size_t) w * h * 3; i++)
    rgb[i] = (uint8_t) (i * 7 % 251);
  si_run_params_init (&params);
  params.threshold = 0.0f;
  ctx = cuda_context (model, SI_BACKEND_CUDA, 256, 256, &error);
  CHECK (ctx != NULL, "context: %s", error ? error->message : "?");
  if (ctx == NULL) {
    g_clear_error (&error);
    g_free (rgb);
    return;
  }
  si_emu_fail_launch_after (-1); /* counts the launches of one frame */
  if (si_context_run (ctx, &f, &params, &error)) {
    const SiDetection *d = si_context_get_detections (ctx, &n_clean);
    clean = g_memdup2 (d, MAX (n_clean, 1) * sizeof (SiDetection));
  } else {
    CHECK (FALSE, "clean run: %s", error->message);
    g_clear_error (&error);
  }

  total = si_emu_launches ();
  at[0] = 0; /* first, middle and last launch of a frame */
  at[1] = total / 2;
  at[2] = total - 1;
  for (size_t t = 0; t < G_N_ELEMENTS (at); t++) {
    const SiDetection *d;
    size_t n = 0;
    gboolean ok;

    si_emu_fail_launch_after (at[t]);
    ok = si_context_run (ctx, &f, &params, &error);
    si_emu_fail_launch_after (-1);
    CHECK (!ok && g_error_matches (error, SI_ERROR, SI_ERROR_BACKEND),
        "kernel %d failing: the run must fail with SI_ERROR_BACKEND (%s)",
        at[t], error ? error->message : "it succeeded");
    CHECK (error && strstr (error->message, "cudaErrorLaunchOutOfResources"),
        "kernel %d failing: no CUDA message", at[t]);
    CHECK (error && !strstr (error->message, "context"),
        "kernel %d failing: a refusal is not a lost context (%s)", at[t],
        error ? error->message : "");
    if (error)
      printf ("failing kernel %d: %s\n", at[t], error->message);
    /* a kernel of a replayed graph: reported by the wait */
    if (error && strstr (error->message, "cudaStreamSynchronize"))
      replayed++;
    g_clear_error (&error);

    /* the next frame runs normally and gives the same detections */
    ok = si_context_run (ctx, &f, &params, &error);
    CHECK (ok, "run after a failure: %s", error ? error->message : "?");
    g_clear_error (&error);
    d = si_context_get_detections (ctx, &n);
    CHECK (ok && clean && n == n_clean &&
            memcmp (d, clean, n * sizeof (SiDetection)) == 0,
        "run after a failure: different detections");
  }
  CHECK (replayed > 0,
      "no failure inside a replayed graph (the middle launch of a "
      "frame is one of their kernels)");
  printf ("failing kernel: %d launches per frame; failure at launch", total);
  for (size_t t = 0; t < G_N_ELEMENTS (at); t++)
    printf (" %d", at[t]);
  printf (", the context recovered each time\n");

  /* larger than the context's maximum (256 x 256) */
  {
    uint8_t *big = g_malloc0 ((size_t) 300 * 300 * 3);
    SiFrame bf = frame_of (big, 300, 300);
    CHECK (!si_context_run (ctx, &bf, &params, &error) && error != NULL,
        "a frame above max-width/height must be refused");
    if (error)
      printf ("frame too large: %s\n", error->message);
    g_clear_error (&error);
    g_free (big);
  }

  /* a fault loses the context: every later call fails, as on a device.
   * It happens in the middle of a frame that replays graphs, so it is
   * seen later (the next direct launch's check or the frame's wait), as a
   * device reports every fault.  The first message says the context is
   * lost, though every call after the fault fails too; the next frame's
   * (no fault injected: its first call fails) points back at the first */
  si_emu_fail_launch_after (-1);
  CHECK (si_context_run (ctx, &f, &params, &error), "frame before the fault");
  g_clear_error (&error);
  total = si_emu_launches ();
  si_emu_set_launch_error (cudaErrorIllegalAddress);
  si_emu_fail_launch_after (total / 2);
  for (int k = 0; k < 2; k++) {
    const char *want = k ? "was lost earlier" : "context is lost";
    CHECK (!si_context_run (ctx, &f, &params, &error) && error &&
            strstr (error->message, "cudaErrorIllegalAddress") &&
            strstr (error->message, want) && strstr (error->message, "seen in"),
        "fault %d: the message must say \"%s\" (%s)", k, want,
        error ? error->message : "the run succeeded");
    if (error)
      printf ("fault %d: %s\n", k, error->message);
    g_clear_error (&error);
  }
  free_after_fault (&ctx);
  /* no new context either: backend=cuda fails, auto picks the CPU */
  check_cuda_refused (
      model, SI_ERROR_BACKEND, "lost earlier", "new context after the fault");
  si_emu_recover ();
  g_free (clean);
  g_free (rgb);
}

/* A fault in the second kernel of a context's first frame, which runs op
 * by op: seen by that launch's check (deferred: the op returns nothing),
 * then every later call fails too (the first convolution's own check, the
 * wait).  The frame's message is still the first report, the one that
 * says the context is lost.  Run alone in its process ("direct"): only the
 * first report of a process says so. */
static void
test_fault_direct (SiModel *model)
{
  const int w = 150, h = 110;
  uint8_t *rgb = g_malloc0 ((size_t) w * h * 3);
  SiFrame f = frame_of (rgb, w, h);
  SiRunParams params;
  GError *error = NULL;
  SiContext *ctx;

  si_run_params_init (&params);
  ctx = cuda_context (model, SI_BACKEND_CUDA, 256, 256, &error);
  CHECK (ctx != NULL, "context: %s", error ? error->message : "?");
  g_clear_error (&error);
  if (ctx) {
    si_emu_set_launch_error (cudaErrorIllegalAddress);
    si_emu_fail_launch_after (1);
    CHECK (!si_context_run (ctx, &f, &params, &error) && error &&
            strstr (error->message, "cudaErrorIllegalAddress") &&
            strstr (error->message, "context is lost") &&
            strstr (error->message, "seen in"),
        "fault in the second kernel: the message must say the context is "
        "lost (%s)",
        error ? error->message : "the run succeeded");
    if (error)
      printf ("fault in the second kernel: %s\n", error->message);
    g_clear_error (&error);
    free_after_fault (&ctx);
    si_emu_recover ();
  }
  g_free (rgb);
}

int
main (int argc, char **argv)
{
  GError *error = NULL;
  char *path;
  SiModel *model;

  if (argc < 2 || (argc > 2 && strcmp (argv[2], "direct") != 0)) {
    fprintf (stderr, "usage: %s CASE_DIR [direct]\n", argv[0]);
    return 2;
  }
  path = g_build_filename (argv[1], "model.safetensors", NULL);
  model = si_model_load (path, &error);
  if (model == NULL) {
    printf ("FAIL: %s\n", error->message);
    return 1;
  }
  if (argc > 2) {
    test_fault_direct (model);
  } else {
    test_no_device (model);
    test_workspace_env (model);
    test_out_of_memory (model);
    test_failing_kernel (model);
  }
  si_model_unref (model);
  g_free (path);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
