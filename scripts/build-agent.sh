#!/usr/bin/env bash
# Build the `lockstep` binary as a fully static x86_64 executable (usable as /init in a QEMU
# guest): glibc with +crt-static; libbpf, libelf (Debian's libelf.a) and zlib (libz.a) linked
# statically by libbpf-sys (`static` + `vendored-libbpf`; .cargo/config.toml points
# LIBBPF_SYS_LIBRARY_PATH at the multiarch directory holding libelf.a/libz.a).
# Debian's libelf.a 0.188 needs only zlib (no zstd/lzma/bzip2).
#
# Usage: scripts/build-agent.sh [--debug] [--probe]
#   --debug   dev profile instead of --release
#   --probe   also build the lockstep-bpf example `bpf_probe` statically and, as root, run it
#             (loads a spin-lock program into the running kernel)
# Prints the path of the binary on the last line of stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

PROFILE=release
PROBE=0
for arg in "$@"; do
  case "$arg" in
    --debug) PROFILE=debug ;;
    --probe) PROBE=1 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

TARGET=x86_64-unknown-linux-gnu
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# An explicit --target keeps RUSTFLAGS away from build scripts and proc macros (which must stay
# dynamic); crt-static then applies to the final binaries only.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
PROFILE_FLAG=()
[[ $PROFILE == release ]] && PROFILE_FLAG=(--release)

cargo build "${PROFILE_FLAG[@]}" --target "$TARGET" -p lockstep >&2
BIN="$TARGET_DIR/$TARGET/$PROFILE/lockstep"

check_static() {
  local bin=$1
  file "$bin" >&2
  if ! file "$bin" | grep -Eq 'statically linked|static-pie linked'; then
    echo "error: $bin is not statically linked" >&2
    exit 1
  fi
  if ldd "$bin" >/dev/null 2>&1 && ! ldd "$bin" 2>&1 | grep -q 'not a dynamic executable\|statically linked'; then
    echo "error: ldd lists shared libraries for $bin" >&2
    ldd "$bin" >&2
    exit 1
  fi
}

check_static "$BIN"

if ((PROBE)); then
  cargo build "${PROFILE_FLAG[@]}" --target "$TARGET" -p lockstep-bpf --example bpf_probe >&2
  PROBE_BIN="$TARGET_DIR/$TARGET/$PROFILE/examples/bpf_probe"
  check_static "$PROBE_BIN"
  if [[ $(id -u) -eq 0 ]]; then
    "$PROBE_BIN" >&2
  else
    echo "not root: not running $PROBE_BIN" >&2
  fi
fi

realpath "$BIN"
