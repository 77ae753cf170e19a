"""Damaged, truncated, hostile and mismatched frames: always a TaskcodecError, never a crash.

Uses the pinned frames of tests/golden/v1 (written by tests/golden/generate.py).
"""

from __future__ import annotations

import json
import resource
import struct
import sys
import tracemalloc
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pytest

import taskcodec as tc

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden" / "v1"
FIXED_HEADER = 48


def _manifest() -> dict:
    path = GOLDEN_DIR / "manifest.json"
    if not path.is_file():
        pytest.fail(f"golden manifest {path} is missing; create it with GENERATE_EXPECTED=1")
    return json.loads(path.read_text())


def _load(name: str) -> Tuple[bytes, tc.CdfTable, np.ndarray, Optional[np.ndarray]]:
    for suffix in (".frame", ".table", ".npy"):
        if not (GOLDEN_DIR / f"{name}{suffix}").is_file():
            pytest.fail(
                f"golden file {name}{suffix} is missing; create it with GENERATE_EXPECTED=1"
            )
    frame = (GOLDEN_DIR / f"{name}.frame").read_bytes()
    table = tc.CdfTable.from_bytes((GOLDEN_DIR / f"{name}.table").read_bytes())
    expected = np.load(GOLDEN_DIR / f"{name}.npy", allow_pickle=False)
    index_path = GOLDEN_DIR / f"{name}.index.npy"
    index = np.load(index_path, allow_pickle=False) if index_path.is_file() else None
    return frame, table, expected, index


def _golden_names(checksum: bool) -> list:
    path = GOLDEN_DIR / "manifest.json"
    if not path.is_file():
        return ["<missing golden manifest>"]  # the tests below then fail with the reason
    return sorted(n for n, e in json.loads(path.read_text()).items() if e["checksum"] is checksum)


CHECKED = _golden_names(checksum=True)
UNCHECKED = _golden_names(checksum=False)


# The pure-Python CRC32C of the reference decoder (written from docs/format.md).
sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_decoder import crc32c as _crc32c  # noqa: E402


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", _crc32c(body))


def _flip(frame: bytes, bit: int) -> bytes:
    b = bytearray(frame)
    b[bit // 8] ^= 1 << (bit % 8)
    return bytes(b)


def test_golden_frames_cover_both_kinds() -> None:
    manifest = _manifest()
    assert any(e["checksum"] for e in manifest.values())
    assert any(not e["checksum"] for e in manifest.values())
    for name in CHECKED + UNCHECKED:
        assert name in manifest


# ----------------------------------------------------------------------------- bit flips


@pytest.mark.parametrize("name", CHECKED)
def test_every_bit_flip_of_a_checksummed_frame_is_detected(name: str) -> None:
    _manifest()
    frame, table, expected, index = _load(name)
    np.testing.assert_array_equal(tc.decode(frame, table, index), expected)
    kinds: Dict[str, int] = {}
    for bit in range(8 * len(frame)):
        bad = _flip(frame, bit)
        with pytest.raises(tc.CorruptStreamError) as err:  # ChecksumError, UnsupportedVersionError
            tc.decode(bad, table, index)
        kinds[type(err.value).__name__] = kinds.get(type(err.value).__name__, 0) + 1
        with pytest.raises(tc.CorruptStreamError):
            tc.read_header(bad)
    assert sum(kinds.values()) == 8 * len(frame)
    assert kinds.get("ChecksumError", 0) > 0
    assert set(kinds) <= {"ChecksumError", "CorruptStreamError", "UnsupportedVersionError"}


@pytest.mark.parametrize("name", UNCHECKED)
def test_bit_flips_of_an_unchecked_frame_never_crash(name: str) -> None:
    """Without a CRC some flips cannot be noticed (meta bytes, the dtype code, some payload
    bits); each flip must either raise a TaskcodecError or give an array of the shape and
    dtype the damaged header declares. The outcome counts are recorded, not asserted to be all errors."""
    _manifest()
    frame, table, expected, index = _load(name)
    np.testing.assert_array_equal(tc.decode(frame, table, index), expected)
    raised: Dict[str, int] = {}
    decoded_same = decoded_other = 0
    for bit in range(8 * len(frame)):
        bad = _flip(frame, bit)
        try:
            out = tc.decode(bad, table, index)
        except tc.TaskcodecError as e:
            raised[type(e).__name__] = raised.get(type(e).__name__, 0) + 1
            continue
        assert isinstance(out, np.ndarray) and out.dtype == np.dtype(tc.read_header(bad).dtype)
        assert out.shape == tc.read_header(bad).shape
        if out.shape == expected.shape and np.array_equal(out, expected):
            decoded_same += 1
        else:
            decoded_other += 1
    total = 8 * len(frame)
    assert sum(raised.values()) + decoded_same + decoded_other == total
    # Shown with -rP: how many flips an unchecked frame lets through.
    print(
        f"{name}: {total} flips, raised {raised}, decoded to the input {decoded_same}, "
        f"decoded to other values {decoded_other}"
    )
    assert sum(raised.values()) > 0


@pytest.mark.parametrize("name", UNCHECKED)
def test_unchecked_frame_structure_flips_raise(name: str) -> None:
    frame, table, _, index = _load(name)
    info = tc.read_header(frame)
    always_checked = list(range(0, 12))  # magic, version, kind, flags, header length
    always_checked += list(range(info.header_length, info.header_length + 4 * info.num_chunks))
    for byte in always_checked:
        for bit in range(8):
            with pytest.raises(tc.TaskcodecError):
                tc.decode(_flip(frame, 8 * byte + bit), table, index)


# ----------------------------------------------------------------------------- truncation


@pytest.mark.parametrize("name", CHECKED + UNCHECKED)
def test_every_truncation_raises(name: str) -> None:
    _manifest()
    frame, table, _, index = _load(name)
    for cut in range(len(frame)):
        with pytest.raises(tc.CorruptStreamError):
            tc.decode(frame[:cut], table, index)
        with pytest.raises(tc.CorruptStreamError):
            tc.read_header(frame[:cut])


@pytest.mark.parametrize("name", CHECKED + UNCHECKED)
@pytest.mark.parametrize("garbage", [b"\x00", b"\x00\x00\x00\x00", b"TCDC", bytes(range(64))])
def test_trailing_garbage_raises(name: str, garbage: bytes) -> None:
    _manifest()
    frame, table, _, index = _load(name)
    with pytest.raises(tc.CorruptStreamError):
        tc.decode(frame + garbage, table, index)
    with pytest.raises(tc.CorruptStreamError):
        tc.read_header(frame + garbage)


@pytest.mark.parametrize("name", CHECKED + UNCHECKED)
def test_two_frames_back_to_back_raise(name: str) -> None:
    _manifest()
    frame, table, _, index = _load(name)
    with pytest.raises(tc.CorruptStreamError):
        tc.decode(frame + frame, table, index)


# ----------------------------------------------------------------------------- hostile headers


HEADER = struct.Struct("<4sBBHIBBBBHHIQQII")  # the fixed 48-byte header


def _fixed_header(
    *,
    ndim: int,
    num_symbols: int,
    num_chunks: int,
    fingerprint: int,
    chunk_size: int = 1 << 20,
    flags: int = 1,
    dtype: int = 5,
    row_mode: int = 0xFF,
    precision: int = 14,
    lanes: int = 32,
) -> bytes:
    header_length = HEADER.size + 8 * ndim
    return HEADER.pack(
        b"TCDC", 1, 1, flags, header_length, dtype, ndim, row_mode, precision, lanes, 0,
        chunk_size, fingerprint, num_symbols, num_chunks, 0,
    )  # fmt: skip


def _claiming_frame(num_symbols: int, *, chunk_size: int = 1 << 20, fingerprint: int = 0) -> bytes:
    """60 bytes: a valid fixed header for a 1-D frame of num_symbols, one dim, a CRC32C, no data."""
    num_chunks = min(-(-num_symbols // chunk_size), 0xFFFFFFFF)
    header = _fixed_header(
        ndim=1, num_symbols=num_symbols, num_chunks=num_chunks, fingerprint=fingerprint,
        chunk_size=chunk_size,
    )  # fmt: skip
    return _with_crc(header + struct.pack("<Q", num_symbols))


def _single_row_table() -> tc.CdfTable:
    return tc.CdfTable.from_pmf(np.ones((1, 8)), [0], precision=14)


def _max_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _assert_raises_without_allocating(call, errors) -> BaseException:
    """numpy's allocations are traced by tracemalloc; the peak resident size catches the rest."""
    rss_before = _max_rss_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(errors) as err:
            call()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes were allocated for a frame that holds no data"
    assert _max_rss_bytes() - rss_before < 64 << 20
    return err.value


def test_frame_claiming_2_pow_40_symbols_is_refused_without_allocating() -> None:
    table = _single_row_table()
    frame = _claiming_frame(1 << 40, fingerprint=table.fingerprint)
    assert len(frame) == 60
    _assert_raises_without_allocating(
        lambda: tc.decode(frame, table), (tc.LimitExceededError, tc.CorruptStreamError)
    )
    # Under the default limit the answer is specifically the limit.
    with pytest.raises(tc.LimitExceededError):
        tc.decode(frame, table)
    with pytest.raises(tc.LimitExceededError):
        tc.read_header(frame)


def test_frame_claiming_2_pow_40_symbols_under_a_raised_limit_is_corrupt() -> None:
    table = _single_row_table()
    frame = _claiming_frame(1 << 40, fingerprint=table.fingerprint)
    err = _assert_raises_without_allocating(
        lambda: tc.decode(frame, table, max_symbols=1 << 41), tc.CorruptStreamError
    )
    assert "chunk" in str(err)
    # The biggest chunk size does not help: 2**40 symbols still need 257 chunks.
    frame = _claiming_frame(1 << 40, chunk_size=0xFFFFFFFF, fingerprint=table.fingerprint)
    _assert_raises_without_allocating(
        lambda: tc.decode(frame, table, max_symbols=1 << 41), tc.CorruptStreamError
    )


def test_frame_with_huge_dims_overflowing_the_product_is_corrupt() -> None:
    table = _single_row_table()
    header = _fixed_header(ndim=2, num_symbols=0, num_chunks=0, fingerprint=table.fingerprint)
    frame = _with_crc(header + struct.pack("<QQ", 1 << 40, 1 << 40))
    _assert_raises_without_allocating(
        lambda: tc.decode(frame, table, max_symbols=2**63), tc.CorruptStreamError
    )


@pytest.mark.parametrize(
    "field, offset, fmt, value",
    [
        ("kind", 5, "B", 7),
        ("flags", 6, "H", 0x8001),
        ("dtype", 12, "B", 0),
        ("dtype", 12, "B", 9),
        ("ndim", 13, "B", 17),
        ("row_mode", 14, "B", 3),
        ("precision", 15, "B", 0),
        ("precision", 15, "B", 17),
        ("lanes", 16, "H", 3),
        ("lanes", 16, "H", 512),
        ("lanes", 16, "H", 0),
        ("reserved", 18, "H", 1),
        ("chunk_size", 20, "I", 0),
        ("meta_length", 44, "I", 1 << 21),
        ("header_length", 8, "I", 0xFFFFFFFF),
        ("num_chunks", 40, "I", 0xFFFFFFFF),
    ],
)
def test_hostile_header_field_with_a_valid_crc_is_corrupt(
    field: str, offset: int, fmt: str, value: int
) -> None:
    frame, table, _, index = _load("channel_3d")
    body = bytearray(frame[:-4])
    struct.pack_into("<" + fmt, body, offset, value)
    bad = _with_crc(bytes(body))
    with pytest.raises(tc.CorruptStreamError):
        tc.read_header(bad)
    with pytest.raises(tc.CorruptStreamError):
        tc.decode(bad, table, index)


def test_hostile_chunk_directory_with_a_valid_crc_is_corrupt() -> None:
    frame, table, _, _ = _load("lanes32_chunks")
    info = tc.read_header(frame)
    assert info.num_chunks > 1
    at = info.header_length
    first, second = struct.unpack_from("<II", frame, at)
    for a, b in [
        (first + 2, second - 2),
        (first - 2, second + 2),
        (0xFFFFFFFF, second),
        (0, second),
    ]:
        body = bytearray(frame[:-4])
        struct.pack_into("<II", body, at, a & 0xFFFFFFFF, b & 0xFFFFFFFF)
        with pytest.raises(tc.CorruptStreamError):
            tc.decode(_with_crc(bytes(body)), table)


def test_lane_state_below_the_minimum_is_corrupt() -> None:
    frame, table, _, _ = _load("lanes1")
    info = tc.read_header(frame)
    chunk_at = info.header_length + 4 * info.num_chunks
    body = bytearray(frame[:-4])
    struct.pack_into("<I", body, chunk_at, 0xFFFF)
    with pytest.raises(tc.CorruptStreamError):
        tc.decode(_with_crc(bytes(body)), table)


@pytest.mark.parametrize("name", CHECKED + UNCHECKED)
def test_payload_damage_with_a_recomputed_crc_raises_or_decodes(name: str) -> None:
    """A flip the CRC cannot see (the CRC was recomputed) must still never crash.
    Every payload bit of small frames, an evenly spread 1500 of larger ones."""
    _manifest()
    frame, table, _, index = _load(name)
    info = tc.read_header(frame)
    start = info.header_length + 4 * info.num_chunks
    end = len(frame) - (4 if info.checksum else 0)
    bits = range(8 * start, 8 * end, max(1, (8 * (end - start)) // 1500))
    outcomes = {"raised": 0, "decoded": 0}
    for bit in bits:
        bad = _flip(frame, bit)
        if info.checksum:
            bad = _with_crc(bad[:-4])
        try:
            out = tc.decode(bad, table, index)
        except tc.TaskcodecError:
            outcomes["raised"] += 1
        else:
            assert out.dtype == np.dtype(info.dtype) and out.shape == info.shape
            outcomes["decoded"] += 1
    assert sum(outcomes.values()) == len(bits)
