/* preprocess_cuda.cu: CUDA twin of preprocess_cpu.c: the frame (any
 * SiPixelFormat, host memory) goes up in one copy from pinned staging, then
 * one thread per resized pixel converts its four source taps to RGB
 * (BT.601 for NV12 / I420, chroma of the even luma sample) and applies
 * OpenCV's fixed-point INTER_LINEAR (model-spec 2.2; arithmetic in
 * si-math.h); then the 3x256-LUT normalisation with zero padding (2.3,
 * 2.4) into NHWC.
 */
#include "backend_cuda.h"
#include "si-math.h"

#include <string.h>

G_BEGIN_DECLS
#include "preprocess.h"
G_END_DECLS

typedef struct
{
  int packed; /* 1: packed RGB variant, 0: NV12 or I420 */
  int nv12;
  int bpp, off[3]; /* packed: bytes per pixel, byte of R, G, B */
  size_t plane[3]; /* byte offset of each plane in the uploaded frame */
  size_t stride[3];
  int w, h;   /* source size */
  int dw, dh; /* resized size */
  double inv_sx, inv_sy;
} SiFrameDesc;

/* RGB of source pixel (x, y). */
__device__ __forceinline__ void
source_rgb (const uint8_t *f, const SiFrameDesc &d, int x, int y, int rgb[3])
{
  if (d.packed) {
    const uint8_t *p =
        f + d.plane[0] + (size_t) y * d.stride[0] + (size_t) x * d.bpp;
    rgb[0] = p[d.off[0]];
    rgb[1] = p[d.off[1]];
    rgb[2] = p[d.off[2]];
    return;
  }
  int yy = f[d.plane[0] + (size_t) y * d.stride[0] + x];
  const uint8_t *ur = f + d.plane[1] + (size_t) (y / 2) * d.stride[1];
  int u, v;
  if (d.nv12) {
    u = ur[(x / 2) * 2];
    v = ur[(x / 2) * 2 + 1];
  } else {
    u = ur[x / 2];
    v = f[d.plane[2] + (size_t) (y / 2) * d.stride[2] + x / 2];
  }
  uint8_t r, g, b;
  si_yuv_to_rgb (yy, u, v, &r, &g, &b);
  rgb[0] = r;
  rgb[1] = g;
  rgb[2] = b;
}

__global__ void
resize_kernel (const uint8_t *frame, SiFrameDesc d, uint8_t *rgb)
{
  int dx = blockIdx.x * blockDim.x + threadIdx.x;
  int dy = blockIdx.y;
  if (dx >= d.dw)
    return;
  int x0, x1, a0, a1, single, r0, r1, b0, b1;
  int s00[3], s01[3], s10[3], s11[3];

  si_resize_xcoef (dx, d.inv_sx, d.w, &x0, &a0, &a1, &single);
  x1 = single ? x0 : x0 + 1;
  si_resize_ycoef (dy, d.inv_sy, d.h, &r0, &r1, &b0, &b1);
  source_rgb (frame, d, x0, r0, s00);
  source_rgb (frame, d, x1, r0, s01);
  source_rgb (frame, d, x0, r1, s10);
  source_rgb (frame, d, x1, r1, s11);
  uint8_t *o = rgb + ((size_t) dy * d.dw + dx) * 3;
  for (int c = 0; c < 3; c++) {
    int32_t t0 = s00[c] * a0 + s01[c] * a1;
    int32_t t1 = s10[c] * a0 + s11[c] * a1;
    o[c] = si_resize_vmix (t0, t1, b0, b1);
  }
}

/* Bytes of one plane that the kernel may read: full strides except the
 * last row, which only needs row_bytes. */
static size_t
plane_bytes (size_t stride, int rows, size_t row_bytes)
{
  return rows > 0 ? stride * (size_t) (rows - 1) + row_bytes : 0;
}

gboolean
si_resize_frame_cuda (SiBackend *be, const SiFrame *frame,
    const SiImageInfo *info, void *work, uint8_t *rgb, GError **error)
{
  SiFrameDesc d;
  const uint8_t *src[3];
  size_t bytes[3];
  int n_planes, ch = (frame->height + 1) / 2, cw = (frame->width + 1) / 2;
  const uint8_t *dev;
  cudaError_t status;

  memset (&d, 0, sizeof (d));
  d.w = frame->width;
  d.h = frame->height;
  d.dw = info->new_w;
  d.dh = info->new_h;
  d.inv_sx = 1.0 / ((double) d.dw / d.w);
  d.inv_sy = 1.0 / ((double) d.dh / d.h);
  d.packed = si_pixel_format_packed (frame->format, &d.bpp, d.off);
  d.nv12 = frame->format == SI_FORMAT_NV12;
  if (d.packed) {
    n_planes = 1;
    bytes[0] = plane_bytes (frame->strides[0], d.h, (size_t) d.w * d.bpp);
  } else if (d.nv12) {
    n_planes = 2;
    bytes[0] = plane_bytes (frame->strides[0], d.h, d.w);
    bytes[1] = plane_bytes (frame->strides[1], ch, (size_t) cw * 2);
  } else {
    n_planes = 3;
    bytes[0] = plane_bytes (frame->strides[0], d.h, d.w);
    bytes[1] = plane_bytes (frame->strides[1], ch, cw);
    bytes[2] = plane_bytes (frame->strides[2], ch, cw);
  }
  for (int i = 0; i < n_planes; i++) {
    src[i] = frame->planes[i];
    d.stride[i] = frame->strides[i];
  }
  if (d.dw <= 0 || d.dh <= 0)
    return TRUE;

  dev = si_cuda_upload_frame (be, src, bytes, n_planes, d.plane, error);
  if (dev == NULL)
    return FALSE;
  dim3 grid (si_cuda_blocks (d.dw, 128), d.dh);
  resize_kernel<<<grid, 128, 0, si_cuda_priv (be)->stream>>> (dev, d, rgb);
  status = cudaGetLastError ();
  if (status != cudaSuccess) {
    /* the copy may read the caller's frame memory: done before we return */
    cudaStreamSynchronize (si_cuda_priv (be)->stream);
    si_cuda_set_error (error, status, "resize_kernel", __FILE__, __LINE__);
    return FALSE;
  }
  return TRUE;
}

/* One thread per padded output pixel; zero outside new_w x new_h. */
__global__ void
normalize_pad_kernel (const uint8_t *rgb, int nw, int nh, int pw, int ph,
    const float *lut, float *out)
{
  long t = (long) blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (long) pw * ph)
    return;
  int x = (int) (t % pw), y = (int) (t / pw);
  float *o = out + t * 3;
  if (x >= nw || y >= nh) {
    o[0] = o[1] = o[2] = 0.0f;
    return;
  }
  const uint8_t *s = rgb + ((size_t) y * nw + x) * 3;
  o[0] = lut[s[0]];
  o[1] = lut[256 + s[1]];
  o[2] = lut[512 + s[2]];
}

void
si_normalize_pad_cuda (SiBackend *be, const uint8_t *rgb,
    const SiImageInfo *info, const float *lut, float *out)
{
  long total = (long) info->pad_w * info->pad_h;
  if (total <= 0)
    return;
  normalize_pad_kernel<<<si_cuda_blocks (total, 256), 256, 0,
      si_cuda_priv (be)->stream>>> (
      rgb, info->new_w, info->new_h, info->pad_w, info->pad_h, lut, out);
  SI_CUDA_LAUNCHED (be, "normalize_pad_kernel");
}
