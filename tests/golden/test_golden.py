"""Pinned frames of format version 1: any drift in the bytes, the tables or the decoding fails.

The files in ``v1/`` are written by ``generate.py`` and only regenerated on purpose:
``GENERATE_EXPECTED=1 python -m pytest tests/golden`` rewrites them and skips these checks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

import taskcodec as tc

_HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("taskcodec_golden_generate", _HERE / "generate.py")
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = gen  # dataclasses look their module up while the class is built
_spec.loader.exec_module(gen)

GOLDEN_DIR: Path = gen.GOLDEN_DIR
CASE_NAMES = [c.name for c in gen.CASES]
REGENERATE = os.environ.get("GENERATE_EXPECTED") == "1"


@pytest.fixture(scope="module")
def manifest() -> dict:
    if REGENERATE:
        gen.write_all(GOLDEN_DIR)
        pytest.skip(
            f"GENERATE_EXPECTED=1: rewrote the golden files in {GOLDEN_DIR.name}/; "
            "review the diff, then rerun without it to check them"
        )
    path = GOLDEN_DIR / "manifest.json"
    if not path.is_file():
        pytest.fail(f"golden manifest {path} is missing; create it with GENERATE_EXPECTED=1")
    return json.loads(path.read_text())


def _read(name: str, suffix: str) -> bytes:
    path = GOLDEN_DIR / f"{name}{suffix}"
    if not path.is_file():
        pytest.fail(f"golden file {path.name} is missing; create it with GENERATE_EXPECTED=1")
    return path.read_bytes()


def _load_npy(name: str, suffix: str) -> np.ndarray:
    path = GOLDEN_DIR / f"{name}{suffix}"
    if not path.is_file():
        pytest.fail(f"golden file {path.name} is missing; create it with GENERATE_EXPECTED=1")
    return np.load(path, allow_pickle=False)


class Pinned:
    def __init__(self, name: str, manifest: dict) -> None:
        if name not in manifest:
            pytest.fail(f"case {name!r} is not in the golden manifest; regenerate on purpose")
        self.name = name
        self.case = gen.CASES_BY_NAME[name]
        self.entry = manifest[name]
        self.frame = _read(name, ".frame")
        self.table_bytes = _read(name, ".table")
        self.expected = _load_npy(name, ".npy")
        self.index = _load_npy(name, ".index.npy") if self.entry["uses_index"] else None

    @property
    def table(self) -> tc.CdfTable:
        return tc.CdfTable.from_bytes(self.table_bytes)

    def symbols(self) -> np.ndarray:
        """The encoder's input: the expected values in the input's original dtype."""
        return self.expected.astype(self.entry["input_dtype"])


@pytest.fixture(params=CASE_NAMES)
def pinned(request: pytest.FixtureRequest, manifest: dict) -> Pinned:
    return Pinned(request.param, manifest)


# The pure-Python CRC32C and FNV-1a 64 of the reference decoder (written from docs/format.md).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from reference_decoder import crc32c, fnv1a64  # noqa: E402


def variable_header(shape, index, meta: bytes) -> bytes:
    """The header after its fixed 48 bytes (docs/format.md 3.2): the shape; for an index-mode
    frame the CRC32C of the index as little-endian int32 values (the index itself is not
    stored); then meta."""
    out = struct.pack(f"<{len(shape)}Q", *shape)
    if index is not None:
        out += struct.pack("<I", crc32c(np.ascontiguousarray(index, dtype="<i4").tobytes()))
    return out + meta


def test_crc32c_reference_value() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value


def test_every_case_is_pinned(manifest: dict) -> None:
    assert sorted(manifest) == sorted(CASE_NAMES)
    for name in CASE_NAMES:
        assert manifest[name]["format_version"] == 1


def test_pinned_files_are_small(pinned: Pinned) -> None:
    assert len(pinned.frame) <= 4096
    assert hashlib.sha256(pinned.frame).hexdigest() == pinned.entry["frame_sha256"]
    assert hashlib.sha256(pinned.table_bytes).hexdigest() == pinned.entry["table_sha256"]


def test_reencoding_reproduces_the_pinned_frame(pinned: Pinned) -> None:
    frame = gen.encode_case(pinned.case, pinned.table, pinned.symbols(), pinned.index)
    assert frame == pinned.frame, f"{pinned.name}: encoder output drifted from the pinned v1 frame"


def test_reencoding_with_threads_reproduces_the_pinned_frame(pinned: Pinned) -> None:
    kwargs = pinned.case.encode_kwargs()
    frame = tc.encode(pinned.symbols(), pinned.table, pinned.index, threads=2, **kwargs)
    assert frame == pinned.frame


def test_rebuilding_the_table_reproduces_the_pinned_table(pinned: Pinned) -> None:
    table = pinned.case.table.build()
    assert table.to_bytes() == pinned.table_bytes, f"{pinned.name}: from_pmf quantization drifted"
    assert table.fingerprint == int(pinned.entry["fingerprint"], 16)


def test_pinned_table_gives_the_pinned_fingerprint(pinned: Pinned) -> None:
    table = pinned.table
    want = int(pinned.entry["fingerprint"], 16)
    assert table.fingerprint == want
    assert fnv1a64(pinned.table_bytes) == want  # the fingerprint is FNV-1a 64 of the bytes
    assert table.to_bytes() == pinned.table_bytes
    assert table.precision == pinned.entry["precision"]


def test_pinned_frame_decodes_to_the_pinned_array(pinned: Pinned) -> None:
    for threads in (1, 2):
        out = tc.decode(pinned.frame, pinned.table, pinned.index, threads=threads)
        assert out.dtype == np.dtype(pinned.entry["input_dtype"])  # the dtype the frame records
        assert out.shape == tuple(pinned.entry["shape"])
        np.testing.assert_array_equal(out, pinned.expected)
    assert pinned.expected.dtype == np.int32


def test_pinned_header_fields(pinned: Pinned) -> None:
    info = tc.read_header(pinned.frame)
    e = pinned.entry
    assert info.version == 1
    assert info.kind == 1
    assert info.checksum is e["checksum"]
    assert info.dtype == e["input_dtype"]
    assert info.shape == tuple(e["shape"])
    assert info.uses_index is e["uses_index"]
    if e["uses_index"]:
        assert info.channel_axis is None
    elif pinned.table.num_rows > 1:
        assert info.channel_axis == e["channel_axis"] % len(e["shape"])
    assert info.precision == e["precision"]
    assert info.lanes == e["lanes"]
    assert info.chunk_size == e["chunk_size"]
    assert info.fingerprint == int(e["fingerprint"], 16)
    assert info.num_symbols == e["num_symbols"] == int(np.prod(e["shape"]))
    assert info.num_chunks == e["num_chunks"] == -(-info.num_symbols // e["chunk_size"])
    assert info.meta == bytes.fromhex(e["meta_hex"])
    var = variable_header(tuple(e["shape"]), pinned.index, bytes.fromhex(e["meta_hex"]))
    assert info.header_length == e["header_length"] == 48 + len(var)
    assert info.frame_length == len(pinned.frame) == e["frame_length"]


def test_pinned_frame_layout(pinned: Pinned) -> None:
    """The fixed header, the directory and the CRC32C trailer, read field by field."""
    f = pinned.frame
    e = pinned.entry
    (
        magic,
        version,
        kind,
        flags,
        header_length,
        dtype,
        ndim,
        row_mode,
        precision,
        lanes,
        reserved,
        chunk_size,
        fingerprint,
        num_symbols,
        num_chunks,
        meta_length,
    ) = struct.unpack_from("<4sBBHIBBBBHHIQQII", f, 0)
    assert magic == b"TCDC" and version == 1 and kind == 1 and reserved == 0
    assert flags == (1 if e["checksum"] else 0)
    assert header_length == e["header_length"]
    assert ndim == len(e["shape"])
    dtype_codes = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
    assert dtype == dtype_codes.index(e["input_dtype"]) + 1
    if e["uses_index"]:
        assert row_mode == 0xFE
    elif pinned.table.num_rows == 1:
        assert row_mode == 0xFF
    else:
        assert row_mode == e["channel_axis"] % ndim
    assert (precision, lanes, chunk_size) == (e["precision"], e["lanes"], e["chunk_size"])
    assert fingerprint == int(e["fingerprint"], 16)
    assert num_symbols == e["num_symbols"] and num_chunks == e["num_chunks"]
    assert list(struct.unpack_from(f"<{ndim}Q", f, 48)) == e["shape"]
    assert f[48:header_length] == variable_header(
        tuple(e["shape"]), pinned.index, bytes.fromhex(e["meta_hex"])
    )
    assert meta_length == len(bytes.fromhex(e["meta_hex"]))
    directory = struct.unpack_from(f"<{num_chunks}I", f, header_length)
    trailer = 4 if e["checksum"] else 0
    assert header_length + 4 * num_chunks + sum(directory) + trailer == len(f)
    for length in directory:
        assert length >= 4 * lanes and (length - 4 * lanes) % 2 == 0
    if e["checksum"]:
        assert struct.unpack_from("<I", f, len(f) - 4)[0] == crc32c(f[:-4])


# ----------------------------------------------------------------------------- reference coder
# An independent, plain-Python writer of the v1 format (32-bit lane states starting at 2**16,
# 16-bit words, escapes as sign + bit length then up to two raw pieces). Pinned frames must be
# exactly what it writes, so they are the format, not merely what one build happened to emit.


def _reference_chunk(values, rows, table: tc.CdfTable, lanes: int) -> bytes:
    p = table.precision
    freqs, offsets, lengths = table.freqs.tolist(), table.offsets.tolist(), table.lengths.tolist()
    starts = [[sum(row[:i]) for i in range(len(row))] for row in freqs]
    state = [1 << 16] * lanes
    pushed = []

    def code(x: int, start: int, freq: int, bits: int) -> int:
        if x >= freq << (32 - bits):
            pushed.append(x & 0xFFFF)
            x >>= 16
        return ((x // freq) << bits) + x % freq + start

    for j in reversed(range(len(values))):
        r, v, lane = rows[j], values[j], j % lanes
        off, k = offsets[r], lengths[r]
        x = state[lane]
        if off <= v < off + k:
            x = code(x, starts[r][v - off], freqs[r][v - off], p)
        else:
            sign, d = (0, off - 1 - v) if v < off else (1, v - off - k)
            nbits = d.bit_length()
            lo_bits = min(max(nbits - 1, 0), 16)
            hi_bits = max(nbits - 1, 0) - lo_bits
            if hi_bits:
                x = code(x, (d >> 16) & ((1 << hi_bits) - 1), 1, hi_bits)
            if lo_bits:
                x = code(x, d & ((1 << lo_bits) - 1), 1, lo_bits)
            x = code(x, (sign << 6) | nbits, 1, 7)
            x = code(x, starts[r][k], freqs[r][k], p)
        state[lane] = x
    for x in reversed(state):
        pushed += [x >> 16, x & 0xFFFF]
    return struct.pack(f"<{len(pushed)}H", *reversed(pushed))


def reference_encode(
    symbols: np.ndarray,
    table: tc.CdfTable,
    index,
    *,
    channel_axis,
    lanes,
    chunk_size,
    checksum,
    meta,
) -> bytes:
    shape = symbols.shape
    values = symbols.astype(np.int64).ravel().tolist()
    n = len(values)
    if index is not None:
        row_mode, rows = 0xFE, np.asarray(index).ravel().tolist()
    elif table.num_rows == 1:
        row_mode, rows = 0xFF, [0] * n
    else:
        row_mode = channel_axis % len(shape)
        inner = int(np.prod(shape[row_mode + 1 :]))
        rows = [(i // inner) % shape[row_mode] for i in range(n)]
    chunks = [
        _reference_chunk(values[a : a + chunk_size], rows[a : a + chunk_size], table, lanes)
        for a in range(0, n, chunk_size)
    ]
    dtype_codes = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
    header = struct.pack(
        "<4sBBHIBBBBHHIQQII",
        b"TCDC",
        1,  # format version
        1,  # kind: symbols
        1 if checksum else 0,  # flags
        48 + len(variable_header(shape, index, meta)),  # header length
        dtype_codes.index(symbols.dtype.name) + 1,
        len(shape),
        row_mode,
        table.precision,
        lanes,
        0,  # reserved
        chunk_size,
        table.fingerprint,
        n,
        len(chunks),
        len(meta),
    )
    body = header + variable_header(shape, index, meta)
    body += struct.pack(f"<{len(chunks)}I", *map(len, chunks)) + b"".join(chunks)
    return body + (struct.pack("<I", crc32c(body)) if checksum else b"")


def test_reference_encoder_reproduces_the_pinned_frame(pinned: Pinned) -> None:
    frame = reference_encode(
        pinned.symbols(), pinned.table, pinned.index, **pinned.case.encode_kwargs()
    )
    assert frame == pinned.frame
