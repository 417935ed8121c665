#!/usr/bin/python3
# test_demo_heldout.py: the committed demo model finds every object of a few
# fixed held-out synthetic frames (tests/train/data, split seed 2024, never
# used in training): each ground-truth box is matched by a detection of the
# right class with IoU >= 0.5, and no other detection scores >= the default
# threshold 0.3.  --impl engine runs the C engine (si-detect JSON), --impl
# torch the PyTorch model of tools/train.  --impl parity instead checks that
# the engine and the PyTorch model give the same top-k detections (labels,
# boxes within 0.05 px, scores within 1e-4) on the same frames.
# Usage: test_demo_heldout.py --impl engine|torch|parity --model M
#        [--si-detect EXE]
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "train"))

import numpy as np  # noqa: E402

THRESHOLD = 0.3
SKIP = 77


def check(name, gt_boxes, gt_labels, boxes, scores, labels, classes):
    import evaluate as ev
    match, kept, extra, ious = ev.frame_check(gt_boxes, gt_labels, boxes,
                                              scores, labels, THRESHOLD)
    for j, i in enumerate(match):
        if i < 0:
            best = ious[:, j].max() if len(kept) else 0.0
            print("  %s: MISSED %s at %s (best IoU of any box %.2f)" %
                  (name, classes[gt_labels[j]], gt_boxes[j].tolist(), best))
        else:
            print("  %s: %-8s IoU %.3f score %.3f" %
                  (name, classes[gt_labels[j]], ious[i, j], scores[kept[i]]))
    for i in extra:
        k = kept[i]
        print("  %s: EXTRA %s score %.3f box %s" %
              (name, classes[labels[k]], scores[k],
               [round(float(v), 1) for v in boxes[k]]))
    return min(match, default=0) >= 0 and len(extra) == 0


def parity(a, ann):
    import evaluate as ev
    import synth
    if not a.si_detect or not os.path.exists(a.si_detect):
        print("skipped: si-detect not built (%s)" % a.si_detect)
        return SKIP
    eng = ev.EngineDetector(a.si_detect, a.model, None, threshold=0.0)
    tor = ev.TorchDetector(a.model)
    ok = True
    for e in ann["images"]:
        path = os.path.join(a.data, e["file"])
        be, se, le = eng.run_file(path)
        bt, stt, lt = tor(synth.read_ppm(path))
        used = np.zeros(len(bt), bool)
        worst_b, worst_s = 0.0, 0.0
        bad = len(be) != len(bt)
        for i in range(len(be)):
            cand = [j for j in range(len(bt)) if not used[j] and
                    lt[j] == le[i] and abs(stt[j] - se[i]) <= 1e-4 and
                    np.abs(bt[j] - be[i]).max() <= 0.05]
            if not cand:
                print("  %s: engine det %d (label %d score %.6f box %s) has "
                      "no PyTorch twin" % (e["file"], i, le[i], se[i],
                                           be[i].tolist()))
                bad = True
                continue
            j = min(cand, key=lambda j: np.abs(bt[j] - be[i]).max())
            used[j] = True
            worst_b = max(worst_b, float(np.abs(bt[j] - be[i]).max()))
            worst_s = max(worst_s, float(abs(stt[j] - se[i])))
        print("%s: %d / %d detections, max |box diff| %.2e px, max |score "
              "diff| %.2e: %s" % (e["file"], len(be), len(bt), worst_b,
                                  worst_s, "FAIL" if bad else "ok"))
        ok = ok and not bad
    return 0 if ok else 1


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--impl", choices=["engine", "torch", "parity"],
                    required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--si-detect")
    ap.add_argument("--data", default=os.path.join(HERE, "data"))
    a = ap.parse_args()
    if not os.path.exists(a.model):
        print("FAIL: model missing: %s" % a.model)
        return 1
    import evaluate as ev
    import synth
    with open(os.path.join(a.data, "annotations.json")) as f:
        ann = json.load(f)
    classes = ann["classes"]
    if a.impl == "parity":
        return parity(a, ann)
    if a.impl == "engine":
        if not a.si_detect or not os.path.exists(a.si_detect):
            print("skipped: si-detect not built (%s)" % a.si_detect)
            return SKIP
        det = ev.EngineDetector(a.si_detect, a.model, None,
                                threshold=THRESHOLD)
    else:
        det = ev.TorchDetector(a.model)
    all_ok = True
    for e in ann["images"]:
        path = os.path.join(a.data, e["file"])
        gb = np.array(e["boxes"], np.float64).reshape(-1, 4)
        gl = np.array(e["labels"], np.int64)
        if a.impl == "engine":
            b, s, l = det.run_file(path)
        else:
            b, s, l = det(synth.read_ppm(path))
        ok = check(e["file"], gb, gl, np.asarray(b, np.float64),
                   np.asarray(s, np.float64), np.asarray(l, np.int64),
                   classes)
        print("%s: %d objects: %s" % (e["file"], len(gb),
                                      "ok" if ok else "FAIL"))
        all_ok = all_ok and ok
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
