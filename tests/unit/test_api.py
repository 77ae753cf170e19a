"""The public contract of the codec layer (DESIGN.md, "Public contract") and its input checks."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

import taskcodec as tc
from taskcodec import _core


def roundtrip(x, table, index=None, **kwargs) -> np.ndarray:
    """Encode and decode; the result has the dtype the frame records (the input's)."""
    blob = tc.encode(x, table, index, **kwargs)
    out = tc.decode(blob, table, index)
    assert out.dtype == np.dtype(tc.read_header(blob).dtype)
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
