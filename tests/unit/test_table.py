"""CdfTable: integer quantization, fingerprints, serialization and hostile table bytes."""

from __future__ import annotations

import copy
import inspect
import pickle
import struct

import numpy as np
import pytest

import taskcodec as tc

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def used_freqs(table: tc.CdfTable):
    """Each row's K + 1 frequencies (escape last), without the zero padding."""
    f, lengths = table.freqs, table.lengths
    return [f[r, : int(lengths[r]) + 1].astype(np.int64) for r in range(table.num_rows)]


def random_pmf_cases(seed: int = 0, count: int = 60):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        precision = int(rng.integers(1, 17))
        max_k = min((1 << precision) - 1, 300)
        rows = int(rng.integers(1, 6))
        lengths = rng.integers(1, max_k + 1, size=rows)
        width = int(lengths.max())
        kind = rng.integers(0, 4)
        if kind == 0:
            pmf = rng.random((rows, width))
        elif kind == 1:  # heavy-tailed, many tiny weights
            pmf = rng.pareto(0.5, size=(rows, width))
        elif kind == 2:  # sparse: most bins zero
            pmf = rng.random((rows, width)) * (rng.random((rows, width)) < 0.1)
        else:  # peaked
            i = np.arange(width)
            pmf = np.exp(-0.5 * ((i - width / 2) / max(width / 20, 0.5)) ** 2)[None].repeat(rows, 0)
        escape = rng.random(rows) * pmf.max() if rng.random() < 0.5 else None
        offsets = rng.integers(-1000, 1000, size=rows)
        yield pmf, offsets, precision, lengths, escape


def integer_weights(pmf_row: np.ndarray, escape: float, precision: int, trim: bool):
    """Steps 1-2 of docs/format.md section 14, plus tail trimming: (bins dropped at the low
    end, integer weights of the kept bins with the escape last). Exact integer arithmetic."""
    k = len(pmf_row)
    mx = max([escape] + pmf_row.tolist())
    if mx == 0:
        return 0, [1] * (k + 1)
    e = int(np.frexp(mx)[1])
    w = [int(np.floor(np.ldexp(v, 40 - e))) for v in pmf_row.tolist()]
    w.append(int(np.floor(np.ldexp(escape, 40 - e))))
    lo, hi = 0, k
    if trim:
        total = sum(w)
        moved = 0
        while hi - lo > 1 and w[lo] << (precision + 3) < total:
            moved += w[lo]
            lo += 1
        while hi - lo > 1 and w[hi - 1] << (precision + 3) < total:
            hi -= 1
            moved += w[hi]
        w = w[lo:hi] + [w[k] + moved]
    return lo, w


def quantize(w, precision: int):
    """Steps 3-6: largest remainder, ties to the lower index."""
    m = 1 << precision
    spare, total = m - len(w), sum(w)
    f = [1 + wi * spare // total for wi in w]
    rem = [wi * spare % total for wi in w]
    for i in sorted(range(len(w)), key=lambda i: (-rem[i], i))[: m - sum(f)]:
        f[i] += 1
    return f


def spec_rows(pmf, lengths, escape, precision: int, trim: bool):
    """Per row: (offset shift, integer weights, frequencies) as the format document builds them."""
    out = []
    for r in range(pmf.shape[0]):
        k = int(lengths[r])
        esc = 0.0 if escape is None else float(escape[r])
        lo, w = integer_weights(pmf[r, :k], esc, precision, trim)
        out.append((lo, w, quantize(w, precision)))
    return out


def build(pmf, offsets, precision, lengths, escape, trim: bool) -> tc.CdfTable:
    return tc.CdfTable.from_pmf(
        pmf, offsets, precision, lengths=lengths, escape=escape, trim_tails=trim
    )


TRIM = pytest.mark.parametrize("trim", [False, True], ids=["rows_as_given", "trim_tails"])


# ----------------------------------------------------------------------------- from_pmf


@TRIM
def test_from_pmf_rows_sum_to_two_pow_precision_and_are_positive(trim: bool) -> None:
    for pmf, offsets, precision, lengths, escape in random_pmf_cases():
        table = build(pmf, offsets, precision, lengths, escape, trim)
        assert table.precision == precision
        assert table.num_rows == len(lengths)
        if not trim:
            assert table.lengths.tolist() == lengths.tolist()
            assert table.offsets.tolist() == offsets.tolist()
        freqs = table.freqs
        assert freqs.dtype == np.uint32
        assert freqs.shape == (len(lengths), int(table.lengths.max()) + 1)
        for r, row in enumerate(used_freqs(table)):
            assert row.sum() == 1 << precision
            assert row.min() >= 1
            assert (freqs[r, int(table.lengths[r]) + 1 :] == 0).all()


@TRIM
def test_from_pmf_follows_the_normative_algorithm(trim: bool) -> None:
    """docs/format.md section 14, reimplemented: the very same integers, offsets and lengths."""
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=7):
        table = build(pmf, offsets, precision, lengths, escape, trim)
        for r, (lo, w, f) in enumerate(spec_rows(pmf, lengths, escape, precision, trim)):
            assert int(table.offsets[r]) == int(offsets[r]) + lo
            assert int(table.lengths[r]) == len(w) - 1
            assert used_freqs(table)[r].tolist() == f


def test_trim_tails_is_the_default() -> None:
    pmf = np.array([[1e-9, 1.0, 2.0, 1.0, 1e-9]])
    table = tc.CdfTable.from_pmf(pmf, [10], precision=8)
    assert table.offsets.tolist() == [11] and table.lengths.tolist() == [3]
    kept = tc.CdfTable.from_pmf(pmf, [10], precision=8, trim_tails=False)
    assert kept.offsets.tolist() == [10] and kept.lengths.tolist() == [5]
    # Trimmed values stay exactly codable, as escapes.
    x = np.array([10, 11, 12, 13, 14, 10, 14], dtype=np.int32)
    for t in (table, kept):
        np.testing.assert_array_equal(tc.decode(tc.encode(x, t), t), x)


def test_trimming_keeps_at_least_one_bin() -> None:
    table = tc.CdfTable.from_pmf([[0.0, 0.0, 1.0, 0.0]], [0], precision=4)
    assert table.lengths.tolist() == [1] and table.offsets.tolist() == [2]
    # Every bin negligible next to the escape: one bin is still kept.
    table = tc.CdfTable.from_pmf([[0.0, 0.0, 1.0, 0.0]], [0], precision=4, escape=1e6)
    assert table.lengths.tolist() == [1]
    assert used_freqs(table)[0].sum() == 16


@TRIM
def test_from_pmf_is_deterministic(trim: bool) -> None:
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=1, count=20):
        a = build(pmf, offsets, precision, lengths, escape, trim)
        b = build(pmf.copy(), offsets.copy(), precision, lengths.copy(),
                  None if escape is None else escape.copy(), trim)  # fmt: skip
        assert a.to_bytes() == b.to_bytes() and a.fingerprint == b.fingerprint and a == b
        # The pmf's input form does not matter: lists, Fortran order.
        c = build(np.asfortranarray(pmf).tolist(), offsets.tolist(), precision, lengths.tolist(),
                  None if escape is None else escape.tolist(), trim)  # fmt: skip
        assert c == a


@TRIM
def test_from_pmf_ignores_the_scale_of_the_weights(trim: bool) -> None:
    """Rows need not sum to 1: scaling a row by a power of two gives the very same integers."""
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=2, count=20):
        base = build(pmf, offsets, precision, lengths, escape, trim)
        for k in (-40, -3, 7, 60):
            esc = None if escape is None else np.ldexp(escape, k)
            assert build(np.ldexp(pmf, k), offsets, precision, lengths, esc, trim) == base


@TRIM
def test_from_pmf_is_proportional_within_quantization(trim: bool) -> None:
    """Every symbol gets 1 plus its share of the remaining 2**p - (K + 1) slots, within one slot
    (shares of the pmf's weights; with trimming the escape also holds the trimmed bins)."""
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=3):
        table = build(pmf, offsets, precision, lengths, escape, trim)
        for r, f in enumerate(used_freqs(table)):
            k, lo = int(table.lengths[r]), int(table.offsets[r]) - int(offsets[r])
            row = pmf[r, : int(lengths[r])]
            esc = 0.0 if escape is None else float(escape[r])
            w = np.concatenate([row[lo : lo + k], [esc + row[:lo].sum() + row[lo + k :].sum()]])
            if w.sum() == 0:  # all-zero row: uniform
                assert f.max() - f.min() <= 1
                continue
            ideal = 1 + w / w.sum() * ((1 << precision) - (k + 1))
            assert np.all(np.abs(f - ideal) <= 1 + 1e-6), (f, ideal)


@TRIM
def test_from_pmf_preserves_the_order_of_the_weights(trim: bool) -> None:
    """A larger weight never gets a smaller frequency. Weights are compared as the 40-bit
    integers the algorithm works on, so weights closer than 2**-40 of the row's maximum
    count as equal."""
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=4):
        table = build(pmf, offsets, precision, lengths, escape, trim)
        for (_, w, _), f in zip(
            spec_rows(pmf, lengths, escape, precision, trim), used_freqs(table)
        ):
            w40 = np.array(w, dtype=np.float64)
            order = np.lexsort((f, w40))  # by weight, ties by frequency
            assert np.all(np.diff(f[order]) >= 0)


def test_from_pmf_known_values() -> None:
    table = tc.CdfTable.from_pmf([[1.0, 2.0, 3.0, 4.0]], [0], precision=8)
    assert table.freqs.tolist() == [[26, 51, 76, 102, 1]]
    table = tc.CdfTable.from_pmf([[0.0, 0.0, 0.0]], [5], precision=2)
    assert table.freqs.tolist() == [[1, 1, 1, 1]]
    table = tc.CdfTable.from_pmf([[1.0, 1.0]], [0], precision=4, escape=2.0)
    assert table.freqs.tolist() == [[4, 4, 8]]


def test_default_escape_is_as_rare_as_allowed() -> None:
    table = tc.CdfTable.from_pmf(np.ones((3, 10)), [0, 0, 0], precision=12)
    assert (table.freqs[:, -1] == 1).all()
    default = inspect.signature(tc.CdfTable.from_pmf).parameters["precision"].default
    assert 1 <= default <= 16
    assert tc.CdfTable.from_pmf(np.ones((1, 10)), [0]).precision == default


def test_full_alphabet_at_each_precision() -> None:
    """K + 1 == 2**precision: every symbol gets exactly one slot."""
    for precision in range(1, 17):
        k = (1 << precision) - 1
        pmf = np.arange(1.0, k + 1.0)[None]
        table = tc.CdfTable.from_pmf(pmf, [0], precision=precision, trim_tails=False)
        assert (table.freqs == 1).all()


def test_one_dimensional_pmf_is_one_row() -> None:
    a = tc.CdfTable.from_pmf([1.0, 2.0, 3.0], [4], precision=6)
    b = tc.CdfTable.from_pmf([[1.0, 2.0, 3.0]], [4], precision=6)
    assert a == b and a.num_rows == 1


def test_offsets_at_the_int32_limits() -> None:
    t = tc.CdfTable.from_pmf(np.ones((2, 3)), [INT32_MIN, INT32_MAX - 2], precision=4)
    assert t.offsets.tolist() == [INT32_MIN, INT32_MAX - 2]
    with pytest.raises(tc.TaskcodecError, match="int32"):
        tc.CdfTable.from_pmf(np.ones((1, 3)), [INT32_MAX - 1], precision=4)
    with pytest.raises(tc.TaskcodecError, match="int32"):
        tc.CdfTable.from_pmf(np.ones((1, 3)), [2**31], precision=4)
    with pytest.raises(tc.TaskcodecError, match="int32"):
        tc.CdfTable.from_pmf(np.ones((1, 3)), [INT32_MIN - 1], precision=4)


# ----------------------------------------------------------------------------- invalid pmfs


@pytest.mark.parametrize("value", [np.nan, -1.0, -1e-300, np.inf, -np.inf])
def test_invalid_pmf_values(value: float) -> None:
    pmf = np.ones((2, 4))
    pmf[1, 2] = value
    with pytest.raises(tc.TaskcodecError, match="finite"):
        tc.CdfTable.from_pmf(pmf, [0, 0], precision=8)


def test_invalid_values_past_a_rows_length_are_ignored() -> None:
    pmf = np.ones((2, 4))
    pmf[1, 3] = np.nan
    t = tc.CdfTable.from_pmf(pmf, [0, 0], precision=8, lengths=[4, 3])
    assert t.lengths.tolist() == [4, 3]


@pytest.mark.parametrize("value", [np.nan, -1.0, np.inf])
def test_invalid_escape_weights(value: float) -> None:
    with pytest.raises(tc.TaskcodecError, match="escape"):
        tc.CdfTable.from_pmf(np.ones((2, 4)), [0, 0], precision=8, escape=[1.0, value])


def test_escape_weights_of_the_wrong_size() -> None:
    with pytest.raises(tc.TaskcodecError):
        tc.CdfTable.from_pmf(np.ones((2, 4)), [0, 0], precision=8, escape=[1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "k, precision", [(2, 1), (4, 2), (8, 3), (256, 8), (65536, 16), (32768, 15)]
)
def test_precision_too_small_for_the_alphabet(k: int, precision: int) -> None:
    with pytest.raises(tc.TaskcodecError, match="slots"):
        tc.CdfTable.from_pmf(np.ones((1, k)), [0], precision=precision)
    tc.CdfTable.from_pmf(np.ones((1, k - 1)), [0], precision=precision)  # one fewer fits


@pytest.mark.parametrize("precision", [0, 17, -1, 32, 8.0, "8", None])
def test_invalid_precision(precision) -> None:
    with pytest.raises(tc.TaskcodecError, match="precision"):
        tc.CdfTable.from_pmf(np.ones((1, 1)), [0], precision=precision)
    with pytest.raises(tc.TaskcodecError, match="precision"):
        tc.CdfTable.from_freqs([[1, 1]], [0], precision=precision)


@pytest.mark.parametrize(
    "pmf, offsets, kwargs, match",
    [
        (np.ones((2, 2, 2)), [0, 0], {}, "2-D"),
        (np.ones((0, 4)), np.zeros(0, np.int64), {}, "rows"),
        (np.ones((2, 0)), [0, 0], {}, "entry"),
        (np.ones((2, 4)), [0], {}, "offsets"),
        (np.ones((2, 4)), [0.0, 1.0], {}, "offsets"),
        (np.ones((2, 4)), [0, 0], {"lengths": [4, 5]}, "length"),
        (np.ones((2, 4)), [0, 0], {"lengths": [4, 0]}, "no symbols"),
        (np.ones((2, 4)), [0, 0], {"lengths": [4, -1]}, "lengths"),
        (np.ones((2, 4)), [0, 0], {"lengths": [4]}, "lengths"),
    ],
)
def test_invalid_table_shapes(pmf, offsets, kwargs, match: str) -> None:
    with pytest.raises(tc.TaskcodecError, match=match):
        tc.CdfTable.from_pmf(pmf, offsets, precision=8, **kwargs)


def test_from_freqs_checks_its_rows() -> None:
    with pytest.raises(tc.TaskcodecError, match="sum"):
        tc.CdfTable.from_freqs([[1, 1, 1]], [0], precision=4)
    with pytest.raises(tc.TaskcodecError, match="freq"):
        tc.CdfTable.from_freqs([[0, 8, 8]], [0], precision=4)
    with pytest.raises(tc.TaskcodecError, match="integers"):
        tc.CdfTable.from_freqs([[8.0, 8.0]], [0], precision=4)
    with pytest.raises(tc.TaskcodecError):
        tc.CdfTable.from_freqs([[-1, 9, 8]], [0], precision=4)
    with pytest.raises(tc.TaskcodecError):
        tc.CdfTable.from_freqs([[2**16, 2**16]], [0], precision=16)
    with pytest.raises(tc.TaskcodecError):
        tc.CdfTable.from_freqs([16], [0], precision=4)
    with pytest.raises(tc.TaskcodecError):
        tc.CdfTable.from_freqs([[4, 4, 8, 0]], [0], precision=4, lengths=[3])
    t = tc.CdfTable.from_freqs([[4, 4, 8, 0]], [0], precision=4, lengths=[2])
    assert t.freqs.tolist() == [[4, 4, 8]]


# ----------------------------------------------------------------------------- fingerprint


def _base_freqs_table() -> tc.CdfTable:
    freqs = np.array([[10, 20, 30, 4, 0], [5, 5, 5, 5, 44]], dtype=np.int64)
    return tc.CdfTable.from_freqs(freqs, [-3, 7], precision=6, lengths=[3, 4])


def test_fingerprint_is_fnv1a64_of_the_bytes() -> None:
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=5, count=10):
        t = tc.CdfTable.from_pmf(pmf, offsets, precision, lengths=lengths, escape=escape)
        assert t.fingerprint == fnv1a64(t.to_bytes())
        assert hash(t) == hash(t.fingerprint)


def test_fingerprint_changes_with_every_frequency_offset_and_precision() -> None:
    base = _base_freqs_table()
    freqs, offsets, lengths = base.freqs.astype(np.int64), base.offsets, base.lengths
    seen = {base.fingerprint}
    variants = 0
    for r in range(base.num_rows):
        k = int(lengths[r]) + 1
        for i in range(k):  # move one count from symbol i to its neighbour
            j = (i + 1) % k
            if freqs[r, i] < 2:
                continue
            f = freqs.copy()
            f[r, i] -= 1
            f[r, j] += 1
            t = tc.CdfTable.from_freqs(f, offsets, base.precision, lengths=lengths)
            seen.add(t.fingerprint)
            variants += 1
        for delta in (-1, 1, 1 << 20):
            o = offsets.astype(np.int64).copy()
            o[r] += delta
            seen.add(tc.CdfTable.from_freqs(freqs, o, base.precision, lengths=lengths).fingerprint)
            variants += 1
    # Same proportions at one more bit of precision.
    doubled = tc.CdfTable.from_freqs(freqs * 2, offsets, base.precision + 1, lengths=lengths)
    seen.add(doubled.fingerprint)
    variants += 1
    # Same frequencies, one symbol fewer in a row (its count moved to the escape).
    f = freqs.copy()
    f[1, 3] += f[1, 4]
    f[1, 4] = 0
    seen.add(tc.CdfTable.from_freqs(f, offsets, base.precision, lengths=[3, 3]).fingerprint)
    variants += 1
    assert len(seen) == variants + 1


def test_fingerprint_of_from_pmf_changes_with_precision() -> None:
    pmf = np.arange(1.0, 9.0)[None]
    prints = {tc.CdfTable.from_pmf(pmf, [0], precision=p).fingerprint for p in range(4, 17)}
    assert len(prints) == 13


def test_row_order_matters() -> None:
    a = tc.CdfTable.from_pmf([[1.0, 3.0], [3.0, 1.0]], [0, 0], precision=5)
    b = tc.CdfTable.from_pmf([[3.0, 1.0], [1.0, 3.0]], [0, 0], precision=5)
    assert a.fingerprint != b.fingerprint and a != b


# ----------------------------------------------------------------------------- serialization


def test_to_bytes_from_bytes_round_trip() -> None:
    for pmf, offsets, precision, lengths, escape in random_pmf_cases(seed=6, count=30):
        t = tc.CdfTable.from_pmf(pmf, offsets, precision, lengths=lengths, escape=escape)
        data = t.to_bytes()
        for form in (data, bytearray(data), memoryview(data), np.frombuffer(data, np.uint8)):
            u = tc.CdfTable.from_bytes(form)
            assert u == t and u.to_bytes() == data and u.fingerprint == t.fingerprint
            np.testing.assert_array_equal(u.freqs, t.freqs)
            np.testing.assert_array_equal(u.offsets, t.offsets)
            np.testing.assert_array_equal(u.lengths, t.lengths)
        same = tc.CdfTable.from_freqs(t.freqs, t.offsets, t.precision, lengths=t.lengths)
        assert same == t


def test_serialized_layout() -> None:
    t = _base_freqs_table()
    data = t.to_bytes()
    magic, version, precision, reserved, rows = struct.unpack_from("<4sBBHI", data, 0)
    assert (magic, version, precision, reserved, rows) == (b"TCDT", 1, 6, 0, 2)
    assert struct.unpack_from("<iIiI", data, 12) == (-3, 3, 7, 4)
    assert list(struct.unpack_from("<9H", data, 28)) == [10, 20, 30, 4, 5, 5, 5, 5, 44]
    assert len(data) == 28 + 18


def test_pickle_and_copy() -> None:
    t = _base_freqs_table()
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        u = pickle.loads(pickle.dumps(t, protocol=protocol))
        assert isinstance(u, tc.CdfTable) and u == t and u.fingerprint == t.fingerprint
    assert copy.deepcopy(t) == t and copy.copy(t) == t
    assert {t: 1}[pickle.loads(pickle.dumps(t))] == 1


def test_table_is_usable_after_a_pickle_round_trip() -> None:
    t = tc.CdfTable.from_pmf(np.arange(1.0, 6.0)[None].repeat(3, 0), [0, 1, 2], precision=9)
    x = (np.arange(60).reshape(4, 3, 5) % 7).astype(np.int32)
    blob = tc.encode(x, t)
    u = pickle.loads(pickle.dumps(t))
    np.testing.assert_array_equal(tc.decode(blob, u), x)


def test_tables_are_immutable() -> None:
    t = _base_freqs_table()
    before = t.to_bytes()
    f = t.freqs
    f[0, 0] = 999
    o = t.offsets
    o[0] = 999
    assert t.to_bytes() == before
    with pytest.raises(AttributeError):
        t.precision = 3  # type: ignore[misc]


# ----------------------------------------------------------------------------- hostile bytes


def _small_table_bytes() -> bytes:
    return tc.CdfTable.from_pmf([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]], [-1, 4], precision=5).to_bytes()


def test_every_truncation_of_table_bytes_raises() -> None:
    data = _small_table_bytes()
    for cut in range(len(data)):
        with pytest.raises(tc.CorruptStreamError):
            tc.CdfTable.from_bytes(data[:cut])


def test_trailing_bytes_after_a_table_raise() -> None:
    data = _small_table_bytes()
    for extra in (b"\x00", b"\x00\x00", data):
        with pytest.raises(tc.CorruptStreamError):
            tc.CdfTable.from_bytes(data + extra)


def test_every_bit_flip_of_a_small_table_raises_or_gives_a_valid_table() -> None:
    """A flip either raises a CorruptStreamError (UnsupportedVersionError for the version
    byte) or gives another valid table (a flipped offset, say) that serializes to exactly the
    flipped bytes."""
    data = _small_table_bytes()
    original = tc.CdfTable.from_bytes(data)
    raised = accepted = 0
    for bit in range(8 * len(data)):
        bad = bytearray(data)
        bad[bit // 8] ^= 1 << (bit % 8)
        try:
            t = tc.CdfTable.from_bytes(bytes(bad))
        except tc.CorruptStreamError:
            raised += 1
            continue
        accepted += 1
        assert t.to_bytes() == bytes(bad)
        assert t.fingerprint != original.fingerprint
        for row in used_freqs(t):
            assert row.sum() == 1 << t.precision and row.min() >= 1
    # Only the offset fields (2 rows x 32 bits) can change without breaking a sum or a limit.
    assert accepted <= 64
    assert raised + accepted == 8 * len(data)
    assert raised >= 8 * len(data) - 64


def test_version_byte_of_table_bytes() -> None:
    data = bytearray(_small_table_bytes())
    for version in (0, 2, 255):
        data[4] = version
        with pytest.raises(tc.UnsupportedVersionError):
            tc.CdfTable.from_bytes(bytes(data))


def _table_bytes(rows: int, entries, freqs, precision: int = 5, reserved: int = 0) -> bytes:
    out = struct.pack("<4sBBHI", b"TCDT", 1, precision, reserved, rows)
    for offset, length in entries:
        out += struct.pack("<iI", offset, length)
    return out + struct.pack(f"<{len(freqs)}H", *freqs)


@pytest.mark.parametrize(
    "data",
    [
        _table_bytes(0, [], []),
        _table_bytes(2**20 + 1, [(0, 1)], [16, 16]),
        _table_bytes(2**32 - 1, [(0, 1)], [16, 16]),
        _table_bytes(2**20, [(0, 1)] * 4, [16, 16] * 4),
        _table_bytes(2, [(0, 1)], [16, 16]),
        _table_bytes(1, [(0, 2**32 - 1)], [16, 16]),
        _table_bytes(1, [(0, 2**16 + 1)], [16, 16]),
        _table_bytes(1, [(0, 2**16)], [1] * (2**16 + 1), precision=16),
        _table_bytes(1, [(0, 0)], [32]),
        _table_bytes(1, [(INT32_MAX, 2)], [10, 11, 11]),
        _table_bytes(1, [(0, 1)], [16, 16], precision=0),
        _table_bytes(1, [(0, 1)], [16, 16], precision=17),
        _table_bytes(1, [(0, 1)], [16, 16], precision=255),
        _table_bytes(1, [(0, 1)], [16, 16], reserved=1),
        _table_bytes(1, [(0, 1)], [0, 32]),
        _table_bytes(1, [(0, 1)], [32, 0]),
        _table_bytes(1, [(0, 1)], [16, 15]),
        _table_bytes(1, [(0, 1)], [0xFFFF, 0xFFFF]),
        b"TCDX" + _table_bytes(1, [(0, 1)], [16, 16])[4:],
        b"",
        b"TCDT",
    ],
)
def test_hostile_table_bytes_raise(data: bytes) -> None:
    with pytest.raises(tc.CorruptStreamError):
        tc.CdfTable.from_bytes(data)


def test_hostile_table_bytes_valid_control() -> None:
    t = tc.CdfTable.from_bytes(_table_bytes(1, [(0, 1)], [16, 16]))
    assert t.freqs.tolist() == [[16, 16]] and t.precision == 5


def test_random_table_bytes_never_crash() -> None:
    rng = np.random.default_rng(3)
    for _ in range(3000):
        n = int(rng.integers(0, 64))
        body = rng.integers(0, 256, size=n, dtype=np.uint8).tobytes()
        data = b"TCDT\x01" + body if rng.random() < 0.8 else body
        try:
            t = tc.CdfTable.from_bytes(data)
        except tc.TaskcodecError:
            continue
        assert t.to_bytes() == data


def test_non_bytes_table_data_is_rejected() -> None:
    for bad in ("TCDT", None, 5, [1, 2]):
        with pytest.raises((tc.TaskcodecError, TypeError)):
            tc.CdfTable.from_bytes(bad)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- cost


def test_cost_bits_of_in_range_symbols() -> None:
    t = tc.CdfTable.from_freqs([[8, 4, 2, 2]], [10], precision=4)
    x = np.array([10, 10, 11, 12], dtype=np.int32)
    assert t.cost_bits(x) == pytest.approx(1 + 1 + 2 + 3)
    np.testing.assert_allclose(t.probabilities(), [[0.5, 0.25, 0.125, 0.125]])


def test_frame_size_follows_cost_bits() -> None:
    rng = np.random.default_rng(5)
    i = np.arange(40)
    pmf = np.exp(-0.5 * ((i - 20) / 4.0) ** 2)[None].repeat(4, 0)
    for precision in (8, 12, 16):
        t = tc.CdfTable.from_pmf(pmf, np.zeros(4, np.int64), precision=precision)
        k, offset = int(t.lengths[0]), int(t.offsets[0])
        p = t.probabilities()[0, : k + 1]
        x = offset + rng.choice(k + 1, size=(10, 4, 500), p=p / p.sum())
        x[x == offset + k] = 1000  # the escape symbol becomes a real escaped value
        for lanes, chunk_size in ((32, 1 << 20), (1, 1 << 20), (32, 4096)):
            info = tc.read_header(tc.encode(x, t, lanes=lanes, chunk_size=chunk_size))
            cost = t.cost_bits(x)
            bits = 8 * info.payload_length
            slack = 32 * lanes * info.num_chunks  # final lane states
            assert 0.99 * cost - slack <= bits <= 1.01 * cost + slack, (
                precision,
                lanes,
                bits,
                cost,
            )
