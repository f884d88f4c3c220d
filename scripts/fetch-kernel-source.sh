#!/usr/bin/env bash
# Fetch Debian's linux-source-VERSION and extract the BPF-verifier files lockstep needs.
#
# Usage: scripts/fetch-kernel-source.sh VERSION      (VERSION = 6.12 | 7.2 | 7.3 | 7.2+kf-spin-lock)
#
# 7.2+kf-spin-lock copies the extracted 7.2 tree (fetching it first if needed) and applies the RFC
# series from $SERIES_DIR (default: the repo's ../shared/series/kf-spin-lock-rfc-v2) with patch -p1.
#
# Uses a private apt configuration (never the system sources); the mirror URI is read at run time
# from /etc/apt/sources.list.d/debian.sources.  Results:
#   ~/.cache/lockstep/debs/linux-source-VERSION_*.deb and the full tarball linux-source-VERSION.tar.*
#   ~/.cache/lockstep/src/VERSION/{kernel/bpf/...,include/...,tools/testing/selftests/bpf/...}
#   ~/.cache/lockstep/src/VERSION/PACKAGE_VERSION   (exact Debian package version)
# Idempotent: does nothing if PACKAGE_VERSION already exists (set FORCE=1 to redo).
set -euo pipefail

VERSION=${1:?usage: $0 6.12|7.2|7.3|7.2+kf-spin-lock}
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"  # sets CACHE

if [[ $VERSION == 7.2+kf-spin-lock ]]; then
  DEST=$CACHE/src/$VERSION
  if [[ -s $DEST/PACKAGE_VERSION && -z ${FORCE:-} ]]; then
    echo "$VERSION already prepared in $DEST"; exit 0
  fi
  REPO=$(cd "$(dirname "$0")/.." && pwd)
  SERIES_DIR=${SERIES_DIR:-$REPO/../shared/series/kf-spin-lock-rfc-v2}
  "$0" 7.2
  rm -rf "$DEST" && cp -a "$CACHE/src/7.2" "$DEST"
  for p in "$SERIES_DIR"/*.patch; do
    echo "applying $(basename "$p")"
    patch -d "$DEST" -p1 --forward --no-backup-if-mismatch <"$p"
  done
  echo "$(cat "$CACHE/src/7.2/PACKAGE_VERSION") + $(basename "$SERIES_DIR")" >"$DEST/PACKAGE_VERSION"
  exit 0
fi

# shellcheck source=kernel-table.sh
source "$(dirname "$0")/kernel-table.sh"
kernel_row "debian:$VERSION" || { echo "unknown VERSION $VERSION (known kernels: $(kernel_names))" >&2; exit 2; }

DEST=$CACHE/src/$VERSION
DEBS=$CACHE/debs
PKG=linux-source-$VERSION

# One fetch per package at a time (the cache is shared by every developer on the machine).
mkdir -p "$DEBS"
exec 8>"$DEBS/.$PKG.lock"
flock 8

if [[ -s $DEST/PACKAGE_VERSION && -z ${FORCE:-} ]]; then
  echo "$PKG already extracted in $DEST ($(cat "$DEST/PACKAGE_VERSION"))"
  exit 0
fi

MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
[[ -n $MIRROR ]] || { echo "no URIs: line in /etc/apt/sources.list.d/debian.sources" >&2; exit 1; }

# Private apt tree, one per suite so that concurrent runs for different suites do not collide.
W=$CACHE/apt/src-$SUITE
mkdir -p "$W/state/lists/partial" "$W/cache/archives/partial" "$W/keyrings" "$DEBS"
touch "$W/state/status"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -s $W/keyrings/debian-archive-keyring.gpg ]] && KEYRING=$W/keyrings/debian-archive-keyring.gpg

write_sources() {
  echo "deb [signed-by=$1] $MIRROR $SUITE main" >"$W/sources.list"
}

APT_OPTS=(
  -o Dir::Etc::SourceList="$W/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o Dir::State="$W/state"
  -o Dir::State::status="$W/state/status"
  -o Dir::Cache="$W/cache"
  -o Acquire::Check-Valid-Until=false
  -o Acquire::Languages=none
  -o APT::Get::List-Cleanup=false
  -o APT::Sandbox::User=root
)
apt_() { apt-get -q "${APT_OPTS[@]}" "$@"; }

write_sources "$KEYRING"
if ! apt_ update 2>&1 | tee "$W/update.log"; then :; fi
if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG|is not signed' "$W/update.log"; then
  # The system keyring lacks this suite's signing key: take the newest debian-archive-keyring from a
  # suite we can verify (trixie-backports, then trixie), unpack it privately and retry.
  echo "signing key for $SUITE missing from the system keyring; fetching a newer debian-archive-keyring" >&2
  K=$CACHE/apt/keyring-bootstrap
  mkdir -p "$K/state/lists/partial" "$K/cache/archives/partial"
  touch "$K/state/status"
  printf 'deb [signed-by=%s] %s trixie main\ndeb [signed-by=%s] %s trixie-backports main\n' \
    /usr/share/keyrings/debian-archive-keyring.gpg "$MIRROR" \
    /usr/share/keyrings/debian-archive-keyring.gpg "$MIRROR" >"$K/sources.list"
  KOPTS=(-o Dir::Etc::SourceList="$K/sources.list" -o Dir::Etc::SourceParts=/dev/null
         -o Dir::State="$K/state" -o Dir::State::status="$K/state/status" -o Dir::Cache="$K/cache"
         -o Acquire::Check-Valid-Until=false -o Acquire::Languages=none -o APT::Sandbox::User=root)
  apt-get -q "${KOPTS[@]}" update
  (cd "$K" && apt-get -q "${KOPTS[@]}" download debian-archive-keyring)
  rm -rf "$K/x" && dpkg-deb -x "$(ls -t "$K"/debian-archive-keyring_*.deb | head -1)" "$K/x"
  NEWKR=$(ls "$K"/x/usr/share/keyrings/debian-archive-keyring.{gpg,pgp} 2>/dev/null | head -1)
  [[ -n $NEWKR ]] || { echo "no keyring in the debian-archive-keyring package" >&2; exit 1; }
  cp "$NEWKR" "$W/keyrings/debian-archive-keyring.gpg"
  KEYRING=$W/keyrings/debian-archive-keyring.gpg
  write_sources "$KEYRING"
  apt_ update 2>&1 | tee "$W/update.log"
  if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG' "$W/update.log"; then
    echo "still cannot verify $SUITE; refusing to continue without a trusted signature" >&2
    exit 1
  fi
fi

PKGVER=$(apt-cache "${APT_OPTS[@]}" show "$PKG" 2>/dev/null \
  | awk '/^Version:/ {print $2}' | sort -V | tail -1)
[[ -n $PKGVER ]] || { echo "$PKG not found in $SUITE" >&2; exit 1; }
echo "$PKG $PKGVER from $SUITE"

DEB=$(ls "$DEBS"/"${PKG}_${PKGVER//:/%3a}"_*.deb 2>/dev/null | head -1 || true)
if [[ -z $DEB ]]; then
  (cd "$DEBS" && apt_ download "$PKG=$PKGVER")
  DEB=$(ls "$DEBS"/"${PKG}"_*.deb | sort -V | tail -1)
fi

# Keep the full source tarball next to the .deb (a later step builds a kernel from it).
TARBALL=$(ls "$DEBS"/"$PKG".tar.* 2>/dev/null | head -1 || true)
if [[ -z $TARBALL || ! -s $DEBS/$PKG.PACKAGE_VERSION || $(cat "$DEBS/$PKG.PACKAGE_VERSION") != "$PKGVER" ]]; then
  X=$(mktemp -d "$CACHE/unpack.XXXXXX")
  dpkg-deb -x "$DEB" "$X"
  T=$(ls "$X"/usr/src/"$PKG".tar.* | head -1)
  rm -f "$DEBS/$PKG".tar.*
  mv "$T" "$DEBS/"
  TARBALL=$DEBS/$(basename "$T")
  echo "$PKGVER" >"$DEBS/$PKG.PACKAGE_VERSION"
  rm -rf "$X"
fi

# Wanted members; bpf_misc.h lives in progs/ on some versions, so missing optional entries are skipped.
# From 7.x on the verifier is split over kernel/bpf/{cfg,check_btf,states,fixups,backtrack,liveness,
# const_fold,diagnostics}.c, so the whole kernel/bpf/ directory is taken (a few MB).
FILES=(
  kernel/bpf/ kernel/bpf/verifier.c kernel/bpf/btf.c kernel/bpf/helpers.c kernel/bpf/syscall.c
  kernel/bpf/disasm.c include/linux/btf.h include/linux/bpf.h include/linux/bpf_verifier.h
  include/linux/bpf_types.h include/linux/btf_ids.h include/uapi/linux/bpf.h
  tools/testing/selftests/bpf/progs/ tools/testing/selftests/bpf/bpf_misc.h
  tools/testing/selftests/bpf/verifier/
  tools/testing/selftests/bpf/prog_tests/spin_lock.c tools/testing/selftests/bpf/prog_tests/linked_list.c
  tools/testing/selftests/bpf/prog_tests/res_spin_lock.c
)
LIST=$DEBS/$PKG.members
[[ -s $LIST && $LIST -nt $TARBALL ]] || tar -tf "$TARBALL" >"$LIST"
MEMBERS=()
for f in "${FILES[@]}"; do
  if grep -qxF "$PKG/$f" "$LIST"; then
    MEMBERS+=("$PKG/$f")
  else
    echo "note: optional $f not in $PKG (skipped)" >&2
  fi
done
rm -rf "$DEST" && mkdir -p "$DEST"
tar -xf "$TARBALL" -C "$DEST" --strip-components=1 --no-recursion --files-from=<(
  for m in "${MEMBERS[@]}"; do
    if [[ $m == */ ]]; then awk -v p="$m" 'index($0, p) == 1 && !/\/$/' "$LIST"; else echo "$m"; fi
  done | sort -u)
for f in kernel/bpf/verifier.c include/linux/bpf_verifier.h tools/testing/selftests/bpf/progs; do
  [[ -e $DEST/$f ]] || { echo "missing $f after extraction" >&2; exit 1; }
done
echo "$PKGVER" >"$DEST/PACKAGE_VERSION"
echo "extracted into $DEST"
