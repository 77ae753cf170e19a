"""The pure-Python reference decoder (written from docs/format.md) agrees with the C++ codec.

Small frames only: the reference decoder is slow on purpose.
"""

from __future__ import annotations

import math
import re
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from ci_support import missing

import taskcodec as tc

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_decoder as ref  # noqa: E402

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1
DOC = Path(__file__).resolve().parents[2] / "docs" / "format.md"


def _random_pmf(rng: np.random.Generator, rows: int, k: int) -> np.ndarray:
    return rng.dirichlet(np.full(k, 0.7), size=rows) + rng.uniform(0, 1e-3, size=(rows, k))


def _table(rng, rows, k, precision, offsets=None, **kw) -> tc.CdfTable:
    if offsets is None:
        offsets = rng.integers(-k, 1, size=rows)
    return tc.CdfTable.from_pmf(_random_pmf(rng, rows, k), offsets, precision, **kw)


def _values_for(rng, table: tc.CdfTable, rows: np.ndarray, escape_rate: float) -> np.ndarray:
    """Mostly in-range values of each symbol's row, some escapes near and far."""
    off = table.offsets.astype(np.int64)[rows]
    k = table.lengths.astype(np.int64)[rows]
    v = off + (rng.random(rows.shape) * k).astype(np.int64)
    esc = rng.random(rows.shape) < escape_rate
    near = off + k + rng.integers(0, 40, size=rows.shape) * rng.choice([1, -1], size=rows.shape)
    far = rng.integers(I32_MIN, I32_MAX, size=rows.shape, endpoint=True)
    wild = np.where(rng.random(rows.shape) < 0.5, near, far)
    return np.clip(np.where(esc, wild, v), I32_MIN, I32_MAX)


def _channel_rows(shape, axis):
    axis = axis % len(shape)
    view = [1] * len(shape)
    view[axis] = shape[axis]
    return np.broadcast_to(np.arange(shape[axis]).reshape(view), shape)


# (name, shape, table rows, K, precision, row spec, lanes, chunk_size, checksum, dtype, escape rate)
CASES = [
    ("single-1d-lanes1-p8", (37,), 1, 6, 8, None, 1, 1 << 20, True, np.int8, 0.1),
    ("axis0-2d-lanes4-p12", (3, 21), 3, 9, 12, 0, 4, 16, True, np.int32, 0.1),
    ("axis1-4d-lanes32-p14", (2, 3, 4, 5), 3, 12, 14, 1, 32, 17, True, np.int16, 0.1),
    ("axislast-p16-nocrc", (6, 7), 7, 20, 16, -1, 4, 9, False, np.int64, 0.15),
    ("index-lanes4-p12", (40,), 5, 10, 12, "index", 4, 13, True, np.int32, 0.1),
    ("index-2d-lanes32-p14", (4, 9), 4, 30, 14, "index", 32, 7, False, np.int32, 0.2),
    ("chunk1-lanes4-p8", (11,), 1, 3, 8, None, 4, 1, True, np.int32, 0.3),
    ("uint8-p8-lanes1", (3, 8), 3, 16, 8, 0, 1, 10, True, np.uint8, 0.0),
    ("uint32-wide-escapes", (50,), 1, 5, 12, None, 4, 20, True, np.uint32, 0.0),
    ("wide-slots-p12", (2, 30), 2, 300, 12, 0, 4, 25, True, np.int32, 0.05),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_reference_decodes_like_the_codec(case):
    name, shape, rows, k, precision, spec, lanes, chunk_size, checksum, dtype, escape_rate = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    table = _table(rng, rows, k, precision)
    if spec == "index":
        index = rng.integers(0, rows, size=shape)
        rowmap = index
    elif spec is None:
        index = None
        rowmap = np.zeros(shape, dtype=np.int64)
    else:
        index = None
        rowmap = _channel_rows(shape, spec)
    values = _values_for(rng, table, rowmap, escape_rate)
    info = np.iinfo(dtype)
    if dtype == np.uint32:  # escapes far above the row, up to INT32_MAX
        values = rng.integers(0, I32_MAX, size=shape, endpoint=True)
        values[0] = I32_MAX
    values = np.clip(values, max(info.min, I32_MIN), min(info.max, I32_MAX)).astype(dtype)
    kwargs = {} if spec in (None, "index") else {"channel_axis": spec}
    blob = tc.encode(values, table, index, lanes=lanes, chunk_size=chunk_size, checksum=checksum,
                     meta=b"m" * (len(name) % 5), **kwargs)

    got_shape, got = ref.decode(blob, table.to_bytes(), None if index is None else index.ravel())
    expect = tc.decode(blob, table, index)
    assert got_shape == expect.shape == values.shape
    assert got == expect.ravel().tolist() == values.astype(np.int64).ravel().tolist()

    # The header as the reference reads it equals the codec's view of it.
    frame = ref.parse_frame(blob)
    hdr = tc.read_header(blob)
    assert (frame.lanes, frame.chunk_size, frame.precision) == (lanes, chunk_size, precision)
    assert frame.num_chunks == hdr.num_chunks == -(-values.size // chunk_size)
    assert frame.meta == hdr.meta and frame.shape == hdr.shape
    assert frame.checksum == hdr.checksum == checksum
    # Pure-Python CRC32C and FNV-1a reproduce what the codec wrote.
    if checksum:
        assert frame.stored_crc == ref.crc32c(blob[:-4]) == int.from_bytes(blob[-4:], "little")
    assert frame.fingerprint == ref.fnv1a64(table.to_bytes()) == table.fingerprint


@pytest.mark.parametrize("precision", [1, 8, 12, 14, 16])
@pytest.mark.parametrize("lanes", [1, 4, 32])
def test_precisions_and_lanes(precision, lanes):
    rng = np.random.default_rng(precision * 100 + lanes)
    k = min(5, (1 << precision) - 1)
    table = _table(rng, 2, k, precision)
    rowmap = _channel_rows((2, 45), 0)
    values = _values_for(rng, table, rowmap, 0.2).astype(np.int32)
    blob = tc.encode(values, table, channel_axis=0, lanes=lanes, chunk_size=32)
    shape, got = ref.decode(blob, ref.parse_table(table.to_bytes()))
    assert shape == values.shape
    assert got == tc.decode(blob, table).ravel().tolist() == values.ravel().tolist()


def test_int32_extremes_escape_with_32_bit_distances():
    # d = 2^32 - 2 both ways: the largest escape the format can carry.
    table = tc.CdfTable.from_freqs([[3, 1], [3, 1]], [I32_MAX, I32_MIN], precision=2)
    values = np.array([[I32_MIN, I32_MAX, I32_MIN + 1, I32_MAX, 0, -1],
                       [I32_MAX, I32_MIN, I32_MAX - 1, I32_MIN, 0, 1]], dtype=np.int64)
    for lanes in (1, 4):
        blob = tc.encode(values, table, channel_axis=0, lanes=lanes, chunk_size=5)
        shape, got = ref.decode(blob, table.to_bytes())
        assert got == tc.decode(blob, table).ravel().tolist() == values.ravel().tolist()


def test_zero_symbols():
    table = tc.CdfTable.from_pmf([[1.0, 3.0]], [0], precision=4)
    empty = np.zeros((0, 3), dtype=np.int32)
    blob = tc.encode(empty, table)
    assert ref.decode(blob, table.to_bytes()) == ((0, 3), [])
    assert ref.parse_frame(blob).num_chunks == 0


def test_reference_table_builder_matches_from_pmf():
    rng = np.random.default_rng(2024)
    checked = 0
    for trial in range(120):
        precision = int(rng.choice([1, 2, 4, 8, 12, 14, 16]))
        kmax = min(40, (1 << precision) - 1)
        k = int(rng.integers(1, kmax + 1))
        rows = int(rng.integers(1, 4))
        style = trial % 6
        if style == 0:
            pmf = rng.random((rows, k))
        elif style == 1:
            pmf = _random_pmf(rng, rows, k)
        elif style == 2:  # huge dynamic range, zeros, tiny and subnormal weights
            pmf = 10.0 ** rng.uniform(-310, 300, size=(rows, k))
            pmf[rng.random((rows, k)) < 0.3] = 0.0
        elif style == 3:  # integer counts, many ties in the remainders
            pmf = rng.integers(0, 4, size=(rows, k)).astype(np.float64)
        elif style == 4:  # one dominant symbol
            pmf = np.full((rows, k), 1e-9)
            pmf[:, 0] = 1.0
        else:  # all-zero rows
            pmf = np.zeros((rows, k))
        escape = None
        if trial % 3 == 1:
            escape = rng.random(rows) * pmf.max(initial=1.0) * rng.choice([0.0, 1e-6, 0.1, 2.0])
        lengths = None
        if trial % 4 == 3:
            lengths = rng.integers(1, k + 1, size=rows)
        offsets = rng.integers(-100, 100, size=rows)
        trim = trial % 2 == 0
        got = tc.CdfTable.from_pmf(pmf, offsets, precision, lengths=lengths, escape=escape,
                                   trim_tails=trim)
        mine = ref.build_table(pmf.tolist(), offsets.tolist(), precision,
                               None if lengths is None else lengths.tolist(),
                               None if escape is None else escape.tolist(), trim_tails=trim)
        width = got.freqs.shape[1]
        padded = [list(r) + [0] * (width - len(r)) for r in mine.freqs]
        assert padded == got.freqs.tolist(), (trial, pmf, escape, lengths)
        assert mine.serialized == got.to_bytes()
        assert mine.fingerprint == got.fingerprint
        checked += 1
    assert checked == 120


def test_exponent_is_frexp():
    rng = np.random.default_rng(5)
    for v in list(10.0 ** rng.uniform(-320, 308, size=300)) + [5e-324, 1.0, 2.0, 0.5, 3.0]:
        v = float(v)
        if v > 0:
            assert ref._exponent(v) == math.frexp(v)[1]


def test_check_values():
    assert ref.crc32c(b"123456789") == 0xE3069283
    assert ref.crc32c(b"") == 0
    assert ref.fnv1a64(b"") == 0xCBF29CE484222325
    assert ref.fnv1a64(b"a") == 0xAF63DC4C8601EC8C


def _doc_example_bytes() -> bytes:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("### 20.2 The frame", 1)[1].split("### 20.3", 1)[0]
    block = section.split("```", 4)[3]  # the second fenced block: the annotated bytes
    out = bytearray()
    for line in block.splitlines():
        m = re.match(r"\s*(\d+)  ((?:[0-9a-f]{2} )*[0-9a-f]{2})\s", line + " ")
        if m:
            assert int(m.group(1)) == len(out), line
            out += bytes.fromhex(m.group(2))
    return bytes(out)


def test_worked_example_in_the_document():
    if not DOC.exists():
        missing("docs/format.md is not next to the tests", "run the tests from a source checkout")
    table = tc.CdfTable.from_pmf([[1, 2, 1]], offsets=[-1], precision=4)
    blob = tc.encode(np.array([1, -3, 0, 459988, -1], dtype=np.int32), table,
                     lanes=2, chunk_size=4, meta=b"qp")
    assert _doc_example_bytes() == blob
    assert table.to_bytes().hex() == "544344540104000001000000ffffffff030000000400070004000100"
    assert table.fingerprint == 0xEC02CCC0FE6815D5
    assert ref.crc32c(blob[:-4]) == 0x9F7BFD45
    assert ref.decode(blob, table.to_bytes()) == ((5,), [1, -3, 0, 459988, -1])


_ERRORS = {
    "corrupt_stream": tc.CorruptStreamError,
    "checksum_mismatch": tc.ChecksumError,
    "unsupported_version": tc.UnsupportedVersionError,
    "table_mismatch": tc.TableMismatchError,
    "limit_exceeded": tc.LimitExceededError,
    "invalid_argument": tc.TaskcodecError,
}


def _outcome_codec(blob, table):
    try:
        return ("ok", tc.decode(blob, table, max_symbols=4096).ravel().tolist())
    except tc.TaskcodecError as e:
        return ("error", type(e))


def _outcome_ref(blob, table_bytes):
    try:
        return ("ok", ref.decode(blob, table_bytes, max_symbols=4096)[1])
    except ref.FormatError as e:
        return ("error", _ERRORS[e.code])


@pytest.mark.parametrize("checksum", [False, True])
def test_damaged_frames_get_the_same_verdict(checksum):
    rng = np.random.default_rng(7 + checksum)
    table = _table(rng, 3, 6, 8)
    values = _values_for(rng, table, _channel_rows((3, 20), 0), 0.2).astype(np.int32)
    blob = tc.encode(values, table, channel_axis=0, lanes=4, chunk_size=16, checksum=checksum)
    tb = table.to_bytes()
    trials = [blob[:n] for n in range(0, len(blob), 7)]
    for t in range(250):
        b = bytearray(blob)
        at = int(rng.integers(0, len(b) - 4 * checksum))
        b[at] ^= 1 << int(rng.integers(0, 8))
        if checksum and t % 2:  # a valid trailer, so the checks after the CRC run
            b[-4:] = ref.crc32c(bytes(b[:-4])).to_bytes(4, "little")
        trials.append(bytes(b))
    for b in trials:
        assert _outcome_ref(b, tb) == _outcome_codec(b, table), b.hex()


def test_table_and_index_verdicts():
    rng = np.random.default_rng(11)
    table = _table(rng, 3, 6, 8)
    other = _table(rng, 3, 6, 8)
    index = rng.integers(0, 3, size=(4, 5))
    values = _values_for(rng, table, index, 0.1).astype(np.int32)
    blob = tc.encode(values, table, index, lanes=4, chunk_size=8)
    with pytest.raises(tc.TableMismatchError):
        tc.decode(blob, other, index)
    with pytest.raises(ref.FormatError) as e:
        ref.decode(blob, other.to_bytes(), index.ravel())
    assert e.value.code == "table_mismatch"
    with pytest.raises(ref.FormatError) as e:
        ref.decode(blob, table.to_bytes())  # the index is not in the frame
    assert e.value.code == "invalid_argument"
    with pytest.raises(ref.FormatError) as e:
        ref.decode(blob, table.to_bytes(), [3] * values.size)
    assert e.value.code == "invalid_argument"
    assert ref.decode(blob, table.to_bytes(), index.ravel())[1] == values.ravel().tolist()
