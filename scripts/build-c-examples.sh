#!/usr/bin/env bash
# Compile lockstep's C examples (tests/c/*.bpf.c) into BPF objects with the system clang, as a
# user would: clang -O2 -g -target bpf -c. No vmlinux.h, no libbpf headers (tests/c/lockstep.h).
#
# Usage: scripts/build-c-examples.sh [OUT_DIR]   (default: ${CARGO_TARGET_DIR:-target}/bpf-objs)
# Then:  lockstep check OUT_DIR                   (each program is a case; expectations from the C)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${CARGO_TARGET_DIR:-target}/bpf-objs}
command -v clang >/dev/null || { echo "clang not found: run scripts/setup.sh" >&2; exit 3; }
mkdir -p "$OUT"
for src in tests/c/*.bpf.c; do
  obj="$OUT/$(basename "${src%.c}").o"
  clang -O2 -g -target bpf -c "$src" -o "$obj"
  echo "$obj"
done
