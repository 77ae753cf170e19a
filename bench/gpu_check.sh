#!/usr/bin/env bash
# One-shot check of the CUDA kernels on a machine with an NVIDIA GPU: builds taskcodec with
# the kernels, runs the GPU tests (GPU bytes == CPU bytes, decode, batches, corrupt frames,
# quantization) and times the GPU coder against the CPU coder on the same machine, ending
# with one short table. Needs python3 with torch (CUDA), numpy, pytest, pybind11 >= 3,
# scikit-build-core, cmake, ninja and nvcc.
#
#   bash bench/gpu_check.sh                 # sm_90 (H100/H200); ARCHS="80;90" for others
#   RESULTS=dir bash bench/gpu_check.sh     # where the JSON and logs go (bench/results)
set -euo pipefail
cd "$(dirname "$0")/.."
RESULTS=${RESULTS:-bench/results}
mkdir -p "$RESULTS"
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv || true
nvcc --version | tail -1

echo "== build (TASKCODEC_CUDA=ON, archs ${ARCHS:-90})"
start=$(date +%s)
$PY -m pip install -q --no-build-isolation --no-deps \
  -Ccmake.define.TASKCODEC_CUDA=ON -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="${ARCHS:-90}" \
  -Cbuild-dir=build/gpu-check . 2>&1 | tee "$RESULTS/gpu_build.log" | tail -20
echo "build took $(( $(date +%s) - start )) s"
(cd /tmp && $PY -c "import taskcodec as tc, taskcodec._core as c; print('has_cuda', tc.has_cuda(), c.cuda_device_name(0))")

echo "== tests"
# -p no:warnings: a foreign torch/numpy pair on the GPU machine may warn at import; the
# CPU test run keeps warnings as errors.
tests_rc=0
$PY -m pytest -q -p no:cacheprovider -p no:warnings tests/gpu tests/golden tests/unit/test_api.py \
  tests/unit/test_cuda_paths.py > "$RESULTS/gpu_tests.log" 2>&1 || tests_rc=$?
tail -15 "$RESULTS/gpu_tests.log"

echo "== benchmark"
$PY bench/gpu_bench.py --out "$RESULTS" "$@" 2>&1 | tee "$RESULTS/gpu_bench.log"
exit $tests_rc
