"""encode / decode: integer arrays <-> self-describing frames (docs/format.md).

Arguments are validated here, once; the work then goes to the CPU core or, for arrays on a
CUDA device, to :mod:`taskcodec.codec.gpu`.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.codec import gpu
from taskcodec.codec.args import byte_view, int_option, lanes_option, meta_option
from taskcodec.codec.header import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_GPU_CHUNK_SIZE,
    DEFAULT_LANES,
    DEFAULT_MAX_SYMBOLS,
    FrameKind,
    validated_dtype,
)
from taskcodec.codec.rows import as_index, row_mode
from taskcodec.codec.table import CdfTable
from taskcodec.errors import ArgumentTypeError, CorruptStreamError, TaskcodecError

__all__ = ["encode", "decode"]


def _check_table(table: Any) -> None:
    if not isinstance(table, CdfTable):
        raise ArgumentTypeError(f"table must be a CdfTable, got {type(table).__name__}")


def encode(
    symbols: Any,
    table: CdfTable,
    index: Any = None,
    *,
    channel_axis: Optional[int] = 1,
    lanes: int = DEFAULT_LANES,
    chunk_size: Optional[int] = None,
    checksum: bool = True,
    threads: int = 0,
    meta: bytes = b"",
) -> bytes:
    """Entropy-code an integer array into a frame.

    Args:
        symbols: integer array of any shape: numpy, a CPU torch tensor, an array-like, or any
            DLPack array on a CUDA device (coded there, without a copy to the host).
        table: the :class:`CdfTable` to code with.
        index: optional integer array of the same shape: the table row of each symbol.
            Without it, the row is the position along ``channel_axis`` (a single-row
            table codes every symbol with row 0, whatever the shape).
        channel_axis: axis whose length equals the table's row count.
        lanes: interleaved rANS states per chunk (power of two, 1..256; 32 matches a
            CUDA warp).
        chunk_size: symbols per independently decodable chunk. By default 2**20
            (``DEFAULT_CHUNK_SIZE``) for arrays in host memory and 2**14
            (``DEFAULT_GPU_CHUNK_SIZE``) for arrays on a CUDA device, where one chunk is one
            warp (docs/gpu.md). Every decoder reads any chunk size (it is a header field).
        checksum: append a CRC32C trailer (recommended; on by default).
        threads: 0 picks automatically (threads only for large inputs).
        meta: opaque bytes stored in the header (e.g. quantization parameters).

    Values outside a row's range are escaped and coded exactly, never clipped.
    """
    _check_table(table)
    on_device = _device.is_device_array(symbols)
    lanes = lanes_option(lanes)
    if chunk_size is None:
        chunk_size = DEFAULT_GPU_CHUNK_SIZE if on_device else DEFAULT_CHUNK_SIZE
    chunk_size = int_option(chunk_size, "chunk_size", 1, 2**32 - 1)
    threads = int_option(threads, "threads", 0, 1024)
    meta = meta_option(meta)
    if on_device:
        shape = tuple(int(s) for s in getattr(symbols, "shape"))
        mode = int(_core.ROW_INDEX) if index is not None else row_mode(shape, table.num_rows, channel_axis)
        return gpu.encode_device(symbols, table, index, mode, lanes=lanes, chunk_size=chunk_size,
                                 checksum=bool(checksum), meta=meta)
    arr = _device.as_numpy(symbols, "symbols")
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ArgumentTypeError(f"symbols must be an integer array, got dtype {arr.dtype}")
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")  # (np.ascontiguousarray would turn 0-d into 1-d)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if index is not None:
        idx: Optional[np.ndarray] = as_index(index, arr.shape, table.num_rows)
        mode = int(_core.ROW_INDEX)
    else:
        idx = None
        mode = row_mode(arr.shape, table.num_rows, channel_axis)
    return _core.encode(
        arr, table._t, mode, idx, meta, lanes, chunk_size, bool(checksum), threads, FrameKind.SYMBOLS,
    )


def decode(
    blob: Any,
    table: CdfTable,
    index: Any = None,
    *,
    max_symbols: int = DEFAULT_MAX_SYMBOLS,
    threads: int = 0,
    out: Any = None,
    device: Any = None,
) -> Any:
    """Decode a frame made by :func:`encode` into an array of its shape and recorded dtype
    (an int64 array comes back as int64, an int8 one as int8).

    ``out`` (optional): where to decode, e.g. reused between calls to avoid allocating (and
    first touching) the output each time: a C-contiguous, writeable numpy array or CPU torch
    tensor of the frame's shape, of dtype int32 (decoded straight into its memory) or of the
    frame's dtype. It is written only after the frame was validated, and returned.

    The frame is validated before anything is allocated: CRC32C, every length and
    count, ``max_symbols`` (raise it for frames above 2**28 symbols), and the table
    fingerprint (``TableMismatchError`` for other tables). Damaged frames raise
    ``CorruptStreamError`` (or its subclass ``ChecksumError``), never return garbage.

    ``device="cuda"`` (or ``"cuda:N"``, a ``torch.device``), or an ``out`` tensor on a CUDA
    device, decodes on the GPU into a torch tensor there (CUDA builds; the frame is validated
    on the host first, exactly as above).
    """
    _check_table(table)
    max_symbols = int_option(max_symbols, "max_symbols", 0, 2**64 - 1)
    threads = int_option(threads, "threads", 0, 1024)
    if (device is not None and str(device) != "cpu") or (out is not None and _device.is_device_array(out)):
        if device is None:
            device = f"cuda:{out.__dlpack_device__()[1]}"
        return gpu.decode_device(blob, table, index, device=device, out=out, max_symbols=max_symbols)
    view = byte_view(blob)
    # The core checks the index's shape and its CRC32C against the frame's header.
    idx = None if index is None else as_index(index, None, table.num_rows)
    if out is None:
        raw = _core.decode(view, table._t, idx, max_symbols, threads, None)
        return _as_recorded(raw, validated_dtype(view))
    target = _device.as_numpy(out, "out", writeable=True)
    if target.dtype == np.int32:
        _core.decode(view, table._t, idx, max_symbols, threads, target)
        return out
    raw = _core.decode(view, table._t, idx, max_symbols, threads, None)
    dtype = validated_dtype(view)
    _check_range(raw, dtype)
    if target.dtype != np.dtype(dtype) or target.shape != raw.shape:
        raise TaskcodecError(
            f"out must be int32 or {dtype} (the frame's dtype) of shape {raw.shape}, "
            f"got {target.dtype} of shape {target.shape}"
        )
    if not target.flags.writeable:
        raise TaskcodecError("out must be writeable")
    np.copyto(target, raw, casting="unsafe")
    return out


def _check_range(raw: np.ndarray, dtype: str) -> None:
    """Decoded int32 values must fit the dtype the frame records (only a damaged, unchecked
    frame or a hand-made one can break this; the encoder never writes such frames)."""
    if dtype in ("int32", "int64") or raw.size == 0:
        return
    info = np.iinfo(dtype)
    lo, hi = int(raw.min()), int(raw.max())
    if lo < info.min or hi > info.max:
        raise CorruptStreamError(f"the frame records dtype {dtype} but holds values {lo}..{hi}")


def _as_recorded(raw: np.ndarray, dtype: str) -> np.ndarray:
    """The decoded int32 array in the dtype the frame records."""
    if dtype == "int32":
        return raw
    _check_range(raw, dtype)
    return raw.astype(dtype)
