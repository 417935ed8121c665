/* File transport: JSON lines (one message per line) or one JSON array,
 * written to file-path or stdout ("-") and flushed after every message so
 * that a reader (tail -f, a crash) sees whole messages only. */
#include "publish-transport.h"

#include "si-engine.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

typedef struct
{
  FILE *fp;
  gboolean is_stdout, array, first;
  gchar *path;
  SiPublishDoneFunc done;
  gpointer done_data;
} SiPublishFile;

static gboolean
file_send (gpointer ctx, const gchar *data, gsize len)
{
  SiPublishFile *f = ctx;
  const gchar *sep = f->array ? (f->first ? "\n" : ",\n") : "";
  gboolean ok;

  ok = fputs (sep, f->fp) >= 0 && fwrite (data, 1, len, f->fp) == len &&
      (f->array || fputc ('\n', f->fp) != EOF) && fflush (f->fp) == 0;
  f->first = FALSE;
  if (ok) {
    f->done (f->done_data, 1, TRUE, NULL);
  } else {
    gchar *reason =
        g_strdup_printf ("cannot write to %s: %s", f->path, g_strerror (errno));
    f->done (f->done_data, 1, FALSE, reason);
    g_free (reason);
  }
  return TRUE;
}

static void
file_cancel (gpointer ctx)
{
  /* Writes never wait: nothing to wake. */
}

static void
file_close (gpointer ctx)
{
  SiPublishFile *f = ctx;

  if (f->array) {
    fputs ("\n]\n", f->fp);
    fflush (f->fp);
  }
  if (!f->is_stdout)
    fclose (f->fp);
  g_free (f->path);
  g_free (f);
}

static const SiPublishOps file_ops = {
  .name = "file",
  .send = file_send,
  .service = NULL,
  .cancel = file_cancel,
  .close = file_close,
};

gboolean
si_publish_file_open (
    const SiPublishConfig *cfg, SiPublishTransport *out, GError **error)
{
  SiPublishFile *f;
  const gchar *path = cfg->file_path;

  if (path == NULL || path[0] == '\0') {
    g_set_error (error, SI_ERROR, SI_ERROR_INVALID_ARGUMENT,
        "method=file needs a file-path (\"-\" for stdout)");
    return FALSE;
  }
  f = g_new0 (SiPublishFile, 1);
  f->is_stdout = strcmp (path, "-") == 0;
  f->fp = f->is_stdout ? stdout : fopen (path, "w");
  if (f->fp == NULL) {
    g_set_error (error, SI_ERROR, SI_ERROR_IO, "cannot open %s: %s", path,
        g_strerror (errno));
    g_free (f);
    return FALSE;
  }
  f->path = g_strdup (f->is_stdout ? "stdout" : path);
  f->array = cfg->file_array;
  f->first = TRUE;
  f->done = cfg->done;
  f->done_data = cfg->done_data;
  if (f->array) {
    fputc ('[', f->fp);
    fflush (f->fp);
  }
  out->ops = &file_ops;
  out->ctx = f;
  return TRUE;
}
