# test_convert.py: end-to-end tests of tools/convert-checkpoint.py on the
# golden tiny model: an mmdetection-style checkpoint + an inheriting config
# must convert to the golden tensors bit for bit with equivalent metadata;
# mismatched checkpoints and unsupported backbones must be refused with a
# message naming the tensor / backbone.
#   usage: test_convert.py [GOLDEN_TINY_DIR]
import json
import os
import subprocess
import sys
import tempfile

import convert_common as cc

failures = []


def check(cond, what):
    print("%s: %s" % ("ok" if cond else "FAIL", what))
    if not cond:
        failures.append(what)


def expect_refusal(what, rc, out, *needles):
    ok = rc == 1 and all(n in out for n in needles)
    check(ok, "%s is refused naming %s" % (what, ", ".join(needles)))
    if not ok:
        print("  rc=%d output:\n%s" % (rc, out))


def compare_with_golden(out_path, golden_path, f16=False):
    got = cc.SafeTensors(out_path)
    ref = cc.SafeTensors(golden_path)
    import numpy as np
    sys.path.insert(0, os.path.join(cc.REPO, "tools"))
    import importlib.util
    spec = importlib.util.spec_from_file_location("convert_checkpoint",
                                                  cc.CONVERTER)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)

    extra = [k for k in got.header if k not in ref.header]
    check(not extra, "no tensor outside the golden model (%s)" % extra[:3])
    missing = [k for k in ref.header if k not in got.header]
    dropped_ok = all(conv.is_unused(k) for k in missing)
    check(dropped_ok and missing,
          "only training-only tensors dropped (%d dropped, e.g. %s)" %
          (len(missing), missing[:2]))
    bad = []
    worst = 0.0
    for k in got.header:
        if k not in ref.header:
            continue
        g, r = got.header[k], ref.header[k]
        if g["shape"] != r["shape"]:
            bad.append("%s shape %s vs %s" % (k, g["shape"], r["shape"]))
            continue
        if not f16:
            if g["dtype"] != "F32" or got.raw(k) != ref.raw(k):
                bad.append(k)
        else:
            a = got.array(k).astype(np.float32)
            b = ref.array(k).astype(np.float16).astype(np.float32)
            if g["dtype"] != "F16" or not np.array_equal(a, b):
                bad.append(k)
            worst = max(worst, float(np.max(np.abs(
                a - ref.array(k)), initial=0.0)))
    check(not bad, "%d tensors %s the golden ones (first bad: %s)" %
          (len(got.header), "equal (float16-rounded)" if f16 else
           "bit-identical to", bad[:1]))

    gv, rv = cc.engine_view(got.metadata), cc.engine_view(ref.metadata)
    diffs = [k for k in rv if gv.get(k) != rv[k]]
    check(not diffs, "metadata the engine reads is equivalent (%d fields)%s"
          % (len(rv), "" if not diffs else ": differs at %s: %r vs %r" %
             (diffs[0], gv.get(diffs[0]), rv[diffs[0]])))
    other = cc.diff_paths(json.loads(got.metadata["model"]),
                          json.loads(ref.metadata["model"]))
    print("  info: model JSON differs from the golden one only at %s "
          "(fields mmdet's builder injects; the engine ignores them)" %
          (other or "nothing"))
    return got


def random_checkpoint(config, out_path):
    """An mmdetection-style checkpoint with random tensors of exactly the
    shapes the converter expects for `config`."""
    import collections
    import importlib.util
    import mmcfg
    import torch
    spec = importlib.util.spec_from_file_location("convert_checkpoint",
                                                  cc.CONVERTER)
    conv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conv)
    model = mmcfg.load(config)["model"]
    conv.materialise_heads(model)
    ex, _ = conv.expected_tensors(model)
    gen = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    for k, shape in ex.shapes.items():
        if k.endswith("num_batches_tracked") or \
                k.endswith("relative_position_index"):
            sd[k] = torch.randint(0, 169, shape, generator=gen)
        else:
            sd[k] = torch.randn(shape, generator=gen)
    torch.save({"meta": {"epoch": 1}, "state_dict": sd}, out_path)


def main():
    gdir = cc.golden_dir(sys.argv)
    cc.require_torch()
    import torch
    golden = os.path.join(gdir, "model.safetensors")

    with tempfile.TemporaryDirectory(prefix="si-convert-") as tmp:
        ckpt = os.path.join(tmp, "epoch_36.pth")
        cc.build_checkpoint(golden, ckpt)
        out = os.path.join(tmp, "tiny.safetensors")
        rc, log = cc.run_converter(cc.TINY_CONFIG, ckpt, "-o", out)
        check(rc == 0, "convert tiny checkpoint (rc %d)" % rc)
        print("  " + log.strip().replace("\n", "\n  "))
        if rc != 0:
            return 1
        got = compare_with_golden(out, golden)
        src = json.loads(got.metadata["source"])
        check(src["checkpoint"] == "epoch_36.pth" and len(src["sha256"]) == 64,
              "source metadata names the checkpoint and its SHA-256")
        check(got.metadata.get("size_divisor") == "32",
              "size_divisor metadata is 32")

        # float16 output
        out16 = os.path.join(tmp, "tiny-f16.safetensors")
        rc, log = cc.run_converter(cc.TINY_CONFIG, ckpt, "-o", out16,
                                   "--dtype", "f16")
        check(rc == 0, "convert with --dtype f16 (rc %d)" % rc)
        if rc == 0:
            compare_with_golden(out16, golden, f16=True)

        # --keep-unused keeps the counters as int64
        outk = os.path.join(tmp, "tiny-keep.safetensors")
        rc, log = cc.run_converter(cc.TINY_CONFIG, ckpt, "-o", outk,
                                   "--keep-unused")
        st = cc.SafeTensors(outk) if rc == 0 else None
        check(rc == 0 and len(st.header) == 662 and
              st.header["backbone.bn1.num_batches_tracked"]["dtype"] == "I64",
              "--keep-unused keeps all 662 tensors, counters as I64")

        # a bare state_dict (no 'state_dict' key) with a DataParallel prefix
        bare = os.path.join(tmp, "bare.pth")
        sd = torch.load(ckpt, map_location="cpu")["state_dict"]
        torch.save({"module." + k: v for k, v in sd.items()}, bare)
        outb = os.path.join(tmp, "bare.safetensors")
        rc, log = cc.run_converter(cc.TINY_CONFIG, bare, "-o", outb)
        check(rc == 0 and cc.SafeTensors(outb).header.keys() ==
              cc.SafeTensors(out).header.keys(),
              "bare 'module.'-prefixed state_dict converts the same")

        # mismatched checkpoints
        def wrong_shape(sd):
            w = sd["roi_head.bbox_head.3.dynamic_conv.parameter_generator"
                   ".weight"]
            sd["roi_head.bbox_head.3.dynamic_conv.parameter_generator"
               ".weight"] = w[:-8].clone()
        bad = os.path.join(tmp, "bad-shape.pth")
        cc.build_checkpoint(golden, bad, wrong_shape)
        rc, log = cc.run_converter(cc.TINY_CONFIG, bad, "-o",
                                   os.path.join(tmp, "x.safetensors"))
        expect_refusal("a checkpoint with a wrongly shaped tensor", rc, log,
                       "roi_head.bbox_head.3.dynamic_conv.parameter_generator"
                       ".weight", "[5112, 64]", "[5120, 64]")
        check(not os.path.exists(os.path.join(tmp, "x.safetensors")),
              "nothing written on refusal")

        def missing(sd):
            del sd["neck.gn_out.weight"]
        bad = os.path.join(tmp, "bad-missing.pth")
        cc.build_checkpoint(golden, bad, missing)
        rc, log = cc.run_converter(cc.TINY_CONFIG, bad, "-o",
                                   os.path.join(tmp, "x.safetensors"))
        expect_refusal("a checkpoint missing a tensor", rc, log,
                       "'neck.gn_out.weight'", "missing")

        def extra(sd):
            sd["backbone.layer3.6.conv1.weight"] = torch.zeros(64, 256, 1, 1)
        bad = os.path.join(tmp, "bad-extra.pth")
        cc.build_checkpoint(golden, bad, extra)
        rc, log = cc.run_converter(cc.TINY_CONFIG, bad, "-o",
                                   os.path.join(tmp, "x.safetensors"))
        expect_refusal("a checkpoint with an unexpected tensor (R-101 layer)",
                       rc, log, "'backbone.layer3.6.conv1.weight'")

        # the full-size official config against the tiny checkpoint
        rc, log = cc.run_converter(
            os.path.join(cc.OFFICIAL, "stageinteractor_r50_1x_coco.py"), ckpt,
            "-o", os.path.join(tmp, "x.safetensors"))
        expect_refusal("the tiny checkpoint with the full r50 config", rc,
                       log, "'backbone.conv1.weight'", "[16, 3, 7, 7]",
                       "[64, 3, 7, 7]")

        # Swin-S and ResNeXt-101 + DCN are supported: the tiny checkpoint
        # fails their shape checks (no warning about the backbone)
        for name in ("stageinteractor_swin_s_300_query_crop_mstrain_480-800"
                     "_3x_coco.py", "stageinteractor_dx101_300_query_crop_"
                     "mstrain_480-800_3x_coco.py"):
            rc, log = cc.run_converter(os.path.join(cc.OFFICIAL, name), ckpt,
                                       "-o", os.path.join(tmp, "x.safetensors"))
            expect_refusal("%s + tiny checkpoint" % name, rc, log,
                           "'backbone.")
            check("not supported" not in log and
                  "warning: backbone" not in log,
                  "%s's backbone is accepted" % name)

        # a (small) Swin model converts; its int64 relative_position_index
        # buffers stay I64 next to F32 tensors, and the engine runs it
        swin_cfg = os.path.join(cc.CONFIGS, "tiny",
                                "stageinteractor_tiny_swin.py")
        swin_ckpt = os.path.join(tmp, "swin.pth")
        random_checkpoint(swin_cfg, swin_ckpt)
        outs = os.path.join(tmp, "swin.safetensors")
        rc, log = cc.run_converter(swin_cfg, swin_ckpt, "-o", outs)
        ok = rc == 0 and "warning: backbone" not in log
        if ok:
            st = cc.SafeTensors(outs)
            sd = torch.load(swin_ckpt, map_location="cpu")["state_dict"]
            idx = "backbone.stages.0.blocks.1.attn.w_msa.relative_position_index"
            ok = (st.header[idx]["dtype"] == "I64" and
                  (st.array(idx) == sd[idx].numpy()).all() and
                  all(st.raw(k) == sd[k].numpy().tobytes()
                      for k in st.header))
        check(ok, "tiny Swin converts, I64 buffers kept, every tensor "
              "byte-identical (rc %d)" % rc)
        si_detect = os.environ.get("SI_DETECT")
        if ok and si_detect:
            r = subprocess.run([si_detect, "--backend", "cpu", "-m", outs,
                                "-i", os.path.join(gdir, "image.ppm"),
                                "-t", "0"],
                               capture_output=True, text=True)
            check(r.returncode == 0 and '"detections":[{' in r.stdout,
                  "si-detect runs the converted tiny Swin model (rc %d: %s)"
                  % (r.returncode, (r.stderr or r.stdout)[-300:]))

        # a truncated checkpoint
        trunc = os.path.join(tmp, "truncated.pth")
        with open(ckpt, "rb") as f, open(trunc, "wb") as g:
            g.write(f.read()[:os.path.getsize(ckpt) // 2])
        rc, log = cc.run_converter(cc.TINY_CONFIG, trunc, "-o",
                                   os.path.join(tmp, "x.safetensors"))
        expect_refusal("a truncated checkpoint", rc, log, "truncated.pth")

        # the official config with the missing base
        rc, log = cc.run_converter(
            os.path.join(cc.OFFICIAL, "stageinteractor_r50_300_query_crop_"
                         "mstrain_480-800_1x_coco.py"), ckpt, "-o",
            os.path.join(tmp, "x.safetensors"))
        expect_refusal("the config inheriting the missing lobster base", rc,
                       log, "lobster_r50_mstrain_480-800_1x_coco.py",
                       "does not exist", "official repository")

        # a checkpoint that is not a torch archive
        junk = os.path.join(tmp, "junk.pth")
        with open(junk, "wb") as f:
            f.write(b"not a checkpoint")
        rc, log = cc.run_converter(cc.TINY_CONFIG, junk, "-o",
                                   os.path.join(tmp, "x.safetensors"))
        expect_refusal("a corrupt checkpoint", rc, log, "junk.pth")

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
