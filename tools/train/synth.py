#!/usr/bin/python3
# synth.py: seeded synthetic detection scenes and videos.  Several classes of
# distinct shapes and colour families, random sizes, rotations and moderate
# overlaps on textured backgrounds; exact boxes (bounding box of the drawn
# pixel mask; x2, y2 exclusive, i.e. pixel-area coordinates).  Videos move
# the objects with bouncing motion.  Same seed => same pixels.
#
# Usage:
#   synth.py images --seed 2024 --count 200 --out DIR [--png] [--size 320x192]
#   synth.py video  --seed 7 --frames 150 --out DIR [--png N] [--avi NAME]
import argparse
import json
import math
import os
import sys

import numpy as np

try:
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None

CLASSES = ["circle", "square", "triangle", "star", "cross"]
# OpenCV hue (0..180) of each class's colour family
CLASS_HUE = [0, 112, 60, 28, 148]
DEFAULT_W, DEFAULT_H = 320, 192

SPLIT_SEEDS = {"train": 1, "val": 2024}  # 2024 is never used in training


def _hsv_to_rgb(h, s, v):
    px = np.uint8([[[h % 180, s, v]]])
    return cv2.cvtColor(px, cv2.COLOR_HSV2RGB)[0, 0].astype(np.int32)


def make_background(rng, W, H):
    """Textured background, low saturation: gradient + noise + a pattern."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    base = rng.uniform(60, 190, size=3)
    g = rng.uniform(-60, 60, size=(3, 2))
    img = base[None, None, :] + xx[..., None] / W * g[:, 0] + \
        yy[..., None] / H * g[:, 1]
    kind = rng.integers(0, 4)
    amp = rng.uniform(8, 30)
    if kind == 0:  # stripes
        ang = rng.uniform(0, math.pi)
        per = rng.uniform(6, 30)
        t = (xx * math.cos(ang) + yy * math.sin(ang)) / per
        img += (np.sin(2 * math.pi * t) * amp)[..., None]
    elif kind == 1:  # checker
        cs = int(rng.integers(8, 32))
        ch = (((xx // cs) + (yy // cs)) % 2) * 2 - 1
        img += (ch * amp)[..., None]
    elif kind == 2:  # blotches (low-frequency noise)
        small = rng.normal(0, 1, size=(H // 16 + 2, W // 16 + 2, 3))
        big = cv2.resize(small.astype(np.float32), (W, H),
                         interpolation=cv2.INTER_CUBIC)
        img += big * amp
    img += rng.normal(0, rng.uniform(2, 9), size=img.shape)
    # desaturate toward grey so objects keep their colour identity
    grey = img.mean(-1, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.2, 0.6)
    return np.clip(img, 0, 255).astype(np.uint8)


def _shape_params(rng, cls, W, H, size=None):
    s = size if size is not None else float(
        np.exp(rng.uniform(math.log(14), math.log(min(W, H) * 0.5))))
    return {
        "cls": cls,
        "size": s,
        "aspect": float(rng.uniform(0.7, 1.4)) if cls in (0, 1) else
        float(rng.uniform(0.85, 1.15)),
        "angle": float(rng.uniform(-0.35, 0.35)) if cls == 1 else
        float(rng.uniform(0, 2 * math.pi)),
        "hue": int(CLASS_HUE[cls] + rng.integers(-6, 7)),
        "sat": int(rng.integers(150, 256)),
        "val": int(rng.integers(150, 256)),
        "shade": rng.uniform(-40, 40, size=2).tolist(),
    }


def _polygon(p, cx, cy):
    """Vertices (float) of the class shape centred on (cx, cy)."""
    cls, s, a, ang = p["cls"], p["size"], p["aspect"], p["angle"]
    r = s / 2
    if cls == 1:  # square / rectangle
        pts = [(-r * a, -r / a), (r * a, -r / a), (r * a, r / a),
               (-r * a, r / a)]
    elif cls == 2:  # triangle
        pts = [(r * math.cos(t), r * math.sin(t))
               for t in (0, 2 * math.pi / 3, 4 * math.pi / 3)]
    elif cls == 3:  # five-pointed star
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else r * 0.45
            t = i * math.pi / 5
            pts.append((rr * math.cos(t), rr * math.sin(t)))
    elif cls == 4:  # cross (plus sign)
        w = r * 0.36
        pts = [(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r),
               (-w, r), (-w, w), (-r, w), (-r, -w), (-w, -w)]
    else:
        raise ValueError(cls)
    c, sn = math.cos(ang), math.sin(ang)
    return np.array([(cx + x * c - y * sn, cy + x * sn + y * c)
                     for x, y in pts], np.float64)


def render_mask(p, cx, cy, W, H):
    """uint8 (H, W) mask of one object at centre (cx, cy)."""
    m = np.zeros((H, W), np.uint8)
    sh = 4  # sub-pixel precision bits for cv2 drawing
    if p["cls"] == 0:
        axes = (max(1, int(p["size"] / 2 * p["aspect"] * 16)),
                max(1, int(p["size"] / 2 / p["aspect"] * 16)))
        cv2.ellipse(m, (int(cx * 16), int(cy * 16)), axes,
                    math.degrees(p["angle"]), 0, 360, 255, -1, cv2.LINE_8,
                    sh)
    else:
        pts = np.round(_polygon(p, cx, cy) * 16).astype(np.int32)
        cv2.fillPoly(m, [pts], 255, cv2.LINE_8, sh)
    return m


def paint(img, mask, p, cx, cy, rng):
    """Fill the mask with the object's colour, shaded and slightly noisy."""
    H, W = mask.shape
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return
    col = _hsv_to_rgb(p["hue"], p["sat"], p["val"]).astype(np.float32)
    sx, sy = p["shade"]
    rel = ((xs - cx) * sx + (ys - cy) * sy) / max(p["size"], 1.0)
    v = col[None, :] + rel[:, None] + rng.normal(0, 4, size=(len(xs), 1))
    img[ys, xs] = np.clip(v, 0, 255).astype(np.uint8)


def _box(mask):
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return [float(xs.min()), float(ys.min()), float(xs.max() + 1),
            float(ys.max() + 1)]


def _inter(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0) * max(h, 0)


def _area(a):
    return (a[2] - a[0]) * (a[3] - a[1])


def _overlap_ok(box, boxes, max_cover=0.35):
    for b in boxes:
        i = _inter(box, b)
        if i > max_cover * _area(b) or i > max_cover * _area(box):
            return False
    return True


def make_scene(rng, W=DEFAULT_W, H=DEFAULT_H, max_objects=8):
    """-> img (H, W, 3) uint8 RGB, boxes (n, 4) float32, labels (n,) int64."""
    img = make_background(rng, W, H)
    n = int(rng.integers(1, max_objects + 1))
    boxes, labels = [], []
    for _ in range(n):
        cls = int(rng.integers(0, len(CLASSES)))
        for _try in range(20):
            p = _shape_params(rng, cls, W, H)
            cx = rng.uniform(0.05 * W, 0.95 * W)
            cy = rng.uniform(0.05 * H, 0.95 * H)
            m = render_mask(p, cx, cy, W, H)
            b = _box(m)
            if b is None or (b[2] - b[0]) < 8 or (b[3] - b[1]) < 8:
                continue
            # keep most of the object inside the frame
            if m.sum() / 255.0 < 0.5 * _full_area(p, W, H):
                continue
            if not _overlap_ok(b, boxes):
                continue
            paint(img, m, p, cx, cy, rng)
            boxes.append(b)
            labels.append(cls)
            break
    return (img, np.array(boxes, np.float32).reshape(-1, 4),
            np.array(labels, np.int64))


_AREA_CACHE = {}


def _full_area(p, W, H):
    """Pixel area of the shape when fully visible (drawn in a big canvas)."""
    S = int(p["size"] * 1.6) + 8
    m = render_mask(p, S / 2.0, S / 2.0, S, S)
    return m.sum() / 255.0


def scene(split_seed, index, W=DEFAULT_W, H=DEFAULT_H):
    """Scene `index` of the split with seed `split_seed` (reproducible)."""
    return make_scene(np.random.default_rng([split_seed, index]), W, H)


class Video:
    """Objects moving with constant velocity, bouncing off the borders, over
    a static textured background.  frame(t) is deterministic."""

    def __init__(self, seed, W=DEFAULT_W, H=DEFAULT_H, n_objects=6):
        rng = np.random.default_rng([seed, 999])
        self.W, self.H = W, H
        self.bg = make_background(rng, W, H)
        self.objs = []
        for i in range(n_objects):
            cls = i % len(CLASSES) if i < len(CLASSES) else int(
                rng.integers(0, len(CLASSES)))
            size = float(rng.uniform(22, min(W, H) * 0.4))
            p = _shape_params(rng, cls, W, H, size)
            self.objs.append({
                "p": p,
                "x": rng.uniform(0.15 * W, 0.85 * W),
                "y": rng.uniform(0.15 * H, 0.85 * H),
                "vx": rng.uniform(-3, 3), "vy": rng.uniform(-2, 2),
                "va": rng.uniform(-0.03, 0.03),
            })
        self.noise_seed = seed

    def _pos(self, o, t):
        def bounce(x0, v, lo, hi):
            span = hi - lo
            u = (x0 - lo + v * t) % (2 * span)
            return lo + (u if u < span else 2 * span - u)
        r = o["p"]["size"] / 2
        x = bounce(o["x"], o["vx"], r * 0.5, self.W - r * 0.5)
        y = bounce(o["y"], o["vy"], r * 0.5, self.H - r * 0.5)
        return x, y

    def frame(self, t, min_visible=0.0):
        """-> img, boxes, labels of frame t.  Later objects are drawn on
        top; a box is the full shape's.  Objects of which less than
        min_visible of the shape stays uncovered are left out (the
        demo's annotations keep them all: min_visible 0)."""
        rng = np.random.default_rng([self.noise_seed, 12345, t])
        img = self.bg.copy()
        boxes, labels, masks = [], [], []
        for o in self.objs:
            p = dict(o["p"])
            p["angle"] = p["angle"] + o["va"] * t
            x, y = self._pos(o, t)
            m = render_mask(p, x, y, self.W, self.H)
            paint(img, m, p, x, y, rng)
            b = _box(m)
            if b is not None:
                boxes.append(b)
                labels.append(p["cls"])
                masks.append(m > 0)
        keep = list(range(len(boxes)))
        if min_visible > 0:
            covered = np.zeros((self.H, self.W), bool)
            keep = []
            for i in reversed(range(len(masks))):
                area = masks[i].sum()
                if (masks[i] & ~covered).sum() >= min_visible * area:
                    keep.insert(0, i)
                covered |= masks[i]
        return (img, np.array([boxes[i] for i in keep],
                              np.float32).reshape(-1, 4),
                np.array([labels[i] for i in keep], np.int64))


def video_scene(split_seed, index, W=DEFAULT_W, H=DEFAULT_H):
    """A frame like the demo video's (Video: 4 to 8 moving objects that
    overlap freely, at a random time), JPEG-compressed at quality 40-95 as
    an MJPG stream is; objects less than a quarter visible are left out.
    Index `index` of the split with seed `split_seed` (reproducible; the
    videos' own seeds are far from the demo's and the scenes' splits)."""
    rng = np.random.default_rng([split_seed, index, 777])
    v = Video(10**6 + split_seed * 10**5 + index, W, H,
              int(rng.integers(4, 9)))
    img, boxes, labels = v.frame(int(rng.integers(0, 500)), min_visible=0.25)
    return jpeg_round_trip(img, int(rng.integers(40, 96))), boxes, labels


def jpeg_round_trip(rgb, quality):
    """rgb as it comes out of a JPEG (MJPG frame) of that quality."""
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]),
                           [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return rgb
    return np.ascontiguousarray(cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1])


def write_ppm(path, rgb):
    h, w = rgb.shape[:2]
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(rgb, np.uint8).tobytes())


def read_ppm(path):
    with open(path, "rb") as f:
        data = f.read()
    parts = []
    i = 0
    while len(parts) < 4:
        while data[i:i + 1].isspace():
            i += 1
        if data[i:i + 1] == b"#":
            while data[i:i + 1] not in (b"\n", b""):
                i += 1
            continue
        j = i
        while not data[j:j + 1].isspace():
            j += 1
        parts.append(data[i:j])
        i = j
    i += 1
    w, h = int(parts[1]), int(parts[2])
    return np.frombuffer(data, np.uint8, w * h * 3, i).reshape(h, w, 3)


def write_labels(path):
    with open(path, "w") as f:
        f.write("\n".join(CLASSES) + "\n")


def _ann(file, img, boxes, labels):
    return {"file": file, "width": int(img.shape[1]),
            "height": int(img.shape[0]),
            "boxes": [[round(float(v), 2) for v in b] for b in boxes],
            "labels": [int(v) for v in labels],
            "names": [CLASSES[int(v)] for v in labels]}


def cmd_images(a):
    W, H = a.size
    os.makedirs(a.out, exist_ok=True)
    anns = []
    indices = [int(v) for v in a.indices.split(",")] if a.indices else \
        range(a.start, a.start + a.count)
    for i in indices:
        img, boxes, labels = scene(a.seed, i, W, H)
        name = "%06d.%s" % (i, "png" if a.png else "ppm")
        path = os.path.join(a.out, name)
        if a.png:
            cv2.imwrite(path, img[..., ::-1])
        else:
            write_ppm(path, img)
        anns.append(_ann(name, img, boxes, labels))
    with open(os.path.join(a.out, "annotations.json"), "w") as f:
        json.dump({"seed": a.seed, "classes": CLASSES, "images": anns}, f,
                  indent=0)
    write_labels(os.path.join(a.out, "labels.txt"))
    print("wrote %d images to %s" % (len(anns), a.out))


def cmd_video(a):
    W, H = a.size
    os.makedirs(a.out, exist_ok=True)
    v = Video(a.seed, W, H, a.objects)
    anns = []
    writer = None
    if a.avi:
        writer = cv2.VideoWriter(os.path.join(a.out, a.avi),
                                 cv2.VideoWriter_fourcc(*"MJPG"), a.fps,
                                 (W, H))
        if not writer.isOpened():
            print("cannot open VideoWriter (MJPG/AVI)", file=sys.stderr)
            return 1
    for t in range(a.frames):
        img, boxes, labels = v.frame(t)
        name = "frame%05d.ppm" % t
        if a.ppm:
            write_ppm(os.path.join(a.out, name), img)
        if t < a.png:
            cv2.imwrite(os.path.join(a.out, "frame%05d.png" % t),
                        img[..., ::-1])
        if writer is not None:
            writer.write(np.ascontiguousarray(img[..., ::-1]))
        anns.append(_ann(name, img, boxes, labels))
    if writer is not None:
        writer.release()
    with open(os.path.join(a.out, "annotations.json"), "w") as f:
        json.dump({"seed": a.seed, "classes": CLASSES, "fps": a.fps,
                   "frames": anns}, f, indent=0)
    write_labels(os.path.join(a.out, "labels.txt"))
    print("wrote %d frames to %s" % (a.frames, a.out))
    return 0


def _size(s):
    w, h = s.lower().split("x")
    return int(w), int(h)


def main(argv=None):
    ap = argparse.ArgumentParser(description="seeded synthetic scenes and videos")
    sub = ap.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("images", help="still scenes + annotations.json")
    pi.add_argument("--seed", type=int, default=SPLIT_SEEDS["val"])
    pi.add_argument("--start", type=int, default=0)
    pi.add_argument("--count", type=int, default=100)
    pi.add_argument("--indices", help="comma-separated scene indices "
                    "(instead of --start/--count)")
    pi.add_argument("--out", required=True)
    pi.add_argument("--png", action="store_true", help="PNG instead of PPM")
    pi.add_argument("--size", type=_size, default=(DEFAULT_W, DEFAULT_H))
    pv = sub.add_parser("video", help="moving objects: frames and/or AVI")
    pv.add_argument("--seed", type=int, default=7)
    pv.add_argument("--frames", type=int, default=150)
    pv.add_argument("--objects", type=int, default=6)
    pv.add_argument("--fps", type=int, default=25)
    pv.add_argument("--out", required=True)
    pv.add_argument("--ppm", action="store_true", help="write every frame")
    pv.add_argument("--png", type=int, default=0,
                    help="write the first N frames as PNG")
    pv.add_argument("--avi", default="video.avi",
                    help="MJPG AVI file name ('' = none)")
    pv.add_argument("--size", type=_size, default=(DEFAULT_W, DEFAULT_H))
    a = ap.parse_args(argv)
    return cmd_images(a) if a.cmd == "images" else cmd_video(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
