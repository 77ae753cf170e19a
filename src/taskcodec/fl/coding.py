"""Top-k selection and the value codings of sparse updates: the settings every user of the
sparse-update frame shares (:class:`~taskcodec.fl.TopKCompressor`, the DDP hook, Flower mods)."""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

import taskcodec._core as _core
from taskcodec import _device

__all__ = [
    "VALUE_CODINGS",
    "DEFAULT_RATIO",
    "DEFAULT_VALUES",
    "DEFAULT_BLOCK_SIZE",
    "DEFAULT_LEVELS",
    "DEFAULT_MAX_TENSORS",
    "DEFAULT_MAX_ELEMENTS",
    "topk_count",
    "topk_select",
]

#: Value codings by name -> core code. Errors are per value, relative to the block scale:
#: float32 exact; float16 relative 2^-11; int8 half a step of max|v|/127 per block;
#: sign: sign kept, magnitude = the block's mean |v|; qsgd: one step of max|v|/levels, unbiased.
VALUE_CODINGS: Dict[str, int] = {"float32": 0, "float16": 1, "int8": 2, "sign": 3, "qsgd": 4}

DEFAULT_RATIO = 0.01
"""Fraction of each tensor's elements sent."""
DEFAULT_VALUES = "int8"
"""Value coding of the sent entries (one of :data:`VALUE_CODINGS`)."""
DEFAULT_BLOCK_SIZE = 256
"""Values per scale block of ``int8``, ``sign`` and ``qsgd``."""
DEFAULT_LEVELS = 16
"""QSGD levels."""

DEFAULT_MAX_TENSORS: int = int(_core.SPARSE_DEFAULT_MAX_TENSORS)
DEFAULT_MAX_ELEMENTS: int = int(_core.SPARSE_DEFAULT_MAX_ELEMENTS)


def topk_count(n: int, ratio: float) -> int:
    """k = max(1, ceil(ratio * n)) for n > 0 (at most n); 0 for n == 0."""
    return int(_core.topk_count(int(n), float(ratio)))


def topk_select(x: Any, k: int, threads: int = 0) -> np.ndarray:
    """Indices (uint32, ascending) of the k elements of x with the largest ``|x|``; ties go to the
    lower index. NaN or infinity in x raises :class:`TaskcodecError`."""
    a = x if isinstance(x, np.ndarray) else _device.to_host(x, None)  # (no copy for CPU tensors)
    a = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
    return _core.topk_select(a, int(k), int(threads))
