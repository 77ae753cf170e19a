#!/usr/bin/env bash
# Builds (once) an arm64 Debian root file system with Python 3, pip, numpy, pytest and hypothesis,
# for running taskcodec's tests on aarch64 under qemu-user on an x86_64 machine:
#   scripts/aarch64-root.sh DIR
# The packages are only unpacked (no maintainer scripts run), which is all that running
# Python through `qemu-aarch64-static -L DIR DIR/usr/bin/python3` needs.
set -euo pipefail
root=${1:?usage: aarch64-root.sh DIR}
stamp="$root/.taskcodec-ready-2"  # bump when the package list changes
if [ -x "$root/usr/bin/python3" ] && [ -f "$stamp" ]; then
  exit 0
fi
for p in debootstrap qemu-user-static g++-aarch64-linux-gnu; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="${missing:-} $p"
done
if [ -n "${missing:-}" ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
rm -rf "$root"
mkdir -p "$root"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap --arch=arm64 --variant=minbase --foreign \
  --include=python3,libpython3-dev,python3-numpy,python3-pytest,python3-hypothesis,python3-pip \
  bookworm "$root" "$mirror" >/dev/null
for deb in "$root"/var/cache/apt/archives/*.deb; do
  dpkg-deb -x "$deb" "$root"
done
# Links that Debian's alternatives system would make.
lib="$root/usr/lib/aarch64-linux-gnu"
ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
# Python.h's pyconfig.h includes <aarch64-linux-gnu/python3.X/pyconfig.h>: a directory with
# just that, so a cross build can find it without the root's C library headers.
py=$(basename "$(ls -d "$root"/usr/include/aarch64-linux-gnu/python3.*)")
mkdir -p "$root/taskcodec-include/aarch64-linux-gnu"
ln -sfn "../../usr/include/aarch64-linux-gnu/$py" "$root/taskcodec-include/aarch64-linux-gnu/$py"
touch "$stamp"
echo "aarch64 root ready: $root ($(du -sh "$root" | cut -f1))"
