/* test-frame-memory.c: si_frame_memory_alloc / _free on every build: plain
 * aligned memory for the CPU backend, SI_BACKEND_AUTO falling back to it
 * without a CUDA device, a NO_DEVICE error for SI_BACKEND_CUDA without one,
 * argument errors, and a CPU run from a block giving the detections of the
 * same frame in g_malloc'ed memory.  (The CUDA side, uploads straight from
 * the pinned blocks, is tests/parity/test-parity-frame-memory.c.)
 * Usage: test-frame-memory CASE_DIR
 */
#include "si-config.h"

#include "si-engine.h"

#include <stdio.h>
#include <string.h>

#include "../si-check.h"

/* CHECK, with an "ok" line when it holds */
#define EXPECT(cond, ...)                                                      \
  do {                                                                         \
    gboolean expect_ok_ = (cond);                                              \
    CHECK (expect_ok_, __VA_ARGS__);                                           \
    if (expect_ok_) {                                                          \
      printf ("ok   ");                                                        \
      printf (__VA_ARGS__);                                                    \
      printf ("\n");                                                           \
    }                                                                          \
  } while (0)

static void
test_alloc (void)
{
  GError *error = NULL;
  uint8_t *mem;
  gboolean cuda = si_backend_available (SI_BACKEND_CUDA, NULL);

  mem = si_frame_memory_alloc (SI_BACKEND_CPU, 4097, &error);
  EXPECT (mem != NULL && ((uintptr_t) mem & 63) == 0,
      "CPU frame memory is 64-byte aligned");
  if (mem) {
    memset (mem, 0x5a, 4097);
    si_frame_memory_free (mem);
  }
  g_clear_error (&error);

  mem = si_frame_memory_alloc (SI_BACKEND_AUTO, 1 << 20, &error);
  EXPECT (mem != NULL, "auto frame memory (%s)",
      cuda ? "pinned: a CUDA device exists" : "plain: no CUDA device");
  if (mem) {
    memset (mem, 1, 1 << 20);
    si_frame_memory_free (mem);
  }
  g_clear_error (&error);

  mem = si_frame_memory_alloc (SI_BACKEND_CUDA, 4096, &error);
  if (cuda)
    EXPECT (mem != NULL, "CUDA frame memory with a device");
  else
    EXPECT (
        mem == NULL && g_error_matches (error, SI_ERROR, SI_ERROR_NO_DEVICE),
        "CUDA frame memory without a device: NO_DEVICE (%s)",
        error ? error->message : "no error");
  si_frame_memory_free (mem);
  g_clear_error (&error);

  mem = si_frame_memory_alloc (SI_BACKEND_CPU, 0, &error);
  EXPECT (mem == NULL &&
          g_error_matches (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT),
      "size 0: INVALID_ARGUMENT");
  g_clear_error (&error);
  mem = si_frame_memory_alloc ((SiBackendKind) 42, 64, &error);
  EXPECT (mem == NULL &&
          g_error_matches (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT),
      "unknown backend: INVALID_ARGUMENT");
  g_clear_error (&error);
  si_frame_memory_free (NULL);
}

/* A grey-ramp RGB frame run from a block and from g_malloc'ed memory. */
static void
test_cpu_run (const char *case_dir)
{
  char *path = g_build_filename (case_dir, "model.safetensors", NULL);
  GError *error = NULL;
  SiModel *model = si_model_load (path, &error);
  SiContextOptions o;
  SiContext *ctx = NULL;
  SiRunParams params;
  int w = 97, h = 61;
  size_t bytes = (size_t) w * h * 3, n[2] = { 0, 0 };
  uint8_t *plain = g_malloc (bytes);
  uint8_t *block = si_frame_memory_alloc (SI_BACKEND_CPU, bytes, &error);
  SiDetection *dets[2] = { NULL, NULL };

  EXPECT (model != NULL && block != NULL, "model and block (%s)",
      error ? error->message : "ok");
  if (model == NULL || block == NULL)
    goto out;
  for (size_t i = 0; i < bytes; i++)
    plain[i] = block[i] = (uint8_t) ((i * 7) % 251);
  si_context_options_init (&o);
  o.backend = SI_BACKEND_CPU;
  o.max_width = w;
  o.max_height = h;
  ctx = si_context_new (model, &o, &error);
  EXPECT (ctx != NULL, "CPU context (%s)", error ? error->message : "ok");
  if (ctx == NULL)
    goto out;
  si_run_params_init (&params);
  params.threshold = 0.0f;
  for (int k = 0; k < 2; k++) {
    SiFrame f = { SI_FORMAT_RGB, w, h, { k ? block : plain }, { w * 3 } };
    const SiDetection *out;

    if (!si_context_run (ctx, &f, &params, &error)) {
      EXPECT (FALSE, "run: %s", error->message);
      goto out;
    }
    out = si_context_get_detections (ctx, &n[k]);
    dets[k] = g_memdup2 (out, n[k] * sizeof (*out));
  }
  EXPECT (n[0] > 0 && n[0] == n[1] &&
          memcmp (dets[0], dets[1], n[0] * sizeof (*dets[0])) == 0,
      "CPU run from frame memory: %zu detections, identical to plain memory",
      n[1]);
out:
  g_clear_error (&error);
  g_free (dets[0]);
  g_free (dets[1]);
  si_context_free (&ctx);
  si_frame_memory_free (block);
  g_free (plain);
  if (model)
    si_model_unref (model);
  g_free (path);
}

int
main (int argc, char **argv)
{
  if (argc < 2) {
    fprintf (stderr, "usage: %s CASE_DIR\n", argv[0]);
    return 2;
  }
  test_alloc ();
  test_cpu_run (argv[1]);
  printf ("%d failures\n", failures);
  return failures ? 1 : 0;
}
