#!/usr/bin/env bash
# The baseline of issue 13: the spin-lock selftests of Debian's linux-source-VERSION, compiled by
# scripts/build-selftest-objects.sh, run on debian:VERSION through lockstep's loader, without and
# with the kernel tree's bpf_testmod, and summed up per object in docs/selftests-VERSION.md
# (programs total / loaded as the selftest expects / not, with the reason of each not-met group).
#
# Usage: scripts/selftests-baseline.sh VERSION [OUT.md]     (default OUT: docs/selftests-VERSION.md)
# Env: LOCKSTEP (the lockstep binary; default: cargo run --release -q -p lockstep --), KEEP=DIR
# (keep the JSON rows and stderr of both runs there).
#
# Steps: build the objects if missing; `lockstep check -p VERSION` per object to learn which
# objects lockstep can read at all and which programs its importer skips (with the reason); one
# `lockstep run --kernel debian:VERSION --json --log` over the readable objects with
# --no-testmod, one with --testmod; then the table. Regenerate after a loader change by running
# it again.
set -euo pipefail
VERSION=${1:?usage: $0 VERSION [OUT.md]}
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUTMD=${2:-$REPO/docs/selftests-$VERSION.md}
CACHE=${LOCKSTEP_CACHE:-$HOME/.cache/lockstep}
OBJS=$CACHE/selftest-objs/$VERSION
if [[ -n ${LOCKSTEP:-} ]]; then
  read -r -a LS <<<"$LOCKSTEP"
else
  LS=(cargo run --release -q --manifest-path "$REPO/Cargo.toml" -p lockstep --)
fi
[[ -s $OBJS/MANIFEST.tsv ]] || bash "$REPO/scripts/build-selftest-objects.sh" "$VERSION"
W=${KEEP:-$(mktemp -d)}
mkdir -p "$W"

# Which objects lockstep reads, and the programs its importer skips.
: >"$W/import.tsv"
READABLE=()
for o in "$OBJS"/*.bpf.o; do
  b=$(basename "$o")
  set +e
  "${LS[@]}" check -p "$VERSION" --json "$o" >/dev/null 2>"$W/check.err"
  rc=$?
  set -e
  if [[ $rc == 2 ]]; then
    printf '%s\tunreadable\t%s\n' "$b" "$(grep -m1 . "$W/check.err" | sed "s|$OBJS/||")" >>"$W/import.tsv"
    continue
  fi
  READABLE+=("$o")
  sed -n "s|^$OBJS/$b: program \([^ ]*\) skipped: \(.*\)|$b\tskipped\t\1\t\2|p" "$W/check.err" >>"$W/import.tsv"
done

for mode in no-testmod testmod; do
  echo "selftests-baseline: lockstep run --kernel debian:$VERSION --$mode (${#READABLE[@]} objects)" >&2
  set +e
  "${LS[@]}" run --kernel "debian:$VERSION" "--$mode" --json "$W/$mode.jsonl" --log "${READABLE[@]}" \
    >/dev/null 2>"$W/$mode.err"
  echo "exit $?" >>"$W/$mode.err"
  set -e
done

python3 "$REPO/scripts/selftests-baseline.py" "$VERSION" "$OBJS" "$W" \
  "$(cat "$CACHE/debs/linux-source-$VERSION.PACKAGE_VERSION")" >"$OUTMD"
echo "selftests-baseline: wrote $OUTMD (runs kept in $W)" >&2
