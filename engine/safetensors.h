/* safetensors.h: read-only, mmap-backed reader of safetensors files, and a
 * small writer (for dumps).  The reader trusts nothing: every offset, size,
 * dtype and shape in the header is checked against the file before use.
 */
#ifndef SI_SAFETENSORS_H
#define SI_SAFETENSORS_H

#include <glib.h>
#include <stdint.h>
#include <stddef.h>

#define SI_TENSOR_MAX_DIMS 8

typedef enum
{
  SI_DTYPE_F32,
  SI_DTYPE_F16,
  SI_DTYPE_BF16,
  SI_DTYPE_F64,
  SI_DTYPE_I64,
  SI_DTYPE_I32,
  SI_DTYPE_I16,
  SI_DTYPE_I8,
  SI_DTYPE_U8,
  SI_DTYPE_BOOL,
} SiDtype;

typedef struct
{
  const char *name;
  SiDtype dtype;
  int ndim;
  int64_t shape[SI_TENSOR_MAX_DIMS];
  int64_t numel;
  const void *data; /* inside the mapping; may be unaligned for dtypes > 1 */
  size_t nbytes;
} SiTensorInfo;

typedef struct _SiSafetensors SiSafetensors;

SiSafetensors *si_safetensors_open (const char *path, GError **error);
void si_safetensors_close (SiSafetensors **file);
/* NULL when absent. */
const SiTensorInfo *si_safetensors_find (
    const SiSafetensors *file, const char *name);
guint si_safetensors_n_tensors (const SiSafetensors *file);
const SiTensorInfo *si_safetensors_get (const SiSafetensors *file, guint i);
/* The whole file as mapped (read-only, private, clean): its pages may be
 * given back with madvise (MADV_DONTNEED) and are read again from the page
 * cache on the next access. */
void si_safetensors_mapping (
    const SiSafetensors *file, const void **base, size_t *size);

/* A string of __metadata__, NULL when absent. */
const char *si_safetensors_metadata (
    const SiSafetensors *file, const char *key);
const char *si_dtype_name (SiDtype dtype);
size_t si_dtype_size (SiDtype dtype);

/* Writer: collects float32 tensors, then writes one file. */
typedef struct _SiSafetensorsWriter SiSafetensorsWriter;
SiSafetensorsWriter *si_safetensors_writer_new (void);
void si_safetensors_writer_add_f32 (SiSafetensorsWriter *w, const char *name,
    const int64_t *shape, int ndim, const float *data);
void si_safetensors_writer_add_metadata (
    SiSafetensorsWriter *w, const char *key, const char *value);
gboolean si_safetensors_writer_save (
    SiSafetensorsWriter *w, const char *path, GError **error);
void si_safetensors_writer_free (SiSafetensorsWriter **w);

#endif /* SI_SAFETENSORS_H */
