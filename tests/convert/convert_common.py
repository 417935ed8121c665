# convert_common.py: helpers shared by the converter tests: a plain
# safetensors reader, a builder of mmdetection-style checkpoints from the
# golden tiny model, the list of metadata fields the engine reads, and a
# runner for tools/convert-checkpoint.py.
import collections
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
CONVERTER = os.path.join(REPO, "tools", "convert-checkpoint.py")
CONFIGS = os.path.join(HERE, "configs")
TINY_CONFIG = os.path.join(CONFIGS, "tiny", "stageinteractor_tiny_r50.py")
OFFICIAL = os.path.join(CONFIGS, "stageinteractor")

sys.path.insert(0, os.path.join(REPO, "tools"))

SKIP = 77


def golden_dir(argv):
    d = argv[1] if len(argv) > 1 else os.path.join(REPO, "..", "shared",
                                                   "golden", "tiny")
    if not os.path.isfile(os.path.join(d, "model.safetensors")):
        sys.exit("golden data missing: %s/model.safetensors (set the meson "
                 "option golden_dir)" % d)
    return d


def require_torch():
    import importlib.util
    if importlib.util.find_spec("torch") is None:
        print("skipped: python3-torch is not installed (apt install "
              "python3-torch)")
        sys.exit(SKIP)


class SafeTensors:
    """Minimal reader: header, metadata, raw bytes per tensor."""

    def __init__(self, path):
        with open(path, "rb") as f:
            blob = f.read()
        (n,) = struct.unpack("<Q", blob[:8])
        assert (8 + n) % 8 == 0, "%s: data start not 8-byte aligned" % path
        hdr = json.loads(blob[8:8 + n].decode("utf-8"),
                         object_pairs_hook=collections.OrderedDict)
        self.metadata = hdr.pop("__metadata__", {})
        self.header = hdr
        self.data = blob[8 + n:]
        # every data byte belongs to exactly one tensor
        spans = sorted(tuple(v["data_offsets"]) for v in hdr.values())
        pos = 0
        for b, e in spans:
            assert b == pos, "%s: gap or overlap at %d" % (path, b)
            pos = e
        assert pos == len(self.data), "%s: trailing data" % path

    def raw(self, name):
        b, e = self.header[name]["data_offsets"]
        return self.data[b:e]

    def array(self, name):
        import numpy as np
        dt = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "I64": "<i8",
              "I32": "<i4"}[self.header[name]["dtype"]]
        return np.frombuffer(self.raw(name), dtype=dt).reshape(
            self.header[name]["shape"])


def build_checkpoint(golden_model, out_path, edit=None):
    """torch.save an mmdetection 2.x style checkpoint (meta + state_dict +
    optimizer) holding the golden tensors.  BN counters become int64 as in a
    real checkpoint.  `edit(state_dict)` may alter it first."""
    import torch
    st = SafeTensors(golden_model)
    sd = collections.OrderedDict()
    for name in st.header:
        a = st.array(name).copy()
        t = torch.from_numpy(a)
        if name.endswith("num_batches_tracked"):
            t = t.to(torch.int64)
        sd[name] = t
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    if edit is not None:
        edit(sd)
    with open(TINY_CONFIG) as f:
        config_text = f.read()
    meta = {
        "mmdet_version": "2.12.0",
        "mmcv_version": "1.3.3",
        "config": config_text,
        "CLASSES": tuple(json.loads(st.metadata["classes"])),
        "epoch": 36,
        "iter": 263844,
        "time": "Tue Jul 25 13:48:00 2023",
        "seed": 0,
        "exp_name": "stageinteractor_tiny_r50.py",
        "hook_msgs": {"last_ckpt": "work_dirs/tiny/epoch_36.pth"},
    }
    first = next(iter(sd.values()))
    optimizer = {
        "state": {0: {"step": 263844, "exp_avg": torch.zeros_like(first),
                      "exp_avg_sq": torch.zeros_like(first)}},
        "param_groups": [{"lr": 2.5e-07, "betas": (0.9, 0.999),
                          "eps": 1e-08, "weight_decay": 0.0001,
                          "amsgrad": False, "initial_lr": 2.5e-05,
                          "params": [0]}],
    }
    torch.save({"meta": meta, "state_dict": sd, "optimizer": optimizer},
               out_path)
    return sd


def run_converter(*args):
    """Run the converter with Debian's python; (returncode, stderr)."""
    p = subprocess.run([sys.executable, CONVERTER] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    return p.returncode, p.stdout + p.stderr


# model-spec section 10, "Fields of `model` the engine must read".
ENGINE_MODEL_FIELDS = (
    "type",
    "backbone.type", "backbone.depth", "backbone.groups",
    "backbone.base_width", "backbone.base_channels", "backbone.stem_channels",
    "backbone.dcn", "backbone.stage_with_dcn", "backbone.out_indices",
    "backbone.num_stages", "backbone.style", "backbone.strides",
    "backbone.dilations", "backbone.deep_stem", "backbone.avg_down",
    "backbone.norm_cfg.type", "backbone.norm_cfg.eps",
    "neck.type", "neck.in_channels", "neck.out_channels", "neck.num_outs",
    "neck.start_level",
    "rpn_head.type", "rpn_head.num_query", "rpn_head.content_dim",
    "roi_head.type", "roi_head.num_stages", "roi_head.content_dim",
    "roi_head.featmap_strides", "roi_head.nms_thres",
    "test_cfg.rcnn.max_per_img",
)
ENGINE_HEAD_FIELDS = (
    "type", "stage_idx", "in_points", "out_points", "n_heads", "num_heads",
    "content_dim", "feat_channels", "feedforward_channels", "num_ffn_fcs",
    "num_cls_fcs", "num_reg_fcs", "num_classes", "subbox_poolsize",
    "in_point_sampling_rate", "lim_outpoints_times", "reuse_st_id",
    "prefix_M_len", "use_bg_idx_classifier", "loss_cls.use_sigmoid",
    "ffn_act_cfg.type", "share_W_dygen", "decompose_S", "use_pre_feats",
    "no_previous_filters", "abla_use_static_spatial_mix",
    "abla_use_static_channel_mix", "use_holistic_sampling_points",
    "shrinkS1",
)
_ABSENT = "<absent>"


def _get(d, path):
    for p in path.split("."):
        if not isinstance(d, dict) or p not in d:
            return _ABSENT
        d = d[p]
    return d


def engine_view(metadata):
    """The part of a model file's metadata the engine reads, as a flat
    dict path -> value."""
    model = json.loads(metadata["model"])
    out = collections.OrderedDict()
    for f in ENGINE_MODEL_FIELDS:
        out["model." + f] = _get(model, f)
    heads = model["roi_head"]["bbox_head"]
    for s, h in enumerate(heads):
        for f in ENGINE_HEAD_FIELDS:
            out["model.roi_head.bbox_head[%d].%s" % (s, f)] = _get(h, f)
    out["format"] = metadata.get("format")
    out["format_version"] = metadata.get("format_version")
    out["img_norm"] = json.loads(metadata["img_norm"])
    out["test_scale"] = json.loads(metadata["test_scale"])
    out["size_divisor"] = int(metadata.get("size_divisor", "32"))
    out["classes"] = json.loads(metadata["classes"])
    return out


def diff_paths(a, b, path=""):
    """Paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += diff_paths(a.get(k, _ABSENT), b.get(k, _ABSENT),
                              path + "." + k if path else k)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff_paths(x, y, "%s[%d]" % (path, i))
        return out
    return [] if a == b else [path]
