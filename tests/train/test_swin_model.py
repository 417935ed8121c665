#!/usr/bin/python3
# test_swin_model.py: the C engine runs a Swin Transformer backbone
# (model-spec 3.3) as the PyTorch model of tools/train does.  A small
# random StageInteractor with a Swin backbone (embed_dims 32, depths
# 2/2/2/2 so that every stage has a plain and a shifted-window block,
# random relative-position tables and LayerNorms) is exported as
# safetensors; si-detect runs it with --dump on a frame whose token maps
# are not multiples of the window (padding and the shifted windows' mask
# are exercised) and every intermediate tensor must match PyTorch fed the
# engine's own network input (rel L2 <= 1e-4; labels and query indices
# exact), in each CPU map layout, or with --cuda-module M on the CUDA
# backend loaded from M (the emulation's module on machines without a GPU);
# --precision fp16 there compares the image side (backbone, neck) within
# 1e-2 (tensor-core GEMMs, half maps).
# Usage: test_swin_model.py --si-detect EXE [--seed S] [--window-size N]
#        [--cuda-module M [--precision fp16]]
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "train"))

import torch  # noqa: E402

import model as M  # noqa: E402
import test_dcn_model as D  # noqa: E402


FP16_TOL = 1e-2


def make_model(seed, window_size):
    cfg = M.make_config(num_classes=5, num_query=16, content_dim=64, ffn=128,
                        in_points=(8, 4, 4), max_per_img=16)
    cfg.update({"backbone_type": "SwinTransformer", "embed_dims": 32,
                "swin_depths": [2, 2, 2, 2], "swin_heads": [1, 2, 4, 8],
                "window_size": window_size, "mlp_ratio": 4})
    torch.manual_seed(seed)
    net = M.StageInteractor(cfg)
    M.init_weights(net, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.backbone.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
            if isinstance(m, M.WindowMSA):
                t = m.relative_position_bias_table
                t.copy_(torch.randn(t.shape, generator=g))
            if isinstance(m, torch.nn.Linear):
                w = m.weight
                w.copy_(torch.randn(w.shape, generator=g) / w.shape[1] ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.rand(m.bias.shape, generator=g) * 0.2
                                 - 0.1)
        for head in net.roi_head.bbox_head:
            for lin in (head.feat_extractor.gen_one_d[0],
                        head.dynamic_conv.parameter_generator):
                lin.weight.copy_(torch.randn(lin.weight.shape,
                                             generator=g) * 0.02)
    return net.eval()


def check_refusals(net, si_detect):
    """Bad Swin configs and tensors are refused with the reason."""
    import json
    import subprocess
    import tempfile

    import export as E
    import st
    import synth
    fails = 0
    with tempfile.TemporaryDirectory() as tmp:
        image = os.path.join(tmp, "frame.ppm")
        synth.write_ppm(image, D.test_frame(1))
        good = os.path.join(tmp, "good.safetensors")
        E.export(net, good, ["c%d" % i for i in range(5)], (256, 192))
        tensors, meta = st.load(good)
        blk = "backbone.stages.1.blocks.0."
        cases = [
            ("qk_scale", {"qk_scale": 0.5}, None, "qk_scale must be null"),
            ("heads", {"num_heads": [3, 2, 4, 8]}, None,
             "not a multiple of num_heads[0] = 3"),
            ("depths", {"depths": [2, 2, 2, 1]}, None,
             "more blocks than backbone.depths says"),
            ("abs_pos", {"use_abs_pos_embed": True}, None,
             "use_abs_pos_embed = true is not supported"),
            ("missing", {}, blk + "attn.w_msa.relative_position_bias_table",
             "missing tensor \"%sattn.w_msa.relative_position_bias_table\""
             % blk),
        ]
        for name, edit, drop, want in cases:
            model = json.loads(meta["model"])
            model["backbone"].update(edit)
            m2 = dict(meta, model=json.dumps(model))
            t2 = {k: v for k, v in tensors.items() if k != drop}
            path = os.path.join(tmp, name + ".safetensors")
            st.save(path, t2, m2)
            r = subprocess.run([si_detect, "--backend", "cpu", "-m", path,
                                "-i", image],
                               capture_output=True, text=True)
            ok = r.returncode != 0 and want in r.stderr
            print("%s refusal %s: %s" % ("ok" if ok else "FAIL", name,
                                         r.stderr.strip()[-200:]))
            fails += not ok
    return fails


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--si-detect", required=True)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--window-size", type=int, default=7)
    ap.add_argument("--cuda-module")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "fp16"))
    a = ap.parse_args()
    if not os.path.exists(a.si_detect):
        print("skipped: si-detect not built (%s)" % a.si_detect)
        return D.SKIP
    torch.set_num_threads(2)
    net = make_model(a.seed, a.window_size)
    print("model: Swin, embed_dims 32, depths 2/2/2/2, window %d" %
          a.window_size)
    runs = [(name, "cpu", env) for name, env in D.LAYOUTS]
    if a.cuda_module:
        if not os.path.exists(a.cuda_module):
            print("FAIL: CUDA module missing: %s" % a.cuda_module)
            return 1
        runs = [("cuda", "cuda", {"SI_CUDA_MODULE": a.cuda_module})]
    fails = 0 if a.cuda_module else check_refusals(net, a.si_detect)
    # fp16 (CUDA): the image side only, within half precision's error
    fp16 = {"extra_args": ["--precision", "fp16"], "tol": FP16_TOL,
            "prefixes": ("backbone.", "neck.")} if a.precision == "fp16" \
        else {}
    # 200x150 -> 256x192 (padded 256x192): tokens 64x48 .. 8x6
    return D.check_engine(net, a.si_detect, runs, D.test_frame(a.seed),
                          (256, 192), **fp16) or (1 if fails else 0)


if __name__ == "__main__":
    sys.exit(main())
