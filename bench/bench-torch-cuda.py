#!/usr/bin/python3
# bench-torch-cuda.py: the yardstick for bench-cuda: PyTorch eager running
# the StageInteractor of tools/train/model.py (written from the spec, the
# engine's reference in the training tests) from the same model file, at
# the same frame size, batch 1, fp32 (TF32 off) and fp16 (autocast).
# Timed: the network's forward pass and the top-k of the detections, from
# a normalised, padded input tensor already on the device, to the scores
# and boxes (xyzr, not decoded) on the device.  bench-cuda's figures also
# include the frame's upload and the preprocessing, so this comparison
# favours PyTorch.
#
# usage: bench-torch-cuda.py --model M.safetensors [--width 1333]
#        [--height 800] [--runs 50] [--warmup 10] [--device cuda]
#        [--precision fp32,fp16]
# Prints one "torch <precision> batch 1: ..." line per precision (a failure
# of one is printed and the others still run); exit 77 without the device.
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tools", "train"))


def sync(device):
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_precision(net, meta, device, precision, a):
    """-> list of ms per frame: forward + top-k, batch 1."""
    import torch
    lm, sm = max(meta["test_scale"]), min(meta["test_scale"])
    s = min(lm / max(a.width, a.height), sm / min(a.width, a.height))
    nw, nh = int(a.width * s + 0.5), int(a.height * s + 0.5)
    hp, wp = -(-nh // 32) * 32, -(-nw // 32) * 32
    gen = torch.Generator(device="cpu").manual_seed(1)
    x = torch.zeros(1, 3, hp, wp)
    x[:, :, :nh, :nw] = torch.randn(1, 3, nh, nw, generator=gen)
    x = x.to(device)
    wh = torch.tensor([[float(nw), float(nh)]], device=device)
    k = net.cfg["max_per_img"]
    if precision == "fp16" and device.type != "cuda":
        # CPU autocast (bf16) keeps no norm in fp32 in older torch and fails
        raise RuntimeError("fp16 is timed on CUDA only")
    autocast = torch.autocast("cuda", dtype=torch.float16,
                              enabled=precision == "fp16")
    times = []
    with torch.no_grad(), autocast:  # autocast: off for fp32
        for i in range(a.warmup + a.runs):
            sync(device)
            t0 = time.perf_counter()
            cls_all, xyzr_all = net(x, wh)
            scores, idx = torch.sigmoid(cls_all[-1][0].float()).flatten().topk(k)
            nc = cls_all[-1].shape[-1]
            boxes = xyzr_all[-1][0][torch.div(idx, nc, rounding_mode="floor")]
            sync(device)
            if i >= a.warmup:
                times.append((time.perf_counter() - t0) * 1e3)
    if not torch.isfinite(scores).all() or not torch.isfinite(boxes).all():
        raise RuntimeError("non-finite detections")
    return times, (nw, nh, wp, hp)


def main():
    ap = argparse.ArgumentParser(
        description="PyTorch eager StageInteractor on a GPU: forward + "
        "top-k, batch 1 (the yardstick for bench-cuda)")
    ap.add_argument("--model", required=True)
    ap.add_argument("--width", type=int, default=1333)
    ap.add_argument("--height", type=int, default=800)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", default=None,
                    help="comma-separated; default fp32,fp16 (CUDA), fp32")
    a = ap.parse_args()
    import torch
    import export as E
    device = torch.device(a.device)
    if a.precision is None:
        a.precision = "fp32,fp16" if device.type == "cuda" else "fp32"
    for p in a.precision.split(","):
        if p not in ("fp32", "fp16"):
            ap.error("--precision: %r is not fp32 or fp16" % p)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("skipped: no CUDA device (torch %s)" % torch.__version__)
        return 77
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    net, meta = E.load(a.model)
    net = net.to(device)
    name = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else "cpu")
    print("torch %s on %s, model %s (%d queries), frame %dx%d" % (
        torch.__version__, name, os.path.basename(a.model),
        net.cfg["num_query"], a.width, a.height))
    failed = 0
    for precision in a.precision.split(","):
        try:
            t, (nw, nh, wp, hp) = time_precision(net, meta, device,
                                                 precision, a)
        except Exception as e:  # report, then go on with the next one
            print("torch %s batch 1: FAILED: %s: %s" % (
                precision, type(e).__name__, e))
            failed += 1
            continue
        med = statistics.median(t)
        print("torch %s batch 1: forward + top-k median %.2f ms, min %.2f ms,"
              " %.1f frames/s (input %dx%d padded %dx%d, %d runs)" % (
                  precision, med, min(t), 1e3 / med, nw, nh, wp, hp,
                  len(t)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
