"""The public codec API, part 2: the input kinds encode accepts, options, and decode's output
(dtype, caller buffers)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ci_support import require

import taskcodec as tc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_api import roundtrip  # noqa: E402


def test_non_contiguous_arrays_are_accepted(table3: tc.CdfTable) -> None:
    base = (np.arange(4 * 3 * 10, dtype=np.int64).reshape(4, 3, 10) % 9) - 3
    views = [base[:, :, ::2], base[::-1], base[1:3, :, 3:7], np.transpose(base, (2, 1, 0))]
    for x in views:
        axis = x.shape.index(3)
        assert not x.flags.c_contiguous or x is base
        np.testing.assert_array_equal(roundtrip(x, table3, channel_axis=axis), x)
        assert tc.encode(x, table3, channel_axis=axis) == tc.encode(
            np.ascontiguousarray(x), table3, channel_axis=axis
        )
    index = np.asfortranarray(np.arange(base.size).reshape(base.shape) % 3)
    assert not index.flags.c_contiguous
    np.testing.assert_array_equal(roundtrip(base, table3, index), base)


@pytest.mark.parametrize("dtype", [">i2", ">i4", ">i8", ">u2", ">u4", ">u8"])
def test_big_endian_arrays_are_accepted(table3: tc.CdfTable, dtype: str) -> None:
    little = (np.arange(2 * 3 * 5).reshape(2, 3, 5) % 13).astype(dtype.replace(">", "<"))
    big = little.astype(dtype)
    assert big.dtype.byteorder == ">"
    np.testing.assert_array_equal(roundtrip(big, table3), little)
    assert tc.encode(big, table3) == tc.encode(little, table3)
    index = (np.arange(big.size).reshape(big.shape) % 3).astype(">i4")
    np.testing.assert_array_equal(roundtrip(big, table3, index), little)


def test_torch_cpu_tensors_are_accepted(table3: tc.CdfTable) -> None:
    torch = require("torch")
    x = (torch.arange(2 * 3 * 4).reshape(2, 3, 4) % 7) - 2
    for dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8):
        t = x.abs().to(dtype) if dtype == torch.uint8 else x.to(dtype)
        out = roundtrip(t, table3)
        np.testing.assert_array_equal(out, t.numpy().astype(np.int32))
        assert tc.encode(t, table3) == tc.encode(t.numpy(), table3)
    xt = x.transpose(0, 2)  # non-contiguous view, channel axis still 1
    assert not xt.is_contiguous()
    np.testing.assert_array_equal(roundtrip(xt, table3), xt.numpy())
    index = torch.ones((2, 3, 4), dtype=torch.int64)
    np.testing.assert_array_equal(roundtrip(x, table3, index), x.numpy())


def test_torch_tensors_are_checked_like_arrays(table3: tc.CdfTable) -> None:
    torch = require("torch")
    with pytest.raises(tc.TaskcodecError, match="integer"):
        tc.encode(torch.zeros((2, 3), dtype=torch.float32), table3)
    with pytest.raises(tc.TaskcodecError, match="integer"):
        tc.encode(torch.zeros((2, 3), dtype=torch.bool), table3)
    with pytest.raises(tc.TaskcodecError, match="cpu"):
        tc.encode(torch.zeros((2, 3), dtype=torch.int32, device="meta"), table3)


def test_array_likes_are_accepted(table3: tc.CdfTable) -> None:
    x = [[0, 1, 2], [3, -1, 4]]
    np.testing.assert_array_equal(roundtrip(x, table3), np.array(x))


@pytest.mark.parametrize(
    "dtype, value",
    [
        (np.int64, -(2**31) - 1),
        (np.int64, 2**31),
        (np.int64, 2**40),
        (np.uint32, 2**31),
        (np.uint32, 2**32 - 1),
        (np.uint64, 2**31),
        (np.uint64, 2**64 - 1),
    ],
)
def test_values_outside_int32_are_rejected(table1: tc.CdfTable, dtype, value: int) -> None:
    x = np.zeros(10, dtype=dtype)
    x[7] = value
    with pytest.raises(tc.TaskcodecError, match="int32"):
        tc.encode(x, table1)


def test_too_many_dims_are_rejected(table1: tc.CdfTable) -> None:
    x = np.zeros((1,) * 17, np.int32)
    with pytest.raises(tc.TaskcodecError, match="dims"):
        tc.encode(x, table1)
    y = np.zeros((1,) * 16, np.int32)
    np.testing.assert_array_equal(roundtrip(y, table1), y)


@pytest.mark.parametrize("lanes", [0, 3, 6, 48, 512, 1024])
def test_invalid_lanes_are_rejected(table1: tc.CdfTable, lanes: int) -> None:
    with pytest.raises(tc.TaskcodecError, match="lanes"):
        tc.encode(np.zeros(8, np.int32), table1, lanes=lanes)


def test_zero_chunk_size_is_rejected(table1: tc.CdfTable) -> None:
    with pytest.raises(tc.TaskcodecError, match="chunk_size"):
        tc.encode(np.zeros(8, np.int32), table1, chunk_size=0)


@pytest.mark.parametrize(
    "kwargs",
    [dict(lanes=-1), dict(lanes=2**40), dict(chunk_size=-1), dict(chunk_size=2**32)],
    ids=["lanes=-1", "lanes=2**40", "chunk_size=-1", "chunk_size=2**32"],
)
def test_out_of_range_integer_options_raise_taskcodec_error(
    table1: tc.CdfTable, kwargs: dict
) -> None:
    """Negative or oversized options are invalid arguments, not a binding TypeError."""
    with pytest.raises(tc.TaskcodecError):
        tc.encode(np.zeros(8, np.int32), table1, **kwargs)


def test_negative_max_symbols_raises_taskcodec_error(table1: tc.CdfTable) -> None:
    blob = tc.encode(np.zeros(8, np.int32), table1)
    with pytest.raises(tc.TaskcodecError):
        tc.decode(blob, table1, max_symbols=-1)


def test_meta_bytes(table1: tc.CdfTable) -> None:
    x = np.arange(-3, 3, dtype=np.int32)
    for meta in (b"", b"\x00", bytes(range(256)), bytearray(b"abc"), memoryview(b"xyz")):
        blob = tc.encode(x, table1, meta=meta)
        assert tc.read_header(blob).meta == bytes(meta)
        np.testing.assert_array_equal(tc.decode(blob, table1), x)
    big = b"m" * (1 << 20)
    assert tc.read_header(tc.encode(x, table1, meta=big)).meta == big
    with pytest.raises(tc.TaskcodecError, match="meta"):
        tc.encode(x, table1, meta=big + b"m")


def test_meta_must_be_bytes_like(table1: tc.CdfTable) -> None:
    """An int would silently become that many zero bytes; a str has no defined encoding."""
    x = np.zeros(4, np.int32)
    for meta in (5, "abc"):
        with pytest.raises((tc.TaskcodecError, TypeError)):
            tc.encode(x, table1, meta=meta)  # type: ignore[arg-type]


def test_checksum_flag(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    on = tc.encode(symbols, table3)
    off = tc.encode(symbols, table3, checksum=False)
    assert len(on) == len(off) + 4
    assert tc.read_header(on).checksum and not tc.read_header(off).checksum
    np.testing.assert_array_equal(tc.decode(off, table3), symbols)


def test_encoding_is_deterministic_across_threads(table3: tc.CdfTable) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(-6, 12, size=(50, 3, 40)).astype(np.int32)
    ref = tc.encode(x, table3, chunk_size=257)
    for threads in (0, 1, 2, 4):
        assert tc.encode(x, table3, chunk_size=257, threads=threads) == ref
        np.testing.assert_array_equal(tc.decode(ref, table3, threads=threads), x)


def test_escapes_are_exact_never_clipped(table3: tc.CdfTable) -> None:
    x = np.array([[[-(2**31), 2**31 - 1, 1000, -1000]] * 3] * 2, dtype=np.int64)
    np.testing.assert_array_equal(roundtrip(x, table3), x)


@pytest.mark.parametrize(
    "shape, axis", [((0,), None), ((0, 3), 1), ((5, 3, 0), 1), ((0, 3, 7), 1), ((3, 0), 0)]
)
def test_empty_arrays(table3: tc.CdfTable, shape, axis) -> None:
    x = np.zeros(shape, np.int16)
    index = np.zeros(shape, np.int32)
    if axis is not None:
        assert roundtrip(x, table3, channel_axis=axis).shape == shape
    assert roundtrip(x, table3, index).shape == shape
    info = tc.read_header(tc.encode(x, table3, index))
    assert info.num_symbols == 0 and info.num_chunks == 0 and info.shape == shape


def test_large_input_roundtrips_with_automatic_threads(table3: tc.CdfTable) -> None:
    """Above 2**20 symbols threads=0 codes chunks in parallel; the bytes stay the same."""
    rng = np.random.default_rng(9)
    x = rng.integers(-8, 14, size=(3, 3, 131072), dtype=np.int32).transpose(1, 0, 2)
    blob = tc.encode(x, table3, chunk_size=1 << 16)
    assert tc.read_header(blob).num_chunks == 18
    assert blob == tc.encode(x, table3, chunk_size=1 << 16, threads=1)
    np.testing.assert_array_equal(tc.decode(blob, table3), x)
    np.testing.assert_array_equal(tc.decode(blob, table3, threads=1), x)


def test_zero_dim_arrays_keep_their_shape(table1: tc.CdfTable) -> None:
    """A 0-d array is one symbol of shape (); decoding gives back shape (), not (1,)."""
    for x in (np.array(2, dtype=np.int8), np.array(-3, dtype=np.int64), np.int16(1), 7):
        blob = tc.encode(x, table1)
        assert tc.read_header(blob).shape == ()
        out = tc.decode(blob, table1)
        assert out.shape == () and out.dtype == np.asarray(x).dtype and int(out) == int(x)


def test_zero_dim_array_with_an_index(table3: tc.CdfTable) -> None:
    x = np.array(-1, dtype=np.int32)
    index = np.array(1, dtype=np.int32)
    blob = tc.encode(x, table3, index)
    out = tc.decode(blob, table3, index)
    assert out.shape == () and int(out) == -1


def test_concurrent_use_of_a_fresh_table() -> None:
    """Decoder tables are built on first use; many threads doing that at once agree."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(4)
    pmf = rng.random((5, 300))
    x = rng.integers(-5, 310, size=(40, 5, 50)).astype(np.int32)
    blob = tc.encode(
        x, tc.CdfTable.from_pmf(pmf, np.zeros(5, np.int64), precision=12), chunk_size=500
    )
    for _ in range(3):
        fresh = tc.CdfTable.from_pmf(pmf, np.zeros(5, np.int64), precision=12)
        with ThreadPoolExecutor(max_workers=4) as pool:
            outs = list(pool.map(lambda _, t=fresh: tc.decode(blob, t), range(8)))
        for out in outs:
            np.testing.assert_array_equal(out, x)
        with ThreadPoolExecutor(max_workers=4) as pool:
            blobs = list(pool.map(lambda _, t=fresh: tc.encode(x, t, chunk_size=500), range(8)))
        assert all(b == blob for b in blobs)


def test_decode_into_caller_buffer():
    table = tc.CdfTable.from_pmf(np.ones((3, 8)), np.full(3, -4))
    x = np.random.default_rng(7).integers(-9, 9, size=(5, 3, 4)).astype(np.int32)
    blob = tc.encode(x, table)
    buf = np.full(x.shape, 123, dtype=np.int32)
    got = tc.decode(blob, table, out=buf)
    assert got is buf or np.shares_memory(got, buf)
    np.testing.assert_array_equal(buf, x)
    # Validation happens before the buffer is touched.
    bad = bytearray(blob)
    bad[-8] ^= 1
    buf[...] = 123
    with pytest.raises(tc.ChecksumError):
        tc.decode(bytes(bad), table, out=buf)
    assert (buf == 123).all()
    for wrong in (np.empty((5, 3, 5), np.int32), np.empty(x.shape, np.int64),
                  np.empty((5, 3, 8), np.int32)[:, :, ::2]):
        with pytest.raises(tc.TaskcodecError):
            tc.decode(blob, table, out=wrong)
    ro = np.empty(x.shape, np.int32)
    ro.flags.writeable = False
    with pytest.raises(tc.TaskcodecError):
        tc.decode(blob, table, out=ro)


# ----------------------------------------------------------------------------- decode's output


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"])
def test_decode_returns_the_dtype_the_frame_records(table1: tc.CdfTable, dtype: str) -> None:
    x = (np.arange(24).reshape(2, 3, 4) % 6).astype(dtype)
    blob = tc.encode(x, table1)
    assert tc.read_header(blob).dtype == dtype
    out = tc.decode(blob, table1)
    assert out.dtype == np.dtype(dtype) and out.shape == x.shape
    np.testing.assert_array_equal(out, x)
    buf = np.zeros(x.shape, dtype)  # an output of the frame's dtype works too
    assert tc.decode(blob, table1, out=buf) is buf
    np.testing.assert_array_equal(buf, x)


def test_int64_frame_decodes_to_int64_with_values_beyond_int16(table3: tc.CdfTable) -> None:
    x = np.array([[[-(2**31), 2**31 - 1, 40000, -1]] * 3] * 2, dtype=np.int64)
    out = tc.decode(tc.encode(x, table3), table3)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, x)


def test_decode_into_a_torch_cpu_tensor(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    torch = require("torch")
    blob = tc.encode(symbols, table3)
    out = torch.full(symbols.shape, 99, dtype=torch.int32)
    got = tc.decode(blob, table3, out=out)
    assert got is out  # decoded into the tensor's own memory
    np.testing.assert_array_equal(out.numpy(), symbols)
    wide = symbols.astype(np.int64)
    blob64 = tc.encode(wide, table3)
    out64 = torch.zeros(symbols.shape, dtype=torch.int64)
    assert tc.decode(blob64, table3, out=out64) is out64
    np.testing.assert_array_equal(out64.numpy(), wide)
    with pytest.raises(tc.TaskcodecError):
        tc.decode(blob, table3, out=torch.zeros(symbols.shape, dtype=torch.int64))  # int32 frame
    with pytest.raises(tc.TaskcodecError):
        tc.decode(blob, table3, out=torch.zeros((2, 3), dtype=torch.int32))
    with pytest.raises(tc.TaskcodecError):
        tc.decode(blob, table3, out=[0] * symbols.size)


def test_default_chunk_size_of_host_arrays(table1: tc.CdfTable) -> None:
    assert tc.read_header(tc.encode(np.zeros(10, np.int32), table1)).chunk_size == 2**20
    assert tc.codec.DEFAULT_CHUNK_SIZE == 2**20 and tc.codec.DEFAULT_GPU_CHUNK_SIZE == 2**14
    # any chunk size decodes (it is a header field)
    x = np.arange(5000, dtype=np.int32) % 6 - 3
    np.testing.assert_array_equal(tc.decode(tc.encode(x, table1, chunk_size=2**14), table1), x)
