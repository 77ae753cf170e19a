"""Which table row codes each symbol: the position along a channel axis, or an explicit index."""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["as_index", "row_mode", "rows_for"]


def as_index(index: Any, shape: Optional[Tuple[int, ...]], rows: int) -> np.ndarray:
    """int32 copy (or view) of an index, checked against the table's rows (and a shape)."""
    idx = _device.as_numpy(index, "index")
    if shape is not None and idx.shape != shape:
        raise TaskcodecError(f"index has shape {idx.shape}, symbols have shape {shape}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise ArgumentTypeError(f"index must be integers, got {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= rows):
        raise TaskcodecError(
            f"index values must lie in 0..{rows - 1} (rows of the table), "
            f"got {idx.min()}..{idx.max()}"
        )
    if idx.dtype != np.int32 or not idx.flags.c_contiguous:
        idx = idx.astype(np.int32, order="C")  # (keeps a 0-d shape, unlike ascontiguousarray)
    return idx


def row_mode(shape: Tuple[int, ...], rows: int, channel_axis: Optional[int]) -> int:
    """The frame's row mode for symbols of ``shape`` coded with a table of ``rows`` rows
    without an index: ``ROW_SINGLE`` or the (non-negative) channel axis."""
    if rows == 1:
        return int(_core.ROW_SINGLE)
    ndim = len(shape)
    if channel_axis is None:
        raise TaskcodecError(
            f"the table has {rows} rows: give channel_axis or index to pick the rows"
        )
    axis = channel_axis + ndim if channel_axis < 0 else channel_axis
    if not 0 <= axis < ndim:
        raise TaskcodecError(f"channel_axis {channel_axis} is out of range for shape {shape}")
    if shape[axis] != rows:
        raise TaskcodecError(
            f"axis {axis} of shape {shape} has {shape[axis]} channels "
            f"but the table has {rows} rows"
        )
    return axis


def rows_for(symbols: np.ndarray, rows: int, index: Any, channel_axis: Optional[int]) -> np.ndarray:
    """Row of every symbol, as encode() assigns them (numpy; for analysis, not speed)."""
    if index is not None:
        return as_index(index, symbols.shape, rows).astype(np.int64)
    mode = row_mode(symbols.shape, rows, channel_axis)
    if mode == int(_core.ROW_SINGLE):
        return np.zeros(symbols.shape, dtype=np.int64)
    shape = [1] * symbols.ndim
    shape[mode] = symbols.shape[mode]
    return np.broadcast_to(np.arange(symbols.shape[mode]).reshape(shape), symbols.shape)
