#!/usr/bin/env bash
# Installs what the portable runtime needs on a Debian/Ubuntu host (run as root),
# and registers qemu-user for arm64 image builds. Quick when everything is there.
set -euo pipefail
packages=(
  qemu-system-x86 qemu-system-arm qemu-utils qemu-user-static binfmt-support
  mmdebstrap e2fsprogs kmod vde2 socat cpio zstd nix-bin python3-venv
  udev  # systemd-hwdb: compiles a foreign image's hardware database natively
)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-system-deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-system-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" -eq 0 ]; then
  [ -e /proc/sys/fs/binfmt_misc/status ] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  echo "install-system-deps: warning: binfmt_misc has no qemu-aarch64 entry; arm64 images cannot be built" >&2
fi
