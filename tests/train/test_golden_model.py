#!/usr/bin/python3
# test_golden_model.py: the PyTorch StageInteractor of tools/train/model.py
# loads the golden tiny model (same state_dict keys), runs it on the golden
# input and must reproduce every reference tensor (rel L2 <= 1e-4).
# Usage: test_golden_model.py GOLDEN_TINY_DIR
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "train"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import model as M  # noqa: E402
import st  # noqa: E402

TOL = 1e-4


def main():
    gdir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        HERE, "..", "..", "..", "shared", "golden", "tiny")
    mpath = os.path.join(gdir, "model.safetensors")
    iopath = os.path.join(gdir, "io.safetensors")
    for p in (mpath, iopath):
        if not os.path.exists(p):
            print("FAIL: golden file missing: %s" % p)
            return 1
    torch.set_num_threads(1)
    weights, meta = st.load(mpath)
    io, _ = st.load(iopath)
    cfg = M.config_from_meta(meta["model"])
    net = M.StageInteractor(cfg).eval()
    sd = net.state_dict()
    missing = sorted(set(weights) - set(sd))
    extra = sorted(set(sd) - set(weights))
    if missing or extra:
        print("FAIL: key mismatch: file-only %s model-only %s" %
              (missing[:10], extra[:10]))
        return 1
    bad_shape = [k for k in sd if list(sd[k].shape) != list(weights[k].shape)]
    if bad_shape:
        print("FAIL: shape mismatch: %s" % bad_shape[:10])
        return 1
    net.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
    print("keys: %d, all names and shapes identical" % len(sd))

    img = torch.from_numpy(io["input"])
    h, w = io["preproc.resized_rgb"].shape[:2]
    img_wh = torch.tensor([[float(w), float(h)]])
    dump = {}
    with torch.no_grad():
        net(img, img_wh, dump=dump)
        sf = torch.tensor([w / 150.0, h / 110.0, w / 150.0, h / 110.0],
                          dtype=torch.float32)
        boxes, scores, labels, qi = net.detect(img, img_wh, sf)
    dump["det_boxes"] = boxes
    dump["det_scores"] = scores
    dump["det_labels"] = labels
    dump["det_query_index"] = qi
    worst = 0.0
    fails = 0
    for name in sorted(io):
        if name == "preproc.resized_rgb" or name == "init.imgs_whwh":
            continue
        if name not in dump:
            print("FAIL: %s not produced" % name)
            fails += 1
            continue
        ref = io[name].astype(np.float64)
        got = dump[name].detach().double().numpy()
        if got.shape != ref.shape:
            print("FAIL: %s shape %s vs %s" % (name, got.shape, ref.shape))
            fails += 1
            continue
        if name in ("det_labels", "det_query_index"):
            ok = np.array_equal(got, ref)
            print("%-28s %s" % (name, "exact" if ok else "DIFFERENT"))
            fails += 0 if ok else 1
            continue
        rel = np.linalg.norm(got - ref) / max(np.linalg.norm(ref), 1e-12)
        worst = max(worst, rel)
        flag = "ok" if rel <= TOL else "FAIL"
        print("%-28s rel L2 %.2e (%.0f%% of tol) %s" %
              (name, rel, 100 * rel / TOL, flag))
        if rel > TOL:
            fails += 1
    print("worst rel L2 %.2e, %d failures" % (worst, fails))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
