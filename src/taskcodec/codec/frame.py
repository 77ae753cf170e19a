"""encode / decode: integer arrays <-> self-describing frames (docs/format.md)."""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import numpy as np

from taskcodec import _core
from taskcodec.codec import cuda as _cuda
from taskcodec.codec.table import CdfTable
from taskcodec.errors import TaskcodecError

__all__ = ["encode", "decode", "read_header", "FrameInfo", "DEFAULT_MAX_SYMBOLS", "FrameKind"]

DEFAULT_MAX_SYMBOLS: int = int(_core.DEFAULT_MAX_SYMBOLS)
DEFAULT_LANES: int = int(_core.DEFAULT_LANES)
DEFAULT_CHUNK_SIZE: int = int(_core.DEFAULT_CHUNK_SIZE)


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


def _as_array(x: Any, what: str) -> np.ndarray:
    """numpy view of a numpy array, torch CPU tensor, or array-like (never a copy if avoidable)."""
    if hasattr(x, "detach") and hasattr(x, "device"):  # torch.Tensor, without importing torch
        if getattr(x.device, "type", "cpu") != "cpu":
            raise TaskcodecError(
                f"{what} is on {x.device}; this build codes CPU arrays (move it with .cpu())"
            )
        x = x.detach().numpy()
    return np.asarray(x)


def _as_index(index: Any, shape: Optional[Tuple[int, ...]], rows: int) -> np.ndarray:
    """int32 copy (or view) of an index, checked against the table's rows (and a shape)."""
    idx = _as_array(index, "index")
    if shape is not None and idx.shape != shape:
        raise TaskcodecError(f"index has shape {idx.shape}, symbols have shape {shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TaskcodecError(f"index must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        raise TaskcodecError(
            f"index values must lie in 0..{rows - 1} (rows of the table), "
            f"got {idx.min()}..{idx.max()}"
        )
    if idx.dtype != np.int32 or not idx.flags.c_contiguous:
        idx = idx.astype(np.int32, order="C")  # (keeps a 0-d shape, unlike ascontiguousarray)
    return idx


def _row_mode(shape: Tuple[int, ...], table: CdfTable, channel_axis: Optional[int]) -> int:
    if table.num_rows == 1:
        return int(_core.ROW_SINGLE)
    ndim = len(shape)
    if channel_axis is None:
        raise TaskcodecError(
            f"the table has {table.num_rows} rows: give channel_axis or index to pick the rows"
        )
    axis = channel_axis + ndim if channel_axis < 0 else channel_axis
    if not 0 <= axis < ndim:
        raise TaskcodecError(f"channel_axis {channel_axis} is out of range for shape {shape}")
    if shape[axis] != table.num_rows:
        raise TaskcodecError(
            f"axis {axis} of shape {shape} has {shape[axis]} channels "
            f"but the table has {table.num_rows} rows"
        )
    return axis


def _rows_for(symbols: np.ndarray, table: CdfTable, index: Any, channel_axis: Optional[int]) -> np.ndarray:
    """Row of every symbol, as encode() assigns them (numpy; for analysis, not speed)."""
    if index is not None:
        return _as_index(index, symbols.shape, table.num_rows).astype(np.int64)
    mode = _row_mode(symbols.shape, table, channel_axis)
    if mode == int(_core.ROW_SINGLE):
        return np.zeros(symbols.shape, dtype=np.int64)
    shape = [1] * symbols.ndim
    shape[mode] = symbols.shape[mode]
    return np.broadcast_to(np.arange(symbols.shape[mode]).reshape(shape), symbols.shape)


def encode(
    symbols: Any,
    table: CdfTable,
    index: Any = None,
    *,
    channel_axis: Optional[int] = 1,
    lanes: int = DEFAULT_LANES,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    checksum: bool = True,
    threads: int = 0,
    meta: bytes = b"",
) -> bytes:
    """Entropy-code an integer array into a frame.

    Args:
        symbols: integer array of any shape (numpy, a CPU torch tensor, or array-like).
        table: the :class:`CdfTable` to code with.
        index: optional integer array of the same shape: the table row of each symbol.
            Without it, the row is the position along ``channel_axis`` (a single-row
            table codes every symbol with row 0, whatever the shape).
        channel_axis: axis whose length equals the table's row count.
        lanes: interleaved rANS states per chunk (power of two, 1..256; 32 matches a
            CUDA warp).
        chunk_size: symbols per independently decodable chunk.
        checksum: append a CRC32C trailer (recommended; on by default).
        threads: 0 picks automatically (threads only for large inputs).
        meta: opaque bytes stored in the header (e.g. quantization parameters).

    Values outside a row's range are escaped and coded exactly, never clipped.
    """
    if not isinstance(table, CdfTable):
        raise TaskcodecError(f"table must be a CdfTable, got {type(table).__name__}")
    if _cuda.is_device_array(symbols):
        return _encode_device(symbols, table, index, channel_axis, lanes, chunk_size, checksum, meta)
    arr = _as_array(symbols, "symbols")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TaskcodecError(f"symbols must be an integer array, got dtype {arr.dtype}")
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    lanes = _int_option(lanes, "lanes", 1, int(_core.MAX_LANES))
    if lanes & (lanes - 1):
        raise TaskcodecError(f"lanes must be a power of two, got {lanes}")
    chunk_size = _int_option(chunk_size, "chunk_size", 1, 2**32 - 1)
    threads = _int_option(threads, "threads", 0, 1024)
    if not isinstance(meta, (bytes, bytearray, memoryview)):
        raise TaskcodecError(f"meta must be bytes-like, got {type(meta).__name__}")
    if index is not None:
        idx: Optional[np.ndarray] = _as_index(index, arr.shape, table.num_rows)
        mode = int(_core.ROW_INDEX)
    else:
        idx = None
        mode = _row_mode(arr.shape, table, channel_axis)
    return _core.encode(
        arr, table._t, mode, idx, bytes(meta), lanes, chunk_size, bool(checksum), threads,
        FrameKind.SYMBOLS,
    )


def decode(
    blob: Any,
    table: CdfTable,
    index: Any = None,
    *,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
    threads: int = 0,
    out: Optional[np.ndarray] = None,
    device: Any = None,
) -> np.ndarray:
    """Decode a frame made by :func:`encode` into an ``int32`` array of its shape.

    ``out`` (optional): a C-contiguous, writeable ``int32`` array of the frame's shape to
    decode into and return, e.g. reused between calls to avoid allocating (and first
    touching) the output each time. It is written only after the frame was validated.

    The frame is validated before anything is allocated: CRC32C, every length and
    count, ``max_symbols`` (raise it for frames above 2**28 symbols), and the table
    fingerprint (``TableMismatchError`` for other tables). Damaged frames raise
    ``CorruptStreamError`` (or its subclass ``ChecksumError``), never return garbage.

    ``device="cuda"`` (or ``"cuda:N"``, a ``torch.device``), or an ``out`` tensor on a CUDA
    device, decodes on the GPU into an int32 torch tensor there (CUDA builds; the frame is
    validated on the host first, exactly as above).
    """
    if not isinstance(table, CdfTable):
        raise TaskcodecError(f"table must be a CdfTable, got {type(table).__name__}")
    max_symbols = _int_option(max_symbols, "max_symbols", 0, 2**64 - 1)
    threads = _int_option(threads, "threads", 0, 1024)
    if (device is not None and str(device) != "cpu") or (out is not None and _cuda.is_device_array(out)):
        if device is None:
            device = f"cuda:{out.__dlpack_device__()[1]}"
        return _cuda.decode_device(blob, table, index, device=device, out=out, max_symbols=max_symbols)
    view = _byte_view(blob)
    # The core checks the index's shape and its CRC32C against the frame's header.
    idx = None if index is None else _as_index(index, None, table.num_rows)
    return _core.decode(view, table._t, idx, max_symbols, threads, out)


def _encode_device(symbols: Any, table: CdfTable, index: Any, channel_axis: Optional[int],
                   lanes: Any, chunk_size: Any, checksum: bool, meta: Any) -> bytes:
    lanes = _int_option(lanes, "lanes", 1, int(_core.MAX_LANES))
    if lanes & (lanes - 1):
        raise TaskcodecError(f"lanes must be a power of two, got {lanes}")
    chunk_size = _int_option(chunk_size, "chunk_size", 1, 2**32 - 1)
    if not isinstance(meta, (bytes, bytearray, memoryview)):
        raise TaskcodecError(f"meta must be bytes-like, got {type(meta).__name__}")
    shape = tuple(int(s) for s in getattr(symbols, "shape"))
    if index is not None:
        mode = int(_core.ROW_INDEX)
    else:
        mode = _row_mode(shape, table, channel_axis)
    return _cuda.encode_device(symbols, table, index, mode, lanes=lanes, chunk_size=chunk_size,
                               checksum=bool(checksum), meta=bytes(meta))


def read_header(blob: Any, *, max_symbols: int = DEFAULT_MAX_SYMBOLS) -> FrameInfo:
    """Validate a frame's structure and CRC and return its header (no table needed)."""
    max_symbols = _int_option(max_symbols, "max_symbols", 0, 2**64 - 1)
    d = _core.read_header(_byte_view(blob), max_symbols)
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


def _int_option(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TaskcodecError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise TaskcodecError(f"{name} must lie in {lo}..{hi}, got {value}")
    return int(value)


def _byte_view(blob: Any) -> memoryview:
    if isinstance(blob, str):
        raise TaskcodecError("a frame is bytes, not str")
    try:
        view = memoryview(blob)
    except TypeError:
        raise TaskcodecError(f"a frame must be bytes-like, got {type(blob).__name__}") from None
    if not view.c_contiguous:
        raise TaskcodecError("frame buffer must be contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view
