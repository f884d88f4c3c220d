#!/usr/bin/env bash
# Build kernel-module/lockstep_test.ko against a Debian kernel or a kernel build tree, or (--testmod)
# the kernel tree's own bpf_testmod.ko from Debian's linux-source of that kernel.
#
# Usage:
#   scripts/build-module.sh debian:6.12|debian:7.2|debian:7.3 [OUTDIR]
#   scripts/build-module.sh --testmod debian:6.12|debian:7.2|debian:7.3 [OUTDIR]
#   scripts/build-module.sh --tree KERNEL_BUILD_DIR [OUTDIR]
#   scripts/build-module.sh --flags KO [VMLINUX]  # print "SET KFUNC FLAGS" per kfunc from KO's
#       .BTF_ids (names from .BTF; VMLINUX, for its base BTF, is needed when KO has no .BTF.base)
#
# Debian kernels: the newest linux-headers-<abi>-amd64, -common and linux-kbuild-<abi> of the
# series in its suite (6.12: bookworm-backports, 7.2: sid, 7.3: trixie-backports) are fetched with
# a private apt configuration (~/.cache/lockstep/apt-sh/<suite>; the mirror URI is read at run time
# from /etc/apt/sources.list.d/debian.sources) and unpacked with dpkg-deb -x into
# ~/.cache/lockstep/headers/<name>/<version>/.  The build tools the kernel needs come from the
# kernel's own suite and run through that suite's private glibc (ld-linux --library-path):
# a pahole matching CONFIG_PAHOLE_VERSION and linux-kbuild's binaries (wrapped in place).
# The module is compiled with the host gcc (CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT= for gcc-12).
#
# Tree mode: KERNEL_BUILD_DIR is a configured and built kernel (its vmlinux, Module.symvers and
# host tools). pahole: $PAHOLE, else a cached wrapper whose version matches the tree's
# CONFIG_PAHOLE_VERSION (from a debian:* build, or the private pahole `lockstep kernel build`
# fetches into ~/.cache/lockstep/tools/pahole/), else pahole from PATH.
#
# The result is cached in ~/.cache/lockstep/modules/<name>/<version>-<srchash>/lockstep_test.ko
# (<srchash>: sha256 of kernel-module/'s files); a cache hit neither rebuilds nor touches the
# network (apt lists are refreshed only when missing or with LOCKSTEP_REFRESH=1).
# --testmod: bpf_testmod.ko from tools/testing/selftests/bpf/test_kmods/ (bpf_testmod/ before 6.14)
# of linux-source-<series> (scripts/fetch-kernel-source.sh: its suite's newest, which must be the
# headers' exact version), built the same way against the same headers; cached in
# ~/.cache/lockstep/modules/<name>/<version>-testmod-<srchash>/bpf_testmod.ko (<srchash>: sha256 of
# the module's files in that source). Only Debian kernels.
# With OUTDIR, the .ko is also copied there.  The last line on stdout is the .ko's path; progress
# goes to stderr.  Env: LOCKSTEP_CACHE (default scripts/cache-dir.sh), LOCKSTEP_REFRESH=1, PAHOLE and
# LOCKSTEP_MAKE_ARGS (tree mode: extra make arguments, e.g. "CC=gcc-14" or "LLVM=1").
set -euo pipefail
# shellcheck source=kernel-table.sh
source "$(dirname "$0")/kernel-table.sh"

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/kernel-module
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"  # sets CACHE
SOURCES=(Kbuild Makefile lockstep_test.c)

log() { echo "build-module: $*" >&2; }
die() { echo "build-module: error: $*" >&2; exit 1; }
usage() { sed -n '2,10p' "$0" >&2; exit 2; }

# ---------------------------------------------------------------------------------------------
# --flags KO: decode the kfunc sets in KO's .BTF_ids (pairs of split-BTF id and flags), naming
# each id from the module's .BTF (split on .BTF.base, or on the vmlinux given as $2).
dump_flags() {
  python3 - "$@" <<'PY'
import struct, sys

def elf_sections(data):
    shoff, = struct.unpack_from('<Q', data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', data, 0x3a)
    secs = []
    for i in range(shnum):
        name, typ, _fl, _ad, off, size, link, _inf, _al, ent = struct.unpack_from(
            '<IIQQQQIIQQ', data, shoff + i * shentsize)
        secs.append(dict(name=name, type=typ, off=off, size=size, link=link, entsize=ent))
    strtab = secs[shstrndx]
    for s in secs:
        end = data.index(b'\0', strtab['off'] + s['name'])
        s['name'] = data[strtab['off'] + s['name']:end].decode()
    return secs

EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}          # kind -> fixed extra bytes
PER_VLEN = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # kind -> bytes per member

def btf_parse(blob):
    magic, _ver, _fl, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        '<HBBIIIII', blob, 0)
    assert magic == 0xeb9f, 'bad BTF magic'
    pos, end = hdr_len + type_off, hdr_len + type_off + type_len
    types = []
    while pos < end:
        name_off, info, _sz = struct.unpack_from('<III', blob, pos)
        kind, vlen = (info >> 24) & 0x1f, info & 0xffff
        types.append((kind, name_off))
        pos += 12 + EXTRA.get(kind, 0) + PER_VLEN.get(kind, 0) * vlen
    strs = blob[hdr_len + str_off:hdr_len + str_off + str_len]
    return types, strs

def section(data, secs, name):
    s = next((s for s in secs if s['name'] == name), None)
    return None if s is None else data[s['off']:s['off'] + s['size']]

ko = open(sys.argv[1], 'rb').read()
secs = elf_sections(ko)
btf, ids = section(ko, secs, '.BTF'), section(ko, secs, '.BTF_ids')
if btf is None or ids is None:
    sys.exit('no .BTF or .BTF_ids section in ' + sys.argv[1])
base = section(ko, secs, '.BTF.base')
if base is None and len(sys.argv) > 2:
    vm = open(sys.argv[2], 'rb').read()
    base = section(vm, elf_sections(vm), '.BTF')
base_types, base_strs = btf_parse(base) if base is not None else (None, b'')
types, strs = btf_parse(btf)
first_id = len(base_types) + 1 if base_types is not None else None

def name_of(btf_id):
    if first_id is None or btf_id < first_id or btf_id - first_id >= len(types):
        return '?'
    off = types[btf_id - first_id][1]
    table, off = (base_strs, off) if off < len(base_strs) else (strs, off - len(base_strs))
    return table[off:table.index(b'\0', off)].decode()

idx = secs.index(next(s for s in secs if s['name'] == '.BTF_ids'))
symtab = next(s for s in secs if s['type'] == 2)
strtab = secs[symtab['link']]
for i in range(symtab['size'] // 24):
    nm, _info, _oth, shndx, value, _size = struct.unpack_from('<IBBHQQ', ko, symtab['off'] + i * 24)
    name = ko[strtab['off'] + nm:ko.index(b'\0', strtab['off'] + nm)].decode()
    if shndx != idx or not name.startswith('__BTF_ID__set8__'):
        continue
    cnt, _setflags = struct.unpack_from('<II', ids, value)
    for j in range(cnt):
        btf_id, flags = struct.unpack_from('<II', ids, value + 8 + 8 * j)
        print(f"{name[len('__BTF_ID__set8__'):]} {name_of(btf_id)} {flags:#x}")
PY
}

if [[ ${1:-} == --flags ]]; then
  [[ -n ${2:-} ]] || usage
  dump_flags "${@:2}"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
# Arguments.
TREE=
TESTMOD=
if [[ ${1:-} == --testmod ]]; then
  TESTMOD=1
  shift
fi
case ${1:-} in
  --tree) TREE=$(cd "${2:?--tree needs a directory}" && pwd); OUTDIR=${3:-} ;;
  debian:*) kernel_row "$1" || usage; OUTDIR=${2:-} ;;
  *) usage ;;
esac

KO_NAME=lockstep_test
[[ -n $TESTMOD && -n $TREE ]] && die "--testmod builds against a Debian kernel (debian:*), not a tree"

# ---------------------------------------------------------------------------------------------
# Private apt (Debian mode).
APT_DIR=
apt_opts() {
  echo -o Dir::Etc::SourceList="$APT_DIR/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o Dir::State="$APT_DIR/state" -o Dir::State::status="$APT_DIR/state/status" \
    -o Dir::Cache="$APT_DIR/cache" -o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache= \
    -o Acquire::Languages=none -o APT::Sandbox::User=root
}
aptc() { apt-cache $(apt_opts) "$@"; }
aptg() { apt-get -q $(apt_opts) "$@"; }

write_sources() {  # KEYRING
  local s
  : >"$APT_DIR/sources.list"
  for s in $SUITE $BASE_SUITE; do
    echo "deb [signed-by=$1] $MIRROR $s main" >>"$APT_DIR/sources.list"
  done
}

# Fetch the newest debian-archive-keyring (unpacked privately) for suites the system keyring
# cannot verify.
newer_keyring() {
  local K=$CACHE/apt-sh/keyring
  mkdir -p "$K/state/lists/partial" "$K/cache/archives/partial" "$K/debs"
  touch "$K/state/status"
  local save=$APT_DIR
  APT_DIR=$K
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s %s main\n' \
    "$MIRROR" trixie "$MIRROR" trixie-backports >"$K/sources.list"
  aptg update >&2
  (cd "$K/debs" && aptg download debian-archive-keyring >&2)
  rm -rf "$K/x" && dpkg-deb -x "$(ls -t "$K"/debs/debian-archive-keyring_*.deb | head -1)" "$K/x"
  APT_DIR=$save
  local kr
  kr=$(ls "$K"/x/usr/share/keyrings/debian-archive-keyring.{gpg,pgp} 2>/dev/null | head -1)
  [[ -n $kr ]] || die "no keyring in the debian-archive-keyring package"
  cp "$kr" "$APT_DIR/keyring.gpg"
}

apt_setup() {
  APT_DIR=$CACHE/apt-sh/$SUITE
  mkdir -p "$APT_DIR/state/lists/partial" "$APT_DIR/cache/archives/partial"
  touch "$APT_DIR/state/status"
  if [[ -z ${LOCKSTEP_REFRESH:-} ]] && compgen -G "$APT_DIR/state/lists/*_Packages*" >/dev/null; then
    return 0
  fi
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
  [[ -n $MIRROR ]] || die "no URIs: line in /etc/apt/sources.list.d/debian.sources"
  local kr=/usr/share/keyrings/debian-archive-keyring.gpg
  [[ -s $APT_DIR/keyring.gpg ]] && kr=$APT_DIR/keyring.gpg
  write_sources "$kr"
  log "apt update ($SUITE${BASE_SUITE:+ + $BASE_SUITE})"
  aptg update >"$APT_DIR/update.log" 2>&1 || true
  if grep -qE 'NO_PUBKEY|not signed|EXPKEYSIG|is not signed|Signature by key' "$APT_DIR/update.log"; then
    log "the system keyring cannot verify $SUITE: fetching a newer debian-archive-keyring"
    newer_keyring
    write_sources "$APT_DIR/keyring.gpg"
    aptg update >"$APT_DIR/update.log" 2>&1 || true
  fi
  if grep -qE '^(E:|W: GPG|W: Failed)' "$APT_DIR/update.log"; then
    cat "$APT_DIR/update.log" >&2
    die "apt update failed for $SUITE"
  fi
}

# Newest version of PKG in the configured suites (optionally restricted to an upstream prefix).
newest_version() {  # PKG [UPSTREAM_PREFIX]
  local best= v
  for v in $(aptc madison "$1" | awk -F'|' '{gsub(/ /,"",$2); print $2}'); do
    if [[ -n ${2:-} ]]; then
      local up=${v#*:}; up=${up%-*}
      [[ $up == "$2" || $up == "$2".* || $up == "$2"+* ]] || continue
    fi
    if [[ -z $best ]] || dpkg --compare-versions "$v" gt "$best"; then best=$v; fi
  done
  echo "$best"
}

# Sets ABI (e.g. 7.3.4+deb13) and KVER (package version) for the newest kernel of $SERIES.
# The answer depends only on the private apt lists: it is kept in $APT_DIR/resolved-$SERIES under
# their fingerprint (names, sizes, mtimes), so a later run with the same lists reads it back
# instead of running apt-cache (which rebuilds its package cache each time: ~1-2 s per kernel,
# before every guest; `apt update` or LOCKSTEP_REFRESH=1 changes the lists and the key).
resolve_kernel() {
  local memo=$APT_DIR/resolved-$SERIES key k
  key=$(stat -c '%n %s %Y' "$APT_DIR"/state/lists/*_Packages* 2>/dev/null | sha256sum | cut -c1-64)
  if [[ -s $memo ]] && read -r k ABI KVER <"$memo" && [[ $k == "$key" && -n $ABI && -n $KVER ]]; then
    return 0
  fi
  resolve_kernel_apt
  echo "$key $ABI $KVER" >"$memo.tmp.$$" && mv "$memo.tmp.$$" "$memo"
}

resolve_kernel_apt() {
  local re="^linux-headers-${SERIES//./\\.}\\.[0-9]+\\+deb[0-9]+-amd64\$" p v pkgs
  ABI= KVER=
  pkgs=$(aptc pkgnames "linux-headers-$SERIES." | grep -E "$re" || true)
  [[ -n $pkgs ]] || die "no linux-headers-$SERIES.*-amd64 in $SUITE"
  # shellcheck disable=SC2086
  while read -r p v; do
    if [[ -z $KVER ]] || dpkg --compare-versions "$v" gt "$KVER"; then
      KVER=$v; ABI=${p#linux-headers-}; ABI=${ABI%-amd64}
    fi
  done < <(aptc madison $pkgs | awk -F'|' '{gsub(/ /,""); print $1, $2}')
  [[ -n $KVER ]] || die "no linux-headers-$SERIES.*-amd64 in $SUITE"
}

download_unpack() {  # DEST_ROOT DEBDIR PKG[=VER]...
  local root=$1 debs=$2 f
  shift 2
  mkdir -p "$debs" "$root"
  (cd "$debs" && aptg download "$@" >&2) || die "apt-get download $* failed"
  for f in "$@"; do
    local name=${f%%=*}
    local deb
    deb=$(ls -t "$debs/${name}_"*.deb | head -1)
    dpkg-deb -x "$deb" "$root"
  done
}

# Pick the first package of ALTERNATIVES (a|b) that exists in the configured suites.
pick_pkg() {
  local p
  for p in ${1//|/ }; do
    [[ -n $(newest_version "$p") ]] && { echo "$p"; return; }
  done
  die "none of $1 in $SUITE${BASE_SUITE:+/$BASE_SUITE}"
}

# Write an ld-linux wrapper at PATH running REAL with the private glibc of $SYS.
write_wrapper() {  # PATH REAL
  cat >"$1" <<EOF
#!/bin/sh
exec "$LDSO" --library-path "$LIBPATH" --argv0 "\$0" "$2" "\$@"
EOF
  chmod +x "$1"
}

check_libs() {  # REAL...
  local f out
  for f in "$@"; do
    if ! out=$("$LDSO" --library-path "$LIBPATH" --list "$f" 2>&1) || grep -q 'not found' <<<"$out"; then
      die "$f: missing libraries in the private sysroot: $(grep -E 'not found|error' <<<"$out")"
    fi
  done
}

# Headers + tools for a Debian kernel, in $HD (marker: $HD/.ready).
prepare_debian() {
  HD=$CACHE/headers/$NAME/$KVER
  COMMON=$HD/root/usr/src/linux-headers-$ABI-common
  KOBJ=$HD/root/usr/src/linux-headers-$ABI-amd64
  SYS=$HD/sys
  LIBPATH=$SYS/usr/lib/x86_64-linux-gnu:$SYS/lib/x86_64-linux-gnu
  PAHOLE_BIN=$HD/bin/pahole
  if [[ -e $HD/.ready ]]; then
    LDSO=$(cat "$HD/ldso")
    return 0
  fi
  rm -rf "$HD" && mkdir -p "$HD/bin"
  log "fetching headers and kbuild for $ABI ($KVER)"
  download_unpack "$HD/root" "$HD/debs" "linux-headers-$ABI-amd64=$KVER" \
    "linux-headers-$ABI-common=$KVER" "linux-kbuild-$ABI=$KVER"
  [[ -f $KOBJ/.config && -d $COMMON ]] || die "unexpected header layout in $HD/root"
  [[ -f $KOBJ/vmlinux ]] || log "warning: no vmlinux in the headers: the module will have no BTF"

  # pahole's binary package is "pahole" since 1.26 (trixie, sid) and "dwarves" before (bookworm).
  local pv want pp dw pkgs=() p
  pv=$(sed -n 's/^CONFIG_PAHOLE_VERSION=//p' "$KOBJ/.config")
  want=$((pv / 100)).$((pv % 100))
  pp=$(pick_pkg 'pahole|dwarves')
  dw=$(newest_version "$pp" "$want")
  if [[ -z $dw ]]; then
    dw=$(newest_version "$pp")
    log "warning: no pahole $want (CONFIG_PAHOLE_VERSION=$pv) in $SUITE${BASE_SUITE:+/$BASE_SUITE}; using $pp $dw"
  fi
  for p in libc6 zlib1g libzstd1 liblzma5 libbz2-1.0 'libelf1t64|libelf1' 'libdw1t64|libdw1' libbpf1; do
    pkgs+=("$(pick_pkg "$p")")
  done
  # pahole >= 1.32 moved its own libraries (libdwarves*.so.1) to a package of their own.
  [[ -n $(newest_version libdwarves1) ]] && pkgs+=("libdwarves1=$dw")
  log "fetching build tools: $pp=$dw ${pkgs[*]}"
  download_unpack "$SYS" "$HD/debs" "$pp=$dw" "${pkgs[@]}"
  LDSO=
  for p in "$SYS"/{usr/,}lib/x86_64-linux-gnu/ld-linux-x86-64.so.2; do
    [[ -e $p ]] && { LDSO=$p; break; }
  done
  [[ -n $LDSO ]] || die "no ld-linux-x86-64.so.2 in $SYS"
  [[ -x $SYS/usr/bin/pahole ]] || die "no usr/bin/pahole in $pp=$dw"
  echo "$LDSO" >"$HD/ldso"

  check_libs "$SYS/usr/bin/pahole"
  write_wrapper "$PAHOLE_BIN" "$SYS/usr/bin/pahole"
  "$PAHOLE_BIN" --version >"$HD/pahole-version" || die "the pahole wrapper does not run"

  # Wrap every ELF executable of linux-kbuild in place (they may need a newer glibc than the host's).
  local f n=0
  while IFS= read -r f; do
    [[ $(head -c4 "$f" | od -An -c | tr -d ' ') == 177ELF ]] || continue
    [[ $f == *.real ]] && continue
    check_libs "$f"
    mv "$f" "$f.real"
    write_wrapper "$f" "$f.real"
    n=$((n + 1))
  done < <(find "$HD/root/usr/lib/linux-kbuild-$ABI" -type f -perm -u+x)
  log "wrapped $n kbuild binaries; pahole $(cat "$HD/pahole-version")"
  rm -rf "$HD/debs"
  touch "$HD/.ready"
}

# ---------------------------------------------------------------------------------------------
# Tree mode: pick a pahole matching the tree's CONFIG_PAHOLE_VERSION.
tree_pahole() {
  local pv want c
  pv=$(sed -n 's/^CONFIG_PAHOLE_VERSION=//p' "$TREE/.config")
  want=v$((pv / 100)).$((pv % 100))
  if [[ -n ${PAHOLE:-} ]]; then echo "$PAHOLE"; return; fi
  for c in "$CACHE"/headers/*/*/bin/pahole "$CACHE"/tools/pahole/*/bin/pahole $(command -v pahole || true); do
    [[ -x $c ]] || continue
    [[ $("$c" --version 2>/dev/null) == "$want" ]] && { echo "$c"; return; }
  done
  die "no pahole $want (CONFIG_PAHOLE_VERSION=$pv) found: set PAHOLE=, or build for a debian:* kernel first (7.3 caches pahole 1.30, 7.2 caches 1.32; lockstep kernel build caches 1.30)"
}

# ---------------------------------------------------------------------------------------------
check_ko() {  # KO EXPECT_BASE
  local ko=$1 secs s
  secs=$(readelf -SW "$ko") || die "readelf failed on $ko"
  for s in .BTF .BTF_ids ${2:+.BTF.base}; do
    grep -qE "\] \\$s +" <<<"$secs" || die "$ko has no $s section (BTF generation failed?)"
  done
}

# One build per kernel name at a time (apt state, headers and module cache are shared).
lock_name() {
  mkdir -p "$CACHE/modules/$NAME"
  exec 9>"$CACHE/modules/$NAME/.lock"
  flock 9
}

if [[ -n $TREE ]]; then
  [[ -f $TREE/.config && -f $TREE/Makefile ]] || die "$TREE is not a configured kernel build tree"
  [[ -f $TREE/vmlinux ]] || die "$TREE has no vmlinux (build the kernel first)"
  NAME=tree-$(basename "$TREE")-$(echo "$TREE" | sha256sum | cut -c1-8)
  KREL=$(cat "$TREE/include/config/kernel.release" 2>/dev/null || echo unknown)
  KVER=$KREL-$(sha256sum "$TREE/vmlinux" | cut -c1-12)
  lock_name
else
  NAME=debian-$SERIES
  lock_name
  apt_setup
  resolve_kernel
fi

# --testmod: the kernel tree's bpf_testmod sources, from the linux-source package of this exact kernel.
testmod_sources() {
  bash "$ROOT/scripts/fetch-kernel-source.sh" "$SERIES" >&2 || die "fetching linux-source-$SERIES failed"
  local pkg=linux-source-$SERIES srcver tarball dir d
  srcver=$(cat "$CACHE/debs/$pkg.PACKAGE_VERSION")
  [[ $srcver == "$KVER" ]] || die "$pkg is $srcver but the kernel's headers are $KVER: bpf_testmod must \
come from the same kernel (FORCE=1 scripts/fetch-kernel-source.sh $SERIES, or LOCKSTEP_REFRESH=1)"
  tarball=$(ls "$CACHE/debs/$pkg".tar.* | head -1)
  dir=$CACHE/testmod-src/$NAME/$KVER
  [[ -s $CACHE/debs/$pkg.members ]] || tar -tf "$tarball" >"$CACHE/debs/$pkg.members"
  if [[ ! -e $dir/.ready ]]; then
    rm -rf "$dir" && mkdir -p "$dir"
    for d in test_kmods bpf_testmod; do
      grep -qxF "$pkg/tools/testing/selftests/bpf/$d/bpf_testmod.c" "$CACHE/debs/$pkg.members" || continue
      tar -xf "$tarball" -C "$dir" --strip-components=6 --wildcards "$pkg/tools/testing/selftests/bpf/$d/bpf_testmod*"
      echo "$d" >"$dir/.subdir"
      break
    done
    [[ -s $dir/bpf_testmod.c ]] || die "no tools/testing/selftests/bpf/{test_kmods,bpf_testmod}/bpf_testmod.c in $tarball"
    # Only bpf_testmod.o (the tree's Makefile also lists the module-order and no-CFI test modules).
    printf 'obj-m += bpf_testmod.o\nCFLAGS_bpf_testmod.o = -I$(src)\n' >"$dir/Kbuild"
    touch "$dir/.ready"
  fi
  SRC=$dir
  mapfile -t SOURCES < <(cd "$dir" && ls Kbuild bpf_testmod*)
  KO_NAME=bpf_testmod
  log "bpf_testmod from $pkg $srcver (tools/testing/selftests/bpf/$(cat "$dir/.subdir")/)"
}
[[ -n $TESTMOD ]] && testmod_sources

SRCHASH=$(cd "$SRC" && sha256sum "${SOURCES[@]}" | sha256sum | cut -c1-16)
OUT=$CACHE/modules/$NAME/$KVER-${TESTMOD:+testmod-}$SRCHASH
KO=$OUT/$KO_NAME.ko

if [[ -s $KO ]]; then
  log "cache hit: $KO"
else
  START=$SECONDS
  MAKE_ARGS=()
  if [[ -n $TREE ]]; then
    PAHOLE_BIN=$(tree_pahole)
    # shellcheck disable=SC2206  # word splitting wanted: extra make arguments
    MAKE_ARGS=(-C "$TREE" PAHOLE="$PAHOLE_BIN" ${LOCKSTEP_MAKE_ARGS:-})
    CONFIG=$TREE/.config
    VMLINUX=$TREE/vmlinux
    ORIGIN="tree $TREE ($KREL)"
  else
    prepare_debian
    MAKE_ARGS=(-C "$COMMON" O="$KOBJ" CC=gcc HOSTCC=gcc PAHOLE="$PAHOLE_BIN"
      CONFIG_CC_HAS_MIN_FUNCTION_ALIGNMENT=)
    CONFIG=$KOBJ/.config
    VMLINUX=$KOBJ/vmlinux
    ORIGIN="debian $SUITE linux-headers-$ABI-amd64 $KVER"
  fi
  BUILD=$CACHE/modules/$NAME/build-$KVER-${TESTMOD:+testmod-}$SRCHASH
  rm -rf "$BUILD" && mkdir -p "$BUILD"
  (cd "$SRC" && cp "${SOURCES[@]}" "$BUILD/")
  log "building against $ORIGIN"
  if ! make "${MAKE_ARGS[@]}" M="$BUILD" -j"$(nproc)" modules >"$BUILD/build.log" 2>&1; then
    tail -40 "$BUILD/build.log" >&2
    die "module build failed (full log: $BUILD/build.log)"
  fi
  EXPECT_BASE=
  # Distilled base BTF (.BTF.base) is produced for out-of-tree modules by 6.12+ with pahole >= 1.28.
  PV=$(sed -n 's/^CONFIG_PAHOLE_VERSION=//p' "$CONFIG")
  if [[ ${PV:-0} -ge 128 ]] && grep -rqs distill "$(dirname "$CONFIG")/scripts/Makefile.btf" \
      "${COMMON:-/nonexistent}/scripts/Makefile.btf" "${TREE:-/nonexistent}/source/scripts/Makefile.btf" 2>/dev/null; then
    EXPECT_BASE=1
  fi
  check_ko "$BUILD/$KO_NAME.ko" "$EXPECT_BASE"
  mkdir -p "$OUT.tmp"
  cp "$BUILD/$KO_NAME.ko" "$BUILD/build.log" "$OUT.tmp/"
  {
    echo "origin: $ORIGIN"
    echo "source-hash: $SRCHASH"
    [[ -n $TESTMOD ]] && echo "source: linux-source-$SERIES $KVER tools/testing/selftests/bpf/$(cat "$SRC/.subdir")/"
    echo "gcc: $(gcc -dumpfullversion)"
    echo "pahole: $("$PAHOLE_BIN" --version)"
    echo "kfunc-flags:"
    dump_flags "$OUT.tmp/$KO_NAME.ko" "$VMLINUX" | sed 's/^/  /'
  } >"$OUT.tmp/build-info.txt"
  rm -rf "$OUT" && mv "$OUT.tmp" "$OUT"
  rm -rf "$BUILD"
  log "built in $((SECONDS - START)) s: $KO"
fi

if [[ -n ${OUTDIR:-} ]]; then
  mkdir -p "$OUTDIR"
  cp "$KO" "$OUT/build-info.txt" "$OUTDIR/"
  KO=$(cd "$OUTDIR" && pwd)/$KO_NAME.ko
fi
echo "$KO"
