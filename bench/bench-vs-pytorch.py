#!/usr/bin/python3
# bench-vs-pytorch.py: the C engine (CPU backend, via bench-engine's child
# mode) against the PyTorch StageInteractor of tools/train/model.py on the
# same weights, the same frame size and 2 threads, for the golden tiny model
# and a full-size R-50 100-query model at 800x1333 (random weights written at
# bench time by make-random-model.py, deleted afterwards).  PyTorch runs in
# child processes, once with glibc's default malloc and once with
# GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=...
# (keep freed memory: no page faults per frame).  Warm-up runs first; the
# median of the timed runs is reported, frame in -> detections out.
#
# usage: bench-vs-pytorch.py --bench-engine BUILD/bench/bench-engine
#        [--threads 2] [--runs-tiny 30] [--runs-r50 5] [--only tiny|r50]
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
KEEP_MEM = ("glibc.malloc.mmap_max=0:"
            "glibc.malloc.trim_threshold=68719476736")


def torch_child(a):
    """Child mode: time the PyTorch model on a W x H frame; prints JSON."""
    import numpy as np
    import torch
    sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
    import evaluate as ev
    import export as E
    torch.set_num_threads(a.threads)
    net, meta = E.load(a.model)
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:a.height, 0:a.width]
    frame = np.stack([xx * 255 // max(a.width - 1, 1),
                      yy * 255 // max(a.height - 1, 1),
                      (xx + yy) * 3], -1)
    frame = ((frame + rng.integers(0, 9, frame.shape)) & 255).astype(np.uint8)
    if a.image:
        import synth
        frame = synth.read_ppm(a.image)
    times, net_times = [], []
    with torch.no_grad():
        for i in range(a.warmup + a.runs):
            t0 = time.perf_counter()
            x, (nw, nh), sf = ev.preprocess(frame, meta["test_scale"],
                                            meta["img_norm"])
            t1 = time.perf_counter()
            net.detect(x, torch.tensor([[float(nw), float(nh)]]), sf)
            t2 = time.perf_counter()
            if i >= a.warmup:
                times.append((t2 - t0) * 1e3)
                net_times.append((t2 - t1) * 1e3)
    print(json.dumps({"median": statistics.median(times), "min": min(times),
                      "net_median": statistics.median(net_times),
                      "input": list(x.shape)}))
    return 0


def run_torch(model, w, h, threads, warmup, runs, keep_mem, image=None):
    env = dict(os.environ)
    env.pop("GLIBC_TUNABLES", None)
    if keep_mem:
        env["GLIBC_TUNABLES"] = KEEP_MEM
    # Debian's torch calls the system BLAS (OpenBLAS, pthread build), whose
    # own thread pool ignores torch.set_num_threads: give it the same count
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    cmd = ["/usr/bin/python3", os.path.abspath(__file__), "--child-torch",
           "--model", model, "--width", str(w), "--height", str(h),
           "--threads", str(threads), "--warmup", str(warmup),
           "--runs", str(runs)]
    if image:
        cmd += ["--image", image]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("pytorch child failed: %s" % r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_engine(exe, model, w, h, threads, runs):
    """bench-engine child mode: 1 warm-up then `runs` timed frames."""
    cmd = [exe, "--model", model, "--width", str(w), "--height", str(h),
           "--threads", str(threads), "--runs", str(runs)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), r.stderr[-3000:]))
    out = {}
    for line in r.stdout.splitlines():
        p = line.split()
        if len(p) == 4 and p[0] == "T":
            out[p[1]] = (float(p[2]), float(p[3]))
    return {"median": out["total"][1], "min": out["total"][0],
            "net_median": out["total"][1] - out["preprocess"][1]}


def main():
    ap = argparse.ArgumentParser(description="C engine vs PyTorch, CPU")
    ap.add_argument("--child-torch", action="store_true")
    ap.add_argument("--model")
    ap.add_argument("--image")
    ap.add_argument("--width", type=int)
    ap.add_argument("--height", type=int)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bench-engine",
                    default=os.path.join(ROOT, "build", "bench",
                                         "bench-engine"))
    ap.add_argument("--golden", default=os.path.join(ROOT, "..", "shared",
                                                     "golden"))
    ap.add_argument("--runs-tiny", type=int, default=30)
    ap.add_argument("--runs-r50", type=int, default=5)
    ap.add_argument("--only", choices=["tiny", "r50"])
    a = ap.parse_args()
    if a.child_torch:
        return torch_child(a)

    have_engine = os.path.exists(a.bench_engine)
    if not have_engine:
        print("note: %s not found: PyTorch only" % a.bench_engine,
              file=sys.stderr)
    tmp = tempfile.mkdtemp(prefix="si-bench-vs-pt-")
    cases = []
    try:
        if a.only in (None, "tiny"):
            cases.append(("tiny (golden)",
                          os.path.join(a.golden, "tiny", "model.safetensors"),
                          150, 110, 5, a.runs_tiny))
        if a.only in (None, "r50"):
            path = os.path.join(tmp, "r50-100q.safetensors")
            print("writing random R-50 100-query model ...", file=sys.stderr)
            subprocess.run(["/usr/bin/python3",
                            os.path.join(HERE, "make-random-model.py"),
                            "--out", path, "--queries", "100",
                            "--golden", os.path.join(a.golden, "tiny"),
                            "--spec", os.path.join(a.golden, "..", "docs",
                                                   "model-spec.md")],
                           check=True)
            cases.append(("r50-100q 1333x800", path, 1333, 800, 2,
                          a.runs_r50))
        rows = []
        for name, model, w, h, warm, runs in cases:
            print("running %s ..." % name, file=sys.stderr)
            res = {}
            if have_engine:
                res["engine"] = run_engine(a.bench_engine, model, w, h,
                                           a.threads, runs)
            res["pytorch"] = run_torch(model, w, h, a.threads, warm, runs,
                                       False)
            res["pytorch keep-mem"] = run_torch(model, w, h, a.threads, warm,
                                                runs, True)
            rows.append((name, res))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nC engine (CPU backend) vs PyTorch %s, %d threads, frame in -> "
          "detections out, median ms (min); 'net' excludes preprocessing" %
          (torch_version(), a.threads))
    print("%-20s %-18s %10s %10s %10s %16s" %
          ("model", "implementation", "median", "min", "net", "vs engine"))
    for name, res in rows:
        eng = res.get("engine")
        for impl, r in res.items():
            ratio = "" if eng is None or impl == "engine" else \
                "%.2fx slower" % (r["median"] / eng["median"]) \
                if r["median"] >= eng["median"] else \
                "%.2fx faster" % (eng["median"] / r["median"])
            print("%-20s %-18s %10.1f %10.1f %10.1f %16s" %
                  (name, impl, r["median"], r["min"], r["net_median"], ratio))
    print("pytorch keep-mem: GLIBC_TUNABLES=%s" % KEEP_MEM)
    print("PyTorch: torch.set_num_threads(%d), OPENBLAS_NUM_THREADS=%d; "
          "engine: bench-engine --threads %d (1 warm-up run)" %
          (a.threads, a.threads, a.threads))
    print("machine: %d CPUs, load average %.1f %.1f %.1f at the end" %
          ((os.cpu_count() or 0,) + os.getloadavg()))
    return 0


def torch_version():
    try:
        r = subprocess.run(["/usr/bin/python3", "-c",
                            "import torch; print(torch.__version__)"],
                           capture_output=True, text=True)
        return r.stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    sys.exit(main())
