#!/usr/bin/env bash
# Builds the project three times and runs its tests: a plain -Werror build
# (every suite, the element tests also under valgrind: suite "leaks") and an
# AddressSanitizer + UndefinedBehaviorSanitizer build (every suite),
# then a release build without oneDNN / BLAS / GStreamer (the golden suite),
# packed as the GPU bundle to check its size; then checks formatting.
# GPU tests skip (exit 77) without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
# Tests run in parallel on few cores: OpenMP threads must sleep, not spin,
# while they wait, or oversubscribed tests crawl.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

echo "== plain build"
# CI must build the CUDA backend (nvcc is on every CI machine): there, a
# toolkit meson cannot find fails the setup at once, not the bundle check
# at the end
cuda_opt=()
[ "${CI:-}" != true ] || cuda_opt=(-Dcuda=enabled)
[ -d build ] || meson setup build "${cuda_opt[@]}"
ninja -C build -j"$JOBS"
meson test -C build --print-errorlogs --num-processes "$JOBS"

echo "== ASan + UBSan build"
[ -d build-asan ] || meson setup build-asan -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debug
ninja -C build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp \
    meson test -C build-asan --print-errorlogs --num-processes "$JOBS" \
    --no-suite slow --timeout-multiplier 4

echo "== release build without oneDNN, BLAS and GStreamer (the golden suite)"
# -O3 brings warnings the debug builds do not (-Werror), and the reference
# loops must match the golden case on their own.
[ -d build-minimal ] || meson setup build-minimal -Dbuildtype=release \
    -Ddnnl=disabled -Dblas=disabled -Dgst=disabled
ninja -C build-minimal -j"$JOBS"
meson test -C build-minimal --print-errorlogs --num-processes "$JOBS" \
    --suite golden

echo "== the GPU bundle (scripts/gpu-bundle.sh) still fits one device call"
# the release build above has the CUDA backend (nvcc is on every machine);
# a session lent a GPU must not find the bundle over the device tool's limit
scripts/gpu-bundle.sh build-minimal build-minimal/gpu-bundle

echo "== formatting"
scripts/check-format.sh
echo "all tests passed"
