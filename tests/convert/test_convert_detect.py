# test_convert_detect.py: the converted golden checkpoint must make the
# engine (si-detect) produce the golden detections on the golden image:
# identical JSON to the run on the golden model file itself, and within
# tolerance of det_boxes/det_scores/det_labels of io.safetensors.
#   usage: test_convert_detect.py SI_DETECT [GOLDEN_TINY_DIR]
import json
import os
import subprocess
import sys
import tempfile

import convert_common as cc

BOX_TOL = 1e-2    # px, model-spec 13.2
SCORE_TOL = 1e-5  # absolute, sigmoid scores


def detect(si_detect, model, image):
    p = subprocess.run([si_detect, "--model", model, "--image", image,
                        "--threshold", "0"], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, universal_newlines=True)
    if p.returncode != 0:
        sys.exit("si-detect failed on %s (rc %d):\n%s" %
                 (model, p.returncode, p.stderr))
    return p.stdout, json.loads(p.stdout)


def matches_golden(dets, io):
    """Each golden detection must have an engine detection with the same
    label, a score within SCORE_TOL and a box within BOX_TOL (order-free:
    ties may reorder).  Returns (ok, message)."""
    boxes = io.array("det_boxes")
    scores = io.array("det_scores")
    labels = io.array("det_labels")
    if len(dets) != len(scores):
        return False, "%d detections, golden has %d" % (len(dets), len(scores))
    used = set()
    worst_box = worst_score = 0.0
    for i in range(len(scores)):
        best = None
        for j, d in enumerate(dets):
            if j in used or d["class_id"] != int(labels[i]):
                continue
            db = max(abs(a - float(b)) for a, b in zip(d["box"], boxes[i]))
            ds = abs(d["score"] - float(scores[i]))
            if db <= BOX_TOL and ds <= SCORE_TOL and \
                    (best is None or db + ds < best[1]):
                best = (j, db + ds, db, ds)
        if best is None:
            return False, ("golden detection %d (label %d, score %.6f, box "
                           "%s) has no match" % (i, int(labels[i]),
                                                 float(scores[i]),
                                                 boxes[i].tolist()))
        used.add(best[0])
        worst_box = max(worst_box, best[2])
        worst_score = max(worst_score, best[3])
    return True, ("all %d matched; worst box diff %.2e px (limit %.0e), "
                  "worst score diff %.2e (limit %.0e)" %
                  (len(scores), worst_box, BOX_TOL, worst_score, SCORE_TOL))


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: test_convert_detect.py SI_DETECT [GOLDEN_TINY_DIR]")
    si_detect = sys.argv[1]
    gdir = cc.golden_dir(sys.argv[1:])
    cc.require_torch()
    golden = os.path.join(gdir, "model.safetensors")
    image = os.path.join(gdir, "image.ppm")
    io = cc.SafeTensors(os.path.join(gdir, "io.safetensors"))
    fails = 0
    with tempfile.TemporaryDirectory(prefix="si-convert-det-") as tmp:
        ckpt = os.path.join(tmp, "epoch_36.pth")
        cc.build_checkpoint(golden, ckpt)
        out = os.path.join(tmp, "tiny.safetensors")
        rc, log = cc.run_converter(cc.TINY_CONFIG, ckpt, "-o", out)
        if rc != 0:
            sys.exit("conversion failed:\n" + log)
        text_conv, conv = detect(si_detect, out, image)
        text_gold, gold = detect(si_detect, golden, image)
        same = text_conv == text_gold
        print("%s: detections from the converted model are identical to "
              "those from the golden model file (%d detections)" %
              ("ok" if same else "FAIL", len(conv["detections"])))
        fails += not same
        ok, msg = matches_golden(conv["detections"], io)
        print("%s: converted model vs golden det_*: %s" %
              ("ok" if ok else "FAIL", msg))
        if not ok:
            gok, gmsg = matches_golden(gold["detections"], io)
            print("  the golden model file itself: %s%s" %
                  (gmsg, "" if gok else " -> an engine difference, not a "
                   "converter one"))
        fails += not ok

        # a float16 file loads (the engine widens it to float32) and runs
        out16 = os.path.join(tmp, "tiny-f16.safetensors")
        rc, log = cc.run_converter(cc.TINY_CONFIG, ckpt, "-o", out16,
                                   "--dtype", "f16")
        if rc != 0:
            sys.exit("f16 conversion failed:\n" + log)
        _, d16 = detect(si_detect, out16, image)
        n16 = len(d16["detections"])
        ok16 = n16 == len(conv["detections"])
        print("%s: the float16 model file runs in the engine (%d detections;"
              " %s)" % ("ok" if ok16 else "FAIL", n16,
                        matches_golden(d16["detections"], io)[1]))
        fails += not ok16
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
