#!/usr/bin/env bash
# test-cuda-profile.sh SI_DETECT CUDA_MODULE CASE_DIR: SI_CUDA_PROFILE=1
# makes a CUDA context print its op table when it is destroyed
# (engine/cuda/profile_cuda.c), here with the emulated CUDA runtime as the
# backend's module: a frame's ops by name, their ms adding up to the
# frame's total; without the variable, no table.
set -euo pipefail
si_detect=$1 module=$2 case_dir=$3
run() {
  SI_CUDA_MODULE=$module "$si_detect" -m "$case_dir/model.safetensors" \
    -i "$case_dir/image.ppm" -b cuda -t 0 2>&1 > /dev/null
}
fail() { echo "FAIL: $*"; exit 1; }

err=$(SI_CUDA_PROFILE=1 run)
echo "$err"
header=$(grep '^cuda profile: .*, fp32, 1 frames, ' <<< "$err") ||
  fail "no table header for one fp32 frame"
grep -q '(0 ops not timed' <<< "$header" || fail "ops not timed: $header"
for op in 'gemm [0-9]*x[0-9]*x[0-9]*$' 'layer_norm_kernel$' \
  'ln2d_bias_relu_kernel$' '([0-9]* others)$'; do
  grep -q "^cuda profile: .*  $op" <<< "$err" || fail "no row matching '$op'"
done
# the rows (the others included) add up to the header's ms a frame, and
# their calls to its ops a frame
awk '/^cuda profile: .* ms of stream time a frame/ {
       for (i = 1; i <= NF; i++) if ($i == "ms") total = $(i - 1)
       for (i = NF; i > 1; i--) if ($i == "ops") ops = $(i - 1) + 0 }
     /^cuda profile: +[0-9.]+ +[0-9.]+%/ { sum += $3; calls += $5 }
     END { d = sum - total; if (d < 0) d = -d
           printf "rows %.3f ms, total %.3f ms; %d calls, %d ops\n",
             sum, total, calls, ops
           exit !(total > 0 && d <= 0.01 * total + 0.01 && ops > 0 &&
                  calls == ops) }' <<< "$err" ||
  fail "the rows do not add up to the frame's total (ms and ops)"

err=$(run)
if grep -q '^cuda profile' <<< "$err"; then
  fail "a table without SI_CUDA_PROFILE"
fi
echo "ok"
