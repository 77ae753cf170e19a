"""The GPU coder writes and reads exactly the CPU coder's bytes.

Every case draws fresh random tables, shapes, lane counts, chunk sizes and values (escapes
included) and checks: GPU-encoded frames equal CPU-encoded frames byte for byte; CPU frames
decode on the GPU to the original symbols; damaged frames give an error, never a crash,
and the device keeps working afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

import taskcodec as tc

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu

DEV = "cuda"


def random_table(rng, rows, precision=14):
    k = int(rng.integers(2, 70))
    scale = rng.uniform(0.3, 6.0, size=(rows, 1))
    centre = rng.integers(-3, 4, size=(rows, 1))
    grid = np.arange(k)[None, :]
    offsets = (centre[:, 0] - k // 2).astype(np.int32)
    pmf = np.exp(-np.abs(grid + offsets[:, None] - centre) / scale)
    return tc.CdfTable.from_pmf(pmf, offsets, precision=precision), offsets, k


def random_symbols(rng, shape, offsets, k, axis, escape_rate, dtype):
    scale = rng.uniform(0.5, 4.0)
    x = np.round(rng.laplace(0.0, scale, size=shape)).astype(np.int64)
    n_esc = int(escape_rate * x.size)
    if n_esc:
        pos = rng.choice(x.size, n_esc, replace=False)
        big = rng.integers(-(2**20), 2**20, size=n_esc)
        flat = x.reshape(-1)
        flat[pos] = big
        if np.iinfo(dtype).bits >= 32 and n_esc >= 2:
            flat[pos[0]] = np.iinfo(np.int32).max if np.iinfo(dtype).min < 0 else 2**31 - 1
            flat[pos[1]] = np.iinfo(np.int32).min if np.iinfo(dtype).min < 0 else 0
    info = np.iinfo(dtype)
    return np.clip(x, info.min, info.max).astype(dtype)


CASES = [
    # shape, axis, lanes, chunk, precision, escape rate, dtype
    ((2, 8, 33, 17), 1, 32, 1 << 20, 14, 0.0, np.int32),
    ((3, 16, 64), 1, 32, 4096, 14, 0.01, np.int32),
    ((5, 12, 40), 1, 64, 3000, 12, 0.002, np.int16),
    ((4, 7, 100), 1, 256, 50_000, 16, 0.005, np.int64),
    ((1000, 9), 1, 8, 777, 14, 0.01, np.int32),
    ((3, 10, 10), -1, 1, 100, 10, 0.02, np.int8),
    ((6, 5, 300), 1, 128, 2048, 13, 0.0, np.uint8),
    ((2, 24, 500), 1, 16, 1 << 14, 15, 0.0005, np.uint16),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_gpu_frames_equal_cpu_frames(case):
    shape, axis, lanes, chunk, precision, esc, dtype = CASES[case]
    rng = np.random.default_rng(1000 + case)
    rows = shape[axis]
    table, offsets, k = random_table(rng, rows, precision)
    sym = random_symbols(rng, shape, offsets, k, axis, esc, dtype)
    if np.iinfo(dtype).min == 0:
        sym = sym.astype(dtype)
    cpu = tc.encode(sym, table, channel_axis=axis, lanes=lanes, chunk_size=chunk, meta=b"m")
    gpu = tc.encode(torch.from_numpy(sym).to(DEV), table, channel_axis=axis, lanes=lanes,
                    chunk_size=chunk, meta=b"m")
    assert gpu == cpu
    out = tc.decode(cpu, table, device=DEV)  # in the dtype the frame records, as on the CPU
    assert out.device.type == "cuda" and out.dtype == getattr(torch, np.dtype(dtype).name)
    np.testing.assert_array_equal(out.cpu().to(torch.int64).numpy(), sym.astype(np.int64))
    raw = torch.empty(sym.shape, dtype=torch.int32, device=DEV)  # an int32 out is decoded into
    assert tc.decode(cpu, table, out=raw) is raw
    np.testing.assert_array_equal(raw.cpu().numpy(), sym.astype(np.int32))
    # the default chunk size of device arrays is the GPU's, and the frame is the CPU's at that size
    dflt = tc.encode(torch.from_numpy(sym).to(DEV), table, channel_axis=axis, lanes=lanes)
    assert tc.read_header(dflt).chunk_size == tc.codec.DEFAULT_GPU_CHUNK_SIZE
    assert dflt == tc.encode(sym, table, channel_axis=axis, lanes=lanes,
                             chunk_size=tc.codec.DEFAULT_GPU_CHUNK_SIZE)


def test_gpu_index_and_single_row_modes():
    rng = np.random.default_rng(7)
    table, offsets, k = random_table(rng, 11)
    sym = random_symbols(rng, (4, 1000), offsets, k, 0, 0.01, np.int32)
    index = rng.integers(0, 11, size=sym.shape).astype(np.int32)
    cpu = tc.encode(sym, table, index, lanes=32, chunk_size=999)
    gpu = tc.encode(torch.from_numpy(sym).to(DEV), table, torch.from_numpy(index).to(DEV), lanes=32,
                    chunk_size=999)
    assert gpu == cpu
    out = tc.decode(cpu, table, torch.from_numpy(index).to(DEV), device=DEV)
    np.testing.assert_array_equal(out.cpu().numpy(), sym)
    with pytest.raises(tc.TableMismatchError):
        tc.decode(cpu, table, np.roll(index, 1), device=DEV)

    single, offs1, k1 = random_table(rng, 1)
    s1 = random_symbols(rng, (3, 3, 5000), offs1, k1, 0, 0.001, np.int32)
    cpu1 = tc.encode(s1, single, lanes=64, chunk_size=10_000)
    assert tc.encode(torch.from_numpy(s1).to(DEV), single, lanes=64, chunk_size=10_000) == cpu1
    np.testing.assert_array_equal(tc.decode(cpu1, single, device=DEV).cpu().numpy(), s1)


def test_gpu_random_sweep():
    rng = np.random.default_rng(12345)
    for trial in range(25):
        ndim = int(rng.integers(1, 4))
        shape = tuple(int(s) for s in rng.integers(1, 60, size=ndim))
        axis = int(rng.integers(0, ndim))
        lanes = int(2 ** rng.integers(0, 9))
        chunk = int(rng.integers(1, 5000))
        table, offsets, k = random_table(rng, shape[axis], int(rng.integers(8, 17)))
        sym = random_symbols(rng, shape, offsets, k, axis, float(rng.choice([0.0, 0.01, 0.2])), np.int32)
        cpu = tc.encode(sym, table, channel_axis=axis, lanes=lanes, chunk_size=chunk)
        gpu = tc.encode(torch.from_numpy(sym).to(DEV), table, channel_axis=axis, lanes=lanes,
                        chunk_size=chunk)
        assert gpu == cpu, f"trial {trial}: shape {shape} axis {axis} lanes {lanes} chunk {chunk}"
        np.testing.assert_array_equal(tc.decode(cpu, table, device=DEV).cpu().numpy(), sym)


def test_gpu_decode_batch_of_frames():
    rng = np.random.default_rng(3)
    table, offsets, k = random_table(rng, 16)
    syms = [random_symbols(rng, (int(rng.integers(1, 5)), 16, 50), offsets, k, 1, 0.01, np.int32)
            for _ in range(6)]
    blobs = [tc.encode(s, table, chunk_size=1000) for s in syms]
    outs, ms = tc.decode_batch(blobs, table, device=DEV, max_symbols=tc.DEFAULT_MAX_SYMBOLS)
    assert ms >= 0.0
    for s, o in zip(syms, outs):
        np.testing.assert_array_equal(o.cpu().numpy(), s)


def test_gpu_corrupt_frames_raise_and_device_keeps_working():
    rng = np.random.default_rng(99)
    table, offsets, k = random_table(rng, 8)
    sym = random_symbols(rng, (4, 8, 256), offsets, k, 1, 0.01, np.int32)
    blob = tc.encode(sym, table, chunk_size=1024, checksum=False)
    info = tc.read_header(blob)
    payload_at = info.header_length + 4 * info.num_chunks
    raised = 0
    for trial in range(40):
        bad = bytearray(blob)
        pos = int(rng.integers(payload_at, len(bad)))
        bad[pos] ^= 1 << int(rng.integers(0, 8))
        try:
            want = tc.decode(bytes(bad), table)
        except tc.CorruptStreamError:
            want = None
        if want is None:  # the CPU decoder rejects it: so must the GPU decoder
            with pytest.raises(tc.CorruptStreamError):
                tc.decode(bytes(bad), table, device=DEV)
            raised += 1
        else:  # a flip the format cannot see: both decoders give the same symbols
            np.testing.assert_array_equal(tc.decode(bytes(bad), table, device=DEV).cpu().numpy(), want)
    assert raised > 0
    truncated = blob[: payload_at + 3]
    with pytest.raises(tc.CorruptStreamError):
        tc.decode(truncated, table, device=DEV)
    # The device still decodes good frames afterwards.
    np.testing.assert_array_equal(tc.decode(blob, table, device=DEV).cpu().numpy(), sym)


def test_gpu_decode_into_out_and_resident_frame():
    rng = np.random.default_rng(5)
    table, offsets, k = random_table(rng, 4)
    sym = random_symbols(rng, (2, 4, 999), offsets, k, 1, 0.0, np.int32)
    blob = tc.encode(sym, table, chunk_size=500)
    out = torch.full(sym.shape, -7, dtype=torch.int32, device=DEV)
    res = tc.decode(blob, table, out=out)
    assert res.data_ptr() == out.data_ptr()
    np.testing.assert_array_equal(out.cpu().numpy(), sym)
    frame_dev = torch.frombuffer(bytearray(blob), dtype=torch.uint8).to(DEV)
    o2 = tc.codec.gpu.decode_device(blob, table, device=DEV, max_symbols=tc.DEFAULT_MAX_SYMBOLS,
                                     frame_on_device=frame_dev)
    np.testing.assert_array_equal(o2.cpu().numpy(), sym)


def test_gpu_quantize_matches_cpu():
    rng = np.random.default_rng(8)
    x = (rng.standard_normal((3, 16, 20, 20)) * rng.uniform(0.1, 5, size=(1, 16, 1, 1))).astype(np.float32)
    step = rng.uniform(0.01, 0.5, size=16).astype(np.float32)
    zero = rng.uniform(-0.2, 0.2, size=16).astype(np.float32)
    q_cpu = tc.quantize(x, step, zero)
    q_gpu = tc.quantize(torch.from_numpy(x).to(DEV), step, zero)
    np.testing.assert_array_equal(q_gpu.cpu().numpy(), q_cpu)
    y_cpu = tc.dequantize(q_cpu, step, zero)
    y_gpu = tc.dequantize(q_gpu, step, zero)
    np.testing.assert_array_equal(y_gpu.cpu().numpy(), y_cpu)
    bad = torch.from_numpy(x).to(DEV)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(tc.TaskcodecError):
        tc.quantize(bad, step, zero)
