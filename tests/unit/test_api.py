"""The public contract of the codec layer (DESIGN.md, "Public contract") and its input checks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import taskcodec as tc
from taskcodec import _core


@pytest.fixture(scope="module")
def table3() -> tc.CdfTable:
    pmf = np.array([[1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    return tc.CdfTable.from_pmf(pmf, [0, -2, 5], precision=8)


@pytest.fixture(scope="module")
def table1() -> tc.CdfTable:
    return tc.CdfTable.from_pmf(np.ones((1, 6)), [-3], precision=10)


@pytest.fixture(scope="module")
def symbols() -> np.ndarray:
    return (np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4) % 11) - 4


def roundtrip(x, table, index=None, **kwargs) -> np.ndarray:
    out = tc.decode(tc.encode(x, table, index, **kwargs), table, index)
    assert out.dtype == np.int32
    return out


# ----------------------------------------------------------------------------- names


def test_version() -> None:
    assert isinstance(tc.__version__, str)
    assert tc.__version__ == _core.__version__
    parts = tc.__version__.split(".")
    assert len(parts) == 3 and all(p.isdigit() for p in parts)


def test_has_cuda_is_a_bool() -> None:
    assert type(tc.has_cuda()) is bool
    assert type(_core.has_cuda) is bool


@pytest.mark.parametrize(
    "name",
    [
        "__version__",
        "has_cuda",
        "TaskcodecError",
        "CorruptStreamError",
        "ChecksumError",
        "TableMismatchError",
        "UnsupportedVersionError",
        "LimitExceededError",
        "CdfTable",
        "encode",
        "decode",
        "read_header",
    ],
)
def test_contract_names_exist_and_are_exported(name: str) -> None:
    assert hasattr(tc, name)
    assert name in tc.__all__


def test_every_exported_name_exists() -> None:
    for name in tc.__all__:
        assert hasattr(tc, name), name


def test_error_tree() -> None:
    assert issubclass(tc.TaskcodecError, ValueError)
    for cls in (tc.CorruptStreamError, tc.TableMismatchError, tc.LimitExceededError):
        assert issubclass(cls, tc.TaskcodecError)
    for cls in (tc.ChecksumError, tc.UnsupportedVersionError):
        assert issubclass(cls, tc.CorruptStreamError)
    assert not issubclass(tc.TableMismatchError, tc.CorruptStreamError)
    assert not issubclass(tc.LimitExceededError, tc.CorruptStreamError)
    assert not issubclass(tc.ChecksumError, tc.UnsupportedVersionError)
    assert not issubclass(tc.UnsupportedVersionError, tc.ChecksumError)
    # One class per name: the top-level names are the classes in taskcodec.errors.
    from taskcodec import errors

    assert tc.ChecksumError is errors.ChecksumError
    assert tc.TaskcodecError is errors.TaskcodecError


def test_errors_raised_by_the_core_are_the_python_classes(
    table3: tc.CdfTable, symbols: np.ndarray
) -> None:
    blob = bytearray(tc.encode(symbols, table3))
    blob[-1] ^= 1
    with pytest.raises(tc.ChecksumError) as err:
        tc.decode(bytes(blob), table3)
    assert type(err.value) is tc.ChecksumError
    assert isinstance(err.value, ValueError)


def test_status_names_are_stable() -> None:
    names = [
        "ok",
        "invalid_argument",
        "corrupt_stream",
        "checksum_mismatch",
        "table_mismatch",
        "unsupported_version",
        "limit_exceeded",
        "buffer_too_small",
        "out_of_memory",
        "internal",
    ]
    assert [_core.status_name(i) for i in range(len(names))] == names


def test_encode_decode_signatures() -> None:
    enc = inspect.signature(tc.encode)
    assert list(enc.parameters)[:3] == ["symbols", "table", "index"]
    assert enc.parameters["index"].default is None
    assert enc.parameters["channel_axis"].default == 1
    for name in ("channel_axis", "lanes", "chunk_size", "checksum", "threads", "meta"):
        assert enc.parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert enc.parameters["checksum"].default is True
    dec = inspect.signature(tc.decode)
    assert list(dec.parameters)[:3] == ["blob", "table", "index"]
    assert dec.parameters["max_symbols"].kind is inspect.Parameter.KEYWORD_ONLY
    assert dec.parameters["max_symbols"].default == tc.DEFAULT_MAX_SYMBOLS == 2**28


def test_cdftable_api(table3: tc.CdfTable) -> None:
    assert isinstance(table3.fingerprint, int) and 0 <= table3.fingerprint < 2**64
    assert table3.num_rows == 3 and table3.precision == 8
    assert table3.freqs.dtype == np.uint32 and table3.freqs.shape == (3, 5)
    assert table3.offsets.tolist() == [0, -2, 5]
    assert table3.lengths.tolist() == [4, 4, 4]
    assert isinstance(table3.to_bytes(), bytes)
    assert "CdfTable(" in repr(table3) and f"{table3.fingerprint:016x}" in repr(table3)
    with pytest.raises(TypeError):
        tc.CdfTable(object())


def test_basic_roundtrip_and_header(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    blob = tc.encode(symbols, table3, meta=b"q=0.5")
    assert isinstance(blob, bytes) and blob[:4] == b"TCDC"
    out = tc.decode(blob, table3)
    np.testing.assert_array_equal(out, symbols)
    info = tc.read_header(blob)
    assert isinstance(info, tc.FrameInfo)
    assert info.shape == (2, 3, 4) and info.channel_axis == 1 and not info.uses_index
    assert info.dtype == "int32" and info.meta == b"q=0.5" and info.checksum
    assert info.fingerprint == table3.fingerprint and info.precision == 8
    assert info.lanes == tc.codec.DEFAULT_LANES == 32
    assert info.frame_length == len(blob)


def test_single_row_table_codes_any_shape(table1: tc.CdfTable) -> None:
    x = np.arange(-5, 7, dtype=np.int32).reshape(3, 2, 2)
    np.testing.assert_array_equal(roundtrip(x, table1), x)
    np.testing.assert_array_equal(roundtrip(x, table1, channel_axis=None), x)
    assert tc.read_header(tc.encode(x, table1)).channel_axis is None


# ----------------------------------------------------------------------------- wrong inputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.complex64])
def test_float_symbols_are_rejected(table3: tc.CdfTable, symbols: np.ndarray, dtype) -> None:
    with pytest.raises(tc.TaskcodecError, match="integer"):
        tc.encode(symbols.astype(dtype), table3)


def test_bool_symbols_are_rejected(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    with pytest.raises(tc.TaskcodecError, match="integer"):
        tc.encode(symbols > 0, table3)


@pytest.mark.parametrize("bad", [np.array(["a", "b", "c"]), np.array([1, None, 3], dtype=object)])
def test_non_numeric_symbols_are_rejected(table1: tc.CdfTable, bad) -> None:
    with pytest.raises(tc.TaskcodecError):
        tc.encode(bad, table1)


def test_wrong_table_type_is_rejected(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    blob = tc.encode(symbols, table3)
    for bad in (None, {}, table3.to_bytes(), table3.freqs, table3._t):
        with pytest.raises(tc.TaskcodecError, match="CdfTable"):
            tc.encode(symbols, bad)  # type: ignore[arg-type]
        with pytest.raises(tc.TaskcodecError, match="CdfTable"):
            tc.decode(blob, bad)  # type: ignore[arg-type]


def test_channel_axis_mismatch(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    with pytest.raises(tc.TaskcodecError, match="channels"):
        tc.encode(symbols, table3, channel_axis=2)  # 4 channels, 3 rows
    with pytest.raises(tc.TaskcodecError, match="channels"):
        tc.encode(symbols, table3, channel_axis=0)
    with pytest.raises(tc.TaskcodecError, match="out of range"):
        tc.encode(symbols, table3, channel_axis=3)
    with pytest.raises(tc.TaskcodecError, match="out of range"):
        tc.encode(symbols, table3, channel_axis=-4)
    with pytest.raises(tc.TaskcodecError, match="channel_axis or index"):
        tc.encode(symbols, table3, channel_axis=None)
    with pytest.raises(tc.TaskcodecError):
        tc.encode(np.zeros(3, np.int32), table3, channel_axis=1)


def test_negative_channel_axis(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    a = tc.encode(symbols, table3, channel_axis=-2)
    assert a == tc.encode(symbols, table3, channel_axis=1)
    np.testing.assert_array_equal(tc.decode(a, table3), symbols)
    x = np.moveaxis(symbols, 1, -1)
    np.testing.assert_array_equal(roundtrip(x, table3, channel_axis=-1), x)


def test_index_out_of_range(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    for bad_row in (3, -1, 2**31 - 1, 2**40):
        index = np.zeros(symbols.shape, dtype=np.int64)
        index[1, 2, 3] = bad_row
        with pytest.raises(tc.TaskcodecError, match="index"):
            tc.encode(symbols, table3, index)
    good = np.ones(symbols.shape, dtype=np.int32)
    blob = tc.encode(symbols, table3, good)
    bad = good.copy()
    bad[0, 0, 0] = 3
    with pytest.raises(tc.TaskcodecError, match="index"):
        tc.decode(blob, table3, bad)


def test_index_wrong_shape_or_type(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    with pytest.raises(tc.TaskcodecError, match="shape"):
        tc.encode(symbols, table3, np.zeros((2, 3), np.int32))
    with pytest.raises(tc.TaskcodecError, match="shape"):
        tc.encode(symbols, table3, np.zeros(symbols.size, np.int32))
    with pytest.raises(tc.TaskcodecError, match="integers"):
        tc.encode(symbols, table3, np.zeros(symbols.shape, np.float64))
    with pytest.raises(tc.TaskcodecError, match="integers"):
        tc.encode(symbols, table3, np.zeros(symbols.shape, bool))


def test_index_must_match_how_the_frame_was_coded(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    index = np.full(symbols.shape, 2, np.int32)
    by_index = tc.encode(symbols, table3, index)
    by_axis = tc.encode(symbols, table3)
    with pytest.raises(tc.TaskcodecError, match="index"):
        tc.decode(by_index, table3)
    with pytest.raises(tc.TaskcodecError, match="index"):
        tc.decode(by_axis, table3, index)
    np.testing.assert_array_equal(tc.decode(by_index, table3, index), symbols)
    info = tc.read_header(by_index)
    assert info.uses_index and info.channel_axis is None


@pytest.mark.parametrize("blob", ["TCDC", "", 5, 3.0, None, [1, 2, 3], object()])
def test_non_bytes_frames_are_rejected(table3: tc.CdfTable, blob) -> None:
    with pytest.raises(tc.TaskcodecError):
        tc.decode(blob, table3)
    with pytest.raises(tc.TaskcodecError):
        tc.read_header(blob)


def test_str_frame_message(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    blob = tc.encode(symbols, table3)
    with pytest.raises(tc.TaskcodecError, match="str"):
        tc.decode(blob.decode("latin-1"), table3)


def test_non_contiguous_frame_buffer_is_rejected(table3: tc.CdfTable, symbols: np.ndarray) -> None:
    blob = tc.encode(symbols, table3)
    spread = np.zeros(2 * len(blob), np.uint8)
    spread[::2] = np.frombuffer(blob, np.uint8)
    with pytest.raises(tc.TaskcodecError, match="contiguous"):
        tc.decode(spread[::2], table3)
    np.testing.assert_array_equal(tc.decode(spread[::2].copy(), table3), symbols)


@pytest.mark.parametrize(
    "kind", ["bytes", "bytearray", "memoryview", "np.uint8", "np.uint8 2-D", "memoryview slice"]
)
def test_bytes_like_frames_are_accepted(
    table3: tc.CdfTable, symbols: np.ndarray, kind: str
) -> None:
    blob = tc.encode(symbols, table3)
    wrapped = {
        "bytes": lambda: blob,
        "bytearray": lambda: bytearray(blob),
        "memoryview": lambda: memoryview(blob),
        "np.uint8": lambda: np.frombuffer(blob, np.uint8),
        "np.uint8 2-D": lambda: np.frombuffer(blob, np.uint8).reshape(1, -1),
        "memoryview slice": lambda: memoryview(b"xx" + blob + b"yy")[2:-2],
    }[kind]()
    np.testing.assert_array_equal(tc.decode(wrapped, table3), symbols)
    assert tc.read_header(wrapped).frame_length == len(blob)


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
    torch = pytest.importorskip("torch")
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
    torch = pytest.importorskip("torch")
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
        assert out.shape == () and out.dtype == np.int32 and int(out) == int(x)


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
