# test_mmcfg.py: unit tests of tools/mmcfg.py (mmcv-style inheritance) and
# of the converter's config -> expected state_dict model on the fixtures of
# the ten official StageInteractor configs (key counts and parameter totals
# of model-spec sections 8, 9.1 and 13.1).  Needs no torch.
import importlib.util
import os
import sys
import tempfile

import convert_common as cc
import mmcfg

failures = []


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def write(d, rel, text):
    p = os.path.join(d, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text)
    return p


def load_error(path):
    try:
        mmcfg.load(path)
    except mmcfg.ConfigError as e:
        return str(e)
    return None


def test_loader():
    with tempfile.TemporaryDirectory(prefix="mmcfg-") as d:
        write(d, "_base_/a.py",
              "x = 1\nm = dict(a=1, b=dict(c=2, d=[1, 2]), t=(1, 2))\n"
              "lst = [1, 2, 3]\nopt = dict(type='SGD', lr=0.1, momentum=0.9)\n")
        write(d, "_base_/b.json", '{"y": {"k": "v"}, "n": null}')
        write(d, "_base_/dup.py", "x = 2\n")
        child = write(d, "cfg/child.py", "\n".join([
            "_base_ = ['../_base_/a.py', '../_base_/b.json']",
            "import os",
            "def helper():",
            "    return 3",
            "k = 10",
            "__hidden = 5",
            "sizes = [k * i for i in range(3)]",
            "m = dict(b=dict(c=20, d=[9]), e=helper())",
            "lst = [7]",
            "opt = dict(_delete_=True, type='AdamW', lr=1e-4)",
            "y = dict(extra=dict(_delete_=True, z=1))",
            "fromb = {{_base_.m.b.c}}",
            "whole = dict(v={{ _base_.opt }})",
            "here = '{{ fileBasenameNoExtension }}'",
            ""]))
        cfg = mmcfg.load(child)
        check(cfg["x"] == 1 and cfg["n"] is None, "py + json bases merged")
        check(cfg["m"]["a"] == 1 and cfg["m"]["b"] == {"c": 20, "d": [9]}
              and cfg["m"]["e"] == 3 and cfg["m"]["t"] == (1, 2),
              "recursive dict merge, lists replaced, tuples kept")
        check(cfg["lst"] == [7], "a list replaces the base list")
        check(cfg["opt"] == {"type": "AdamW", "lr": 1e-4},
              "_delete_=True replaces the base dict")
        check(cfg["y"] == {"k": "v", "extra": {"z": 1}},
              "_delete_ on a new key is dropped, not leaked")
        check(cfg["sizes"] == [0, 10, 20],
              "comprehensions see top-level names")
        check("os" not in cfg and "helper" not in cfg and
              "__hidden" not in cfg and "_base_" not in cfg,
              "modules, functions, __names and _base_ are not config keys")
        check(cfg["fromb"] == 2, "{{_base_.m.b.c}} substituted")
        check(cfg["whole"] == {"v": {"type": "SGD", "lr": 0.1,
                                     "momentum": 0.9}},
              "{{ _base_.opt }} substituted with the base value")
        check(cfg["here"] == "child", "{{ fileBasenameNoExtension }}")

        p = write(d, "cfg/dup.py",
                  "_base_ = ['../_base_/a.py', '../_base_/dup.py']\n")
        e = load_error(p)
        check(e is not None and "'x'" in e and "a.py" in e and "dup.py" in e,
              "duplicate key among bases refused: %s" % e)
        p = write(d, "cfg/notdict.py",
                  "_base_ = '../_base_/a.py'\nx = dict(a=1)\n")
        e = load_error(p)
        check(e is not None and "'x'" in e and "_delete_" in e,
              "dict over a non-dict base value refused: %s" % e)
        p = write(d, "cfg/expr.py",
                  "_base_ = '../_base_/a.py'\nz = {{_base_.x}} + 1\n")
        e = load_error(p)
        check(e is not None and "_base_.x" in e,
              "{{_base_.x}} inside an expression refused: %s" % e)
        p = write(d, "cfg/nokey.py",
                  "_base_ = '../_base_/a.py'\nz = {{_base_.nope}}\n")
        e = load_error(p)
        check(e is not None and "nope" in e, "unknown base var refused: %s"
              % e)
        p = write(d, "cfg/tmpl.py", "z = '{{ weird }}'\n")
        e = load_error(p)
        check(e is not None and "{{ weird }}" in e,
              "unknown template refused: %s" % e)
        p = write(d, "cfg/missing.py", "_base_ = './gone.py'\n")
        e = load_error(p)
        check(e is not None and "'./gone.py'" in e and "missing.py" in e,
              "missing base names the including file: %s" % e)
        p = write(d, "cfg/syntax.py", "a = 1\nb = (\n")
        e = load_error(p)
        check(e is not None and "syntax.py:" in e,
              "syntax error names the file: %s" % e)
        p = write(d, "cfg/raises.py", "a = 1\nb = undefined_name\n")
        e = load_error(p)
        check(e is not None and "raises.py:2" in e and "NameError" in e,
              "runtime error names file:line: %s" % e)
        write(d, "cfg/loop1.py", "_base_ = './loop2.py'\n")
        p = write(d, "cfg/loop2.py", "_base_ = './loop1.py'\n")
        e = load_error(p)
        check(e is not None and "circular" in e, "circular _base_ refused")
        p = write(d, "cfg/badbase.py", "_base_ = 3\n")
        e = load_error(p)
        check(e is not None and "_base_ must be" in e, "bad _base_ type")


def load_converter():
    spec = importlib.util.spec_from_file_location("convert_checkpoint",
                                                  cc.CONVERTER)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    return conv


BUFFERS = ("running_mean", "running_var", "num_batches_tracked",
           "init_proposal_bboxes", "relative_position_index")


def test_official_configs():
    conv = load_converter()
    # name -> (backbone type, depth, N, backbone keys, total keys,
    #          parameters)  (model-spec 8, 9.1, 13.1)
    expected = {
        "stageinteractor_r50_1x_coco.py":
            ("ResNet", 50, 100, 318, 662, 137277256),
        "stageinteractor_r50_mstrain_480-800_1x_coco.py":
            ("ResNet", 50, 100, 318, 662, 137277256),
        "stageinteractor_r50_mstrain_480-800_3x_coco.py":
            ("ResNet", 50, 100, 318, 662, 137277256),
        "stageinteractor_r101_mstrain_480-800_3x_coco.py":
            ("ResNet", 101, 100, 624, None, None),
        "stageinteractor_r50_300_query_crop_mstrain_480-800_1x_coco.py":
            None,
        "stageinteractor_r50_300_query_crop_mstrain_480-800_2x_coco.py":
            ("ResNet", 50, 300, 318, 662, 137328456),
        "stageinteractor_r50_300_query_crop_mstrain_480-800_3x_coco.py":
            ("ResNet", 50, 300, 318, 662, 137328456),
        "stageinteractor_r101_300_query_crop_mstrain_480-800_3x_coco.py":
            ("ResNet", 101, 300, 624, None, 156320584),
        "stageinteractor_dx101_300_query_crop_mstrain_480-800_3x_coco.py":
            ("ResNeXt", 101, 300, 684, None, 158520932),
        "stageinteractor_swin_s_300_query_crop_mstrain_480-800_3x_coco.py":
            ("SwinTransformer", None, 300, 357, None, 162044626),
    }
    names = sorted(os.listdir(cc.OFFICIAL))
    check(names == sorted(expected), "ten official config fixtures")
    for name, exp in sorted(expected.items()):
        path = os.path.join(cc.OFFICIAL, name)
        try:
            cfg = mmcfg.load(path)
        except mmcfg.ConfigError as e:
            check(exp is None and "lobster_r50_mstrain_480-800_1x_coco.py"
                  in str(e), "%s: %s" % (name, e))
            continue
        check(exp is not None, "%s loads" % name)
        btype, depth, nq, nbb, nkeys, nparams = exp
        model = cfg["model"]
        conv.materialise_heads(model)
        ex, nc = conv.expected_tensors(model)
        bb = [k for k in ex.shapes if k.startswith("backbone.")]
        params = sum(_numel(s) for k, s in ex.shapes.items()
                     if not k.split(".")[-1] in BUFFERS and
                     ".iou_snyc_statistics." not in k)
        norm, scale, sdiv, _ = conv.preprocess_metadata(cfg)
        ok = (model["backbone"]["type"] == btype and
              model["backbone"].get("depth") == depth and
              model["rpn_head"]["num_query"] == nq and
              model["test_cfg"]["rcnn"]["max_per_img"] == nq and
              len(model["roi_head"]["bbox_head"]) == 6 and nc == 80 and
              len(bb) == nbb and (nkeys is None or len(ex.shapes) == nkeys)
              and (nparams is None or params == nparams) and
              scale == [1333, 800] and sdiv == 32 and
              norm["mean"] == [123.675, 116.28, 103.53])
        check(ok, "%s: %s depth %s, %d queries, %d backbone keys, %d keys, "
              "%d parameters, test scale %s" %
              (name, model["backbone"]["type"], model["backbone"].get("depth"),
               model["rpn_head"]["num_query"], len(bb), len(ex.shapes),
               params, scale))
        prob = conv.backbone_support_problem(model["backbone"])
        check((prob is None) == (btype in ("ResNet", "ResNeXt",
                                           "SwinTransformer")),
              "%s: engine support check: %s" % (name, prob or "supported"))


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


def main():
    test_loader()
    test_official_configs()
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
