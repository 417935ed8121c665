#!/usr/bin/python3
# convert-checkpoint.py: turns an official StageInteractor checkpoint
# (mmdetection 2.x `.pth`) plus its config file into the engine's model file
# (safetensors + __metadata__, model-spec section 10).  Owns the
# config -> expected key/shape model (model-spec 6.0 and 10) used to refuse
# checkpoints that do not fit their config.
"""Convert an official StageInteractor checkpoint to a model file.

    /usr/bin/python3 tools/convert-checkpoint.py CONFIG.py CHECKPOINT.pth \\
        -o MODEL.safetensors [--dtype f32|f16] [--allow-unsupported]

Needs Debian's python3-torch (torch.load) and nothing from mmcv/mmdet: the
config is read by tools/mmcfg.py.  Exit status: 0 on success, 1 when the
conversion is refused (the message says why), 2 for usage errors.
"""

import argparse
import collections
import hashlib
import json
import math
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mmcfg  # noqa: E402  (next to this file)

FORMAT = "stageinteractor"
FORMAT_VERSION = 1

# Backbones the engine can run today: type -> accepted depths.  A backbone
# not listed here (or with a deformable conv) is refused unless
# --allow-unsupported.  Extend this table when the engine learns a new one.
SUPPORTED_BACKBONES = {
    "ResNet": {"depths": (18, 34, 50, 101, 152), "dcn": True},
    "ResNeXt": {"depths": (50, 101, 152), "dcn": True},
    "SwinTransformer": {"depths": None, "dcn": False},  # no depth key
}

# mmdet CocoDataset.CLASSES: index = label.
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train",
    "truck", "boat", "traffic light", "fire hydrant", "stop sign",
    "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard",
    "surfboard", "tennis racket", "bottle", "wine glass", "cup", "fork",
    "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange",
    "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair",
    "couch", "potted plant", "bed", "dining table", "toilet", "tv",
    "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave",
    "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase",
    "scissors", "teddy bear", "hair drier", "toothbrush")

# Official configs known to be unbuildable, with the reason.
KNOWN_BROKEN_BASES = {
    "lobster_r50_mstrain_480-800_1x_coco.py":
        "the official repository does not contain this file, so "
        "stageinteractor_r50_300_query_crop_mstrain_480-800_1x_coco.py "
        "cannot be built (use the 2x or 3x 300-query config instead)",
    "coco_detection_tiny.py":
        "the official r50 1x config switches to this debug dataset file "
        "when the environment variable C_DEBUG is set; unset C_DEBUG",
}

# bbox_head flags that change the computation in ways the engine does not
# implement (model-spec 10): they must be absent or false.
UNSUPPORTED_HEAD_FLAGS = (
    "share_W_dygen", "decompose_S", "use_pre_feats", "no_previous_filters",
    "abla_use_static_spatial_mix", "abla_use_static_channel_mix",
    "use_holistic_sampling_points", "shrinkS1")


class ConvertError(Exception):
    """The conversion is refused; the message says why."""


# --------------------------------------------------------------------------
# Config -> metadata

def _get(d, path, default=None):
    cur = d
    for p in path.split("."):
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur


def backbone_support_problem(backbone):
    """None when the engine runs this backbone, else a sentence saying why
    not (names the backbone)."""
    btype = backbone.get("type")
    depth = backbone.get("depth")
    desc = str(btype) + (" depth %s" % depth if depth is not None else "")
    if backbone.get("dcn"):
        desc += " with deformable convolutions (%s)" % _get(
            backbone, "dcn.type", "DCN")
    supported = ", ".join(
        t + (" (depth %s)" % "/".join(str(d) for d in s["depths"])
             if s["depths"] else "")
        for t, s in SUPPORTED_BACKBONES.items())
    spec = SUPPORTED_BACKBONES.get(btype)
    dcn_type = _get(backbone, "dcn.type", "DCN")
    if spec is None or (spec["depths"] and depth not in spec["depths"]) or \
            (backbone.get("dcn") and (not spec["dcn"] or dcn_type != "DCN")):
        return ("backbone %s is not supported by the engine yet "
                "(supported: %s)" % (desc, supported))
    return None


def materialise_heads(model):
    """Make roi_head.bbox_head a list of num_stages dicts (mmdet replicates
    a single dict)."""
    roi = model.get("roi_head")
    if not isinstance(roi, dict):
        raise ConvertError("config: model.roi_head is missing")
    n = roi.get("num_stages")
    if not isinstance(n, int) or n < 1:
        raise ConvertError("config: model.roi_head.num_stages must be a "
                           "positive integer, not %r" % (n,))
    heads = roi.get("bbox_head")
    if isinstance(heads, dict):
        heads = [dict(heads) for _ in range(n)]
    if not isinstance(heads, (list, tuple)) or len(heads) != n or \
            not all(isinstance(h, dict) for h in heads):
        raise ConvertError("config: model.roi_head.bbox_head must be a list "
                           "of num_stages = %d dicts" % n)
    roi["bbox_head"] = list(heads)


def _test_pipeline(cfg):
    p = _get(cfg, "data.test.pipeline")
    if p is None:
        p = cfg.get("test_pipeline")
    if not isinstance(p, (list, tuple)):
        raise ConvertError("config: no test pipeline (data.test.pipeline or "
                           "test_pipeline)")
    return p


def _flatten_pipeline(pipeline):
    """Yield (step, enclosing MultiScaleFlipAug or None)."""
    for step in pipeline:
        if not isinstance(step, dict):
            continue
        if step.get("type") == "MultiScaleFlipAug":
            yield step, None
            for t in step.get("transforms", []):
                if isinstance(t, dict):
                    yield t, step
        else:
            yield step, None


def _one_scale(scale, where):
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and \
            all(isinstance(v, (int, float)) for v in scale):
        return [int(max(scale)), int(min(scale))]
    if isinstance(scale, (list, tuple)) and len(scale) == 1:
        return _one_scale(scale[0], where)
    if isinstance(scale, (list, tuple)) and len(scale) > 1:
        raise ConvertError("config: %s lists %d test scales; multi-scale "
                           "testing is not supported" % (where, len(scale)))
    raise ConvertError("config: %s: img_scale %r is not a (w, h) pair"
                       % (where, scale))


def preprocess_metadata(cfg):
    """(img_norm dict, test_scale [long, short], size_divisor) from the test
    pipeline, as mmdet applies it (model-spec 2)."""
    scale = None
    norm = None
    size_divisor = None
    warnings = []
    for step, msfa in _flatten_pipeline(_test_pipeline(cfg)):
        t = step.get("type")
        if t == "MultiScaleFlipAug":
            if step.get("img_scale") is not None:
                scale = _one_scale(step["img_scale"],
                                   "MultiScaleFlipAug of the test pipeline")
            elif step.get("scale_factor") is not None:
                raise ConvertError("config: the test pipeline resizes by "
                                   "scale_factor; only img_scale is "
                                   "supported")
            if step.get("flip"):
                warnings.append("the test pipeline enables flip "
                                "augmentation; the engine runs the "
                                "unflipped image only")
        elif t == "Resize":
            if step.get("keep_ratio", True) is not True:
                raise ConvertError("config: the test Resize has keep_ratio="
                                   "False; the engine only resizes keeping "
                                   "the aspect ratio")
            if step.get("img_scale") is not None:
                scale = _one_scale(step["img_scale"], "the test Resize")
        elif t == "Normalize":
            mean, std = step.get("mean"), step.get("std")
            if not (isinstance(mean, (list, tuple)) and len(mean) == 3 and
                    isinstance(std, (list, tuple)) and len(std) == 3):
                raise ConvertError("config: Normalize needs 3 means and 3 "
                                   "stds, got mean=%r std=%r" % (mean, std))
            norm = collections.OrderedDict([
                ("mean", [float(v) for v in mean]),
                ("std", [float(v) for v in std]),
                ("to_rgb", bool(step.get("to_rgb", True)))])
        elif t == "Pad":
            if step.get("size") is not None:
                raise ConvertError("config: the test Pad uses a fixed size; "
                                   "only size_divisor is supported")
            if step.get("pad_val", 0) not in (0, 0.0):
                raise ConvertError("config: the test Pad uses pad_val=%r; "
                                   "the engine pads with 0"
                                   % (step.get("pad_val"),))
            size_divisor = step.get("size_divisor")
    if scale is None:
        raise ConvertError("config: the test pipeline has no img_scale")
    if norm is None:
        inc = cfg.get("img_norm_cfg")
        if isinstance(inc, dict) and "mean" in inc and "std" in inc:
            norm = collections.OrderedDict([
                ("mean", [float(v) for v in inc["mean"]]),
                ("std", [float(v) for v in inc["std"]]),
                ("to_rgb", bool(inc.get("to_rgb", True)))])
        else:
            raise ConvertError("config: the test pipeline has no Normalize "
                               "step and there is no img_norm_cfg")
    if size_divisor is None:
        size_divisor = 32
    if not isinstance(size_divisor, int) or size_divisor < 1:
        raise ConvertError("config: Pad size_divisor must be a positive "
                           "integer, not %r" % (size_divisor,))
    return norm, scale, size_divisor, warnings


def choose_classes(cfg, config_path, ckpt_meta, num_classes):
    """The class names, index = label: the config's own (`classes` or
    data.test.classes), else the checkpoint's meta CLASSES, else COCO."""
    candidates = []
    for where in ("data.test.classes", "classes"):
        v = _get(cfg, where)
        if v is not None:
            candidates.append(("config " + where, v))
            break
    if isinstance(ckpt_meta, dict) and ckpt_meta.get("CLASSES") is not None:
        candidates.append(("checkpoint meta CLASSES", ckpt_meta["CLASSES"]))
    candidates.append(("the COCO default", COCO_CLASSES))
    source, names = candidates[0]
    if isinstance(names, str):
        # mmdet: a string names a text file with one class per line
        path = os.path.join(os.path.dirname(config_path), names)
        try:
            with open(path, encoding="utf-8") as f:
                names = [ln.strip() for ln in f if ln.strip()]
        except OSError as e:
            raise ConvertError("config: cannot read the class list %s: %s"
                               % (path, e)) from None
    names = [str(n) for n in names]
    if len(names) != num_classes:
        raise ConvertError("%s has %d class names but the heads have "
                           "num_classes = %d" % (source, len(names),
                                                 num_classes))
    return names, source


# --------------------------------------------------------------------------
# Config -> expected state_dict keys and shapes

class Expected:
    """Ordered key -> shape, with the keys the engine does not need marked
    optional (accepted when present, not required)."""

    def __init__(self):
        self.shapes = collections.OrderedDict()
        self.optional = set()
        self.free_prefixes = []  # key prefixes not checked (unknown parts)

    def add(self, key, shape, optional=False):
        self.shapes[key] = tuple(int(s) for s in shape)
        if optional:
            self.optional.add(key)

    def bn(self, prefix, c):
        for n in ("weight", "bias", "running_mean", "running_var"):
            self.add(prefix + "." + n, (c,))
        self.add(prefix + ".num_batches_tracked", (), optional=True)

    def linear(self, prefix, out, inp, bias=True):
        self.add(prefix + ".weight", (out, inp))
        if bias:
            self.add(prefix + ".bias", (out,))

    def ln(self, prefix, c):
        self.add(prefix + ".weight", (c,))
        self.add(prefix + ".bias", (c,))


RESNET_ARCH = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)),
               50: ("bottleneck", (3, 4, 6, 3)),
               101: ("bottleneck", (3, 4, 23, 3)),
               152: ("bottleneck", (3, 8, 36, 3))}


def _require(cond, msg):
    if not cond:
        raise ConvertError("config: " + msg)


def expect_resnet(ex, bb):
    """mmdet ResNet / ResNeXt (model-spec 3.1, 3.2).  Returns the output
    channels of the four stages."""
    btype = bb["type"]
    depth = bb.get("depth")
    _require(depth in RESNET_ARCH, "backbone.depth %r is not one of %s" %
             (depth, sorted(RESNET_ARCH)))
    _require(bb.get("num_stages", 4) == 4, "backbone.num_stages must be 4")
    _require(tuple(bb.get("out_indices", (0, 1, 2, 3))) == (0, 1, 2, 3),
             "backbone.out_indices must be (0, 1, 2, 3)")
    _require(bb.get("style", "pytorch") == "pytorch",
             "backbone.style must be 'pytorch'")
    _require(not bb.get("deep_stem", False), "backbone.deep_stem is not "
             "supported")
    _require(not bb.get("avg_down", False), "backbone.avg_down is not "
             "supported")
    _require(not bb.get("plugins"), "backbone.plugins are not supported")
    _require(_get(bb, "norm_cfg.type", "BN") in ("BN", "SyncBN"),
             "backbone.norm_cfg.type must be BN")
    kind, blocks = RESNET_ARCH[depth]
    base = bb.get("base_channels", 64)
    stem = bb.get("stem_channels") or base
    groups = bb.get("groups", 1) if btype == "ResNeXt" else 1
    base_width = bb.get("base_width", 4) if btype == "ResNeXt" else 64
    dcn = bb.get("dcn")
    with_dcn = tuple(bb.get("stage_with_dcn", (False,) * 4)) if dcn else \
        (False,) * 4
    deform_groups = dcn.get("deform_groups", 1) if dcn else 1
    if dcn:
        _require(dcn.get("type") == "DCN", "backbone.dcn.type %r: only DCN "
                 "(v1) is known" % dcn.get("type"))
    ex.add("backbone.conv1.weight", (stem, bb.get("in_channels", 3), 7, 7))
    ex.bn("backbone.bn1", stem)
    inplanes = stem
    outs = []
    for i, nb in enumerate(blocks):
        planes = base * 2 ** i
        exp = 4 if kind == "bottleneck" else 1
        for b in range(nb):
            p = "backbone.layer%d.%d." % (i + 1, b)
            stride = 2 if (i > 0 and b == 0) else 1
            if kind == "bottleneck":
                if groups == 1:
                    width = planes
                else:
                    width = math.floor(planes * (base_width / base)) * groups
                ex.add(p + "conv1.weight", (width, inplanes, 1, 1))
                ex.bn(p + "bn1", width)
                ex.add(p + "conv2.weight", (width, width // groups, 3, 3))
                if with_dcn[i] and not (dcn.get("fallback_on_stride")
                                        and stride != 1):
                    ex.add(p + "conv2.conv_offset.weight",
                           (deform_groups * 18, width, 3, 3))
                    ex.add(p + "conv2.conv_offset.bias",
                           (deform_groups * 18,))
                ex.bn(p + "bn2", width)
                ex.add(p + "conv3.weight", (planes * exp, width, 1, 1))
                ex.bn(p + "bn3", planes * exp)
            else:
                ex.add(p + "conv1.weight", (planes, inplanes, 3, 3))
                ex.bn(p + "bn1", planes)
                ex.add(p + "conv2.weight", (planes, planes, 3, 3))
                ex.bn(p + "bn2", planes)
            if b == 0 and (stride != 1 or inplanes != planes * exp):
                ex.add(p + "downsample.0.weight",
                       (planes * exp, inplanes, 1, 1))
                ex.bn(p + "downsample.1", planes * exp)
            inplanes = planes * exp
        outs.append(inplanes)
    return outs


def expect_swin(ex, bb):
    """The repository's SwinTransformer (model-spec 3.3)."""
    c = bb.get("embed_dims", 96)
    depths = bb.get("depths", (2, 2, 6, 2))
    heads = bb.get("num_heads", (3, 6, 12, 24))
    win = bb.get("window_size", 7)
    mlp = bb.get("mlp_ratio", 4)
    patch = bb.get("patch_size", 4)
    _require(len(depths) == len(heads), "backbone.depths and num_heads "
             "differ in length")
    _require(not bb.get("use_abs_pos_embed", False), "Swin "
             "use_abs_pos_embed is not supported")
    ex.add("backbone.patch_embed.projection.weight",
           (c, bb.get("in_channels", 3), patch, patch))
    ex.add("backbone.patch_embed.projection.bias", (c,))
    if bb.get("patch_norm", True):
        ex.ln("backbone.patch_embed.norm", c)
    outs = []
    for i, (d, h) in enumerate(zip(depths, heads)):
        for j in range(d):
            p = "backbone.stages.%d.blocks.%d." % (i, j)
            ex.ln(p + "norm1", c)
            ex.add(p + "attn.w_msa.relative_position_bias_table",
                   ((2 * win - 1) ** 2, h))
            ex.add(p + "attn.w_msa.relative_position_index",
                   (win * win, win * win))
            ex.linear(p + "attn.w_msa.qkv", 3 * c, c,
                      bias=bb.get("qkv_bias", True))
            ex.linear(p + "attn.w_msa.proj", c, c)
            ex.ln(p + "norm2", c)
            ex.linear(p + "ffn.layers.0.0", int(mlp * c), c)
            ex.linear(p + "ffn.layers.1", c, int(mlp * c))
        outs.append(c)
        if i < len(depths) - 1:
            p = "backbone.stages.%d.downsample." % i
            ex.ln(p + "norm", 4 * c)
            ex.add(p + "reduction.weight", (2 * c, 4 * c))
            c *= 2
    for i in bb.get("out_indices", (0, 1, 2, 3)):
        ex.ln("backbone.norm%d" % i, outs[i])
    return outs


def expect_stage(ex, s, h, prefix):
    """One StageInteractorHead (model-spec 6.0, section 8 keys)."""
    C = h.get("content_dim", 256)
    D = h.get("feat_channels", 256)
    G = h.get("n_heads", 4)
    Ha = h.get("num_heads", 8)
    P = h.get("in_points")
    K = h.get("subbox_poolsize", 8)
    O = h.get("out_points", 128)
    F = h.get("feedforward_channels", 2048)
    NC = h.get("num_classes", 80)
    where = "roi_head.bbox_head[%d]" % s
    _require(h.get("type") == "StageInteractorHead",
             "%s.type must be StageInteractorHead, not %r" %
             (where, h.get("type")))
    _require(h.get("stage_idx", s) == s, "%s.stage_idx is %r, expected %d" %
             (where, h.get("stage_idx"), s))
    _require(isinstance(P, int) and P > 0, "%s.in_points must be a positive "
             "integer" % where)
    _require(C == D, "%s: content_dim %d != feat_channels %d (the official "
             "code assumes them equal)" % (where, C, D))
    _require(D % G == 0, "%s: feat_channels %d not divisible by n_heads %d"
             % (where, D, G))
    _require(C % Ha == 0, "%s: content_dim %d not divisible by num_heads %d"
             % (where, C, Ha))
    _require(h.get("in_point_sampling_rate", 1) == 1,
             "%s.in_point_sampling_rate must be 1" % where)
    _require(h.get("num_ffn_fcs", 2) == 2, "%s.num_ffn_fcs must be 2" % where)
    _require(h.get("prefix_M_len") is None, "%s.prefix_M_len is not "
             "supported" % where)
    _require(_get(h, "ffn_act_cfg.type", "ReLU") == "ReLU",
             "%s.ffn_act_cfg.type must be ReLU" % where)
    for flag in UNSUPPORTED_HEAD_FLAGS:
        _require(not h.get(flag, False), "%s.%s is not supported" %
                 (where, flag))
    Dg = D // G
    R = P * K
    reuse_st = h.get("reuse_st_id", 2)
    lim = h.get("lim_outpoints_times")
    if lim is None:
        lim = O // (P * K) - 1
    if s < reuse_st:
        lim_s, L, Sg, O_tot = 0, 0, O, O
    else:
        lim_s = lim
        L = max(0, s - reuse_st + 1)
        Sg = O // (lim + 1)
        O_tot = Sg * min(s, lim + 1)
    _require(O_tot == O, "%s: the mixed spatial filter has %d rows but "
             "out_points is %d (lim_outpoints_times=%r); the official code "
             "cannot run this" % (where, O_tot, O, lim))
    nc_out = NC + 1 if h.get("use_bg_idx_classifier", False) else NC

    p = prefix
    ex.linear(p + "fc_cls", nc_out, C)
    ex.linear(p + "fc_reg", 4, C)
    ex.linear(p + "ffn.layers.0.0", F, C)
    ex.linear(p + "ffn.layers.1", C, F)
    ex.ln(p + "ffn_norm", C)
    for i in range(h.get("num_cls_fcs", 1)):
        ex.linear(p + "cls_fcs.%d" % (3 * i), C, C)
        ex.ln(p + "cls_fcs.%d" % (3 * i + 1), C)
    for i in range(h.get("num_reg_fcs", 1)):
        ex.linear(p + "reg_fcs.%d" % (3 * i), C, C)
        ex.ln(p + "reg_fcs.%d" % (3 * i + 1), C)
    dc = p + "dynamic_conv."
    ex.linear(dc + "mix_bias", G * (Dg + O), C)
    ex.linear(dc + "parameter_generator", G * (Dg * Dg + Sg * R), C)
    ex.linear(dc + "Wv", D, O_tot * D)
    ex.ln(dc + "Wv_layer_norm", C)
    if L >= 1 and lim_s >= 1:
        for m in range(L):
            ex.linear(dc + "subbox_local_list.%d" % m, K * Dg, K * Dg)
        for m in range(L):
            ex.linear(dc + "axis_atten_list.%d" % m, P * Dg, P * Dg)
        for m in range(L):
            for n, shp in (("weight", (G * P * K, C)), ("bias", (G * P * K,))):
                ex.add(dc + "subbox_score_list.%d.%s" % (m, n), shp,
                       optional=True)
        ex.linear(dc + "M_score_list", G * Dg * 2 * L, C)
        ex.linear(dc + "M_score_list_mix_bias", G * Dg * L, C)
        ex.linear(dc + "S_score_list", G * Sg * lim_s, C)
        ex.linear(dc + "S_score_list2", G * R * lim_s, C)
    ex.add(p + "attention.attn.in_proj_weight", (3 * C, C))
    ex.add(p + "attention.attn.in_proj_bias", (3 * C,))
    ex.linear(p + "attention.attn.out_proj", C, C)
    ex.ln(p + "attention_norm", C)
    ex.add(p + "iof_tau", (Ha,))
    ex.linear(p + "feat_extractor.gen_one_d.0", 3 * G * P, C)
    ex.linear(p + "feat_extractor.gen_double_d.0", 3 * K, C)
    for n, shp in (("running_mean", (1,)), ("running_var", (1,)),
                   ("num_batches_tracked", ())):
        ex.add(p + "iou_snyc_statistics." + n, shp, optional=True)
    return C, NC


def expected_tensors(model):
    """Expected checkpoint keys and shapes for a (materialised) model
    config.  Raises ConvertError for configs the engine cannot represent."""
    ex = Expected()
    _require(model.get("type") == "SubQueryDeformableRCNN",
             "model.type is %r; this converter handles StageInteractor "
             "(SubQueryDeformableRCNN) configs only" % (model.get("type"),))
    bb = model.get("backbone") or {}
    btype = bb.get("type")
    if btype in ("ResNet", "ResNeXt"):
        outs = expect_resnet(ex, bb)
    elif btype == "SwinTransformer":
        outs = expect_swin(ex, bb)
    else:
        outs = None
        ex.free_prefixes.append("backbone.")

    neck = model.get("neck") or {}
    _require(neck.get("type") == "ChannelMapping", "neck.type must be "
             "ChannelMapping, not %r" % (neck.get("type"),))
    in_ch = list(neck.get("in_channels", []))
    out_ch = neck.get("out_channels")
    _require(len(in_ch) == 4 and neck.get("num_outs", 4) == len(in_ch),
             "neck: expected 4 input levels and num_outs == 4")
    _require(neck.get("start_level", 0) == 0, "neck.start_level must be 0")
    _require(isinstance(out_ch, int) and out_ch % 32 == 0,
             "neck.out_channels must be a multiple of 32 (GroupNorm(32))")
    if outs is not None:
        _require(list(outs) == in_ch, "neck.in_channels %s do not match the "
                 "backbone's output channels %s" % (in_ch, list(outs)))
    for i, c in enumerate(in_ch):
        ex.add("neck.lateral_convs.%d.conv.weight" % i, (out_ch, c, 1, 1))
        ex.add("neck.lateral_convs.%d.conv.bias" % i, (out_ch,))
    ex.ln("neck.gn_out", out_ch)

    rpn = model.get("rpn_head") or {}
    _require(rpn.get("type") == "SubInitialQueryGenerator",
             "rpn_head.type must be SubInitialQueryGenerator, not %r" %
             (rpn.get("type"),))
    N = rpn.get("num_query", 100)
    C = rpn.get("content_dim", 256)
    ex.add("rpn_head.init_content_features.weight", (N, C))
    ex.add("rpn_head.init_proposal_bboxes", (N, 4))

    roi = model["roi_head"]
    _require(roi.get("type") == "StageInteractorDecoder",
             "roi_head.type must be StageInteractorDecoder, not %r" %
             (roi.get("type"),))
    _require(roi.get("content_dim", C) == C, "roi_head.content_dim %r != "
             "rpn_head.content_dim %r" % (roi.get("content_dim"), C))
    _require(C == out_ch, "content_dim %d != neck.out_channels %d" %
             (C, out_ch))
    _require(roi.get("nms_thres", -1) <= 0, "roi_head.nms_thres > 0 "
             "(class-wise NMS) is not supported")
    ncs = set()
    for s, h in enumerate(roi["bbox_head"]):
        hc, nc = expect_stage(ex, s, h, "roi_head.bbox_head.%d." % s)
        _require(hc == C, "roi_head.bbox_head[%d].content_dim %d != %d" %
                 (s, hc, C))
        ncs.add(nc)
    _require(len(ncs) == 1, "the stages disagree on num_classes: %s" %
             sorted(ncs))
    return ex, ncs.pop()


def check_state_dict(ex, shapes):
    """Compare {key: shape} from the checkpoint with the expectation.
    Raises ConvertError naming the first mismatching tensor."""
    problems = []
    for key, want in ex.shapes.items():
        if key not in shapes:
            if key not in ex.optional:
                problems.append("tensor '%s' (shape %s) is missing from the "
                                "checkpoint" % (key, list(want)))
        elif tuple(shapes[key]) != want:
            problems.append("tensor '%s' has shape %s in the checkpoint but "
                            "the config expects %s" %
                            (key, list(shapes[key]), list(want)))
    for key in shapes:
        if key not in ex.shapes and \
                not any(key.startswith(p) for p in ex.free_prefixes):
            problems.append("tensor '%s' (shape %s) is in the checkpoint "
                            "but not in the model the config describes" %
                            (key, list(shapes[key])))
    if problems:
        more = ""
        if len(problems) > 1:
            more = "\n  ... and %d more mismatch(es), e.g.\n  %s" % (
                len(problems) - 1, "\n  ".join(problems[1:6]))
        raise ConvertError("the checkpoint does not fit the config: " +
                           problems[0] + more)


def is_unused(key):
    """Training-only entries the engine never reads (model-spec 8)."""
    return (key.endswith(".num_batches_tracked") or
            ".iou_snyc_statistics." in key or
            ".dynamic_conv.subbox_score_list." in key)


# --------------------------------------------------------------------------
# Checkpoint reading and safetensors writing

# Globals a checkpoint's pickle may name (tensors, ordered dicts, numpy
# scalars in `meta`).  Anything else is refused unless --unsafe-pickle.
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"), ("torch", "Size"),
    ("numpy.core.multiarray", "scalar"), ("numpy.core.multiarray",
                                          "_reconstruct"),
    ("numpy", "dtype"), ("numpy", "ndarray"), ("_codecs", "encode"),
}


def _safe_load_zip(path):
    """Read a torch.save zip checkpoint (the format of torch >= 1.6) with a
    restricted unpickler: only tensors, containers, numbers, strings and the
    globals of _SAFE_GLOBALS; no code from the file runs."""
    import importlib
    import pickle
    import zipfile

    import torch

    zf = zipfile.ZipFile(path)
    pkl = [n for n in zf.namelist() if n.split("/")[-1] == "data.pkl"]
    if len(pkl) != 1:
        raise ConvertError("checkpoint %s: not a torch.save archive "
                           "(no single data.pkl)" % path)
    prefix = pkl[0][:-len("data.pkl")]
    storages = {}

    class StorageType:
        def __init__(self, dtype):
            self.dtype = dtype

    def rebuild_tensor(storage, offset, size, stride, *unused):
        return storage.as_strided(tuple(size), tuple(stride), offset)

    def rebuild_parameter(data, *unused):
        return data

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return rebuild_tensor
            if module == "torch._utils" and name in (
                    "_rebuild_parameter", "_rebuild_parameter_with_state"):
                return rebuild_parameter
            if module == "torch" and name.endswith("Storage"):
                st = getattr(torch, name, None)
                if st is torch.UntypedStorage:
                    return StorageType(torch.uint8)
                if st is not None and hasattr(st, "dtype"):
                    return StorageType(st.dtype)
            if module == "torch" and \
                    isinstance(getattr(torch, name, None), torch.dtype):
                return getattr(torch, name)
            if (module, name) in _SAFE_GLOBALS:
                return getattr(importlib.import_module(module), name)
            raise pickle.UnpicklingError(
                "the checkpoint refers to the Python object %s.%s" %
                (module, name))

        def persistent_load(self, pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and
                    pid[0] == "storage" and
                    isinstance(pid[1], StorageType)):
                raise pickle.UnpicklingError("unknown persistent id %r" %
                                             (pid[:1],))
            _, stype, key, _location, numel = pid
            if key not in storages:
                raw = bytearray(zf.read(prefix + "data/" + str(key)))
                itemsize = torch.empty((), dtype=stype.dtype).element_size()
                if len(raw) != numel * itemsize:
                    raise pickle.UnpicklingError(
                        "storage %s has %d bytes, expected %d" %
                        (key, len(raw), numel * itemsize))
                storages[key] = torch.frombuffer(raw, dtype=stype.dtype) \
                    if raw else torch.empty(0, dtype=stype.dtype)
            return storages[key]

    with zf.open(pkl[0]) as f:
        return Unpickler(f, encoding="utf-8").load()


def load_checkpoint(path, unsafe_pickle):
    """(state_dict, meta) of an mmdetection checkpoint, on the CPU."""
    import pickle
    import zipfile

    import torch
    if not os.path.isfile(path):
        raise ConvertError("checkpoint %s not found" % path)
    try:
        if unsafe_pickle:
            ckpt = torch.load(path, map_location="cpu")
        elif zipfile.is_zipfile(path):
            ckpt = _safe_load_zip(path)
        else:
            raise ConvertError(
                "checkpoint %s is in the legacy (pre torch 1.6) format, "
                "which only full pickle can read; pass --unsafe-pickle if "
                "you trust the file" % path)
    except ConvertError:
        raise
    except pickle.UnpicklingError as e:
        raise ConvertError("cannot read checkpoint %s: %s; pass "
                           "--unsafe-pickle if you trust the file" %
                           (path, e)) from None
    except Exception as e:  # torch and zipfile raise many kinds here
        raise ConvertError("cannot read checkpoint %s: %s: %s" %
                           (path, type(e).__name__,
                            str(e).splitlines()[0] if str(e) else "")) \
            from None
    meta = None
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        sd = ckpt["state_dict"]
        meta = ckpt.get("meta")
    else:
        sd = ckpt
    if not isinstance(sd, dict) or not sd:
        raise ConvertError("checkpoint %s holds no state_dict" % path)
    bad = [k for k, v in sd.items() if not torch.is_tensor(v)]
    if bad:
        raise ConvertError("checkpoint entry '%s' is not a tensor" % bad[0])
    if all(k.startswith("module.") for k in sd):
        sd = collections.OrderedDict((k[len("module."):], v)
                                     for k, v in sd.items())
    return sd, meta


def _st_dtype(t):
    import torch
    table = {torch.float32: "F32", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.float64: "F64",
             torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
             torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
    if t.dtype not in table:
        raise ConvertError("unsupported tensor dtype %s" % t.dtype)
    return table[t.dtype]


def cast_tensors(sd, out_dtype):
    """Floating tensors -> float32 (or float16); integers kept."""
    import torch
    target = torch.float16 if out_dtype == "f16" else torch.float32
    out = collections.OrderedDict()
    for k, v in sd.items():
        v = v.detach().cpu()
        if v.is_floating_point() and v.dtype != target:
            c = v.to(target)
            if target == torch.float16 and \
                    bool(torch.isinf(c).any() & ~torch.isinf(v).any()):
                raise ConvertError("tensor '%s' overflows float16; convert "
                                   "to f32" % k)
            v = c
        out[k] = v.contiguous()
    return out


def write_safetensors(path, tensors, metadata):
    """Write `tensors` (ordered name -> torch tensor) and string metadata.
    Layout: u64 LE header length, JSON header padded with spaces to a
    multiple of 8, then the data, larger elements first so every tensor
    stays naturally aligned without gaps."""
    names = sorted(tensors, key=lambda k: -tensors[k].element_size())
    header = collections.OrderedDict()
    header["__metadata__"] = collections.OrderedDict(
        (k, str(v)) for k, v in metadata.items())
    off = 0
    for k in names:
        t = tensors[k]
        n = t.numel() * t.element_size()
        header[k] = collections.OrderedDict([
            ("dtype", _st_dtype(t)), ("shape", list(t.shape)),
            ("data_offsets", [off, off + n])])
        off += n
    hdr = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hdr += b" " * ((-len(hdr)) % 8)
    tmp = path + ".tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(struct.pack("<Q", len(hdr)))
            f.write(hdr)
            for k in names:
                # floating tensors are F32/F16 by now (cast_tensors), all
                # of which numpy represents
                data = tensors[k].numpy()
                f.write(data.astype(data.dtype.newbyteorder("<"),
                                    copy=False).tobytes())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return 8 + len(hdr) + off


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# --------------------------------------------------------------------------

def convert(args, log):
    try:
        cfg = mmcfg.load(args.config)
    except mmcfg.ConfigError as e:
        msg = str(e)
        for base, why in KNOWN_BROKEN_BASES.items():
            if base in msg:
                msg += "\n  note: " + why
        raise ConvertError(msg) from None
    model = cfg.get("model")
    if not isinstance(model, dict):
        raise ConvertError("config %s defines no model dict" % args.config)
    materialise_heads(model)

    problem = backbone_support_problem(model.get("backbone") or {})
    if problem:
        if not args.allow_unsupported:
            raise ConvertError(problem + "; pass --allow-unsupported to "
                               "convert it anyway")
        log("warning: %s; converting anyway (--allow-unsupported)" % problem)

    ex, num_classes = expected_tensors(model)
    norm, scale, size_divisor, warnings = preprocess_metadata(cfg)
    for w in warnings:
        log("warning: " + w)
    try:
        model_json = json.dumps(mmcfg.to_jsonable(model), sort_keys=True)
    except mmcfg.ConfigError as e:
        raise ConvertError("config model dict: %s" % e) from None

    sd, meta = load_checkpoint(args.checkpoint, args.unsafe_pickle)
    check_state_dict(ex, {k: tuple(v.shape) for k, v in sd.items()})
    classes, classes_from = choose_classes(cfg, os.path.abspath(args.config),
                                           meta, num_classes)

    dropped = [k for k in sd if is_unused(k)] if not args.keep_unused else []
    kept = collections.OrderedDict((k, v) for k, v in sd.items()
                                   if k not in set(dropped))
    kept = cast_tensors(kept, args.dtype)

    metadata = collections.OrderedDict([
        ("format", FORMAT),
        ("format_version", str(FORMAT_VERSION)),
        ("model", model_json),
        ("img_norm", json.dumps(norm)),
        ("test_scale", json.dumps(scale)),
        ("size_divisor", str(size_divisor)),
        ("classes", json.dumps(classes)),
        ("source", json.dumps(collections.OrderedDict([
            ("checkpoint", os.path.basename(args.checkpoint)),
            ("sha256", sha256_file(args.checkpoint)),
            ("config", os.path.basename(args.config)),
            ("converter", "tools/convert-checkpoint.py")]))),
    ])
    try:
        nbytes = write_safetensors(args.output, kept, metadata)
    except OSError as e:
        raise ConvertError("cannot write %s: %s" % (args.output, e)) \
            from None
    log("wrote %s: %d tensors (%s), %d training-only entries dropped, "
        "%.1f MB; classes from %s; test scale %s" %
        (args.output, len(kept), args.dtype.upper(), len(dropped),
         nbytes / 1e6, classes_from, scale))


def main(argv=None):
    ap = argparse.ArgumentParser(
        description="Convert an official StageInteractor checkpoint "
        "(mmdetection 2.x .pth) and its config into a model file for the "
        "engine (safetensors with metadata).")
    ap.add_argument("config", help="the mmdetection config (.py) the "
                    "checkpoint was trained with")
    ap.add_argument("checkpoint", help="the checkpoint (.pth)")
    ap.add_argument("-o", "--output", required=True,
                    help="the model file to write (.safetensors)")
    ap.add_argument("--dtype", choices=("f32", "f16"), default="f32",
                    help="storage type of floating tensors (default f32)")
    ap.add_argument("--allow-unsupported", action="store_true",
                    help="convert even when the engine cannot run the "
                    "backbone yet")
    ap.add_argument("--keep-unused", action="store_true",
                    help="keep training-only entries (num_batches_tracked, "
                    "iou_snyc_statistics, subbox_score_list)")
    ap.add_argument("--unsafe-pickle", action="store_true",
                    help="read the checkpoint with torch.load's full pickle "
                    "(can run code from the file: only for checkpoints you "
                    "trust); needed for legacy-format checkpoints or "
                    "meta objects the safe reader refuses")
    args = ap.parse_args(argv)

    def log(msg):
        print(msg, file=sys.stderr)

    try:
        convert(args, log)
    except ConvertError as e:
        print("convert-checkpoint: error: %s" % e, file=sys.stderr)
        return 1
    except ImportError as e:
        print("convert-checkpoint: error: %s (run with Debian's "
              "/usr/bin/python3 and install python3-torch)" % e,
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
