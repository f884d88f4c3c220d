#!/usr/bin/env bash
# Compile the kernel's own spin-lock BPF selftests (C, with the flags of the selftests' Makefile)
# into BPF objects, for `lockstep check` / `lockstep run` to read as ELF input.
#
# Usage: scripts/build-selftest-objects.sh VERSION [FILE.c...]   (VERSION = 6.12 | 7.2 | 7.3)
#
# Default files: every progs/*.c of Debian's linux-source-VERSION that is spin-lock related:
# *spin_lock*, linked_list*, refcounted_kptr*, rbtree*, local_kptr_stash*, kfunc_call*, and any
# other that names bpf_spin_lock or bpf_res_spin_lock (itself or through a progs/ header).
#
# How (as tools/testing/selftests/bpf/Makefile does): vmlinux.h is dumped from the kernel's BTF
# (the BTF-only vmlinux of the Debian headers, unpacked by scripts/build-module.sh) with Debian's
# bpftool of the kernel's own suite, run through that suite's private glibc; libbpf's headers,
# bpf_helper_defs.h and the selftests' headers (bpf_misc.h, bpf_experimental.h, test_kmods/...)
# come from the same source tarball; the compiler is the newest Debian clang installed
# (clang-19 if present; $CLANG overrides), with
#   -g -O2 --target=bpfel -mcpu=v3 -D__TARGET_ARCH_x86 -DENABLE_ATOMICS_TESTS -std=gnu11 -fno-strict-aliasing -fms-extensions
#   -Wno-compare-distinct-pointer-types ... -I<selftests> -I<libarena/include> -I<tools/include>
#   (BPF_CFLAGS of the Makefile without -Wall -Werror: warnings do not fail a file)
#
# Results in ~/.cache/lockstep/selftest-objs/VERSION/:
#   NAME.bpf.o                 one per file that compiled
#   MANIFEST.tsv               file, status (ok|failed), reason (first compiler error line)
#   failed/NAME.log            the full compiler output of each file that failed
#   programs.tsv               object, program, section, needs (what a program needs beyond a
#                              BPF_PROG_LOAD: attach target, hardware or nothing; from its section)
#   prog_tests.jsonl           expectations kept in prog_tests/*.c tables ({ "prog", "msg" },
#                              success lists, kfunc_call.c's), read by lockstep beside the objects
#                              for programs without annotations (scripts/extract-prog-tests.py)
# Every file of the list is in MANIFEST.tsv: none is skipped silently. Exit 0 even if some fail
# (they are listed on stderr); exit 3 when the toolchain or sources are missing.
# Then: lockstep run --kernel debian:VERSION ~/.cache/lockstep/selftest-objs/VERSION/
set -euo pipefail
VERSION=${1:?usage: $0 6.12|7.2|7.3 [FILE.c...]}
shift
FILES=("$@")
source "$(dirname "${BASH_SOURCE[0]}")/cache-dir.sh"  # sets CACHE
# shellcheck source=kernel-table.sh
source "$(dirname "${BASH_SOURCE[0]}")/kernel-table.sh"
REPO=$(cd "$(dirname "$0")/.." && pwd)
PKG=linux-source-$VERSION
log() { echo "build-selftest-objects: $*" >&2; }
die() { echo "build-selftest-objects: error: $*" >&2; exit 3; }
kernel_row "debian:$VERSION" || { echo "unknown VERSION $VERSION (known kernels: $(kernel_names))" >&2; exit 2; }
CLANG=${CLANG:-$(command -v clang-19 || command -v clang || true)}
[[ -n $CLANG ]] || die "clang not found: run scripts/setup.sh"

# Sources and the kernel's headers (vmlinux with BTF, private sysroot for Debian's tools).
[[ -s $CACHE/src/$VERSION/PACKAGE_VERSION ]] || bash "$REPO/scripts/fetch-kernel-source.sh" "$VERSION" >&2
bash "$REPO/scripts/build-module.sh" "debian:$VERSION" >/dev/null
TARBALL=$(ls "$CACHE"/debs/"$PKG".tar.* | head -1)
SRCVER=$(cat "$CACHE/debs/$PKG.PACKAGE_VERSION")
HD=$(ls -d "$CACHE/headers/debian-$VERSION"/*/ | sort -V | tail -1)
VMLINUX=$(ls "$HD"/root/usr/src/linux-headers-*-amd64/vmlinux | head -1)
LDSO=$(cat "$HD/ldso")
SYS=$HD/sys
OUT=$CACHE/selftest-objs/$VERSION
TREE=$CACHE/selftest-src/$VERSION/tree
mkdir -p "$OUT"

# The selftests directory, libbpf's headers and the uapi headers, from the tarball (once per version).
if [[ ! -e $TREE/.ready || $(cat "$TREE/.ready") != "$SRCVER" ]]; then
  log "extracting the selftests and libbpf headers of $PKG $SRCVER"
  rm -rf "$TREE" && mkdir -p "$TREE"
  tar -xf "$TARBALL" -C "$TREE" --strip-components=1 --wildcards \
    "$PKG/tools/testing/selftests/bpf/*" "$PKG/tools/lib/bpf/*" "$PKG/tools/include/*" \
    "$PKG/include/uapi/*" "$PKG/scripts/bpf_doc.py"
  echo "$SRCVER" >"$TREE/.ready"
fi
ST=$TREE/tools/testing/selftests/bpf
INC=$CACHE/selftest-src/$VERSION/include
if [[ ! -s $INC/bpf/bpf_helper_defs.h || ! -s $INC/vmlinux.h || $(cat "$INC/.version" 2>/dev/null) != "$SRCVER" ]]; then
  rm -rf "$INC" && mkdir -p "$INC/bpf" "$INC/linux"
  cp "$TREE"/tools/lib/bpf/bpf_*.h "$TREE"/tools/lib/bpf/usdt.bpf.h "$INC/bpf/" 2>/dev/null || cp "$TREE"/tools/lib/bpf/bpf_*.h "$INC/bpf/"
  python3 "$TREE/scripts/bpf_doc.py" --header --file "$TREE/include/uapi/linux/bpf.h" >"$INC/bpf/bpf_helper_defs.h"
  # bpftool of the kernel's suite, through its private glibc (linux-kbuild's way, build-module.sh).
  BT=$CACHE/tools/bpftool/$SUITE
  if [[ ! -x $BT/bpftool ]]; then
    log "fetching Debian's bpftool ($SUITE)"
    A=$CACHE/apt-sh/$SUITE
    rm -rf "$BT" && mkdir -p "$BT/debs" "$BT/root"
    APT_OPTS=(-o Dir::Etc::SourceList="$A/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State="$A/state" -o Dir::State::status="$A/state/status" -o Dir::Cache="$A/cache"
      -o Dir::Cache::pkgcache=pkgcache.bin -o Dir::Cache::srcpkgcache= -o Acquire::Languages=none
      -o APT::Sandbox::User=root)
    # The bpftool built from this very kernel source (its version ends in +<kernel version>).
    BTV=$(apt-cache "${APT_OPTS[@]}" madison bpftool | awk -F'|' '{gsub(/ /,"",$2); print $2}' \
      | grep -F "+$SRCVER" | head -1 || true)
    [[ -n $BTV ]] || die "no bpftool of $SRCVER in $SUITE"
    (cd "$BT/debs" && apt-get -q "${APT_OPTS[@]}" download "bpftool=$BTV" libcap2 libssl3t64 >&2) \
      || die "apt-get download bpftool failed"
    for d in "$BT"/debs/*.deb; do dpkg-deb -x "$d" "$BT/root"; done
    LP=$BT/root/usr/lib/x86_64-linux-gnu:$SYS/usr/lib/x86_64-linux-gnu:$SYS/lib/x86_64-linux-gnu
    REAL=$(ls "$BT"/root/usr/sbin/bpftool "$BT"/root/usr/bin/bpftool 2>/dev/null | head -1 || true)
    [[ -n $REAL ]] || die "no bpftool binary in the bpftool package"
    printf '#!/bin/sh\nexec "%s" --library-path "%s" "%s" "$@"\n' "$LDSO" "$LP" "$REAL" >"$BT/bpftool"
    chmod +x "$BT/bpftool"
    rm -rf "$BT/debs"
  fi
  "$BT/bpftool" version >&2 || die "Debian's bpftool does not run through the private glibc"
  "$BT/bpftool" btf dump file "$VMLINUX" format c >"$INC/vmlinux.h" || die "bpftool btf dump of $VMLINUX failed"
  echo "$SRCVER" >"$INC/.version"
fi

# The spin-lock related selftests.
PROGS=$ST/progs
if ((${#FILES[@]} == 0)); then
  mapfile -t FILES < <(
    cd "$PROGS"
    {
      ls -- *spin_lock*.c linked_list*.c refcounted_kptr*.c rbtree*.c local_kptr_stash*.c kfunc_call*.c 2>/dev/null
      grep -lE 'bpf_(res_)?spin_lock' -- *.c
      # Files taking a lock through a progs/ header of their own (linked_list.h, ...).
      for h in $(grep -lE 'bpf_(res_)?spin_lock' -- *.h 2>/dev/null); do grep -lF "\"$h\"" -- *.c; done
    } | sort -u)
fi
# -DENABLE_ATOMICS_TESTS as test_progs' TRUNNER_BPF_CFLAGS: without it arena_spin_lock.c (and the
# atomics tests) compile to stubs.
CFLAGS=(-g -O2 --target=bpfel -mcpu=v3 -D__TARGET_ARCH_x86 -DENABLE_ATOMICS_TESTS -std=gnu11 -fno-strict-aliasing
  -fms-extensions -Wno-microsoft-anon-tag -Wno-compare-distinct-pointer-types -Wno-initializer-overrides
  -I"$INC" -I"$ST" -I"$TREE/tools/include/uapi" -I"$TREE/tools/include" -I"$ST/libarena/include"
  -I"$PROGS" -idirafter /usr/include/x86_64-linux-gnu -idirafter /usr/include)
log "$("$CLANG" --version | head -1); ${#FILES[@]} files"
mkdir -p "$OUT/failed"
rm -f "$OUT"/*.bpf.o "$OUT"/failed/*.log
printf 'file\tstatus\treason\n' >"$OUT/MANIFEST.tsv"
ok=0 failed=0
for f in "${FILES[@]}"; do
  name=${f%.c}
  if [[ ! -f $PROGS/$f ]]; then
    printf '%s\tfailed\tno such file in progs/\n' "$f" >>"$OUT/MANIFEST.tsv"
    failed=$((failed + 1))
    continue
  fi
  if "$CLANG" "${CFLAGS[@]}" -c "$PROGS/$f" -o "$OUT/$name.bpf.o" >"$OUT/failed/$name.log" 2>&1; then
    rm -f "$OUT/failed/$name.log"
    printf '%s\tok\t\n' "$f" >>"$OUT/MANIFEST.tsv"
    ok=$((ok + 1))
  else
    rm -f "$OUT/$name.bpf.o"
    reason=$(grep -m1 -E 'error:' "$OUT/failed/$name.log" | sed "s|$PROGS/||; s|$TREE/||" || true)
    printf '%s\tfailed\t%s\n' "$f" "${reason:-clang failed (see failed/$name.log)}" >>"$OUT/MANIFEST.tsv"
    log "FAILED $f: ${reason:-see $OUT/failed/$name.log}"
    failed=$((failed + 1))
  fi
done

# What each program needs beyond a load, from its section (libbpf's section names).
python3 - "$OUT" <<'PY'
import struct, sys, glob, os
out = sys.argv[1]
def needs(sec):
    s = sec.lstrip('?')
    kind = s.split('/')[0].split('.')[0]
    attach = {'fentry', 'fexit', 'fmod_ret', 'freplace', 'lsm', 'iter', 'struct_ops', 'tp_btf',
              'raw_tp', 'raw_tracepoint', 'kprobe', 'kretprobe', 'uprobe', 'uretprobe', 'ksyscall',
              'kretsyscall', 'usdt', 'tracepoint', 'tp', 'kprobe_multi', 'kretprobe_multi',
              'uprobe_multi', 'cgroup', 'sk_lookup', 'sk_msg', 'sk_skb', 'sockops', 'netfilter'}
    if kind in ('fentry', 'fexit', 'fmod_ret', 'lsm', 'iter', 'tp_btf') or s.startswith('iter'):
        return 'attach target (BTF id of the traced function/iterator at load)'
    if kind == 'freplace':
        return 'attach target (a program to replace)'
    if kind == 'struct_ops':
        return 'attach target (a struct_ops map of a kernel or module ops type)'
    if s.startswith('xdp') and ('.frags' in s or 'devmap' in s or 'cpumap' in s):
        return '-'
    return '-' if kind not in attach or '/' not in s else 'attach target at run (loads without it)'
rows = []
for o in sorted(glob.glob(os.path.join(out, '*.bpf.o'))):
    d = open(o, 'rb').read()
    shoff, = struct.unpack_from('<Q', d, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from('<HHH', d, 0x3a)
    secs = [struct.unpack_from('<IIQQQQIIQQ', d, shoff + i * shentsize) for i in range(shnum)]
    stroff = secs[shstrndx][4]
    name = lambda off, base: d[base + off:d.index(b'\0', base + off)].decode()
    secname = [name(s[0], stroff) for s in secs]
    symtab = next(i for i, s in enumerate(secs) if s[1] == 2)
    st = secs[symtab]; strtab = secs[st[6]][4]
    for i in range(st[5] // 24):
        nm, info, _o, shndx, _v, _sz = struct.unpack_from('<IBBHQQ', d, st[4] + i * 24)
        if info & 0xf != 2 or info >> 4 != 1 or shndx == 0 or shndx >= len(secs):
            continue  # global functions only
        sec = secname[shndx]
        if not secs[shndx][2] & 4 or sec.startswith('.text'):
            continue  # programs live in executable sections other than .text
        rows.append((os.path.basename(o), name(nm, strtab), sec, needs(sec)))
with open(os.path.join(out, 'programs.tsv'), 'w') as f:
    f.write('object\tprogram\tsection\tneeds\n')
    for r in rows:
        f.write('\t'.join(r) + '\n')
print(f"{len(rows)} programs in {len(set(r[0] for r in rows))} objects", file=sys.stderr)
PY
python3 "$REPO/scripts/extract-prog-tests.py" "$ST" "$OUT"
log "$ok compiled, $failed failed (MANIFEST.tsv, failed/*.log) in $OUT"
