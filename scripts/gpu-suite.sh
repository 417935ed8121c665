#!/usr/bin/env bash
# gpu-suite.sh: the CUDA backend's checks on a machine with a GPU, from the
# bundle that scripts/gpu-bundle.sh packs into .gpu/ (no build needed there).
# Stages (one or more, in the order given; each fits a 10-minute device call,
# two together usually do):
#   parity      the parity suite (every op vs its CPU twin, fp32 and fp16; the
#               detector on the golden cases; CUDA graphs) and si-detect
#   sanitize-ops       compute-sanitizer memcheck / racecheck / synccheck on
#                      the op parity test
#   sanitize-detector  memcheck (with leak check) / initcheck on the detector,
#                      memcheck on the graph-replayed decoder
#   bench       bench-cuda: R-50 100 and 300 queries, fp32 and fp16, batch 1
#               and 4 streams; graphs off for comparison
# e.g.  run(command="bash scripts/gpu-suite.sh parity bench", carry=[".gpu"])
# Logs go to $OUT (the device tool's folder) or ./gpu-out: one log per step
# and summary.txt, with a PASS / FAIL / SKIP line and the time of each step.
# Exit status: 0 when no step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
B=$PWD/.gpu
OUTDIR=${OUT:-$PWD/gpu-out}
mkdir -p "$OUTDIR"
[ -x "$B/bin/test-parity-ops" ] || { echo "no bundle: run scripts/gpu-bundle.sh first"; exit 1; }

# cuBLAS of the device's CUDA 13 toolkit (or of its Python wheels)
cublas=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt -name 'libcublas.so.13*' \
  2>/dev/null | head -1)
[ -n "$cublas" ] || { echo "gpu-suite: libcublas.so.13 not found"; exit 1; }
export LD_LIBRARY_PATH="$B/lib:$(dirname "$cublas")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SI_CUDA_MODULE="$B/lib/libsi-engine-cuda.so"
export OMP_WAIT_POLICY=PASSIVE
sanitizer=$(command -v compute-sanitizer || find /usr/local/cuda*/ /opt -name compute-sanitizer \
  -type f 2>/dev/null | head -1)
G=$B/golden/tiny

step() { # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local log="$OUTDIR/$name.log" t0=$SECONDS rc
  timeout "$limit" "$@" > "$log" 2>&1
  rc=$?
  case $rc in
    0) echo "PASS $name ($((SECONDS - t0)) s)" ;;
    77) echo "SKIP $name: $(tail -1 "$log")" ;;
    *) echo "FAIL $name (rc $rc, $((SECONDS - t0)) s); end of $log:"
       tail -15 "$log" | sed 's/^/    /' ;;
  esac
}

{
  echo "== $(date -u +%FT%TZ) bundle $(cat "$B/COMMIT"), stages: ${*:-all}"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "cuBLAS: $cublas"; echo "compute-sanitizer: ${sanitizer:-none}"
  "$B/bin/si-detect" --version
} 2>&1 | tee -a "$OUTDIR/summary.txt"

run_parity() {
  step parity-ops 300 "$B/bin/test-parity-ops"
  step parity-ops-fp16 300 "$B/bin/test-parity-ops" fp16
  step parity-detector 300 "$B/bin/test-parity-detector" "$G"
  step parity-detector-fp16 300 "$B/bin/test-parity-detector" "$G" fp16
  step parity-graph 120 "$B/bin/test-parity-graph"
  step parity-decoder-graph 300 "$B/bin/test-parity-decoder-graph" "$G"
  step parity-context-graph 300 "$B/bin/test-parity-context-graph" "$G"
  step si-detect-cuda 120 "$B/bin/si-detect" -m "$G/model.safetensors" \
    -i "$G/image.ppm" -b cuda -t 0 -n 5 --timings
}

sanitize() { # sanitize NAME TOOL [TOOL OPTIONS...] PROGRAM ARGS...
  local name=$1 tool=$2; shift 2
  if [ -z "$sanitizer" ]; then
    echo "FAIL $name: compute-sanitizer not found"
    return
  fi
  step "$name" 180 "$sanitizer" --error-exitcode 99 --print-limit 20 \
    --tool "$tool" "$@"
}

run_sanitize_ops() {
  sanitize memcheck-ops memcheck "$B/bin/test-parity-ops"
  sanitize racecheck-ops racecheck "$B/bin/test-parity-ops"
  sanitize synccheck-ops synccheck "$B/bin/test-parity-ops"
}

run_sanitize_detector() {
  sanitize memcheck-detector memcheck --leak-check full \
    "$B/bin/test-parity-detector" "$G"
  sanitize initcheck-detector initcheck "$B/bin/test-parity-detector" "$G"
  sanitize memcheck-context-graph memcheck \
    "$B/bin/test-parity-context-graph" "$G"
}

run_bench() {
  local py
  py=$(command -v python3)
  for q in 100 300; do
    [ -f "/tmp/r50-${q}q.safetensors" ] || "$py" bench/make-random-model.py \
      --out "/tmp/r50-${q}q.safetensors" --queries "$q" --golden "$G" \
      > "$OUTDIR/make-model-$q.log" 2>&1 || echo "FAIL make-random-model $q"
  done
  step bench-r50-100q 420 "$B/bin/bench-cuda" --model /tmp/r50-100q.safetensors \
    --runs 50 --streams 4
  step bench-r50-300q 420 "$B/bin/bench-cuda" --model /tmp/r50-300q.safetensors \
    --runs 50 --streams 4
  SI_CUDA_GRAPHS=0 step bench-r50-100q-nographs 300 "$B/bin/bench-cuda" \
    --model /tmp/r50-100q.safetensors --runs 50 --streams 1 --precision fp16
  grep -h -E "device|batch 1|streams" "$OUTDIR"/bench-*.log
}

[ $# -gt 0 ] || set -- parity sanitize-ops sanitize-detector bench
for what in "$@"; do
  case $what in
    parity | sanitize-ops | sanitize-detector | bench) ;;
    *) echo "usage: $0 [parity|sanitize-ops|sanitize-detector|bench]..."; exit 2 ;;
  esac
done
run_log=$(mktemp)
for what in "$@"; do
  echo "== stage $what"
  "run_${what//-/_}"
done 2>&1 | tee "$run_log"
cat "$run_log" >> "$OUTDIR/summary.txt"
! grep -q '^FAIL' "$run_log"
status=$?
rm -f "$run_log"
exit $status
