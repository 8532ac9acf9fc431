#!/usr/bin/env bash
# Installs what the portable runtime needs on a Debian/Ubuntu host (run as root),
# and registers qemu-user for arm64 image builds. Quick when everything is there.
# Every package the runtime calls is listed, with what needs it: installs use
# --no-install-recommends, so nothing may be left to a Recommends (mmdebstrap only
# recommends arch-test, without which every arm64 build fails).
# VMTEST_DEPS_WITHOUT="pkg ..." leaves packages out (the fresh-root test's negative control).
set -euo pipefail
packages=(
  qemu-system-x86    # x86_64 guests (qemu-system-x86_64)
  qemu-system-arm    # aarch64 guests (qemu-system-aarch64)
  qemu-utils         # qemu-img: the qcow2 overlay each machine boots from
  qemu-user-static   # arm64 maintainer scripts run under qemu-aarch64 while building an image
  binfmt-support     # update-binfmts: registers qemu-aarch64 with binfmt_misc
  mmdebstrap         # builds every image's root file system
  arch-test          # mmdebstrap's check that a foreign architecture (arm64) can run
  e2fsprogs          # mke2fs -d: the image's ext4 disk
  kmod               # depmod for the image's kernel modules
  vde2               # vde_switch: one hub per VLAN
  systemd-container  # systemd-nspawn: machines of kind "container"
  socat              # shell_interact / the interactive shell's terminal
  tesseract-ocr      # OCR: get_screen_text, get_screen_text_variants, wait_for_text
  tesseract-ocr-eng  # the English data tesseract reads with (not left to a Recommends)
  imagemagick        # OCR: the processed variants of a screenshot (magick / convert)
  cpio               # reading initramfs archives (tests, and debugging an image's initrd)
  zstd               # Debian kernels ship zstd-compressed modules
  systemd            # systemctl --root: unit presets of a foreign image, replayed natively
  udev               # systemd-hwdb: compiles a foreign image's hardware database natively
  nix-bin            # nix-instantiate and nix-build: evaluate the .nix files, and build their derivations in Nix's sandbox
  busybox-static     # the sandbox's /bin/sh, as NixOS gives it (tests/repo/nix_sandbox.py)
  patchelf           # Debian's binaries made into store paths for those builds
  gawk               # stdenv's awk, for those builds
  patch              # stdenv's patch, for those builds
  shellcheck         # checks the shell scripts embedded in the .nix files
  iproute2           # ss, ip: declared check inputs of vmtest's package, rehearsed by tests/repo
  procps             # pgrep, ps: the same, and the VM tests' orphan checks
  python3-venv       # the virtualenv `make` creates in .venv
  chromium           # opens report.html in tests/repo/test_report_page.py (Playwright, executable_path)
  ca-certificates    # pip's HTTPS to PyPI
  nodejs             # runs the @playwright/test runner and reporter in tests/repo/test_browser_runner_ts.py (>= 20: trixie's)
  npm                # npm ci of e2e-test/client-ts's lock in that test (Node.js from elsewhere may bundle it)
)
# A command already on PATH from elsewhere satisfies its package: NodeSource's nodejs, for one,
# bundles npm and conflicts with Debian's npm package.
declare -A provided_by_command=([nodejs]=node [npm]=npm)
skip=" ${VMTEST_DEPS_WITHOUT:-} "
missing=()
for package in "${packages[@]}"; do
  [[ "$skip" == *" $package "* ]] && continue
  command=${provided_by_command[$package]:-}
  [ -n "$command" ] && command -v "$command" >/dev/null && continue
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
