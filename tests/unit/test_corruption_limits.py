"""Corrupt frames, part 2: other versions, other tables, caller limits, foreign bytes.

Every one must raise the matching TaskcodecError, never crash or return garbage."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import taskcodec as tc

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_corruption import (  # noqa: E402
    CHECKED,
    UNCHECKED,
    _load,
    _manifest,
    _single_row_table,
    _with_crc,
)


# ---------------------------------------------------------------------- version, table, limits


@pytest.mark.parametrize("version", [0, 2, 3, 255])
def test_patched_version_byte_raises_unsupported_version(version: int) -> None:
    for name in CHECKED + UNCHECKED:
        frame, table, _, index = _load(name)
        patched = bytearray(frame)
        patched[4] = version
        with pytest.raises(tc.UnsupportedVersionError):
            tc.decode(bytes(patched), table, index)
        with pytest.raises(tc.UnsupportedVersionError):
            tc.read_header(bytes(patched))
        if frame[6] & 1:  # also with a CRC that matches the patched bytes
            fixed = _with_crc(bytes(patched[:-4]))
            with pytest.raises(tc.UnsupportedVersionError):
                tc.decode(fixed, table, index)


def test_unsupported_version_is_a_corrupt_stream_error() -> None:
    frame, table, _, _ = _load("channel_3d")
    patched = bytearray(frame)
    patched[4] = 2
    with pytest.raises(tc.CorruptStreamError) as err:
        tc.decode(bytes(patched), table)
    assert isinstance(err.value, tc.UnsupportedVersionError)
    assert "version" in str(err.value)


def test_decoding_with_another_table_raises_table_mismatch() -> None:
    manifest = _manifest()
    tables = {name: _load(name)[1] for name in manifest}
    for name in manifest:
        frame, own, _, index = _load(name)
        for other in tables.values():
            if other.fingerprint == own.fingerprint:
                continue
            idx = index
            if index is not None and int(index.max(initial=0)) >= other.num_rows:
                idx = np.zeros_like(index)
            with pytest.raises(tc.TableMismatchError):
                tc.decode(frame, other, idx)


def test_table_differing_in_one_frequency_raises_table_mismatch() -> None:
    frame, table, _, _ = _load("channel_3d")
    freqs = table.freqs.astype(np.int64)
    freqs[0, 0] += 1
    freqs[0, 1] -= 1
    near = tc.CdfTable.from_freqs(freqs, table.offsets, table.precision, lengths=table.lengths)
    assert near.fingerprint != table.fingerprint
    with pytest.raises(tc.TableMismatchError) as err:
        tc.decode(frame, near)
    assert f"{table.fingerprint:016x}" in str(err.value)


def test_table_mismatch_is_not_a_corrupt_stream_error() -> None:
    assert not issubclass(tc.TableMismatchError, tc.CorruptStreamError)
    assert issubclass(tc.TableMismatchError, tc.TaskcodecError)


@pytest.mark.parametrize("name", CHECKED + UNCHECKED)
def test_max_symbols_below_the_frame_raises_limit_exceeded(name: str) -> None:
    _manifest()
    frame, table, expected, index = _load(name)
    n = expected.size
    np.testing.assert_array_equal(tc.decode(frame, table, index, max_symbols=n), expected)
    if n == 0:
        return
    with pytest.raises(tc.LimitExceededError) as err:
        tc.decode(frame, table, index, max_symbols=n - 1)
    assert str(n) in str(err.value)
    with pytest.raises(tc.LimitExceededError):
        tc.read_header(frame, max_symbols=n - 1)
    with pytest.raises(tc.LimitExceededError):
        tc.decode(frame, table, index, max_symbols=0)


def test_limit_exceeded_is_not_a_corrupt_stream_error() -> None:
    assert not issubclass(tc.LimitExceededError, tc.CorruptStreamError)
    assert issubclass(tc.LimitExceededError, tc.TaskcodecError)


def test_a_different_index_raises_table_mismatch() -> None:
    """Index-mode frames carry the CRC32C of their index (docs/format.md 3.2, 6)."""
    frame, table, expected, index = _load("index_ragged")
    np.testing.assert_array_equal(tc.decode(frame, table, index.astype(np.int64)), expected)
    rng = np.random.default_rng(7)
    for trial in range(50):
        other = index.copy()
        if trial % 2:
            other = rng.integers(0, table.num_rows, size=index.shape).astype(np.int32)
        flat = other.reshape(-1)
        at = int(rng.integers(0, flat.size))
        flat[at] = (flat[at] + 1) % table.num_rows  # differs in at least one entry
        with pytest.raises(tc.TableMismatchError, match="index"):
            tc.decode(frame, table, other)
    with pytest.raises(tc.TaskcodecError, match="shape"):
        tc.decode(frame, table, index.reshape(-1))


def test_not_a_frame_raises_corrupt_stream() -> None:
    table = _single_row_table()
    for blob in [
        b"",
        b"TCDC",
        b"\x00" * 48,
        b"\x00" * 4096,
        b"TCDT" + b"\x00" * 60,
        bytes(range(256)),
    ]:
        with pytest.raises(tc.CorruptStreamError):
            tc.decode(blob, table)
        with pytest.raises(tc.CorruptStreamError):
            tc.read_header(blob)


def test_random_bytes_with_a_valid_magic_and_crc_never_crash() -> None:
    rng = np.random.default_rng(11)
    table = _single_row_table()
    for _ in range(2000):
        body = (
            b"TCDC\x01"
            + rng.integers(0, 256, size=int(rng.integers(0, 120)), dtype=np.uint8).tobytes()
        )
        with pytest.raises(tc.TaskcodecError):
            tc.decode(_with_crc(body), table)
