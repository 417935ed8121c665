#!/usr/bin/python3
# evaluate.py: COCO-style box AP (mean over IoU 0.50:0.05:0.95 and classes,
# 101-point interpolated precision, up to 100 detections per image), AP50 and
# AP75 on a held-out synthetic set (split seed 2024, never used in training),
# for the PyTorch model and/or the C engine (tools/si-detect JSON output) on
# the same images.  Own implementation, no pycocotools.
#
# Usage:
#   evaluate.py --model models/demo.safetensors [--count 200] [--seed 2024]
#               [--engine build-x/tools/si-detect] [--threads N] [--json F]
#   evaluate.py --model M --frame-check [--videos 2024,7,11,12]: instead,
#               how many frames pass test_demo_heldout.py's check, over the
#               held-out scenes and demo-like (JPEG) video frames
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np


def _threads_arg(default="1"):
    for i, v in enumerate(sys.argv):
        if v == "--threads" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
        if v.startswith("--threads="):
            return v.split("=", 1)[1]
    return default


# Debian's torch calls the system OpenBLAS (pthread build), whose thread pool
# ignores torch.set_num_threads and must be sized before torch is loaded.
os.environ.setdefault("OPENBLAS_NUM_THREADS", _threads_arg())
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export as E  # noqa: E402
import synth  # noqa: E402

IOU_THRS = np.linspace(0.5, 0.95, 10)
REC_THRS = np.linspace(0.0, 1.0, 101)


# ------------------------------------------------------------------ AP --

def iou_matrix(d, g):
    """d (n, 4), g (m, 4) xyxy -> (n, m)"""
    if len(d) == 0 or len(g) == 0:
        return np.zeros((len(d), len(g)))
    lt = np.maximum(d[:, None, :2], g[None, :, :2])
    rb = np.minimum(d[:, None, 2:], g[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    ad = (d[:, 2] - d[:, 0]) * (d[:, 3] - d[:, 1])
    ag = (g[:, 2] - g[:, 0]) * (g[:, 3] - g[:, 1])
    return inter / np.maximum(ad[:, None] + ag[None, :] - inter, 1e-12)


def coco_ap(gts, dets, num_classes, max_dets=100):
    """gts: list per image of (boxes (m, 4), labels (m,));
    dets: list per image of (boxes (n, 4), scores (n,), labels (n,)).
    Returns dict AP, AP50, AP75 (fractions) and per-class AP."""
    prec = -np.ones((len(IOU_THRS), len(REC_THRS), num_classes))
    for c in range(num_classes):
        scores_all = []
        tp_all = [[] for _ in IOU_THRS]
        npos = 0
        for (gb, gl), (db, ds, dl) in zip(gts, dets):
            g = gb[gl == c]
            # COCO keeps the max_dets best detections of an image overall
            order_img = np.argsort(-ds, kind="mergesort")[:max_dets]
            keep = order_img[dl[order_img] == c]
            d = db[keep]
            s = ds[keep]
            npos += len(g)
            ious = iou_matrix(d, g)
            for ti, thr in enumerate(IOU_THRS):
                matched = np.zeros(len(g), bool)
                tp = np.zeros(len(d), bool)
                for i in range(len(d)):  # d already score-descending
                    best, bj = min(thr, 1 - 1e-10), -1
                    for j in range(len(g)):
                        if matched[j] or ious[i, j] < best:
                            continue
                        best, bj = ious[i, j], j
                    if bj >= 0:
                        matched[bj] = True
                        tp[i] = True
                tp_all[ti].append(tp)
            scores_all.append(s)
        if npos == 0:
            continue
        scores = np.concatenate(scores_all) if scores_all else np.zeros(0)
        order = np.argsort(-scores, kind="mergesort")
        for ti in range(len(IOU_THRS)):
            tp = np.concatenate(tp_all[ti])[order] if len(order) else \
                np.zeros(0, bool)
            ctp = np.cumsum(tp)
            cfp = np.cumsum(~tp)
            rc = ctp / npos
            pr = ctp / np.maximum(ctp + cfp, np.spacing(1))
            # monotone precision envelope
            for i in range(len(pr) - 1, 0, -1):
                if pr[i] > pr[i - 1]:
                    pr[i - 1] = pr[i]
            q = np.zeros(len(REC_THRS))
            inds = np.searchsorted(rc, REC_THRS, side="left")
            for ri, pi in enumerate(inds):
                if pi < len(pr):
                    q[ri] = pr[pi]
            prec[ti, :, c] = q

    def mean_valid(p):
        v = p[p > -1]
        return float(v.mean()) if v.size else -1.0
    per_class = [mean_valid(prec[:, :, c]) for c in range(num_classes)]
    return {"AP": mean_valid(prec), "AP50": mean_valid(prec[0]),
            "AP75": mean_valid(prec[5]), "per_class": per_class}


# ----------------------------------------------------- the frame check --

def frame_check(gt_boxes, gt_labels, boxes, scores, labels, threshold=0.3):
    """The fixed-frame check of tests/train/test_demo_heldout.py: each
    ground-truth box wants a detection of its class with IoU >= 0.5 (the
    unused one of highest IoU), and no other detection may score >=
    threshold.  -> (match: per ground truth the index into the kept
    detections or -1, kept: indices of the detections >= threshold,
    extra: indices into kept of those matched to nothing, ious (kept, gt))"""
    kept = np.nonzero(np.asarray(scores) >= threshold)[0]
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)[kept]
    labels = np.asarray(labels)[kept]
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    ious = iou_matrix(boxes, gt_boxes)
    used = np.zeros(len(boxes), bool)
    match = []
    for j in range(len(gt_boxes)):
        cand = [i for i in range(len(boxes))
                if not used[i] and labels[i] == gt_labels[j] and
                ious[i, j] >= 0.5]
        if not cand:
            match.append(-1)
            continue
        i = max(cand, key=lambda i: ious[i, j])
        used[i] = True
        match.append(i)
    return match, kept, np.nonzero(~used)[0], ious


def video_frame(seed, t, quality=95):
    """Frame t of synth.Video(seed), JPEG-compressed as the demo's MJPG
    video is (scripts/demo.sh: seed 2024), with all its objects."""
    img, boxes, labels = synth.Video(seed).frame(t)
    return synth.jpeg_round_trip(img, quality), boxes, labels


def test_like(gt_boxes):
    """Scenes like the fixed frames of test_demo_heldout.py: at least two
    objects, every box at least 20 px on each side."""
    g = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    return len(g) >= 2 and (g[:, 2:] - g[:, :2]).min() >= 20


def frame_check_rates(detector, seed, count, videos, W, H):
    """The frame check over `count` held-out scenes (and over those of them
    that are test_like) and over every second of the first 100 frames of
    each video seed: -> list of (name, frames passing, frames, objects
    missed, extra boxes, objects)."""
    rows = []

    def tally(groups, frames):
        counts = [[0] * 5 for _ in groups]
        for img, gb, gl in frames:
            b, s, l = detector(img)
            match, _, ex, _ = frame_check(gb, gl, b, s, l)
            m = sum(1 for i in match if i < 0)
            for (_, member), c in zip(groups, counts):
                if member(gb):
                    c[0] += m == 0 and len(ex) == 0
                    c[1] += 1
                    c[2] += m
                    c[3] += len(ex)
                    c[4] += len(gb)
        rows.extend((name,) + tuple(c) for (name, _), c in zip(groups, counts))

    def every(_):
        return True

    tally([("held-out seed %d" % seed, every), ("  test-like", test_like)],
          (synth.scene(seed, i, W, H) for i in range(count)))
    for v in videos:
        tally([("video seed %d" % v, every)],
              (video_frame(v, t) for t in range(0, 100, 2)))
    return rows


# ---------------------------------------------------------- detectors --

def preprocess(rgb, test_scale, img_norm):
    """Engine/mmdet preprocessing: keep-ratio resize into test_scale
    (cv2 INTER_LINEAR), normalise, pad to 32 -> (1, 3, Hp, Wp), (new_w, new_h),
    scale_factor (4,)."""
    import cv2
    h, w = rgb.shape[:2]
    lm, sm = max(test_scale), min(test_scale)
    s = min(lm / max(h, w), sm / min(h, w))
    nw, nh = int(w * s + 0.5), int(h * s + 0.5)
    if (nw, nh) != (w, h):
        rgb = cv2.resize(rgb, (nw, nh), interpolation=cv2.INTER_LINEAR)
    mean = np.array(img_norm["mean"], np.float32)
    std = np.array(img_norm["std"], np.float32)
    x = ((rgb.astype(np.float32) - mean) *
         (1.0 / std.astype(np.float64))).astype(np.float32)
    hp, wp = -(-nh // 32) * 32, -(-nw // 32) * 32
    pad = np.zeros((hp, wp, 3), np.float32)
    pad[:nh, :nw] = x
    t = torch.from_numpy(pad).permute(2, 0, 1)[None].contiguous()
    sf = torch.tensor([nw / w, nh / h, nw / w, nh / h], dtype=torch.float32)
    return t, (nw, nh), sf


class TorchDetector:
    def __init__(self, model_path, threads=1):
        torch.set_num_threads(threads)
        self.net, self.meta = E.load(model_path)

    def __call__(self, rgb):
        x, (nw, nh), sf = preprocess(rgb, self.meta["test_scale"],
                                     self.meta["img_norm"])
        b, s, l, _ = self.net.detect(x, torch.tensor([[float(nw), float(nh)]]),
                                     sf)
        return b.numpy(), s.numpy(), l.numpy()


def parse_engine_json(text):
    """Accepts the si-detect JSON: an object with a list under
    'detections' (or a bare list); each detection has a box
    (box / bbox: x1 y1 x2 y2), a score and a class id (class_id / label_id /
    class / label when numeric)."""
    j = json.loads(text)
    dets = j.get("detections", j.get("objects", [])) if isinstance(j, dict) \
        else j
    boxes, scores, labels = [], [], []
    for d in dets:
        box = d.get("box", d.get("bbox"))
        if isinstance(box, dict):
            box = [box["x1"], box["y1"], box["x2"], box["y2"]]
        cid = None
        for k in ("class_id", "label_id", "class", "label"):
            if k in d and isinstance(d[k], (int, float)):
                cid = int(d[k])
                break
        if cid is None:
            name = d.get("label", d.get("class_name"))
            cid = synth.CLASSES.index(name)
        boxes.append([float(v) for v in box])
        scores.append(float(d["score"]))
        labels.append(cid)
    return (np.array(boxes, np.float64).reshape(-1, 4),
            np.array(scores, np.float64), np.array(labels, np.int64))


class EngineDetector:
    def __init__(self, exe, model_path, workdir, threshold=0.0, threads=None):
        self.exe, self.model, self.workdir = exe, model_path, workdir
        self.threshold = threshold
        self.threads = threads
        self.n = 0

    def run_file(self, path):
        cmd = [self.exe, "--model", self.model, "--image", path,
               "--threshold", repr(self.threshold)]
        env = dict(os.environ)
        if self.threads:
            env["OMP_NUM_THREADS"] = str(self.threads)
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd),
                                                        r.returncode,
                                                        r.stderr[-2000:]))
        return parse_engine_json(r.stdout)

    def __call__(self, rgb):
        path = os.path.join(self.workdir, "eval%06d.ppm" % self.n)
        self.n += 1
        synth.write_ppm(path, rgb)
        try:
            return self.run_file(path)
        finally:
            os.unlink(path)


def evaluate(detector, seed, count, num_classes, W, H):
    gts, dets = [], []
    t0 = time.time()
    for i in range(count):
        img, boxes, labels = synth.scene(seed, i, W, H)
        gts.append((boxes.astype(np.float64), labels))
        b, s, l = detector(img)
        dets.append((np.asarray(b, np.float64), np.asarray(s, np.float64),
                     np.asarray(l, np.int64)))
    el = time.time() - t0
    r = coco_ap(gts, dets, num_classes)
    r["seconds"] = el
    return r, dets


def main():
    ap = argparse.ArgumentParser(description="COCO-style AP on held-out "
                                 "synthetic scenes")
    ap.add_argument("--model", required=True)
    ap.add_argument("--seed", type=int, default=synth.SPLIT_SEEDS["val"])
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--engine", help="path of si-detect (C engine)")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--frame-check", action="store_true",
                    help="instead of AP: how many frames pass the fixed-frame "
                    "check of test_demo_heldout.py, over the held-out scenes "
                    "and demo-like videos (PyTorch model)")
    ap.add_argument("--videos", default="2024,7,11,12",
                    help="video seeds for --frame-check (2024: the demo's)")
    a = ap.parse_args()
    if a.seed == synth.SPLIT_SEEDS["train"]:
        print("warning: evaluating on the training seed", file=sys.stderr)
    _, meta = E.load(a.model)
    nc = len(meta["classes"])
    W, H = meta["test_scale"][0], meta["test_scale"][1]
    if a.frame_check:
        videos = [int(v) for v in a.videos.split(",") if v]
        rows = frame_check_rates(TorchDetector(a.model, a.threads), a.seed,
                                 a.count, videos, W, H)
        print("%-18s %-18s %-18s %s" % ("frames", "pass", "missed / objects",
                                        "extra boxes"))
        for name, ok, n, missed, extra, objects in rows:
            print("%-18s %-18s %-18s %d" % (
                name, "%d / %d (%.1f %%)" % (ok, n, 100.0 * ok / max(n, 1)),
                "%d / %d" % (missed, objects), extra))
        return 0
    results = {}
    if not a.no_torch:
        r, tdets = evaluate(TorchDetector(a.model, a.threads), a.seed, a.count,
                            nc, W, H)
        results["pytorch"] = r
    if a.engine:
        with tempfile.TemporaryDirectory() as wd:
            r, edets = evaluate(EngineDetector(a.engine, a.model, wd,
                                               threads=a.threads),
                                a.seed, a.count, nc, W, H)
        results["engine"] = r
    print("held-out set: seed %d, %d images, %dx%d, classes %s" %
          (a.seed, a.count, W, H, meta["classes"]))
    print("%-10s %7s %7s %7s %9s" % ("impl", "AP", "AP50", "AP75", "s/img"))
    for k, r in results.items():
        print("%-10s %7.2f %7.2f %7.2f %9.3f" %
              (k, 100 * r["AP"], 100 * r["AP50"], 100 * r["AP75"],
               r["seconds"] / a.count))
        print("   per-class AP: " + ", ".join(
            "%s %.1f" % (n, 100 * v) for n, v in zip(meta["classes"],
                                                     r["per_class"])))
    if "pytorch" in results and "engine" in results:
        d = 100 * (results["engine"]["AP"] - results["pytorch"]["AP"])
        print("engine - pytorch AP: %+.2f points" % d)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
