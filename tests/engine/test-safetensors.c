/* test-safetensors.c: the safetensors reader and writer (suite unit):
 * writer -> reader round trip, then hand-made corrupt files, each of which
 * must be refused with the right SiErrorCode and a message naming the
 * file and the problem.
 */
#include "safetensors.h"
#include "si-engine.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

static char *tmpdir;

static char *
tmp_path (const char *name)
{
  return g_build_filename (tmpdir, name, NULL);
}

/* Writes u64 LE header length, header, then data. */
static char *
write_raw (const char *name, guint64 hlen, const char *header, const void *data,
    size_t data_len)
{
  char *path = tmp_path (name);
  GByteArray *b = g_byte_array_new ();
  guint8 lenbuf[8];
  for (int i = 0; i < 8; i++)
    lenbuf[i] = (guint8) (hlen >> (8 * i));
  g_byte_array_append (b, lenbuf, 8);
  g_byte_array_append (b, (const guint8 *) header, strlen (header));
  if (data_len > 0)
    g_byte_array_append (b, data, data_len);
  g_assert_true (
      g_file_set_contents (path, (const char *) b->data, b->len, NULL));
  g_byte_array_unref (b);
  return path;
}

static char *
write_file (const char *name, const char *header, size_t data_len)
{
  guint8 *zeros = g_malloc0 (data_len + 1);
  char *p = write_raw (name, strlen (header), header, zeros, data_len);
  g_free (zeros);
  return p;
}

/* Opening path must fail with code and a message containing each of the
 * NULL-terminated needles (plus the file path). */
static void
expect_open_error (const char *path, SiErrorCode code, ...)
{
  GError *error = NULL;
  SiSafetensors *f = si_safetensors_open (path, &error);
  g_assert_null (f);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_error (error, SI_ERROR, (gint) code);
  g_assert_nonnull (strstr (error->message, path));
  va_list ap;
  va_start (ap, code);
  for (const char *s = va_arg (ap, const char *); s != NULL;
       s = va_arg (ap, const char *)) {
    if (strstr (error->message, s) == NULL)
      g_error ("message \"%s\" does not mention \"%s\"", error->message, s);
  }
  va_end (ap);
  g_error_free (error);
}

static void
test_round_trip (void)
{
  char *path = tmp_path ("rt.safetensors");
  SiSafetensorsWriter *w = si_safetensors_writer_new ();
  float a[6] = { 1, -2, 3.5f, 4, 5, 6e-8f };
  float s = 42.0f;
  int64_t sa[2] = { 2, 3 }, sz[2] = { 0, 5 };
  GError *error = NULL;

  si_safetensors_writer_add_f32 (w, "a", sa, 2, a);
  si_safetensors_writer_add_f32 (w, "scalar", NULL, 0, &s);
  si_safetensors_writer_add_f32 (w, "empty", sz, 2, NULL);
  si_safetensors_writer_add_f32 (w, "we\"ird/name", sa, 1, a);
  si_safetensors_writer_add_metadata (w, "k", "v \"quoted\"");
  si_safetensors_writer_add_metadata (w, "k", "v2");
  /* a repeated name keeps the last data */
  si_safetensors_writer_add_f32 (w, "a", sa, 2, a);
  g_assert_true (si_safetensors_writer_save (w, path, &error));
  g_assert_no_error (error);
  si_safetensors_writer_free (&w);
  g_assert_null (w);

  /* data starts 8-byte aligned; header padded with spaces */
  char *bytes;
  gsize len;
  g_assert_true (g_file_get_contents (path, &bytes, &len, NULL));
  guint64 hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | (guint8) bytes[i];
  g_assert_cmpuint ((8 + hlen) % 8, ==, 0);
  g_assert_cmpuint (len, ==, 8 + hlen + (6 + 1 + 2) * 4);
  g_free (bytes);

  SiSafetensors *f = si_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f);
  g_assert_cmpuint (si_safetensors_n_tensors (f), ==, 4);
  g_assert_cmpstr (si_safetensors_metadata (f, "k"), ==, "v2");
  g_assert_null (si_safetensors_metadata (f, "nope"));
  const SiTensorInfo *t = si_safetensors_find (f, "a");
  g_assert_nonnull (t);
  g_assert_cmpint (t->dtype, ==, SI_DTYPE_F32);
  g_assert_cmpint (t->ndim, ==, 2);
  g_assert_cmpint (t->shape[0], ==, 2);
  g_assert_cmpint (t->shape[1], ==, 3);
  g_assert_cmpint (t->numel, ==, 6);
  g_assert_cmpuint (t->nbytes, ==, 24);
  g_assert_cmpmem (t->data, 24, a, 24);
  t = si_safetensors_find (f, "scalar");
  g_assert_nonnull (t);
  g_assert_cmpint (t->ndim, ==, 0);
  g_assert_cmpint (t->numel, ==, 1);
  g_assert_cmpmem (t->data, 4, &s, 4);
  t = si_safetensors_find (f, "empty");
  g_assert_nonnull (t);
  g_assert_cmpint (t->numel, ==, 0);
  t = si_safetensors_find (f, "we\"ird/name");
  g_assert_nonnull (t);
  g_assert_cmpint (t->numel, ==, 2);
  g_assert_cmpmem (t->data, 8, a, 8);
  g_assert_null (si_safetensors_find (f, "missing"));
  for (guint i = 0; i < si_safetensors_n_tensors (f); i++)
    g_assert_nonnull (si_safetensors_get (f, i));
  g_assert_null (si_safetensors_get (f, 4));
  si_safetensors_close (&f);
  g_assert_null (f);
  g_assert_cmpstr (si_dtype_name (SI_DTYPE_BF16), ==, "BF16");
  g_assert_cmpuint (si_dtype_size (SI_DTYPE_I64), ==, 8);
  g_unlink (path);
  g_free (path);
}

static void
test_missing_file (void)
{
  char *path = tmp_path ("does-not-exist.safetensors");
  expect_open_error (path, SI_ERROR_IO, "cannot open", NULL);
  g_free (path);
  expect_open_error (tmpdir, SI_ERROR_IO, "is a directory", NULL);
}

static void
test_header_length_cut (void)
{
  char *path = tmp_path ("cut8.safetensors");
  g_assert_true (g_file_set_contents (path, "\x10\x00\x00", 3, NULL));
  expect_open_error (path, SI_ERROR_FORMAT, "too short", NULL);
  g_free (path);
  path = tmp_path ("empty.safetensors");
  g_assert_true (g_file_set_contents (path, "", 0, NULL));
  expect_open_error (path, SI_ERROR_FORMAT, "too short", NULL);
  g_free (path);
}

static void
test_header_longer_than_file (void)
{
  const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],"
                  "\"data_offsets\":[0,4]}}";
  char *path = write_raw ("hlen.safetensors", 1000, h, "abcd", 4);
  expect_open_error (path, SI_ERROR_FORMAT, "header length 1000", NULL);
  g_free (path);
  /* a length that would overflow 8 + n */
  path = write_raw ("hlen2.safetensors", G_MAXUINT64 - 4, h, "abcd", 4);
  expect_open_error (path, SI_ERROR_FORMAT, "exceeds the file size", NULL);
  g_free (path);
}

static void
test_data_cut (void)
{
  const char *h = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],"
                  "\"data_offsets\":[0,16]}}";
  char *path = write_file ("datacut.safetensors", h, 10);
  expect_open_error (path, SI_ERROR_FORMAT, "\"w\"", "out of range", NULL);
  g_free (path);
}

static void
test_bad_json (void)
{
  char *path = write_file ("json.safetensors", "{\"a\": {\"dtype\": ", 4);
  expect_open_error (path, SI_ERROR_FORMAT, "JSON", NULL);
  g_free (path);
  path = write_file ("json2.safetensors", "[1, 2, 3]", 0);
  expect_open_error (path, SI_ERROR_FORMAT, "not a JSON object", NULL);
  g_free (path);
  path = write_file ("json3.safetensors", "{\"a\": 5}", 0);
  expect_open_error (path, SI_ERROR_FORMAT, "\"a\"", NULL);
  g_free (path);
}

static void
test_overlap (void)
{
  const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[0,8]},"
                  "\"y\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[4,12]}}";
  char *path = write_file ("overlap.safetensors", h, 12);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "\"y\"", "overlap", NULL);
  g_free (path);
}

static void
test_offsets_out_of_range (void)
{
  const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],"
                  "\"data_offsets\":[8,16]}}";
  char *path = write_file ("range.safetensors", h, 8);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "out of range", NULL);
  g_free (path);
  h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}";
  path = write_file ("range2.safetensors", h, 8);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "end before begin", NULL);
  g_free (path);
  h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}";
  path = write_file ("range3.safetensors", h, 8);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "data_offsets", NULL);
  g_free (path);
}

static void
test_size_mismatch (void)
{
  const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],"
                  "\"data_offsets\":[0,8]}}";
  char *path = write_file ("size.safetensors", h, 8);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "12 bytes", NULL);
  g_free (path);
}

static void
test_bad_dtype_and_shape (void)
{
  const char *h = "{\"x\":{\"dtype\":\"F8\",\"shape\":[2],"
                  "\"data_offsets\":[0,2]}}";
  char *path = write_file ("dtype.safetensors", h, 2);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "F8", NULL);
  g_free (path);
  h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}";
  path = write_file ("neg.safetensors", h, 4);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "shape", NULL);
  g_free (path);
  h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],"
      "\"data_offsets\":[0,4]}}";
  path = write_file ("ovf.safetensors", h, 4);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "overflow", NULL);
  g_free (path);
  h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],"
      "\"data_offsets\":[0,4]}}";
  path = write_file ("ndim.safetensors", h, 4);
  expect_open_error (path, SI_ERROR_FORMAT, "\"x\"", "dimensions", NULL);
  g_free (path);
}

static void
test_metadata_not_string (void)
{
  const char *h = "{\"__metadata__\":{\"format\":1}}";
  char *path = write_file ("meta.safetensors", h, 0);
  expect_open_error (path, SI_ERROR_FORMAT, "__metadata__", "format", NULL);
  g_free (path);
}

static void
test_uncovered_bytes (void)
{
  const char *h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],"
                  "\"data_offsets\":[4,8]}}";
  char *path = write_file ("gap.safetensors", h, 8);
  expect_open_error (path, SI_ERROR_FORMAT, "no tensor", NULL);
  g_free (path);
  h = "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  path = write_file ("trail.safetensors", h, 8);
  expect_open_error (path, SI_ERROR_FORMAT, "trailing", NULL);
  g_free (path);
}

static void
test_writer_bad_path (void)
{
  SiSafetensorsWriter *w = si_safetensors_writer_new ();
  GError *error = NULL;
  char *path = g_build_filename (tmpdir, "no-such-dir", "x.safetensors", NULL);
  g_assert_false (si_safetensors_writer_save (w, path, &error));
  g_assert_error (error, SI_ERROR, SI_ERROR_IO);
  g_assert_nonnull (strstr (error->message, path));
  g_error_free (error);
  g_free (path);
  si_safetensors_writer_free (&w);
}

/* Random damage to a small valid file: every variant must either open
 * cleanly or fail with a FORMAT/IO error and a message; never crash (run
 * under ASan in CI). */
static void
test_fuzz (void)
{
  char *good = tmp_path ("fuzz-src.safetensors");
  char *bad = tmp_path ("fuzz.safetensors");
  SiSafetensorsWriter *w = si_safetensors_writer_new ();
  float v[24];
  int64_t s1[2] = { 4, 6 }, s2[1] = { 3 }, s3[3] = { 2, 1, 2 };
  for (int i = 0; i < 24; i++)
    v[i] = (float) i;
  si_safetensors_writer_add_f32 (w, "layer.weight", s1, 2, v);
  si_safetensors_writer_add_f32 (w, "layer.bias", s2, 1, v);
  si_safetensors_writer_add_f32 (w, "x", s3, 3, v);
  si_safetensors_writer_add_metadata (w, "format", "stageinteractor");
  g_assert_true (si_safetensors_writer_save (w, good, NULL));
  si_safetensors_writer_free (&w);

  char *src;
  gsize len;
  g_assert_true (g_file_get_contents (good, &src, &len, NULL));
  GRand *rand = g_rand_new_with_seed (1234);
  int opened = 0, refused = 0;
  for (int it = 0; it < 3000; it++) {
    char *buf = g_memdup2 (src, len);
    gsize n = len;
    int kind = g_rand_int_range (rand, 0, 4);
    if (kind == 0) { /* flip bytes anywhere */
      for (int k = g_rand_int_range (rand, 1, 4); k > 0; k--)
        buf[g_rand_int_range (rand, 0, (gint32) len)] =
            (char) g_rand_int_range (rand, 0, 256);
    } else if (kind == 1) { /* printable junk inside the JSON */
      static const char junk[] = "{}[],:\"0123456789-e. ";
      for (int k = g_rand_int_range (rand, 1, 3); k > 0; k--)
        buf[g_rand_int_range (rand, 8, (gint32) len - 100)] =
            junk[g_rand_int_range (rand, 0, (gint32) sizeof junk - 1)];
    } else if (kind == 2) { /* truncate */
      n = (gsize) g_rand_int_range (rand, 0, (gint32) len);
    } else { /* random header length */
      guint64 h = g_rand_int (rand);
      if (g_rand_boolean (rand))
        h = (h << 32) | g_rand_int (rand);
      for (int i = 0; i < 8; i++)
        buf[i] = (char) (h >> (8 * i));
    }
    /* a fresh file each time: ext4 flushes a truncated-and-rewritten file
     * on close (auto_da_alloc), and g_file_set_contents() may fsync */
    g_unlink (bad);
    FILE *fp = fopen (bad, "wb");
    g_assert_nonnull (fp);
    g_assert_cmpuint (fwrite (buf, 1, n, fp), ==, n);
    g_assert_cmpint (fclose (fp), ==, 0);
    GError *error = NULL;
    SiSafetensors *f = si_safetensors_open (bad, &error);
    if (f != NULL) {
      g_assert_no_error (error);
      for (guint i = 0; i < si_safetensors_n_tensors (f); i++) {
        const SiTensorInfo *t = si_safetensors_get (f, i);
        volatile guint8 sum = 0;
        for (size_t b = 0; b < t->nbytes; b++) /* bytes must be readable */
          sum += ((const guint8 *) t->data)[b];
        (void) sum;
      }
      si_safetensors_close (&f);
      opened++;
    } else {
      g_assert_nonnull (error);
      g_assert_true (g_error_matches (error, SI_ERROR, SI_ERROR_FORMAT) ||
          g_error_matches (error, SI_ERROR, SI_ERROR_IO));
      g_assert_cmpuint (strlen (error->message), >, 0);
      g_error_free (error);
      refused++;
    }
    g_free (buf);
  }
  g_test_message ("fuzz: %d opened, %d refused", opened, refused);
  g_assert_cmpint (refused, >, 1000);
  g_rand_free (rand);
  g_free (src);
  g_unlink (good);
  g_unlink (bad);
  g_free (good);
  g_free (bad);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("si-st-XXXXXX", NULL);
  g_assert_nonnull (tmpdir);

  g_test_add_func ("/safetensors/round-trip", test_round_trip);
  g_test_add_func ("/safetensors/missing-file", test_missing_file);
  g_test_add_func ("/safetensors/header-length-cut", test_header_length_cut);
  g_test_add_func (
      "/safetensors/header-longer-than-file", test_header_longer_than_file);
  g_test_add_func ("/safetensors/data-cut", test_data_cut);
  g_test_add_func ("/safetensors/bad-json", test_bad_json);
  g_test_add_func ("/safetensors/overlap", test_overlap);
  g_test_add_func (
      "/safetensors/offsets-out-of-range", test_offsets_out_of_range);
  g_test_add_func ("/safetensors/size-mismatch", test_size_mismatch);
  g_test_add_func (
      "/safetensors/bad-dtype-and-shape", test_bad_dtype_and_shape);
  g_test_add_func (
      "/safetensors/metadata-not-string", test_metadata_not_string);
  g_test_add_func ("/safetensors/uncovered-bytes", test_uncovered_bytes);
  g_test_add_func ("/safetensors/writer-bad-path", test_writer_bad_path);
  g_test_add_func ("/safetensors/fuzz", test_fuzz);

  int rc = g_test_run ();
  /* remove what the tests left (all files live directly in tmpdir) */
  GDir *d = g_dir_open (tmpdir, 0, NULL);
  const char *n;
  while (d != NULL && (n = g_dir_read_name (d)) != NULL) {
    char *p = tmp_path (n);
    g_unlink (p);
    g_free (p);
  }
  if (d != NULL)
    g_dir_close (d);
  g_rmdir (tmpdir);
  g_free (tmpdir);
  return rc;
}
