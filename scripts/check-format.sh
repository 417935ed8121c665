#!/usr/bin/env bash
# clang-format --dry-run -Werror over our C sources.
set -euo pipefail
cd "$(dirname "$0")/.."
files=$(git ls-files '*.c' '*.h' | grep -v '^subprojects/' || true)
[ -z "$files" ] && exit 0
clang-format --dry-run -Werror $files
