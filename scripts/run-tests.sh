#!/usr/bin/env bash
# Builds the project twice (plain -Werror build, then AddressSanitizer +
# UndefinedBehaviorSanitizer) and runs every meson test suite in both, then
# checks formatting.  GPU tests skip (exit 77) without a CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
# Tests run in parallel on few cores: OpenMP threads must sleep, not spin,
# while they wait, or oversubscribed tests crawl.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}

echo "== plain build"
[ -d build ] || meson setup build
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

echo "== formatting"
scripts/check-format.sh
echo "all tests passed"
