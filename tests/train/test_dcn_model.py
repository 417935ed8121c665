#!/usr/bin/python3
# test_dcn_model.py: the C engine runs a ResNeXt backbone with DCNv1 convs
# (model-spec 3.2) as the PyTorch model of tools/train does.  A small
# random StageInteractor (ResNeXt-50, groups 4, base_width 4, DCN in
# layer2-4, random BN statistics and offset convs that move the taps by a
# few pixels, some off the map) is exported as safetensors; si-detect runs
# it with --dump on a frame and every intermediate tensor it writes (the
# golden names: backbone, neck, each stage, the detections) must match the
# PyTorch model fed the engine's own network input (rel L2 <= 1e-4; labels
# and query indices exact).  The engine runs with each CPU map layout
# (oneDNN's blocked maps, NHWC maps, the plain-loop reference), or with
# --cuda-module M on the CUDA backend loaded from M (the emulation's module
# on machines without a GPU).
# Usage: test_dcn_model.py --si-detect EXE [--deform-groups N]
#        [--fallback-on-stride] [--cuda-module M]
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "train"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import export as E  # noqa: E402
import model as M  # noqa: E402
import st  # noqa: E402
import synth  # noqa: E402

TOL = 1e-4
SKIP = 77
LAYOUTS = [("blocked", {}), ("nhwc", {"SI_CPU_NHWC_MAPS": "1"}),
           ("reference", {"SI_CPU_REFERENCE": "1"})]


def make_model(deform_groups, fallback, seed):
    cfg = M.make_config(num_classes=5, num_query=16, base_channels=16,
                        depth=50, content_dim=64, ffn=128,
                        in_points=(8, 4, 4), max_per_img=16)
    cfg.update({"backbone_type": "ResNeXt", "groups": 4, "base_width": 4,
                "dcn_groups": deform_groups,
                "stage_with_dcn": [False, True, True, True],
                "dcn_fallback": fallback})
    torch.manual_seed(seed)
    net = M.StageInteractor(cfg)
    M.init_weights(net, seed=seed)
    g = torch.Generator().manual_seed(seed)

    def uniform(t, lo, hi):
        t.copy_(torch.rand(t.shape, generator=g) * (hi - lo) + lo)

    n_dcn = 0
    with torch.no_grad():
        for m in net.backbone.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                uniform(m.weight, 0.5, 1.5)
                uniform(m.bias, -0.2, 0.2)
                uniform(m.running_mean, -0.2, 0.2)
                uniform(m.running_var, 0.5, 2.0)
            if isinstance(m, M.DeformConv2d):
                n_dcn += 1
                w = m.conv_offset.weight
                w.copy_(torch.randn(w.shape, generator=g) * 0.03)
                uniform(m.conv_offset.bias, -1.5, 1.5)
        # the decoder's generators start at zero (training init): give the
        # points and filters some input dependence
        for head in net.roi_head.bbox_head:
            for lin in (head.feat_extractor.gen_one_d[0],
                        head.dynamic_conv.parameter_generator):
                lin.weight.copy_(torch.randn(lin.weight.shape,
                                             generator=g) * 0.02)
    return net.eval(), n_dcn


def compare(name_run, dump, ref, tol=TOL, prefixes=None):
    """prefixes: compare only the tensors whose names start so (None:
    every tensor)."""
    fails, worst = 0, 0.0
    for name in sorted(dump):
        if name in ("input", "preproc.resized_rgb", "init.imgs_whwh"):
            continue
        if name not in ref or (prefixes and not name.startswith(prefixes)):
            continue
        got = dump[name].astype(np.float64)
        want = ref[name].detach().double().numpy()
        if got.shape != want.shape:
            print("FAIL %s: %s shape %s vs PyTorch %s" %
                  (name_run, name, got.shape, want.shape))
            fails += 1
            continue
        if name in ("det_labels", "det_query_index"):
            if not np.array_equal(got, want):
                print("FAIL %s: %s differs" % (name_run, name))
                fails += 1
            continue
        rel = np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-12)
        worst = max(worst, rel)
        if rel > tol or name.startswith("backbone."):
            print("%s: %-24s rel L2 %.2e %s" %
                  (name_run, name, rel, "FAIL" if rel > tol else "ok"))
        fails += rel > tol
    return fails, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--si-detect", required=True)
    ap.add_argument("--deform-groups", type=int, default=1)
    ap.add_argument("--fallback-on-stride", action="store_true")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--cuda-module")
    a = ap.parse_args()
    runs = [(name, "cpu", env) for name, env in LAYOUTS]
    if a.cuda_module:
        if not os.path.exists(a.cuda_module):
            print("FAIL: CUDA module missing: %s" % a.cuda_module)
            return 1
        runs = [("cuda", "cuda", {"SI_CUDA_MODULE": a.cuda_module})]
    if not os.path.exists(a.si_detect):
        print("skipped: si-detect not built (%s)" % a.si_detect)
        return SKIP
    torch.set_num_threads(2)
    net, n_dcn = make_model(a.deform_groups, a.fallback_on_stride, a.seed)
    print("model: ResNeXt-50 4x4d, %d DCN convs, deform_groups %d" %
          (n_dcn, a.deform_groups))
    offs = []

    def hook_offsets():
        return [m.conv_offset.register_forward_hook(
            lambda mod, i, o: offs.append(o.detach()))
            for m in net.backbone.modules() if isinstance(m, M.DeformConv2d)]

    def report_offsets():
        o = torch.cat([t.flatten() for t in offs])
        print("offsets: mean |d| %.2f px, max %.2f px, %.1f%% of them beyond "
              "1 px" % (float(o.abs().mean()), float(o.abs().max()),
                        100 * float((o.abs() > 1).double().mean())))

    return check_engine(net, a.si_detect, runs, test_frame(a.seed),
                        (256, 192), hook_offsets, report_offsets)


def test_frame(seed):
    """150x200 RGB: smooth structure plus noise, so that offsets and
    features vary over the frame."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:150, 0:200]
    img = np.stack([128 + 90 * np.sin(xx / 9.0 + c) * np.cos(yy / 13.0 - c)
                    for c in range(3)], -1)
    return np.clip(img + rng.normal(0, 20, img.shape), 0,
                   255).astype(np.uint8)


def check_engine(net, si_detect, runs, img, test_scale, hook=None,
                 report=None, extra_args=(), tol=TOL, prefixes=None):
    """Exports net, runs si-detect --dump on img for each run (name,
    backend, extra environment) and compares every dumped tensor (those
    named by prefixes, see compare) with net's own on the engine's
    network input, within rel L2 tol.  hook () -> hooks to remove after
    the PyTorch pass, report () prints what they saw; extra_args go to
    si-detect.  Returns the process exit code."""
    fails, worst_all = 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        mpath = os.path.join(tmp, "model.safetensors")
        ipath = os.path.join(tmp, "frame.ppm")
        E.export(net, mpath, ["c%d" % i for i in range(net.cfg["num_classes"])],
                 test_scale)
        synth.write_ppm(ipath, img)
        ref = None
        for lname, backend, env_extra in runs:
            dpath = os.path.join(tmp, "dump-%s.safetensors" % lname)
            env = dict(os.environ, **env_extra)
            r = subprocess.run([si_detect, "--backend", backend, "--model",
                                mpath, "--image", ipath, "--threshold", "0",
                                "--dump", dpath] + list(extra_args),
                               capture_output=True,
                               text=True, env=env)
            if r.returncode != 0:
                print("FAIL %s: si-detect exited %d: %s" %
                      (lname, r.returncode, r.stderr[-2000:]))
                fails += 1
                continue
            dump, _ = st.load(dpath)
            if ref is None:
                ref = {}
                img_t = torch.from_numpy(dump["input"])
                wh = dump["init.imgs_whwh"].reshape(-1)[:2]
                wh_t = torch.tensor([[float(wh[0]), float(wh[1])]])
                hooks = hook() if hook else []
                with torch.no_grad():
                    net(img_t, wh_t, dump=ref)
                    # the dump's boxes are in frame pixels
                    sx = wh[0] / img.shape[1]
                    sy = wh[1] / img.shape[0]
                    sf = torch.tensor([sx, sy, sx, sy], dtype=torch.float32)
                    b, s, lab, qi = net.detect(img_t, wh_t, sf)
                for hk in hooks:
                    hk.remove()
                if report:
                    report()
                ref.update({"det_boxes": b, "det_scores": s,
                            "det_labels": lab, "det_query_index": qi})
            f, worst = compare(lname, dump, ref, tol, prefixes)
            print("%s: %d tensors compared, worst rel L2 %.2e, %d failures" %
                  (lname, sum(1 for k in dump if k in ref and
                              (not prefixes or k.startswith(prefixes))),
                   worst, f))
            fails += f
            worst_all = max(worst_all, worst)
    print("worst rel L2 %.2e (limit %.0e), %d failures" %
          (worst_all, tol, fails))
    return 1 if fails else 0

if __name__ == "__main__":
    sys.exit(main())
