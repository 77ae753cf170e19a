"""The GPU entry points on a machine without a usable CUDA device, and the CPU halves of
the GPU features (quantize / dequantize) that the GPU kernels must reproduce."""

from __future__ import annotations

import numpy as np
import pytest
from ci_support import require

import taskcodec as tc
from taskcodec import _core
from taskcodec import _device as cuda


class FakeDeviceArray:
    """Claims to live on CUDA device 0 through the DLPack protocol (never read)."""

    shape = (2, 3)
    dtype = "int32"

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, stream=None):  # pragma: no cover - must never be reached here
        raise AssertionError("the array must not be read without a CUDA device")


def test_has_cuda_agrees_with_the_build_and_the_driver():
    import os

    assert isinstance(_core.cuda_available(), bool)
    if not os.path.exists("/dev/nvidiactl"):  # no NVIDIA driver on this machine
        # a CUDA build must still import and say no, rather than fail or claim a device
        assert _core.cuda_available() is False
        assert tc.has_cuda() is False
    if not _core.has_cuda:
        assert tc.has_cuda() is False


def test_device_array_detection_does_not_take_numpy_or_cpu_objects():
    assert cuda.is_device_array(FakeDeviceArray())
    assert not cuda.is_device_array(np.zeros(3))
    assert not cuda.is_device_array([1, 2, 3])
    torch = require("torch")
    assert not cuda.is_device_array(torch.zeros(3))


@pytest.mark.cpu_only
@pytest.mark.skipif(tc.has_cuda(), reason="a CUDA device is usable here")
def test_gpu_requests_without_a_device_raise_clearly():
    table = tc.CdfTable.from_pmf(np.ones((3, 8)), np.zeros(3, dtype=np.int32))
    with pytest.raises(tc.TaskcodecError, match="CUDA"):
        tc.encode(FakeDeviceArray(), table)
    blob = tc.encode(np.zeros((2, 3), dtype=np.int32), table)
    with pytest.raises(tc.TaskcodecError, match="CUDA"):
        tc.decode(blob, table, device="cuda")
    with pytest.raises(tc.TaskcodecError, match="CUDA"):
        tc.quantize(FakeDeviceArray(), [1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    # the CPU path is untouched
    np.testing.assert_array_equal(tc.decode(blob, table, device="cpu"), np.zeros((2, 3), np.int32))


def test_quantize_is_float32_rint_of_scaled_difference():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, 5, 7, 3)) * 3).astype(np.float32)
    step = rng.uniform(0.05, 0.7, size=5).astype(np.float32)
    zero = rng.uniform(-0.5, 0.5, size=5).astype(np.float32)
    q = tc.quantize(x, step, zero)
    assert q.dtype == np.int32 and q.shape == x.shape
    inv = (np.float32(1) / step).astype(np.float32)
    for c in range(5):
        want = np.rint((x[:, c] - zero[c]) * inv[c]).astype(np.int32)
        np.testing.assert_array_equal(q[:, c], want)
    y = tc.dequantize(q, step, zero)
    assert y.dtype == np.float32
    # reconstruction error is at most half a step (plus float32 rounding of 1/step)
    err = np.abs(y - x) / step[None, :, None, None]
    assert err.max() <= 0.5 + 1e-4
    # channel axis last
    q_last = tc.quantize(np.moveaxis(x, 1, -1).copy(), step, zero, channel_axis=-1)
    np.testing.assert_array_equal(np.moveaxis(q_last, -1, 1), q)


def test_quantize_rejects_bad_input():
    x = np.ones((1, 2, 3), dtype=np.float32)
    with pytest.raises(tc.TaskcodecError, match="float32"):
        tc.quantize(x.astype(np.float64), [1, 1], [0, 0])
    with pytest.raises(tc.TaskcodecError, match="positive"):
        tc.quantize(x, [1, 0], [0, 0])
    with pytest.raises(tc.TaskcodecError, match="channels"):
        tc.quantize(x, [1, 1, 1], [0, 0, 0])
    bad = x.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(tc.TaskcodecError, match="finite"):
        tc.quantize(bad, [1, 1], [0, 0])
    with pytest.raises(tc.TaskcodecError, match="int32"):
        tc.quantize(np.full((1, 2, 1), 3e9, np.float32), [1, 1], [0, 0])


def test_device_requests_raise_cuda_unavailable_without_a_device():
    if tc.has_cuda():
        pytest.skip("a CUDA device is usable here")
    from taskcodec.fl import gpu as fl_gpu

    with pytest.raises(tc.CudaUnavailableError):
        cuda.require_cuda()
    with pytest.raises(tc.CudaUnavailableError):
        fl_gpu.topk(FakeDeviceArray(), 1)
    table = tc.CdfTable.from_pmf(np.ones((3, 8)), np.zeros(3, dtype=np.int32))
    with pytest.raises(tc.CudaUnavailableError):
        tc.decode_batch([tc.encode(np.zeros((2, 3), np.int32), table)], table)


def test_device_arrays_get_the_gpu_chunk_size_by_default(monkeypatch):
    """Arrays on a GPU are coded in 2**14-symbol chunks unless told otherwise; host arrays in 2**20."""
    seen = {}

    def fake_encode_device(symbols, table, index, mode, **options):
        seen.update(options)
        return b""

    monkeypatch.setattr(tc.codec.gpu, "encode_device", fake_encode_device)
    table = tc.CdfTable.from_pmf(np.ones((3, 8)), np.zeros(3, dtype=np.int32))
    tc.encode(FakeDeviceArray(), table)
    assert seen["chunk_size"] == tc.codec.DEFAULT_GPU_CHUNK_SIZE == 2**14
    tc.encode(FakeDeviceArray(), table, chunk_size=2**20)
    assert seen["chunk_size"] == 2**20
    assert tc.read_header(tc.encode(np.zeros((2, 3), np.int32), table)).chunk_size == 2**20
