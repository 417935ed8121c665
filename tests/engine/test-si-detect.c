/* test-si-detect.c: the si-detect command line and the image readers
 * (suite unit): --version, usage errors, unreadable inputs (non-zero exit,
 * message on stderr, nothing on stdout), PPM variants, and PNG / JPEG files
 * written here with libpng / libjpeg, decoded by image-io and run through
 * si-detect.
 * Usage: test-si-detect SI_DETECT_PATH GOLDEN_CASE_DIR
 */
#include "image-io.h"
#include "si-engine.h"

#include <glib.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#ifdef SI_HAVE_PNG
#include <png.h>
#endif
#ifdef SI_HAVE_JPEG
#include <jpeglib.h>
#endif

static const char *si_detect;
static const char *case_dir;
static char *tmpdir;

typedef struct
{
  int rc;
  char *out, *err;
} Result;

static Result
run_tool (const char *first, ...)
{
  GPtrArray *argv = g_ptr_array_new ();
  va_list ap;
  Result r = { 0 };
  GError *error = NULL;
  int status;

  g_ptr_array_add (argv, (gpointer) si_detect);
  va_start (ap, first);
  for (const char *a = first; a != NULL; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL,
      G_SPAWN_DEFAULT, NULL, NULL, &r.out, &r.err, &status, &error));
  g_assert_no_error (error);
  r.rc = WIFEXITED (status) ? WEXITSTATUS (status) : -1;
  g_ptr_array_free (argv, TRUE);
  g_test_message ("rc %d, stderr: %s", r.rc, r.err);
  return r;
}

static void
result_clear (Result *r)
{
  g_free (r->out);
  g_free (r->err);
}

static void
expect_failure (Result r, int rc, const char *needle)
{
  g_assert_cmpint (r.rc, ==, rc);
  g_assert_cmpstr (r.out, ==, "");
  if (strstr (r.err, needle) == NULL)
    g_error ("stderr \"%s\" does not mention \"%s\"", r.err, needle);
  result_clear (&r);
}

static void
test_version (void)
{
  Result r = run_tool ("--version", NULL);
  g_assert_cmpint (r.rc, ==, 0);
  g_assert_nonnull (strstr (r.out, "si-detect "));
  g_assert_nonnull (strstr (r.out, "backends: "));
  g_assert_nonnull (strstr (r.out, "cpu"));
  result_clear (&r);
}

static void
test_usage_errors (void)
{
  char *model = g_build_filename (case_dir, "model.safetensors", NULL);
  char *image = g_build_filename (case_dir, "image.ppm", NULL);
  expect_failure (run_tool (NULL), 2, "--model and --image are required");
  expect_failure (run_tool ("--model", model, NULL), 2, "--image");
  expect_failure (run_tool ("--bogus", NULL), 2, "bogus");
  expect_failure (
      run_tool ("--model", model, "--image", image, "--threshold", "abc", NULL),
      2, "threshold");
  expect_failure (run_tool ("--model", model, "--image", image,
                      "--max-detections", "-3", NULL),
      2, "max-detections");
  expect_failure (
      run_tool ("--model", model, "--image", image, "--backend", "tpu", NULL),
      1, "tpu");
  expect_failure (
      run_tool ("--model", model, "--image", image, "--precision", "fp8", NULL),
      1, "unknown precision \"fp8\"");
  g_free (model);
  g_free (image);
}

static void
test_bad_inputs (void)
{
  char *model = g_build_filename (case_dir, "model.safetensors", NULL);
  char *image = g_build_filename (case_dir, "image.ppm", NULL);
  char *nofile = g_build_filename (tmpdir, "nothing-here.ppm", NULL);
  char *text = g_build_filename (tmpdir, "text.png", NULL);
  g_assert_true (g_file_set_contents (text, "hello, not an image", -1, NULL));

  expect_failure (run_tool ("--model", model, "--image", nofile, NULL), 1,
      "nothing-here.ppm");
  expect_failure (run_tool ("--model", model, "--image", text, NULL), 1,
      "not a PPM/PGM, PNG or JPEG");
  expect_failure (run_tool ("--model", nofile, "--image", image, NULL), 1,
      "nothing-here.ppm");
  expect_failure (
      run_tool ("--model", text, "--image", image, NULL), 1, "text.png");
  char *dump = g_build_filename (tmpdir, "no", "such", "dir.st", NULL);
  Result r =
      run_tool ("--model", model, "--image", image, "--dump", dump, NULL);
  g_assert_cmpint (r.rc, ==, 1);
  g_assert_nonnull (strstr (r.err, "dir.st"));
  result_clear (&r);

  g_unlink (text);
  g_free (dump);
  g_free (model);
  g_free (image);
  g_free (nofile);
  g_free (text);
}

/* Runs si-detect on path and returns the parsed detections array length;
 * checks width/height and the JSON layout. */
static int
run_json (const char *image, int w, int h, const char *extra)
{
  char *model = g_build_filename (case_dir, "model.safetensors", NULL);
  Result r = run_tool ("--model", model, "--image", image, "--threshold", "0",
      extra ? extra : "--max-detections", extra ? "1" : "0", NULL);
  g_assert_cmpint (r.rc, ==, 0);
  JsonParser *p = json_parser_new ();
  GError *error = NULL;
  if (!json_parser_load_from_data (p, r.out, -1, &error))
    g_error ("invalid JSON %s: %s", r.out, error->message);
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpint (json_object_get_int_member (o, "width"), ==, w);
  g_assert_cmpint (json_object_get_int_member (o, "height"), ==, h);
  JsonArray *a = json_object_get_array_member (o, "detections");
  int n = (int) json_array_get_length (a);
  for (int i = 0; i < n; i++) {
    JsonObject *d = json_array_get_object_element (a, i);
    g_assert_true (json_object_has_member (d, "class_id"));
    g_assert_true (json_object_has_member (d, "label"));
    g_assert_true (json_object_has_member (d, "score"));
    g_assert_cmpuint (
        json_array_get_length (json_object_get_array_member (d, "box")), ==, 4);
  }
  g_object_unref (p);
  result_clear (&r);
  g_free (model);
  return n;
}

static void
test_ppm_variants (void)
{
  /* ASCII P3 with a comment, maxval 15 */
  char *p3 = g_build_filename (tmpdir, "small.ppm", NULL);
  GString *s = g_string_new ("P3\n# a comment\n4 3\n15\n");
  for (int i = 0; i < 4 * 3 * 3; i++)
    g_string_append_printf (s, "%d ", i % 16);
  g_assert_true (g_file_set_contents (p3, s->str, -1, NULL));
  g_string_free (s, TRUE);
  g_assert_cmpint (run_json (p3, 4, 3, NULL), >, 0);
  /* --max-detections limits the output */
  g_assert_cmpint (run_json (p3, 4, 3, "--max-detections"), ==, 1);
  /* a truncated binary P6 is refused */
  char *p6 = g_build_filename (tmpdir, "cut.ppm", NULL);
  g_assert_true (g_file_set_contents (p6, "P6\n4 3\n255\n\x01\x02", 14, NULL));
  Result r = run_tool ("--model", "x", "--image", p6, NULL);
  g_assert_cmpint (r.rc, ==, 1);
  g_assert_nonnull (strstr (r.err, "truncated"));
  result_clear (&r);
  g_unlink (p3);
  g_unlink (p6);
  g_free (p3);
  g_free (p6);
}

/* A smooth 40x30 RGB test pattern. */
static guint8 *
pattern (int w, int h)
{
  guint8 *p = g_malloc ((size_t) w * h * 3);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      guint8 *d = p + ((size_t) y * w + x) * 3;
      d[0] = (guint8) (x * 6);
      d[1] = (guint8) (y * 8);
      d[2] = (guint8) (128 + x - y);
    }
  return p;
}

static void
test_png (void)
{
#ifdef SI_HAVE_PNG
  int w = 40, h = 30;
  guint8 *rgb = pattern (w, h);
  char *path = g_build_filename (tmpdir, "p.png", NULL);
  png_image pi;
  memset (&pi, 0, sizeof pi);
  pi.version = PNG_IMAGE_VERSION;
  pi.width = (png_uint_32) w;
  pi.height = (png_uint_32) h;
  pi.format = PNG_FORMAT_RGB;
  g_assert_true (png_image_write_to_file (&pi, path, 0, rgb, 0, NULL));
  SiImage img;
  GError *error = NULL;
  g_assert_true (si_image_load (path, &img, &error));
  g_assert_no_error (error);
  g_assert_cmpint (img.width, ==, w);
  g_assert_cmpint (img.height, ==, h);
  g_assert_cmpmem (img.rgb, (size_t) w * h * 3, rgb, (size_t) w * h * 3);
  si_image_clear (&img);
  g_assert_cmpint (run_json (path, w, h, NULL), >, 0);
  /* cut in the middle: refused */
  char *bytes;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  g_assert_true (g_file_set_contents (path, bytes, (gssize) len / 2, NULL));
  g_assert_false (si_image_load (path, &img, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_FORMAT);
  g_clear_error (&error);
  g_free (bytes);
  g_unlink (path);
  g_free (path);
  g_free (rgb);
#else
  g_test_skip ("built without libpng");
#endif
}

static void
test_jpeg (void)
{
#ifdef SI_HAVE_JPEG
  int w = 40, h = 30;
  guint8 *rgb = pattern (w, h);
  char *path = g_build_filename (tmpdir, "p.jpg", NULL);
  FILE *fp = fopen (path, "wb");
  g_assert_nonnull (fp);
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  c.err = jpeg_std_error (&jerr);
  jpeg_create_compress (&c);
  jpeg_stdio_dest (&c, fp);
  c.image_width = (JDIMENSION) w;
  c.image_height = (JDIMENSION) h;
  c.input_components = 3;
  c.in_color_space = JCS_RGB;
  jpeg_set_defaults (&c);
  jpeg_set_quality (&c, 100, TRUE);
  jpeg_start_compress (&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = rgb + (size_t) c.next_scanline * w * 3;
    jpeg_write_scanlines (&c, &row, 1);
  }
  jpeg_finish_compress (&c);
  jpeg_destroy_compress (&c);
  fclose (fp);

  SiImage img;
  GError *error = NULL;
  g_assert_true (si_image_load (path, &img, &error));
  g_assert_no_error (error);
  g_assert_cmpint (img.width, ==, w);
  g_assert_cmpint (img.height, ==, h);
  double err = 0;
  for (int i = 0; i < w * h * 3; i++)
    err += abs ((int) img.rgb[i] - (int) rgb[i]);
  g_assert_cmpfloat (err / (w * h * 3), <, 3.0); /* lossy, but close */
  si_image_clear (&img);
  g_assert_cmpint (run_json (path, w, h, NULL), >, 0);
  char *bytes;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  g_assert_true (g_file_set_contents (path, bytes, 200, NULL));
  g_assert_false (si_image_load (path, &img, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_FORMAT);
  g_clear_error (&error);
  g_free (bytes);
  g_unlink (path);
  g_free (path);
  g_free (rgb);
#else
  g_test_skip ("built without libjpeg");
#endif
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  if (argc < 3)
    g_error ("usage: test-si-detect SI_DETECT_PATH GOLDEN_CASE_DIR");
  si_detect = argv[1];
  case_dir = argv[2];
  tmpdir = g_dir_make_tmp ("si-detect-XXXXXX", NULL);

  g_test_add_func ("/si-detect/version", test_version);
  g_test_add_func ("/si-detect/usage-errors", test_usage_errors);
  g_test_add_func ("/si-detect/bad-inputs", test_bad_inputs);
  g_test_add_func ("/si-detect/ppm-variants", test_ppm_variants);
  g_test_add_func ("/si-detect/png", test_png);
  g_test_add_func ("/si-detect/jpeg", test_jpeg);
  int rc = g_test_run ();
  g_rmdir (tmpdir);
  g_free (tmpdir);
  return rc;
}
