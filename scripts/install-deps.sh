#!/usr/bin/env bash
# Installs every Debian 12 package the project needs to build, test and run
# its demo (as root, or through sudo when available).
set -euo pipefail
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
PACKAGES=(
  # build
  build-essential meson ninja-build pkg-config clang-format
  # engine
  libglib2.0-dev libjson-glib-dev libdnnl-dev libopenblas-dev libpng-dev libjpeg-dev
  # plugin
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev gstreamer1.0-tools
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good libcairo2-dev libpango1.0-dev
  gobject-introspection libgirepository1.0-dev python3-gi gir1.2-gstreamer-1.0
  gir1.2-gst-plugins-base-1.0 fonts-dejavu-core gstreamer1.0-libav
  # publisher
  mosquitto libmosquitto-dev librdkafka-dev openssl
  python3-jsonschema python3-paho-mqtt python3-confluent-kafka
  # python tools (trainer, converter, benchmarks): Debian's, under /usr/bin/python3
  python3 python3-numpy python3-torch python3-scipy python3-opencv
  # leak checks
  valgrind
)
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends "${PACKAGES[@]}"
