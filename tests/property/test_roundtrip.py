"""Round-trip properties: decode(encode(x)) == x, exactly, for every table, shape and option.

Hypothesis draws the structure (table, shape, dtype, coder options); the values are drawn by
numpy from a Hypothesis-chosen seed, mixing in-range symbols, escapes just outside a row's
range, escapes anywhere in int32, and the int32 extremes.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import taskcodec as tc

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
DTYPES = [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
LANES = [1 << i for i in range(9)]  # 1 .. 256
MAX_SYMBOLS = 3000

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@dataclasses.dataclass
class TableCase:
    table: tc.CdfTable
    pmf: np.ndarray
    lengths: np.ndarray
    escape: Optional[np.ndarray]


@st.composite
def tables(draw, rows: Optional[int] = None) -> TableCase:
    if rows is None:
        rows = draw(st.integers(1, 6))
    precision = draw(st.integers(1, 16))
    cap = (1 << precision) - 1  # K + 1 <= 2**precision
    max_k = min(cap, draw(st.sampled_from([4, 40, 300])))
    lengths = np.array(draw(st.lists(st.integers(1, max_k), min_size=rows, max_size=rows)))
    width = int(lengths.max())
    offsets = []
    for k in lengths.tolist():
        last = INT32_MAX - k + 1  # the highest offset whose row still fits in int32
        offsets.append(
            draw(
                st.one_of(
                    st.integers(-40, 40),
                    st.integers(INT32_MIN, last),
                    st.sampled_from([INT32_MIN, INT32_MIN + 1, last, last - 1]),
                )
            )
        )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape_kind = draw(st.sampled_from(["uniform", "peaked", "sparse", "heavy", "zeros"]))
    if shape_kind == "uniform":
        pmf = np.ones((rows, width))
    elif shape_kind == "peaked":
        i = np.arange(width)
        pmf = np.exp(
            -0.5
            * ((i[None] - rng.random((rows, 1)) * width) / (1 + rng.random((rows, 1)) * width / 4))
            ** 2
        )
    elif shape_kind == "sparse":
        pmf = rng.random((rows, width)) * (rng.random((rows, width)) < 0.2)
    elif shape_kind == "heavy":
        pmf = rng.pareto(0.7, size=(rows, width))
    else:
        pmf = np.zeros((rows, width))
    escape = None
    if draw(st.booleans()):
        escape = (
            rng.random(rows) * max(float(pmf.max()), 1.0) * draw(st.sampled_from([0.0, 0.01, 1.0]))
        )
    table = tc.CdfTable.from_pmf(
        pmf,
        np.array(offsets, dtype=np.int64),
        precision=precision,
        lengths=lengths,
        escape=escape,
        trim_tails=draw(st.booleans()),
    )
    return TableCase(table, pmf, lengths, escape)


def dtype_range(dtype) -> Tuple[int, int]:
    info = np.iinfo(dtype)
    return max(int(info.min), INT32_MIN), min(int(info.max), INT32_MAX)


def draw_values(
    rng: np.random.Generator, table: tc.CdfTable, rows: np.ndarray, dtype
) -> np.ndarray:
    """Values for symbols whose table rows are `rows`, valid for `dtype` and for int32."""
    off = table.offsets.astype(np.int64)[rows]
    k = table.lengths.astype(np.int64)[rows]
    n = rows.shape
    pick = rng.random(n)
    inside = off + (rng.random(n) * k).astype(np.int64)
    near = np.where(
        rng.random(n) < 0.5, off - 1 - rng.geometric(0.3, n), off + k - 1 + rng.geometric(0.3, n)
    )
    far = rng.integers(INT32_MIN, INT32_MAX, size=n, endpoint=True)
    extreme = np.where(rng.random(n) < 0.5, INT32_MIN, INT32_MAX)
    v = np.where(
        pick < 0.65, inside, np.where(pick < 0.85, near, np.where(pick < 0.95, far, extreme))
    )
    lo, hi = dtype_range(dtype)
    return np.clip(v, lo, hi).astype(dtype)


@st.composite
def shapes(draw, ndim_min: int = 1) -> Tuple[int, ...]:
    kind = draw(st.sampled_from(["small", "small", "small", "one", "long", "empty"]))
    if kind == "one":
        return (1,) * draw(st.integers(ndim_min, 4))
    if kind == "long":
        return (draw(st.integers(1, MAX_SYMBOLS)),)
    ndim = draw(st.integers(ndim_min, 4))
    lo = 0 if kind == "empty" else 1
    dims = draw(st.lists(st.integers(lo, 7), min_size=ndim, max_size=ndim))
    if kind == "empty":
        dims[draw(st.integers(0, ndim - 1))] = 0
    return tuple(dims)


coder_options = st.fixed_dictionaries(
    {
        "lanes": st.sampled_from(LANES),
        "chunk_size": st.one_of(st.integers(1, 64), st.integers(65, 4000), st.just(1 << 20)),
        "checksum": st.booleans(),
        "meta": st.binary(max_size=48),
    }
)


@st.composite
def problems(draw):
    mode = draw(st.sampled_from(["axis", "axis", "index", "single"]))
    shape = draw(shapes())
    ndim = len(shape)
    axis = None
    if mode == "axis":
        rows = draw(st.integers(1, 6))
        axis = draw(st.integers(0, ndim - 1))
        shape = shape[:axis] + (rows,) + shape[axis + 1 :]
        if int(np.prod(shape)) > MAX_SYMBOLS:
            shape = tuple(1 if i != axis else rows for i in range(ndim))
        case = draw(tables(rows=rows))
    elif mode == "single":
        case = draw(tables(rows=1))
    else:
        case = draw(tables())
    dtype = draw(st.sampled_from(DTYPES))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    table = case.table
    index = None
    if mode == "index":
        index_dtype = draw(st.sampled_from([np.int32, np.int64, np.uint8, np.int16]))
        index = rng.integers(0, table.num_rows, size=shape).astype(index_dtype)
        rows_of = index.astype(np.int64)
    elif mode == "axis":
        bshape = [1] * ndim
        bshape[axis] = shape[axis]
        rows_of = np.broadcast_to(np.arange(shape[axis]).reshape(bshape), shape)
    else:
        rows_of = np.zeros(shape, dtype=np.int64)
    symbols = draw_values(rng, table, rows_of, dtype)
    channel_axis = axis
    if axis is not None and draw(st.booleans()):
        channel_axis = axis - ndim  # the same axis, counted from the end
    return table, symbols, index, channel_axis


@settings(max_examples=1000, **SETTINGS)
@given(problems(), coder_options, st.sampled_from([0, 1, 2]), st.sampled_from([0, 1, 2]))
def test_roundtrip(problem, options, enc_threads: int, dec_threads: int) -> None:
    table, symbols, index, channel_axis = problem
    blob = tc.encode(
        symbols, table, index, channel_axis=channel_axis, threads=enc_threads, **options
    )
    out = tc.decode(blob, table, index, threads=dec_threads)
    assert out.dtype == symbols.dtype  # the dtype the frame records
    assert out.shape == symbols.shape
    np.testing.assert_array_equal(out, symbols.astype(np.int32))

    info = tc.read_header(blob)
    assert info.version == 1 and info.kind == 1
    assert info.dtype == np.dtype(symbols.dtype).name
    assert info.shape == symbols.shape
    assert info.num_symbols == symbols.size
    assert info.num_chunks == -(-symbols.size // options["chunk_size"])
    assert info.lanes == options["lanes"] and info.chunk_size == options["chunk_size"]
    assert info.checksum is options["checksum"]
    assert info.meta == options["meta"]
    assert info.fingerprint == table.fingerprint and info.precision == table.precision
    assert info.uses_index is (index is not None)
    if index is None and table.num_rows > 1:
        assert info.channel_axis == channel_axis % symbols.ndim
    assert info.frame_length == len(blob)

    # Threads never change the bytes.
    other = 2 if enc_threads != 2 else 1
    assert (
        tc.encode(symbols, table, index, channel_axis=channel_axis, threads=other, **options)
        == blob
    )


@settings(max_examples=150, **SETTINGS)
@given(tables(), st.integers(0, 2**32 - 1), st.sampled_from(DTYPES), st.sampled_from(LANES))
def test_roundtrip_single_symbol(case: TableCase, seed: int, dtype, lanes: int) -> None:
    """One symbol, coded through a 1-element index (any table) or a single row."""
    table = case.table
    rng = np.random.default_rng(seed)
    row = rng.integers(0, table.num_rows, size=(1,))
    x = draw_values(rng, table, row, dtype)
    blob = tc.encode(x, table, row, lanes=lanes)
    np.testing.assert_array_equal(tc.decode(blob, table, row), x.astype(np.int32))


@settings(max_examples=60, **SETTINGS)
@given(tables(rows=1), st.integers(0, 2**32 - 1), st.sampled_from(DTYPES), st.booleans())
def test_roundtrip_zero_dim(case: TableCase, seed: int, dtype, use_index: bool) -> None:
    """A 0-d array decodes to a 0-d array of its dtype with the same value."""
    table = case.table
    rng = np.random.default_rng(seed)
    x = draw_values(rng, table, np.zeros((), dtype=np.int64), dtype)
    index = np.zeros((), np.int32) if use_index else None
    out = tc.decode(tc.encode(x, table, index), table, index)
    assert out.shape == () and out.dtype == x.dtype
    assert int(out) == int(x)


@settings(max_examples=100, **SETTINGS)
@given(
    tables(rows=1),
    st.integers(1, 500),
    st.integers(0, 2**32 - 1),
    st.sampled_from([np.int64, np.uint32, np.uint64]),
    st.sampled_from([0, 1, 2]),
    st.integers(1, 64),
)
def test_values_outside_int32_raise(
    case: TableCase, n: int, seed: int, dtype, threads: int, chunk_size: int
) -> None:
    rng = np.random.default_rng(seed)
    table = case.table
    x = draw_values(rng, table, np.zeros(n, dtype=np.int64), dtype)
    info = np.iinfo(dtype)
    bad = (
        [2**31, int(info.max)]
        if dtype != np.int64
        else [2**31, -(2**31) - 1, int(info.max), int(info.min)]
    )
    x[int(rng.integers(0, n))] = bad[int(rng.integers(0, len(bad)))]
    with pytest.raises(tc.TaskcodecError, match="int32"):
        tc.encode(x, table, threads=threads, chunk_size=chunk_size)


@settings(max_examples=100, **SETTINGS)
@given(st.integers(1, 6), st.integers(1, 16), st.integers(0, 2**32 - 1), st.booleans())
def test_from_pmf_invariants(rows: int, precision: int, seed: int, trim: bool) -> None:
    rng = np.random.default_rng(seed)
    cap = min((1 << precision) - 1, 500)
    lengths = rng.integers(1, cap + 1, size=rows)
    offsets = rng.integers(-1000, 1000, size=rows)
    pmf = rng.random((rows, int(lengths.max()))) ** rng.integers(1, 20)
    table = tc.CdfTable.from_pmf(
        pmf, offsets, precision=precision, lengths=lengths, trim_tails=trim
    )
    f = table.freqs.astype(np.int64)
    for r in range(rows):
        k = int(table.lengths[r])
        lo = int(table.offsets[r]) - int(offsets[r])
        assert 1 <= k and 0 <= lo and lo + k <= lengths[r]  # a sub-range of the given row
        if not trim:
            assert (k, lo) == (lengths[r], 0)
        assert f[r, : k + 1].sum() == 1 << precision
        assert f[r, : k + 1].min() >= 1
        assert not f[r, k + 1 :].any()
    assert tc.CdfTable.from_bytes(table.to_bytes()) == table


@st.composite
def freq_tables(draw) -> tc.CdfTable:
    """Integer tables drawn directly, down to the extremes: one symbol holding almost every
    slot, many symbols of frequency 1, the escape as likely as everything else together."""
    precision = draw(st.integers(1, 16))
    rows = draw(st.integers(1, 4))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    cap = min((1 << precision) - 1, 60)
    lengths = rng.integers(1, cap + 1, size=rows)
    concentration = draw(st.sampled_from([0.01, 0.3, 1.0, 50.0]))
    freqs = np.zeros((rows, int(lengths.max()) + 1), dtype=np.int64)
    for r, k in enumerate(lengths.tolist()):
        spare = (1 << precision) - (k + 1)
        share = rng.dirichlet(np.full(k + 1, concentration))
        freqs[r, : k + 1] = 1 + rng.multinomial(spare, share)
    offsets = rng.integers(-100, 100, size=rows)
    return tc.CdfTable.from_freqs(freqs, offsets, precision, lengths=lengths)


@settings(max_examples=400, **SETTINGS)
@given(
    freq_tables(),
    st.integers(0, 2**32 - 1),
    st.sampled_from(LANES),
    st.integers(1, 300),
    st.booleans(),
)
def test_roundtrip_extreme_frequencies(
    table: tc.CdfTable, seed: int, lanes: int, chunk_size: int, rare_first: bool
) -> None:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, table.num_rows, size=int(rng.integers(1, 1500)))
    x = draw_values(rng, table, rows, np.int32)
    if rare_first:  # mostly the rarest in-range symbol of each row
        f = table.freqs.astype(np.int64)
        rare = np.array(
            [int(np.argmin(f[r, : int(table.lengths[r])])) for r in range(table.num_rows)]
        )
        pick = rng.random(rows.shape) < 0.8
        x = np.where(pick, table.offsets[rows] + rare[rows], x).astype(np.int32)
    blob = tc.encode(x, table, rows, lanes=lanes, chunk_size=chunk_size)
    np.testing.assert_array_equal(tc.decode(blob, table, rows, threads=2), x)
