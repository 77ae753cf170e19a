#!/usr/bin/env bash
# Installs the system packages the build and tests need, when they are missing.
# Debian / Ubuntu (apt). Safe to run again: it does nothing when all are present.
set -euo pipefail
pkgs=(g++ make libgtest-dev clang libclang-rt-14-dev patchelf haproxy socat)
missing=()
for p in "${pkgs[@]}"; do
  # installed, not merely known to dpkg (a removed package keeps its config files: "deinstall")
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: please install: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup-system: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
