#!/usr/bin/env bash
# Install what lockstep needs on a fresh Debian 12 (bookworm) machine, from the system apt sources.
#
# Usage: scripts/setup.sh [--with-insta] [--with-vng]
#   --with-insta   also `cargo install --locked cargo-insta` (skipped if already installed)
#   --with-vng     also virtme-ng (pip) with kmod and busybox, the reference of `lockstep bench guest`
#
# Idempotent: apt-get only installs what is missing; run as root (or with sudo available).
# Never removes a package: the install is simulated first (`apt-get -s`) and, if apt would resolve
# a conflict by removing installed packages (it once removed qemu-utils), nothing is installed,
# the packages are listed and the exit code is 3; the real install also runs with --no-remove.
set -euo pipefail

WITH_INSTA=0
WITH_VNG=0
for arg in "$@"; do
  case "$arg" in
    --with-insta) WITH_INSTA=1 ;;
    --with-vng) WITH_VNG=1 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

SUDO=
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "run as root or install sudo" >&2; exit 1; }
  SUDO=sudo
fi

PACKAGES=(
  # QEMU for the guests (qemu-system-x86_64); ovmf/firmware not needed (direct -kernel boot).
  qemu-system-x86
  # libbpf-sys (static) and the test-module build.
  libelf-dev zlib1g-dev libzstd-dev liblzma-dev pkg-config
  clang llvm
  # The kernel's 7.3 BPF selftests need a recent clang (scripts/build-selftest-objects.sh prefers it).
  clang-19
  # C toolchain for -sys crates, kernel module builds.
  build-essential
  # Unpacking and inspecting kernels and initramfs images.
  cpio xz-utils zstd
  # apt-get download over https mirrors, keyring checks.
  ca-certificates gnupg
  # Kernel builds from source (lockstep kernel build, validate-series): kconfig and the host tools
  # need flex/bison/bc/libssl-dev; patch applies the series; ccache makes rebuilds incremental.
  # pahole >= 1.30 is fetched privately by lockstep (bookworm's dwarves is 1.24).
  flex bison bc libssl-dev patch ccache
)
# virtme-ng needs depmod and a busybox for its initramfs.
((WITH_VNG)) && PACKAGES+=(kmod busybox-static python3-pip)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  $SUDO apt-get update
  plan=$(LC_ALL=C $SUDO apt-get -s install --no-install-recommends "${missing[@]}")
  removals=$(awk '$1 == "Remv" {print $2}' <<<"$plan")
  # A machine image may carry a newer qemu-utils than Debian 12's qemu-system-x86 goes with; apt
  # would remove it. Keep each such QEMU package installed instead, at the version of the
  # qemu-system-x86 being installed (a downgrade, said here), and plan again.
  extra=()
  if [[ -n $removals ]] && ! grep -qv '^qemu-' <<<"$removals"; then
    qemu_ver=$(LC_ALL=C apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    for r in $removals; do extra+=("$r=$qemu_ver"); done
    echo "setup.sh: keeping ${removals//$'\n'/ } installed at QEMU $qemu_ver (the version qemu-system-x86 needs) instead of removing it"
    plan=$(LC_ALL=C $SUDO apt-get -s install --no-install-recommends --allow-downgrades "${missing[@]}" "${extra[@]}")
    removals=$(awk '$1 == "Remv" {print $2}' <<<"$plan")
  fi
  if [[ -n $removals ]]; then
    echo "setup.sh: refusing to install ${missing[*]}: apt would remove these installed packages:" >&2
    sed 's/^/  /' <<<"$removals" >&2
    echo "nothing was installed or removed; resolve the conflict by hand, then run setup.sh again" >&2
    exit 3
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends --no-remove \
    ${extra[@]:+--allow-downgrades} "${missing[@]}" "${extra[@]}"
else
  echo "all system packages already installed"
fi

if ((WITH_INSTA)); then
  if command -v cargo-insta >/dev/null; then
    echo "cargo-insta already installed"
  else
    cargo install --locked cargo-insta
  fi
fi

if ((WITH_VNG)) && ! command -v vng >/dev/null; then
  python3 -m pip install --quiet virtme-ng
fi

# KVM is optional: lockstep probes it at run time and falls back to TCG.
if [[ -r /dev/kvm && -w /dev/kvm ]]; then
  echo "/dev/kvm is accessible (lockstep will probe whether it really works)"
else
  echo "note: /dev/kvm not accessible; guests will run under TCG (slower)"
fi
