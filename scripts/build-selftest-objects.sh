#!/usr/bin/env bash
# Compile the kernel's own spin-lock verifier selftests (C, as the kernel's selftests Makefile
# would) into BPF objects, so that `lockstep check` can read them as ELF input, C-bodied tests
# included (`lockstep import-selftests` converts only the naked-asm ones).
#
# Usage: scripts/build-selftest-objects.sh VERSION [FILE.c...]   (VERSION = 6.12 | 7.2 | 7.3;
#        default files: verifier_spin_lock.c verifier_helper_restricted.c)
#
# Needs the source tarball that scripts/fetch-kernel-source.sh keeps (run first if missing):
# extracts libbpf's headers and scripts/bpf_doc.py from it, generates bpf_helper_defs.h, and
# compiles with the system clang against the tree's uapi headers. Results:
#   ~/.cache/lockstep/selftest-objs/VERSION/NAME.bpf.o
# Then: lockstep check -p VERSION ~/.cache/lockstep/selftest-objs/VERSION/
set -euo pipefail
VERSION=${1:?usage: $0 6.12|7.2|7.3 [FILE.c...]}
shift
FILES=("$@")
((${#FILES[@]})) || FILES=(verifier_spin_lock.c verifier_helper_restricted.c)
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"  # sets CACHE
REPO=$(cd "$(dirname "$0")/.." && pwd)
PKG=linux-source-$VERSION
command -v clang >/dev/null || { echo "clang not found: run scripts/setup.sh" >&2; exit 3; }
[[ -s $CACHE/src/$VERSION/PACKAGE_VERSION ]] || bash "$REPO/scripts/fetch-kernel-source.sh" "$VERSION"
TARBALL=$(ls "$CACHE"/debs/"$PKG".tar.* | head -1)
SRC=$CACHE/src/$VERSION
HDR=$CACHE/selftest-objs/$VERSION/include
OUT=$CACHE/selftest-objs/$VERSION
mkdir -p "$HDR/bpf" "$OUT"
if [[ ! -s $HDR/bpf/bpf_helper_defs.h || $HDR/bpf/bpf_helper_defs.h -ot $TARBALL ]]; then
  X=$(mktemp -d "$CACHE/unpack.XXXXXX")
  tar -xf "$TARBALL" -C "$X" --strip-components=1 --wildcards \
    "$PKG/scripts/bpf_doc.py" "$PKG/tools/lib/bpf/bpf_*.h" "$PKG/include/uapi/linux/bpf_common.h"
  cp "$X"/tools/lib/bpf/bpf_*.h "$HDR/bpf/"
  mkdir -p "$HDR/linux" && cp "$X"/include/uapi/linux/bpf_common.h "$HDR/linux/"
  cp "$SRC"/include/uapi/linux/bpf.h "$HDR/linux/"
  python3 "$X/scripts/bpf_doc.py" --header --file "$SRC/include/uapi/linux/bpf.h" >"$HDR/bpf/bpf_helper_defs.h"
  rm -rf "$X"
fi
PROGS=$SRC/tools/testing/selftests/bpf/progs
for f in "${FILES[@]}"; do
  obj=$OUT/${f%.c}.bpf.o
  # asm/types.h and friends for the BPF target come from the host's multiarch include dir.
  clang -O2 -g -target bpf -I "$HDR" -I "/usr/include/$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)" \
    -I "$PROGS" -I "$PROGS/.." -c "$PROGS/$f" -o "$obj"
  echo "$obj"
done
