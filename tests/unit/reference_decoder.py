"""A slow, independent decoder of taskcodec frames (format version 1), in pure Python.

Written from docs/format.md alone, as a check that the document is complete: it shares no
code with the C++ core and uses no numpy. Section numbers below refer to that document.

    table = parse_table(tc_table.to_bytes())          # or build_table(pmf, offsets, precision)
    shape, values = decode(blob, table, index=None)   # values: flat list of ints, C order

Every failure raises :class:`FormatError` whose ``code`` is the error name of section 19
("corrupt_stream", "checksum_mismatch", ...).
"""

from __future__ import annotations

import bisect
import dataclasses
from typing import List, Optional, Sequence, Tuple

__all__ = [
    "FormatError",
    "Table",
    "Frame",
    "crc32c",
    "fnv1a64",
    "build_row",
    "build_table",
    "serialize_table",
    "parse_table",
    "parse_frame",
    "decode",
    "DEFAULT_MAX_SYMBOLS",
]

DEFAULT_MAX_SYMBOLS = 1 << 28

FIXED_HEADER = 48
STATE_LOW = 1 << 16
INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
ROW_SINGLE = 0xFF
ROW_INDEX = 0xFE


class FormatError(Exception):
    """A check of docs/format.md failed; ``code`` is the error name of section 19."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


def _fail(code: str, message: str) -> FormatError:
    return FormatError(code, message)


def _u(data: bytes, at: int, size: int) -> int:
    """Little-endian unsigned integer of `size` bytes (section 1)."""
    return int.from_bytes(data[at : at + size], "little", signed=False)


def _i32(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 4], "little", signed=True)


# ---------------------------------------------------------------- section 12: CRC32C


def _crc_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC32C (Castagnoli, reflected 0x82F63B78, init and xorout 0xFFFFFFFF)."""
    crc = 0xFFFFFFFF
    t = _CRC_TABLE
    for b in bytes(data):
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFFFFFF


# ---------------------------------------------------------------- section 13: FNV-1a 64

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def fnv1a64(data: bytes) -> int:
    h = _FNV_OFFSET
    for b in bytes(data):
        h = ((h ^ b) * _FNV_PRIME) & _MASK64
    return h


# ---------------------------------------------------------------- sections 5 and 13: tables


@dataclasses.dataclass(frozen=True)
class Table:
    """Integer tables (section 5): per row an offset, K, and K + 1 frequencies (escape last)."""

    precision: int
    offsets: Tuple[int, ...]
    lengths: Tuple[int, ...]
    freqs: Tuple[Tuple[int, ...], ...]
    serialized: bytes
    fingerprint: int
    starts: Tuple[Tuple[int, ...], ...]  # c_{r,s}: cumulative frequencies, K + 1 per row

    @property
    def rows(self) -> int:
        return len(self.offsets)

    def symbol_of_slot(self, r: int, z: int) -> int:
        """The symbol s of row r with c_s <= z < c_s + f_s."""
        return bisect.bisect_right(self.starts[r], z) - 1


def serialize_table(
    precision: int, offsets: Sequence[int], lengths: Sequence[int], freqs: Sequence[Sequence[int]]
) -> bytes:
    """The canonical bytes of section 13 (no validation: see _check_table)."""
    out = bytearray(b"TCDT")
    out += bytes([1, precision])
    out += (0).to_bytes(2, "little")
    out += len(offsets).to_bytes(4, "little")
    for o, k in zip(offsets, lengths):
        out += int(o).to_bytes(4, "little", signed=True)
        out += int(k).to_bytes(4, "little")
    for row in freqs:
        for f in row:
            out += int(f).to_bytes(2, "little")
    return bytes(out)


def _check_table(
    precision: int, offsets: Sequence[int], lengths: Sequence[int], freqs: Sequence[Sequence[int]],
    code: str,
) -> None:
    """The invariants of section 5."""
    if not 1 <= precision <= 16:
        raise _fail(code, f"precision {precision} is outside 1..16")
    if not 1 <= len(offsets) <= (1 << 20):
        raise _fail(code, f"{len(offsets)} rows, need 1..2^20")
    m = 1 << precision
    for r, (o, k) in enumerate(zip(offsets, lengths)):
        if k < 1 or k + 1 > m:
            raise _fail(code, f"row {r}: K = {k} does not fit precision {precision}")
        if o + k - 1 > INT32_MAX:
            raise _fail(code, f"row {r}: offset {o} + {k} symbols run past int32")
    for r, row in enumerate(freqs):
        if len(row) != lengths[r] + 1:
            raise _fail(code, f"row {r} has {len(row)} frequencies, needs {lengths[r] + 1}")
        for f in row:
            if not 1 <= f < m:
                raise _fail(code, f"row {r}: frequency {f} outside 1..2^P - 1")
        if sum(row) != m:
            raise _fail(code, f"row {r}: frequencies sum to {sum(row)}, not {m}")


def _make_table(
    precision: int, offsets: Sequence[int], lengths: Sequence[int], freqs: Sequence[Sequence[int]],
    code: str,
) -> Table:
    _check_table(precision, offsets, lengths, freqs, code)
    starts = []
    for row in freqs:
        acc, st = 0, []
        for f in row:
            st.append(acc)
            acc += f
        starts.append(tuple(st))
    serial = serialize_table(precision, offsets, lengths, freqs)
    return Table(
        precision=precision,
        offsets=tuple(int(o) for o in offsets),
        lengths=tuple(int(k) for k in lengths),
        freqs=tuple(tuple(int(f) for f in row) for row in freqs),
        serialized=serial,
        fingerprint=fnv1a64(serial),
        starts=tuple(starts),
    )


def parse_table(data: bytes) -> Table:
    """Read table bytes, with the checks of section 13 in their order."""
    data = bytes(data)
    if len(data) < 12:
        raise _fail("corrupt_stream", f"table bytes: {len(data)} bytes, need at least 12")
    if data[0:4] != b"TCDT":
        raise _fail("corrupt_stream", "table bytes: magic is not 'TCDT'")
    if data[4] != 1:
        raise _fail("unsupported_version", f"table serialization version {data[4]}")
    precision = data[5]
    if _u(data, 6, 2) != 0:
        raise _fail("corrupt_stream", "table bytes: reserved field is not zero")
    rows = _u(data, 8, 4)
    if not 1 <= rows <= (1 << 20):
        raise _fail("corrupt_stream", f"table bytes: row count {rows} out of range")
    if (len(data) - 12) // 8 < rows:
        raise _fail("corrupt_stream", "table bytes: rows do not fit")
    offsets, lengths = [], []
    for r in range(rows):
        offsets.append(_i32(data, 12 + 8 * r))
        k = _u(data, 16 + 8 * r, 4)
        if k > 65536:
            raise _fail("corrupt_stream", f"table bytes: row {r} length {k} out of range")
        lengths.append(k)
    at = 12 + 8 * rows
    if len(data) - at != 2 * sum(k + 1 for k in lengths):
        raise _fail("corrupt_stream", "table bytes: size does not match the row lengths")
    freqs = []
    for k in lengths:
        freqs.append([_u(data, at + 2 * i, 2) for i in range(k + 1)])
        at += 2 * (k + 1)
    table = _make_table(precision, offsets, lengths, freqs, "corrupt_stream")
    assert table.serialized == data  # canonical: re-serializes to the same bytes
    return table


# ---------------------------------------------------------------- section 14: building


def _exponent(value: float) -> int:
    """E with 2^(E-1) <= value < 2^E, for a finite value > 0 (C's frexp exponent)."""
    num, den = value.as_integer_ratio()  # den is a power of two
    return num.bit_length() - (den.bit_length() - 1)


def _scaled_floor(value: float, shift: int) -> int:
    """floor(value * 2^shift), exactly, for a finite value >= 0."""
    num, den = value.as_integer_ratio()
    if shift >= 0:
        return (num << shift) // den
    return num // (den << -shift)


def build_row(
    weights: Sequence[float], escape: float, precision: int, trim_tails: bool = False
) -> Tuple[int, int, List[int]]:
    """(first kept bin, kept bins K, K + 1 frequencies with the escape last) of one row,
    by the algorithm of section 14."""
    k = len(weights)
    m = 1 << precision
    ws = [float(v) for v in weights]
    esc = float(escape)
    for v in ws + [esc]:
        if not (v >= 0.0 and v != float("inf")):  # also rejects NaN
            raise _fail("invalid_argument", f"weight {v!r} is not finite and >= 0")
    if k < 1 or k + 1 > m:
        raise _fail("invalid_argument", f"K = {k} does not fit precision {precision}")
    mx = max([esc] + ws)
    lo = 0
    if mx == 0.0:
        w = [1] * (k + 1)
    else:
        shift = 40 - _exponent(mx)
        w = [_scaled_floor(v, shift) for v in ws] + [_scaled_floor(esc, shift)]
        if trim_tails:
            total = sum(w)
            hi = k
            moved = 0
            while hi - lo > 1 and (w[lo] << (precision + 3)) < total:
                moved += w[lo]
                lo += 1
            while hi - lo > 1 and (w[hi - 1] << (precision + 3)) < total:
                hi -= 1
                moved += w[hi]
            w = w[lo:hi] + [w[k] + moved]
            k = hi - lo
    t = k + 1
    spare = m - t
    total = sum(w)
    f = [1 + (wi * spare) // total for wi in w]
    rem = [(wi * spare) % total for wi in w]
    left = m - sum(f)
    order = sorted(range(t), key=lambda i: (-rem[i], i))
    for i in order[:left]:
        f[i] += 1
    return lo, k, f


def build_table(
    pmf: Sequence[Sequence[float]],
    offsets: Sequence[int],
    precision: int,
    lengths: Optional[Sequence[int]] = None,
    escape: Optional[Sequence[float]] = None,
    trim_tails: bool = False,
) -> Table:
    """A table from float weights: row r uses its first lengths[r] weights (all by default)."""
    freqs, lens, offs = [], [], []
    for r, row in enumerate(pmf):
        k = len(row) if lengths is None else int(lengths[r])
        esc = 0.0 if escape is None else float(escape[r])
        lo, kept, f = build_row(list(row)[:k], esc, precision, trim_tails)
        freqs.append(f)
        lens.append(kept)
        offs.append(int(offsets[r]) + lo)
    return _make_table(precision, offs, lens, freqs, "invalid_argument")


# ---------------------------------------------------------------- sections 3 and 4: frames


@dataclasses.dataclass(frozen=True)
class Frame:
    """A frame that passed the structural checks of section 4 (steps 1-22)."""

    version: int
    kind: int
    flags: int
    header_length: int
    dtype: int
    row_mode: int
    precision: int
    lanes: int
    chunk_size: int
    fingerprint: int
    num_symbols: int
    num_chunks: int
    meta: bytes
    index_crc: Optional[int]
    shape: Tuple[int, ...]
    chunks: Tuple[bytes, ...]  # the bytes of every chunk, in chunk order
    stored_crc: Optional[int]  # the trailer, when the checksum flag is set

    @property
    def checksum(self) -> bool:
        return bool(self.flags & 1)


def parse_frame(data: bytes, max_symbols: int = DEFAULT_MAX_SYMBOLS) -> Frame:
    """Steps 1-22 of section 4, in order."""
    data = bytes(data)
    n = len(data)
    if n < FIXED_HEADER:  # 1
        raise _fail("corrupt_stream", f"frame is {n} bytes, the fixed header alone is 48")
    if data[0:4] != b"TCDC":  # 2
        raise _fail("corrupt_stream", "magic is not 'TCDC'")
    version = data[4]
    if version != 1:  # 3
        raise _fail("unsupported_version", f"frame format version {version}")
    flags = _u(data, 6, 2)
    if flags & 0xFFFE:  # 4
        raise _fail("corrupt_stream", f"unknown flag bits {flags & 0xFFFE:#x}")
    body_end = n
    stored_crc = None
    if flags & 1:  # 5
        if n < FIXED_HEADER + 4:
            raise _fail("corrupt_stream", "frame too short for its CRC32C trailer")
        body_end = n - 4
        stored_crc = _u(data, body_end, 4)
        actual = crc32c(data[:body_end])
        if actual != stored_crc:
            raise _fail(
                "checksum_mismatch", f"CRC32C is {actual:#010x}, trailer says {stored_crc:#010x}"
            )
    kind = data[5]
    if kind not in (1, 2):  # 6
        raise _fail("corrupt_stream", f"unknown frame kind {kind}")
    header_length = _u(data, 8, 4)
    dtype = data[12]
    if not 1 <= dtype <= 8:  # 7
        raise _fail("corrupt_stream", f"unknown dtype code {dtype}")
    ndim = data[13]
    if ndim > 16:  # 8
        raise _fail("corrupt_stream", f"{ndim} dims, at most 16")
    row_mode = data[14]
    if row_mode not in (ROW_SINGLE, ROW_INDEX) and row_mode >= ndim:  # 9
        raise _fail("corrupt_stream", f"channel axis {row_mode} out of range for {ndim} dims")
    precision = data[15]
    if not 1 <= precision <= 16:  # 10
        raise _fail("corrupt_stream", f"precision {precision} outside 1..16")
    lanes = _u(data, 16, 2)
    if lanes == 0 or lanes & (lanes - 1) or lanes > 256:  # 11
        raise _fail("corrupt_stream", f"lane count {lanes} is not a power of two up to 256")
    if _u(data, 18, 2) != 0:  # 12
        raise _fail("corrupt_stream", "reserved header bytes are not zero")
    chunk_size = _u(data, 20, 4)
    if chunk_size == 0:  # 13
        raise _fail("corrupt_stream", "chunk size is zero")
    fingerprint = _u(data, 24, 8)
    num_symbols = _u(data, 32, 8)
    num_chunks = _u(data, 40, 4)
    meta_length = _u(data, 44, 4)
    if meta_length > (1 << 20):  # 14
        raise _fail("corrupt_stream", f"meta block of {meta_length} bytes exceeds 2^20")
    indexed = row_mode == ROW_INDEX
    want_header = FIXED_HEADER + 8 * ndim + (4 if indexed else 0) + meta_length
    if header_length != want_header:  # 15
        raise _fail("corrupt_stream", f"header_length {header_length}, expected {want_header}")
    if want_header > body_end:  # 16
        raise _fail("corrupt_stream", "header does not fit in the frame")
    shape = tuple(_u(data, FIXED_HEADER + 8 * d, 8) for d in range(ndim))
    product = 1
    for s in shape:
        product *= s
    if product > (1 << 63) or product != num_symbols:  # 17
        raise _fail("corrupt_stream", f"shape {shape} does not multiply out to {num_symbols}")
    if num_symbols > max_symbols:  # 18
        raise _fail("limit_exceeded", f"{num_symbols} symbols, more than max_symbols {max_symbols}")
    if num_chunks != -(-num_symbols // chunk_size):  # 19
        raise _fail("corrupt_stream", f"num_chunks {num_chunks} does not fit the symbol count")
    if (body_end - want_header) // 4 < num_chunks:  # 20
        raise _fail("corrupt_stream", "the chunk directory does not fit")
    directory = [_u(data, want_header + 4 * c, 4) for c in range(num_chunks)]
    for c, length in enumerate(directory):  # 21
        if length < 4 * lanes or (length - 4 * lanes) % 2:
            raise _fail("corrupt_stream", f"chunk {c} length {length} is not 4*lanes + 2*words")
    payload_at = want_header + 4 * num_chunks
    if sum(directory) != body_end - payload_at:  # 22
        raise _fail("corrupt_stream", "the chunk directory does not add up to the payload")
    chunks = []
    at = payload_at
    for length in directory:
        chunks.append(data[at : at + length])
        at += length
    index_crc = _u(data, FIXED_HEADER + 8 * ndim, 4) if indexed else None
    meta_at = FIXED_HEADER + 8 * ndim + (4 if indexed else 0)
    return Frame(
        version=version,
        kind=kind,
        flags=flags,
        header_length=header_length,
        dtype=dtype,
        row_mode=row_mode,
        precision=precision,
        lanes=lanes,
        chunk_size=chunk_size,
        fingerprint=fingerprint,
        num_symbols=num_symbols,
        num_chunks=num_chunks,
        meta=data[meta_at : meta_at + meta_length],
        index_crc=index_crc,
        shape=shape,
        chunks=tuple(chunks),
        stored_crc=stored_crc,
    )


# ---------------------------------------------------------------- section 6: rows


def _row_function(frame: Frame, table: Table, index: Optional[Sequence[int]]):
    """Checks 26-27 of section 4, then the row of flat index i (section 6)."""
    mode = frame.row_mode
    if mode == ROW_INDEX:  # 26
        if index is None:
            raise _fail("invalid_argument", "frame was coded with an explicit index; pass it")
        idx = [int(v) for v in index]
        if len(idx) != frame.num_symbols:
            raise _fail(
                "invalid_argument", f"index has {len(idx)} entries, frame has {frame.num_symbols}"
            )
    elif index is not None:
        raise _fail("invalid_argument", "frame was not coded with an index")
    if mode == ROW_SINGLE:  # 27
        if table.rows != 1:
            raise _fail("corrupt_stream", f"single-row frame, table has {table.rows} rows")
        return lambda i: 0
    if mode == ROW_INDEX:
        for i, r in enumerate(idx):
            if not 0 <= r < table.rows:
                raise _fail("invalid_argument", f"index[{i}] = {r} is not a row")
        raw = b"".join((v & 0xFFFFFFFF).to_bytes(4, "little") for v in idx)
        if crc32c(raw) != frame.index_crc:
            raise _fail("table_mismatch", "the index differs from the one the frame was coded with")
        return lambda i: idx[i]
    channels = frame.shape[mode]
    if channels != table.rows:
        raise _fail("corrupt_stream", f"axis {mode}: {channels} channels, {table.rows} rows")
    inner = 1
    for s in frame.shape[mode + 1 :]:
        inner *= s
    return lambda i: (i // inner) % channels


# ---------------------------------------------------------------- sections 8-11: chunks


class _Words:
    """The shared word sequence of one chunk, read forward (section 10)."""

    def __init__(self, chunk: bytes, lanes: int, first_symbol: int) -> None:
        self.data = chunk
        self.pos = 4 * lanes
        self.first = first_symbol

    def next(self, j: int) -> int:
        if self.pos + 2 > len(self.data):
            raise _fail("corrupt_stream", f"chunk data ends early at symbol {self.first + j}")
        w = _u(self.data, self.pos, 2)
        self.pos += 2
        return w

    def all_read(self) -> bool:
        return self.pos == len(self.data)


def _renormalise(x: int, words: _Words, j: int) -> int:
    if x < STATE_LOW:
        x = (x << 16) | words.next(j)
    return x


def _raw_bits(x: int, bits: int, words: _Words, j: int) -> Tuple[int, int]:
    """Section 8.3, decoder side: (value, new state)."""
    value = x & ((1 << bits) - 1)
    return value, _renormalise(x >> bits, words, j)


def _escape_payload(x: int, offset: int, k: int, words: _Words, j: int) -> Tuple[int, int]:
    """Section 9, decoder side: (value, new state)."""
    header, x = _raw_bits(x, 7, words, j)
    sign, nbits = header >> 6, header & 63
    if nbits > 32:
        raise _fail("corrupt_stream", f"escape declares {nbits} bits")
    rest = max(nbits - 1, 0)
    lo_bits = min(16, rest)
    hi_bits = rest - lo_bits
    lo = hi = 0
    if lo_bits:
        lo, x = _raw_bits(x, lo_bits, words, j)
    if hi_bits:
        hi, x = _raw_bits(x, hi_bits, words, j)
    d = 0 if nbits == 0 else (1 << (nbits - 1)) + (hi << 16) + lo
    value = offset + k + d if sign else offset - 1 - d
    if not INT32_MIN <= value <= INT32_MAX:
        raise _fail("corrupt_stream", f"escaped value {value} is outside int32")
    return value, x


def _decode_chunk(frame: Frame, table: Table, c: int, row_of, out: List[int]) -> None:
    """Section 11."""
    lanes = frame.lanes
    chunk = frame.chunks[c]
    begin = c * frame.chunk_size
    count = min(frame.chunk_size, frame.num_symbols - begin)
    if len(chunk) < 4 * lanes or (len(chunk) - 4 * lanes) % 2:
        raise _fail("corrupt_stream", f"chunk {c}: bad length {len(chunk)}")
    states = [_u(chunk, 4 * lane, 4) for lane in range(lanes)]
    for lane, x in enumerate(states):
        if x < STATE_LOW:
            raise _fail("corrupt_stream", f"chunk {c}: lane {lane} starts below 65536")
    words = _Words(chunk, lanes, begin)
    p = frame.precision
    pmask = (1 << p) - 1
    for j in range(count):
        lane = j % lanes
        i = begin + j
        r = row_of(i)
        offset, k = table.offsets[r], table.lengths[r]
        x = states[lane]
        z = x & pmask  # section 8.2
        s = table.symbol_of_slot(r, z)
        f, start = table.freqs[r][s], table.starts[r][s]
        x = _renormalise(f * (x >> p) + z - start, words, j)
        if s < k:
            out[i] = offset + s
        else:
            out[i], x = _escape_payload(x, offset, k, words, j)
        states[lane] = x
    if not words.all_read():
        raise _fail("corrupt_stream", f"chunk {c}: not every word was read")
    for lane, x in enumerate(states):
        if x != STATE_LOW:
            raise _fail("corrupt_stream", f"chunk {c}: lane {lane} ends in {x}, not 65536")


def decode(
    data: bytes,
    table,
    index: Optional[Sequence[int]] = None,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
) -> Tuple[Tuple[int, ...], List[int]]:
    """Decode a frame: (shape, values in flat C order). `table` is a Table or table bytes."""
    if not isinstance(table, Table):
        table = parse_table(table)
    frame = parse_frame(data, max_symbols)
    if frame.kind != 1:  # 23
        raise _fail("invalid_argument", "frame holds a sparse update, not symbols")
    if frame.fingerprint != table.fingerprint:  # 24
        raise _fail(
            "table_mismatch",
            f"frame fingerprint {frame.fingerprint:#018x}, table {table.fingerprint:#018x}",
        )
    if frame.precision != table.precision:  # 25
        raise _fail("corrupt_stream", "frame precision disagrees with its table")
    row_of = _row_function(frame, table, index)  # 26, 27
    out = [0] * frame.num_symbols
    for c in range(frame.num_chunks):
        _decode_chunk(frame, table, c, row_of, out)
    return frame.shape, out
