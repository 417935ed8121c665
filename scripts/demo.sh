#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install the packages, build,
# generate a sample video of synthetic scenes, run the detector and the
# overlay over it and write an annotated video plus a few PNG frames to out/.
#   scripts/demo.sh [MODEL.safetensors]
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/demo.safetensors}
OUT=out

if [ "${SKIP_INSTALL:-0}" != 1 ]; then scripts/install-deps.sh; fi
[ -d build ] || meson setup build
ninja -C build

mkdir -p "$OUT"
echo "== generating a sample video ($OUT/sample.avi)"
/usr/bin/python3 tools/train/synth.py video --seed 2024 --frames 100 \
    --out "$OUT" --avi sample.avi

export GST_PLUGIN_PATH=$PWD/build/gst
echo "== detecting with $MODEL"
gst-launch-1.0 -e filesrc location="$OUT/sample.avi" ! decodebin ! \
    videoconvert ! stageinteractor model="$MODEL" ! stageoverlay ! \
    videoconvert ! tee name=t \
    t. ! queue ! jpegenc ! avimux ! filesink location="$OUT/annotated.avi" \
    t. ! queue ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! \
    pngenc ! multifilesink location="$OUT/annotated-%02d.png"

echo "== wrote $OUT/annotated.avi and $(ls "$OUT"/annotated-*.png | wc -l) PNG frames ($OUT/annotated-*.png)"
