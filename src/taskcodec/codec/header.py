"""Frame headers: what a frame says about itself (docs/format.md, section 3), parsed once."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import taskcodec._core as _core
from taskcodec.codec.args import byte_view, int_option

__all__ = [
    "FrameInfo",
    "FrameKind",
    "read_header",
    "DEFAULT_MAX_SYMBOLS",
    "DEFAULT_LANES",
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_GPU_CHUNK_SIZE",
]

DEFAULT_MAX_SYMBOLS: int = int(_core.DEFAULT_MAX_SYMBOLS)
DEFAULT_LANES: int = int(_core.DEFAULT_LANES)
DEFAULT_CHUNK_SIZE: int = int(_core.DEFAULT_CHUNK_SIZE)
"""Symbols per chunk for arrays in host memory (2**20: best for CPU threads and for size)."""
DEFAULT_GPU_CHUNK_SIZE: int = 1 << 14
"""Symbols per chunk for arrays on a CUDA device: one chunk is one warp, so small chunks give
the GPU its parallelism (2**14 measured best on an H100, docs/gpu.md; +1.2 % size)."""

_DTYPE_OFFSET = 12  # offset of the u8 dtype code in the fixed header (docs/format.md, 3.1)
_DTYPE_NAMES = ("", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")


class FrameKind:
    """Values of the frame's kind byte."""

    SYMBOLS = 1
    SPARSE_UPDATE = 2


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """What a frame's header says about it (see :func:`read_header`)."""

    version: int
    kind: int
    checksum: bool
    dtype: str
    shape: Tuple[int, ...]
    channel_axis: Optional[int]  # None: single row or explicit index
    uses_index: bool
    precision: int
    lanes: int
    chunk_size: int
    fingerprint: int
    num_symbols: int
    num_chunks: int
    meta: bytes
    index_checksum: Optional[int]  # CRC32C of the index the frame was coded with
    header_length: int
    payload_length: int
    frame_length: int


def read_header(blob: Any, *, max_symbols: int = DEFAULT_MAX_SYMBOLS) -> FrameInfo:
    """Validate a frame's structure and CRC and return its header (no table needed)."""
    max_symbols = int_option(max_symbols, "max_symbols", 0, 2**64 - 1)
    d = _core.read_header(byte_view(blob), max_symbols)
    row_mode = int(d["row_mode"])
    single = row_mode == int(_core.ROW_SINGLE)
    uses_index = row_mode == int(_core.ROW_INDEX)
    return FrameInfo(
        version=int(d["version"]),
        kind=int(d["kind"]),
        checksum=bool(d["checksum"]),
        dtype=str(d["dtype"]),
        shape=tuple(int(s) for s in d["shape"]),
        channel_axis=None if (single or uses_index) else row_mode,
        uses_index=uses_index,
        precision=int(d["precision"]),
        lanes=int(d["lanes"]),
        chunk_size=int(d["chunk_size"]),
        fingerprint=int(d["fingerprint"]),
        num_symbols=int(d["num_symbols"]),
        num_chunks=int(d["num_chunks"]),
        meta=bytes(d["meta"]),
        index_checksum=None if d["index_checksum"] is None else int(d["index_checksum"]),
        header_length=int(d["header_length"]),
        payload_length=int(d["payload_length"]),
        frame_length=int(d["frame_length"]),
    )


def validated_dtype(view: memoryview) -> str:
    """The element type recorded by a frame the core has already validated (no second parse:
    the dtype byte sits at a fixed offset and the core checked it lies in 1..8)."""
    return _DTYPE_NAMES[view[_DTYPE_OFFSET]]
