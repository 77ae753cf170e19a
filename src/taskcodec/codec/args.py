"""Checks of the arguments the codec modules share (options, frames as bytes)."""

from __future__ import annotations

from typing import Any

import numpy as np

import taskcodec._core as _core
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["int_option", "lanes_option", "auto_lanes", "meta_option", "byte_view"]


def int_option(value: Any, name: str, lo: int, hi: int) -> int:
    """``value`` as an int in ``lo..hi``, or a clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ArgumentTypeError(f"{name} must be an int, got {type(value).__name__}")
    if not lo <= int(value) <= hi:
        raise TaskcodecError(f"{name} must lie in {lo}..{hi}, got {value}")
    return int(value)


def lanes_option(lanes: Any) -> int:
    """Interleaved rANS states per chunk: a power of two in 1..MAX_LANES."""
    lanes = int_option(lanes, "lanes", 1, int(_core.MAX_LANES))
    if lanes & (lanes - 1):
        raise TaskcodecError(f"lanes must be a power of two, got {lanes}")
    return lanes


def auto_lanes(size: int, most: int = 32) -> int:
    """Lanes for a frame of ``size`` symbols: ``most`` from 1024 · ``most`` symbols up, fewer for
    small tensors, where each lane's 4-byte flush would dominate (any decoder reads any count)."""
    lanes = 1
    while lanes < most and size >= 1024 * lanes:
        lanes *= 2
    return lanes


def meta_option(meta: Any) -> bytes:
    if not isinstance(meta, (bytes, bytearray, memoryview)):
        raise ArgumentTypeError(f"meta must be bytes-like, got {type(meta).__name__}")
    return bytes(meta)


def byte_view(blob: Any) -> memoryview:
    """A flat, contiguous byte view of a frame (bytes, bytearray, memoryview, uint8 array)."""
    if isinstance(blob, str):
        raise ArgumentTypeError("a frame is bytes, not str")
    try:
        view = memoryview(blob)
    except TypeError:
        raise ArgumentTypeError(f"a frame must be bytes-like, got {type(blob).__name__}") from None
    if not view.c_contiguous:
        raise TaskcodecError("frame buffer must be contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view
