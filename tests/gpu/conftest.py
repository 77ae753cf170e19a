"""GPU tests: run only where this build carries the CUDA kernels and a device is usable."""

import pytest

import taskcodec as tc


def pytest_collection_modifyitems(config, items):
    if tc.has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA build and a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
