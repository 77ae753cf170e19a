"""Golden frames of stream format version 1.

Each case is a small, fixed input (built from a fixed seed) coded with a fixed table and fixed
encode options. The files under ``v1/`` pin, for every case:

- ``<name>.frame``      the exact bytes ``taskcodec.encode`` wrote;
- ``<name>.table``      the exact bytes of its table (``CdfTable.to_bytes``);
- ``<name>.npy``        the array the frame decodes to (int32);
- ``<name>.index.npy``  the row index, for index-mode cases;
- ``manifest.json``     the encode options, input dtype, fingerprint and header fields.

The files are written once and kept forever: a later build must decode them to the same arrays
and, while the format version stays 1, re-encode the same inputs to the same bytes.

Regenerate only on purpose (a deliberate format change gets a new ``v<N>/`` folder)::

    GENERATE_EXPECTED=1 python -m pytest tests/golden      # or: python tests/golden/generate.py
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np

import taskcodec as tc

GOLDEN_DIR = Path(__file__).resolve().parent / "v1"
FORMAT_VERSION = 1
INT32_MIN = int(np.iinfo(np.int32).min)
INT32_MAX = int(np.iinfo(np.int32).max)


@dataclasses.dataclass(frozen=True)
class TableSpec:
    """Inputs of ``CdfTable.from_pmf``. Weights are small integers (exact in float64), so
    the quantized table does not depend on the platform's libm."""

    pmf: Tuple[Tuple[float, ...], ...]
    offsets: Tuple[int, ...]
    precision: int
    lengths: Optional[Tuple[int, ...]] = None
    escape: Optional[Tuple[float, ...]] = None

    def build(self) -> tc.CdfTable:
        return tc.CdfTable.from_pmf(
            np.array(self.pmf, dtype=np.float64),
            np.array(self.offsets, dtype=np.int64),
            precision=self.precision,
            lengths=None if self.lengths is None else np.array(self.lengths, dtype=np.int64),
            escape=None if self.escape is None else np.array(self.escape, dtype=np.float64),
        )


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    description: str
    table: TableSpec
    make_input: Callable[[], Tuple[np.ndarray, Optional[np.ndarray]]]  # symbols, index
    channel_axis: Optional[int] = 1
    lanes: int = 32
    chunk_size: int = 1 << 20
    checksum: bool = True
    meta: bytes = b""

    def encode_kwargs(self) -> Dict[str, object]:
        return dict(
            channel_axis=self.channel_axis,
            lanes=self.lanes,
            chunk_size=self.chunk_size,
            checksum=self.checksum,
            meta=self.meta,
        )


def _peaked(width: int, center: int, scale: int = 1) -> Tuple[float, ...]:
    """Weights (width - |i - center|)**2 * scale + 1: peaked and exactly representable."""
    return tuple(float((width - abs(i - center)) ** 2 * scale + 1) for i in range(width))


def _laplace_ints(rng: np.random.Generator, shape: Tuple[int, ...], scale: float) -> np.ndarray:
    return np.rint(rng.laplace(0.0, scale, size=shape)).astype(np.int64)


# ---------------------------------------------------------------------------- inputs


def _input_channel_3d() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    rng = np.random.default_rng(1001)
    x = _laplace_ints(rng, (4, 6, 10), 2.0) + np.arange(6).reshape(1, 6, 1) - 3
    return x.astype(np.int16), None


def _input_index_ragged() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    rng = np.random.default_rng(1002)
    index = rng.integers(0, 3, size=(8, 9)).astype(np.int32)
    offsets = np.array([-2, 0, 100])[index]
    lengths = np.array([5, 17, 2])[index]
    local = rng.integers(-3, 20, size=index.shape)  # some below, some above each row's range
    x = offsets + np.minimum(local, lengths + 4)
    return x.astype(np.int32), index


def _input_escapes_int32() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    extremes = [INT32_MIN, INT32_MAX, INT32_MIN + 1, INT32_MAX - 1, 0, -1, 10**9, -(10**9)]
    row0 = [INT32_MAX - 3, INT32_MAX - 2, INT32_MAX - 1, INT32_MAX] + extremes + [INT32_MAX - 4] * 4
    row1 = [INT32_MIN, INT32_MIN + 1, INT32_MIN + 2, INT32_MIN + 3] + extremes + [INT32_MIN + 4] * 4
    return np.array([row0, row1], dtype=np.int64), None


def _input_lanes1() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    rng = np.random.default_rng(1004)
    x = np.clip(rng.geometric(0.3, size=100) - 1, 0, 20)  # a few values above the 16 bins
    return x.astype(np.uint8), None


def _input_lanes32_chunks() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    rng = np.random.default_rng(1005)
    x = _laplace_ints(rng, (3, 250), 3.0) + np.array([[-10], [0], [10]])
    return np.clip(x, -128, 127).astype(np.int8), None


def _input_no_checksum() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    rng = np.random.default_rng(1006)
    x = rng.integers(0, 9, size=(5, 2, 7))
    x[0, 0, :3] = [500, 65535, 9]  # escapes
    return x.astype(np.uint16), None


def _input_wide_p16() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    rng = np.random.default_rng(1007)
    x = rng.integers(0, 320, size=(400,))  # table covers 0..299: 16-bit decoder slots
    return x.astype(np.uint32), None


def _input_empty() -> Tuple[np.ndarray, Optional[np.ndarray]]:
    return np.zeros((0, 4), dtype=np.int32), None


CASES: Tuple[Case, ...] = (
    Case(
        name="channel_3d",
        description="int16 [4, 6, 10], 6-row table on channel axis 1, precision 12",
        table=TableSpec(
            pmf=tuple(_peaked(15, 7, scale=r + 1) for r in range(6)),
            offsets=tuple(-10 + r for r in range(6)),
            precision=12,
        ),
        make_input=_input_channel_3d,
        channel_axis=1,
    ),
    Case(
        name="index_ragged",
        description="int32 [8, 9] with an explicit row index into a ragged 3-row table, meta bytes",
        table=TableSpec(
            pmf=(_peaked(17, 2)[:5] + (0.0,) * 12, _peaked(17, 8), (3.0, 1.0) + (0.0,) * 15),
            offsets=(-2, 0, 100),
            precision=10,
            lengths=(5, 17, 2),
        ),
        make_input=_input_index_ragged,
        channel_axis=None,
        lanes=8,
        meta=b"golden:index_ragged",
    ),
    Case(
        name="escapes_int32",
        description="int64 [2, 16]: rows at both ends of int32, escapes up to INT32_MIN/INT32_MAX",
        table=TableSpec(
            pmf=((1.0, 2.0, 3.0, 4.0), (4.0, 3.0, 2.0, 1.0)),
            offsets=(INT32_MAX - 3, INT32_MIN),
            precision=8,
            escape=(5.0, 5.0),
        ),
        make_input=_input_escapes_int32,
        channel_axis=0,
        lanes=4,
    ),
    Case(
        name="lanes1",
        description="uint8 [100], single-row table, one lane",
        table=TableSpec(pmf=(_peaked(16, 0),), offsets=(0,), precision=14),
        make_input=_input_lanes1,
        lanes=1,
    ),
    Case(
        name="lanes32_chunks",
        description="int8 [3, 250], 32 lanes, chunks of 128 symbols (6 chunks)",
        table=TableSpec(
            pmf=tuple(_peaked(21, 10) for _ in range(3)),
            offsets=(-20, -10, 0),
            precision=11,
        ),
        make_input=_input_lanes32_chunks,
        channel_axis=0,
        lanes=32,
        chunk_size=128,
    ),
    Case(
        name="no_checksum",
        description="uint16 [5, 2, 7], channel axis -1, no CRC32C trailer, 3 chunks",
        table=TableSpec(
            pmf=tuple(_peaked(9, r + 1) for r in range(7)), offsets=(0,) * 7, precision=7
        ),
        make_input=_input_no_checksum,
        channel_axis=-1,
        lanes=4,
        chunk_size=32,
        checksum=False,
    ),
    Case(
        name="wide_p16",
        description="uint32 [400], 300-symbol single row at precision 16 (16-bit decoder slots)",
        table=TableSpec(pmf=(_peaked(300, 150),), offsets=(0,), precision=16),
        make_input=_input_wide_p16,
        lanes=16,
        chunk_size=100,
    ),
    Case(
        name="empty",
        description="int32 [0, 4]: no symbols, no chunks",
        table=TableSpec(
            pmf=tuple(_peaked(4, r) for r in range(4)), offsets=(0, 1, 2, 3), precision=4
        ),
        make_input=_input_empty,
        channel_axis=1,
    ),
)

CASES_BY_NAME: Dict[str, Case] = {c.name: c for c in CASES}


def encode_case(
    case: Case, table: tc.CdfTable, symbols: np.ndarray, index: Optional[np.ndarray]
) -> bytes:
    return tc.encode(symbols, table, index, **case.encode_kwargs())  # type: ignore[arg-type]


def write_all(directory: Path = GOLDEN_DIR) -> Dict[str, dict]:
    """Encode every case and (over)write its files and the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    manifest: Dict[str, dict] = {}
    for case in CASES:
        table = case.table.build()
        symbols, index = case.make_input()
        frame = encode_case(case, table, symbols, index)
        decoded = tc.decode(frame, table, index)
        expected = symbols.astype(np.int32)
        if (
            decoded.dtype != np.int32
            or decoded.shape != symbols.shape
            or not np.array_equal(decoded, expected)
        ):
            raise AssertionError(f"{case.name}: the frame does not decode to its input")
        info = tc.read_header(frame)
        if len(frame) > 4096:
            raise AssertionError(f"{case.name}: golden frames stay small, got {len(frame)} bytes")
        (directory / f"{case.name}.frame").write_bytes(frame)
        (directory / f"{case.name}.table").write_bytes(table.to_bytes())
        np.save(directory / f"{case.name}.npy", expected, allow_pickle=False)
        if index is not None:
            np.save(
                directory / f"{case.name}.index.npy", index.astype(np.int32), allow_pickle=False
            )
        manifest[case.name] = {
            "description": case.description,
            "format_version": FORMAT_VERSION,
            "input_dtype": symbols.dtype.name,
            "shape": list(symbols.shape),
            "uses_index": index is not None,
            "channel_axis": case.channel_axis,
            "lanes": case.lanes,
            "chunk_size": case.chunk_size,
            "checksum": case.checksum,
            "meta_hex": case.meta.hex(),
            "precision": table.precision,
            "fingerprint": f"0x{table.fingerprint:016x}",
            "num_symbols": info.num_symbols,
            "num_chunks": info.num_chunks,
            "header_length": info.header_length,
            "frame_length": len(frame),
            "frame_sha256": hashlib.sha256(frame).hexdigest(),
            "table_sha256": hashlib.sha256(table.to_bytes()).hexdigest(),
        }
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDEN_DIR
    for name, entry in write_all(out).items():
        print(f"{name:16s} {entry['frame_length']:5d} bytes  {entry['description']}")
