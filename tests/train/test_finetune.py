#!/usr/bin/python3
# test_finetune.py: the trainer's fine-tuning inputs.  synth.video_scene is
# reproducible and leaves out the objects that later ones cover to less
# than a quarter visible (checked against visibility counted here from the
# drawn masks); train.py --init refuses a model of other sizes by name and
# fine-tunes the demo model for two iterations with video-like frames in
# the batch (the exported weights change, the keys and shapes do not).
# Usage: test_finetune.py --model models/demo.safetensors
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN = os.path.join(HERE, "..", "..", "tools", "train")
sys.path.insert(0, TRAIN)

import numpy as np  # noqa: E402

import st  # noqa: E402
import synth  # noqa: E402


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def visible_fractions(video, t):
    """Per object drawn in frame t (boxes order): the fraction of its shape
    that no later object covers."""
    masks = []
    for o in video.objs:
        p = dict(o["p"])
        p["angle"] = p["angle"] + o["va"] * t
        x, y = video._pos(o, t)
        m = synth.render_mask(p, x, y, video.W, video.H) > 0
        if m.any():
            masks.append(m)
    out = []
    for i, m in enumerate(masks):
        later = np.zeros_like(m)
        for n in masks[i + 1:]:
            later |= n
        out.append((m & ~later).sum() / m.sum())
    return out


def check_video_scene():
    a = synth.video_scene(1, 5)
    b = synth.video_scene(1, 5)
    c = synth.video_scene(1, 6)
    for x, y in zip(a, b):
        if not np.array_equal(x, y):
            fail("video_scene(1, 5) differs between two calls")
    if np.array_equal(a[0], c[0]):
        fail("video_scene(1, 5) and (1, 6) are the same image")
    H, W = a[0].shape[:2]
    if (W, H) != (synth.DEFAULT_W, synth.DEFAULT_H) or a[0].dtype != np.uint8:
        fail("video_scene image %s %s" % (a[0].shape, a[0].dtype))
    dropped = kept = 0
    for t in range(0, 400, 7):
        v = synth.Video(4242, W, H, 8)
        _, all_boxes, all_labels = v.frame(t)
        _, boxes, labels = v.frame(t, min_visible=0.25)
        vis = visible_fractions(v, t)
        want = [i for i, f in enumerate(vis) if f >= 0.25]
        if len(vis) != len(all_boxes):
            fail("t %d: %d masks, %d boxes" % (t, len(vis), len(all_boxes)))
        if not (np.array_equal(boxes, all_boxes[want]) and
                np.array_equal(labels, all_labels[want])):
            fail("t %d: kept %d objects, visibility says %s" %
                 (t, len(boxes), [round(f, 2) for f in vis]))
        dropped += len(all_boxes) - len(boxes)
        kept += len(boxes)
    if dropped == 0:
        fail("no object was ever covered: the visibility check is untested")
    print("video_scene: reproducible; %d objects kept, %d covered ones left "
          "out over 58 frames" % (kept, dropped))


def check_init(model):
    with tempfile.TemporaryDirectory() as out:
        base = [sys.executable, os.path.join(TRAIN, "train.py"), "--out", out,
                "--init", model, "--threads", "1", "--log-every", "1",
                "--save-every", "100", "--warmup", "1"]
        r = subprocess.run(base + ["--queries", "24", "--iters", "1"],
                           capture_output=True, text=True)
        if r.returncode == 0 or "config differs" not in r.stderr:
            fail("--init with 24 queries over a 48-query model: rc %d, %s" %
                 (r.returncode, r.stderr[-400:]))
        r = subprocess.run(base + ["--queries", "48", "--out-points", "24",
                                   "--iters", "2", "--video-per-batch", "2",
                                   "--lr", "1e-4"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail("fine-tuning failed: %s" % (r.stdout + r.stderr)[-800:])
        before, init_meta = st.load(model)
        after, meta = st.load(os.path.join(out, "model.safetensors"))
        if sorted(before) != sorted(after) or any(
                before[k].shape != after[k].shape for k in before):
            fail("the fine-tuned model's tensors differ in names or shapes")
        changed = [k for k in before if not np.array_equal(before[k],
                                                           after[k])]
        if not changed:
            fail("two fine-tuning iterations changed no weight")
        want = "%s + train.py --init iter 2" % init_meta["source"]
        if meta.get("source") != want:
            fail("source metadata %r, want %r" % (meta.get("source"), want))
        print("--init: refuses other sizes; 2 iterations changed %d of %d "
              "tensors (%s)" % (len(changed), len(before), meta["source"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    check_video_scene()
    check_init(a.model)
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
