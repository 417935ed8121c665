#!/usr/bin/env bash
# gpu-suite.sh: the CUDA backend's checks on a machine with a GPU, from the
# bundle that scripts/gpu-bundle.sh packs into .gpu/bundle.tar.gz (no build
# needed there; it is unpacked under $TMPDIR first, a second or two).
#
#   bash scripts/gpu-suite.sh [--budget SECONDS] [STAGE...]
#
# Stages, run in the order given; the default, "all", is every stage in
# order of value, so that what a short device lease cuts off is what matters
# least:
#   parity      the parity suite (every op vs its CPU twin, fp32 and fp16; the
#               detector on the golden cases; CUDA graphs) and si-detect
#   bench       bench-cuda: R-50 100 and 300 queries, fp32 and fp16, batch 1
#               and 4 streams
#   sanitize-ops       compute-sanitizer memcheck / racecheck / synccheck on
#                      the op parity test
#   sanitize-detector  memcheck (with leak check) / initcheck on the detector,
#                      memcheck on the graph-replayed context
#   compare     PyTorch eager on the 100-query model (bench/bench-torch-cuda.py,
#               the yardstick), the op profile of an fp16 frame
#               (SI_CUDA_PROFILE=1, graphs off), then
#               bench-cuda fp16 100 queries with graphs off, the fused conv
#               epilogue off, the self-attention as four ops, fp32 maps, spinning waits, frames in frame
#               memory and 16 / 8 MiB im2col slices (SI_CUDA_IM2COL_MIB),
#               one at a time (last: it only explains the bench numbers)
# --budget (default 480 s) bounds the whole run: each step gets at most what
# is left of it, and a step that would start with less than 20 s left is
# reported as NOT RUN.  One device call then fits the tool's 10-minute limit
# with time to spare for the machine's start and the transfers:
#     run(command="bash scripts/gpu-suite.sh", carry=[".gpu"], timeout_s=560)
# A missing driver, cuBLAS or library is found in a few seconds (preflight,
# exit 3), so that the same lease can still fix and rerun.
#
# What comes back in $OUT (the device tool's folder; ./gpu-out elsewhere) is
# three files, well under the tool's limit of 8: summary.txt (one PASS /
# FAIL / SKIP / NOT RUN line per step with its seconds, the device, the
# bundle's commit), bench.txt (the benchmark lines) and logs.tar.gz (one log
# per step), each rewritten after every step so that a run cut off at its
# limit still returns what it did.  Exit status: 0 when no step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
PACKED=$PWD/.gpu/bundle.tar.gz
B=${TMPDIR:-/tmp}/si-gpu-bundle
OUTDIR=${OUT:-$PWD/gpu-out}
budget=480
min_step_s=20

while [ $# -gt 0 ]; do
  case $1 in
    --budget) budget=${2:?--budget needs seconds}; shift 2 ;;
    --budget=*) budget=${1#--budget=}; shift ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || set -- all
[ "$*" = all ] && set -- parity bench sanitize-ops sanitize-detector compare
for what in "$@"; do
  case $what in
    parity | sanitize-ops | sanitize-detector | bench | compare) ;;
    *) echo "usage: $0 [--budget S] [all|parity|bench|sanitize-ops|sanitize-detector|compare]..."
       exit 2 ;;
  esac
done

mkdir -p "$OUTDIR"
LOGS=$(mktemp -d)
SUMMARY=$OUTDIR/summary.txt
: > "$SUMMARY"
: > "$OUTDIR/bench.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }
# what comes back, rewritten after every step and at exit
save_results() {
  tar czf "$OUTDIR/logs.tar.gz" -C "$LOGS" . 2> /dev/null
  { grep -h -E "device|frame |batch 1|streams" "$LOGS"/bench-*.log
    grep -h "^cuda profile" "$LOGS"/profile-*.log | head -250
  } > "$OUTDIR/bench.txt" 2> /dev/null
}
trap 'save_results; rm -rf "$LOGS"' EXIT
deadline=$((SECONDS + budget))

preflight_fail() {
  say "PREFLIGHT FAILED: $*"
  exit 3
}

say "== $(date -u +%FT%TZ) gpu-suite, bundle $(cat .gpu/COMMIT 2> /dev/null || echo '?')," \
  "stages: $*, budget ${budget} s"
[ -f "$PACKED" ] || preflight_fail "no $PACKED: run scripts/gpu-bundle.sh first"
rm -rf "$B" && mkdir -p "$B" && tar xzf "$PACKED" -C "$B" ||
  preflight_fail "cannot unpack $PACKED into $B"
[ -x "$B/bin/test-parity-ops" ] || preflight_fail "$PACKED holds no bin/test-parity-ops"
command -v nvidia-smi > /dev/null || preflight_fail "nvidia-smi not found (no driver?)"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 |
  tee -a "$SUMMARY"
[ "${PIPESTATUS[0]}" -eq 0 ] || preflight_fail "nvidia-smi sees no GPU"

# cuBLAS of the device's CUDA 13 toolkit (or of its Python wheels)
cublas=$(find /usr/local/cuda*/ /usr/lib/x86_64-linux-gnu /opt -name 'libcublas.so.13*' \
  2> /dev/null | head -1)
[ -n "$cublas" ] || preflight_fail "libcublas.so.13 not found"
export LD_LIBRARY_PATH="$B/lib:$(dirname "$cublas")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export SI_CUDA_MODULE="$B/lib/libsi-engine-cuda.so"
export OMP_WAIT_POLICY=PASSIVE
sanitizer=$(command -v compute-sanitizer || find /usr/local/cuda*/ /opt -name compute-sanitizer \
  -type f 2> /dev/null | head -1)
say "cuBLAS: $cublas"
say "compute-sanitizer: ${sanitizer:-none}"
missing=$(for f in "$B"/bin/* "$SI_CUDA_MODULE"; do ldd "$f"; done 2>&1 | grep 'not found' | sort -u)
[ -z "$missing" ] || preflight_fail "libraries not found: $(echo $missing)"
"$B/bin/si-detect" --version 2>&1 | tee -a "$SUMMARY"
[ "${PIPESTATUS[0]}" -eq 0 ] || preflight_fail "si-detect --version failed"
G=$B/golden/tiny

step() { # step NAME LIMIT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local log="$LOGS/$name.log" left=$((deadline - SECONDS)) t0=$SECONDS rc
  if [ "$left" -lt "$min_step_s" ]; then
    say "NOT RUN $name (budget: ${left} s left)"
    return
  fi
  [ "$limit" -le "$left" ] || limit=$left
  timeout "$limit" "$@" > "$log" 2>&1
  rc=$?
  case $rc in
    0) say "PASS $name ($((SECONDS - t0)) s)" ;;
    77) say "SKIP $name: $(tail -1 "$log")" ;;
    *) if [ "$rc" -eq 124 ]; then
         say "FAIL $name (timed out after ${limit} s); end of the log:"
       else
         say "FAIL $name (rc $rc, $((SECONDS - t0)) s); end of the log:"
       fi
       tail -15 "$log" | sed 's/^/    /' | tee -a "$SUMMARY" ;;
  esac
  save_results
}

run_parity() {
  step parity-ops 120 "$B/bin/test-parity-ops"
  step parity-ops-fp16 120 "$B/bin/test-parity-ops" fp16
  step parity-detector 120 "$B/bin/test-parity-detector" "$G"
  step parity-detector-fp16 120 "$B/bin/test-parity-detector" "$G" fp16
  # fp16 with fp32 maps (session 5's path): tells half-map rounding from
  # the rest should the step above fail
  SI_CUDA_HALF_MAPS=0 step parity-detector-fp16-float-maps 60 \
    "$B/bin/test-parity-detector" "$G" fp16
  # the convolutions' im2col in slices (1 MiB: the stem in two)
  SI_CUDA_IM2COL_MIB=1 step parity-detector-im2col-1mib 60 \
    "$B/bin/test-parity-detector" "$G"
  step parity-graph 60 "$B/bin/test-parity-graph"
  step parity-decoder-graph 120 "$B/bin/test-parity-decoder-graph" "$G"
  step parity-context-graph 120 "$B/bin/test-parity-context-graph" "$G"
  step parity-frame-memory 60 "$B/bin/test-parity-frame-memory" "$G"
  step si-detect-cuda 60 "$B/bin/si-detect" -m "$G/model.safetensors" \
    -i "$G/image.ppm" -b cuda -t 0 -n 5 --timings
}

sanitize() { # sanitize NAME TOOL [TOOL OPTIONS...] PROGRAM ARGS...
  local name=$1 tool=$2; shift 2
  if [ -z "$sanitizer" ]; then
    say "FAIL $name: compute-sanitizer not found"
    return
  fi
  step "$name" 150 "$sanitizer" --error-exitcode 99 --print-limit 20 \
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

models=${TMPDIR:-/tmp}/si-bench-models

make_models() { # make_models QUERIES...
  local py q
  py=$(command -v python3)
  mkdir -p "$models"
  for q in "$@"; do
    [ -f "$models/r50-${q}q.safetensors" ] ||
      step "make-model-${q}q" 120 env -u LD_LIBRARY_PATH "$py" bench/make-random-model.py \
        --out "$models/r50-${q}q.safetensors" --queries "$q" --golden "$G" --spec "$B/docs/model-spec.md"
  done
}

run_bench() {
  make_models 100 300
  step bench-r50-100q 150 "$B/bin/bench-cuda" --model "$models/r50-100q.safetensors" \
    --runs 50 --streams 4
  step bench-r50-300q 150 "$B/bin/bench-cuda" --model "$models/r50-300q.safetensors" \
    --runs 50 --streams 4
  cat "$OUTDIR/bench.txt"
}

run_compare() {
  make_models 100
  # the yardstick: PyTorch eager on the same model file and GPU, with the
  # machine's own libraries (the bundle's cudart must not shadow torch's)
  step bench-torch-r50-100q 120 env -u LD_LIBRARY_PATH -u SI_CUDA_MODULE \
    "$(command -v python3)" bench/bench-torch-cuda.py \
    --model "$models/r50-100q.safetensors" --runs 50
  # where a frame's time goes, op by op (engine/cuda/profile_cuda.c)
  SI_CUDA_PROFILE=1 SI_CUDA_GRAPHS=0 step profile-r50-100q-fp16 90 \
    "$B/bin/bench-cuda" --model "$models/r50-100q.safetensors" --runs 10 \
    --streams 1 --precision fp16
  SI_CUDA_GRAPHS=0 step bench-r50-100q-nographs 90 "$B/bin/bench-cuda" \
    --model "$models/r50-100q.safetensors" --runs 50 --streams 1 --precision fp16
  SI_CUDA_FUSED_EPILOGUE=0 step bench-r50-100q-unfused 90 "$B/bin/bench-cuda" \
    --model "$models/r50-100q.safetensors" --runs 50 --streams 1 --precision fp16
  SI_CUDA_FUSED_ATTENTION=0 step bench-r50-100q-attention-4-ops 90 \
    "$B/bin/bench-cuda" --model "$models/r50-100q.safetensors" --runs 50 \
    --streams 1 --precision fp16
  SI_CUDA_HALF_MAPS=0 step bench-r50-100q-float-maps 90 "$B/bin/bench-cuda" \
    --model "$models/r50-100q.safetensors" --runs 50 --streams 1 --precision fp16
  SI_CUDA_SPIN_WAIT=1 step bench-r50-100q-spin 90 "$B/bin/bench-cuda" \
    --model "$models/r50-100q.safetensors" --runs 50 --streams 1 --precision fp16
  step bench-r50-100q-frame-memory 90 "$B/bin/bench-cuda" \
    --model "$models/r50-100q.safetensors" --runs 50 --streams 1 --precision fp16 \
    --frame-memory
  # smaller im2col slices, which may stay in the L2 cache (default 64 MiB)
  for mib in 16 8; do
    SI_CUDA_IM2COL_MIB=$mib step "bench-r50-100q-im2col-${mib}mib" 90 \
      "$B/bin/bench-cuda" --model "$models/r50-100q.safetensors" --runs 50 \
      --streams 1 --precision fp16
  done
  cat "$OUTDIR/bench.txt"
}

for what in "$@"; do
  say "== stage $what ($((deadline - SECONDS)) s of the budget left)"
  "run_${what//-/_}"
done
say "== done in ${SECONDS} s: $(grep -c '^PASS' "$SUMMARY") passed," \
  "$(grep -c '^FAIL' "$SUMMARY") failed, $(grep -c '^SKIP' "$SUMMARY") skipped," \
  "$(grep -c '^NOT RUN' "$SUMMARY") not run"
! grep -q '^FAIL' "$SUMMARY"
