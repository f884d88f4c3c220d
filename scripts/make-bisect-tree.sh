#!/usr/bin/env bash
# Make a two-commit kernel git tree for `lockstep bisect` (docs/bisect.md):
#   commit 1: Debian's linux-source-7.2 as lockstep's `debian-src:7.2` builds use it
#   commit 2: + the KF_SPIN_LOCK RFC series (`git am`), i.e. the commit a bisect must name
#
# Usage: scripts/make-bisect-tree.sh [DEST] [SERIES_DIR]
#   DEST        default: $CACHE/bisect/linux-7.2 (CACHE: scripts/cache-dir.sh)
#   SERIES_DIR  default: tests/series/kf-spin-lock-rfc-v2 (a copy of the seed series)
# Needs the cached tarball ($CACHE/debs/linux-source-7.2.tar.*: `scripts/fetch-kernel-source.sh 7.2`
# fetches it). Idempotent: a DEST whose HEAD already carries the series' subjects is left as it is.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"  # sets CACHE
REPO=$(cd "$(dirname "$0")/.." && pwd)
DEST=${1:-$CACHE/bisect/linux-7.2}
SERIES_DIR=${2:-$REPO/tests/series/kf-spin-lock-rfc-v2}

if [[ -f $DEST/.git/lockstep-bisect-tree ]]; then
  echo "bisect tree already made: $DEST ($(git -C "$DEST" log --oneline | wc -l) commits)"
  exit 0
fi
shopt -s nullglob
tarballs=("$CACHE"/debs/linux-source-7.2.tar.*)
if [[ ${#tarballs[@]} -eq 0 ]]; then
  "$REPO/scripts/fetch-kernel-source.sh" 7.2
  tarballs=("$CACHE"/debs/linux-source-7.2.tar.*)
fi
[[ ${#tarballs[@]} -gt 0 ]] || { echo "${0##*/}: no linux-source-7.2 tarball in $CACHE/debs" >&2; exit 3; }
version=$(cat "$CACHE/debs/linux-source-7.2.PACKAGE_VERSION" 2>/dev/null || echo unknown)

rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
echo "extracting ${tarballs[0]}"
tar -xf "${tarballs[0]}" -C "$DEST.tmp" --strip-components=1
g() { git -C "$DEST.tmp" -c user.name=lockstep -c user.email=lockstep@localhost -c gc.auto=0 "$@"; }
g init -q -b master
echo "committing the base tree"
# Debian's packaging appends "ignore everything at the top level" (/*) to .gitignore: add every
# file of the package (-f), as the tarball is what `debian-src:7.2` builds.
g add -A -f .
GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" g commit -q --date=2026-01-01T00:00:00Z \
  -m "Debian linux-source-7.2 $version"
echo "applying the series from $SERIES_DIR"
patches=("$SERIES_DIR"/*.patch)
GIT_COMMITTER_DATE="2026-01-02T00:00:00Z" g am -q --committer-date-is-author-date "${patches[@]}"
touch "$DEST.tmp/.git/lockstep-bisect-tree"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
git -C "$DEST" log --oneline
