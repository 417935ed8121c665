#!/usr/bin/env bash
# gpu-bundle.sh: builds what the GPU checks of the CUDA backend need and packs
# it, with the libraries it links, the golden cases and the spec, into one
# gzipped tarball, .gpu/bundle.tar.gz (.gpu/ is git-ignored; the binaries
# shrink to a third, which the 64 MiB limit needs now that the tree carries
# the demo model), so that a session lent a GPU through the device tool runs
# every check in one call of scripts/gpu-suite.sh, carrying .gpu:
#     run(command="bash scripts/gpu-suite.sh", carry=[".gpu"], timeout_s=560)
# The device machine has the CUDA toolkit (cuBLAS, compute-sanitizer) and a
# Python with numpy, but no GLib and no package registry: everything else the
# binaries need travels here.  oneDNN and OpenBLAS (76 MB) are left out (the
# CPU twin runs its reference loops) to stay under the 64 MiB the tool moves.
#
# usage: scripts/gpu-bundle.sh [BUILD_DIR [OUT_DIR]]
#   (defaults build-gpu and .gpu; run-tests.sh packs into its build folder
#   only to check the size, leaving a .gpu/ that a device call may carry
#   alone)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-gpu}
golden=${SI_GOLDEN_DIR:-$(cd .. && pwd)/shared/golden}
bundle=${2:-.gpu}
limit_mib=64

spec=${SI_MODEL_SPEC:-$golden/../docs/model-spec.md}
[ -d "$golden/tiny" ] || { echo "gpu-bundle: no golden cases in $golden" >&2; exit 1; }
[ -f "$spec" ] || { echo "gpu-bundle: no model spec at $spec" >&2; exit 1; }
if [ ! -d "$build" ]; then
  meson setup "$build" -Dcuda=enabled -Dgst=disabled -Ddnnl=disabled \
    -Dblas=disabled -Dbuildtype=release -Dgolden_dir="$golden"
fi
if ! ninja -C "$build" -t targets all | grep '^engine/cuda/libsi-engine-cuda.so:' > /dev/null; then
  echo "gpu-bundle: $build has no CUDA backend (no nvcc at setup?)" >&2
  exit 1
fi
targets=(tests/parity/test-parity-ops tests/parity/test-parity-detector
  tests/parity/test-parity-graph tests/parity/test-parity-decoder-graph
  tests/parity/test-parity-context-graph tests/parity/test-parity-frame-memory
  bench/bench-cuda tools/si-detect
  engine/cuda/libsi-engine-cuda.so)
ninja -C "$build" "${targets[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib" "$stage/golden" "$stage/docs"
for t in "${targets[@]}"; do
  case "$t" in
    *.so) cp "$build/$t" "$stage/lib/" ;;
    *) cp "$build/$t" "$stage/bin/" ;;
  esac
done
# Every shared library the binaries load, except the C runtime and cuBLAS
# (the device's toolkit has them; cuBLAS alone is ~600 MB).  cudart is small
# and travels, so the runtime matches the one we compiled against.
for f in "$stage"/bin/* "$stage"/lib/libsi-engine-cuda.so; do
  ldd "$f" | awk '/=> \//{print $3}'
done | sort -u | while read -r lib; do
  case "$(basename "$lib")" in
    libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | \
      ld-linux* | libstdc++.so* | libgcc_s.so* | libcublas*) ;;
    *) cp -L "$lib" "$stage/lib/" ;;
  esac
done
cp -r "$golden"/. "$stage/golden/"
# bench/make-random-model.py reads the state-dict table of the spec
cp "$spec" "$stage/docs/model-spec.md"
# whole or not at all: the folder is replaced in one rename
rm -rf "$bundle.new" && mkdir -p "$bundle.new"
tar czf "$bundle.new/bundle.tar.gz" -C "$stage" .
git rev-parse HEAD > "$bundle.new/COMMIT"
rm -rf "$bundle" && mv "$bundle.new" "$bundle"

tree_kib=$(git ls-files -z | du -c --files0-from=- -k | tail -1 | cut -f1)
bundle_kib=$(du -sk "$bundle" | cut -f1)
total_mib=$(( (tree_kib + bundle_kib) / 1024 ))
echo "gpu-bundle: $bundle is $((bundle_kib / 1024)) MiB, with the tree" \
  "$total_mib MiB (the device tool moves at most $limit_mib MiB)"
if [ "$total_mib" -ge "$limit_mib" ]; then
  echo "gpu-bundle: too large for one device call" >&2
  exit 1
fi
