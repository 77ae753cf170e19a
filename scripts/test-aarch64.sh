#!/usr/bin/env bash
# Cross-builds the extension for aarch64 with Debian's g++-aarch64-linux-gnu and runs the
# codec tests under qemu-user in an arm64 Python: golden frames pinned on x86_64 must be
# reproduced byte for byte on aarch64 and decode there, and the property, corruption, table
# and reference-decoder tests must pass.
#   scripts/test-aarch64.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
top=$(pwd -P)
root="$top/build/aarch64-root"
build="$top/build/aarch64"
stage="$top/build/aarch64-stage"
venv="$top/.venv"

bash scripts/aarch64-root.sh "$root"
py_inc=$(ls -d "$root"/usr/include/python3.*[0-9] | head -n 1)
py_ver=$(basename "$py_inc" | sed 's/^python//')
export TASKCODEC_AARCH64_SYSROOT="$root"
"$venv/bin/cmake" -S . -B "$build" -G Ninja -DCMAKE_MAKE_PROGRAM="$venv/bin/ninja" \
  -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release \
  -DTASKCODEC_CUDA=OFF -DTASKCODEC_WERROR=ON -DPython_INCLUDE_DIR="$py_inc" \
  -DCMAKE_CXX_FLAGS="-isystem $root/taskcodec-include" -DPython_EXECUTABLE="$venv/bin/python" \
  -Dpybind11_DIR="$("$venv/bin/python" -m pybind11 --cmakedir)" >/dev/null
"$venv/bin/cmake" --build "$build"

# The package as it would be installed, with the aarch64 module under its aarch64 name.
rm -rf "$stage"
mkdir -p "$stage"
cp -r src/taskcodec "$stage/"
find "$stage" -name '*.so' -delete
so=$(ls "$build"/_core*.so | head -n 1)
file "$so" | grep -q 'ARM aarch64' || { echo "test-aarch64: $so is not an aarch64 module" >&2; exit 1; }
cp "$so" "$stage/taskcodec/_core.cpython-${py_ver/./}-aarch64-linux-gnu.so"
# The arm64 root's pytest is older than the project's pytest settings ask for.
printf '[pytest]\nmarkers =\n    slow: long tests\n    gpu: needs a CUDA device\naddopts = -p no:cacheprovider\n' \
  > "$stage/pytest.ini"

run() { PYTHONPATH="$stage" qemu-aarch64-static -L "$root" "$root/usr/bin/python3" "$@"; }
run -c "import platform, taskcodec; assert platform.machine() == 'aarch64', platform.machine(); \
print('aarch64 python', platform.python_version(), '- taskcodec', taskcodec.__version__, 'from', taskcodec._core.__file__)"
if [ $# -eq 0 ]; then
  set -- tests/golden tests/unit/test_reference_decoder.py tests/unit/test_corruption.py \
    tests/unit/test_corruption_limits.py tests/unit/test_api.py tests/unit/test_api_inputs.py \
    tests/unit/test_table.py tests/property
fi
run -m pytest -c "$stage/pytest.ini" --rootdir "$top" -q "$@"
