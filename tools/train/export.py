#!/usr/bin/python3
# export.py: write a StageInteractor (tools/train/model.py) as our
# safetensors model: every state_dict entry under its official name (all F32,
# as the golden model stores them, counters included) and the __metadata__
# the engine reads: format, format_version, model (mmdet-style JSON),
# img_norm, test_scale, classes, size_divisor.  Also loads such a file back.
#
# Usage: export.py CHECKPOINT.pt OUT.safetensors [--labels FILE]
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import model as M  # noqa: E402
import st  # noqa: E402


def export(net, path, classes, test_scale, img_norm=None, source=None):
    cfg = net.cfg
    if len(classes) != cfg["num_classes"]:
        raise ValueError("%d class names for %d classes" %
                         (len(classes), cfg["num_classes"]))
    tensors = {k: v.detach().cpu().numpy().astype(np.float32)
               for k, v in net.state_dict().items()}
    meta = {
        "format": "stageinteractor",
        "format_version": "1",
        "model": json.dumps(M.to_meta_json(cfg), sort_keys=True),
        "img_norm": json.dumps(img_norm or M.DEFAULT_IMG_NORM),
        "test_scale": json.dumps(list(test_scale)),
        "classes": json.dumps(list(classes)),
        "size_divisor": "32",
    }
    if source:
        meta["source"] = source
    st.save(path, tensors, meta)


def load(path):
    """-> (model in eval mode, metadata dict with decoded JSON values)."""
    tensors, meta = st.load(path)
    cfg = M.config_from_meta(meta["model"])
    net = M.StageInteractor(cfg)
    sd = net.state_dict()
    net.load_state_dict({k: torch.from_numpy(tensors[k]).to(sd[k].dtype)
                         for k in sd})
    dec = dict(meta)
    for k in ("model", "img_norm", "test_scale", "classes"):
        if k in dec:
            dec[k] = json.loads(dec[k])
    return net.eval(), dec


def main():
    ap = argparse.ArgumentParser(description="checkpoint -> safetensors")
    ap.add_argument("checkpoint")
    ap.add_argument("out")
    a = ap.parse_args()
    ck = torch.load(a.checkpoint, map_location="cpu")
    net = M.StageInteractor(ck["cfg"])
    net.load_state_dict(ck["model"])
    export(net, a.out, ck["classes"], ck["test_scale"],
           source=os.path.basename(a.checkpoint))
    print("wrote %s (%.1f MB)" % (a.out, os.path.getsize(a.out) / 1e6))


if __name__ == "__main__":
    main()
