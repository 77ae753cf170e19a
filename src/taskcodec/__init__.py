"""taskcodec: task-oriented compression for edge-cloud AI on slow links.

The codec layer (this package's top level) entropy-codes integer symbols with learned
per-channel tables into self-describing, checksummed frames::

    import numpy as np, taskcodec as tc
    table = tc.CdfTable.from_pmf(pmf, offsets)          # pmf [C, K], offsets [C]
    blob = tc.encode(symbols, table)                    # symbols [N, C, H, W]
    assert (tc.decode(blob, table) == symbols).all()
"""

from __future__ import annotations

__version__ = "0.1.0"

from taskcodec.errors import (
    ChecksumError,
    CorruptStreamError,
    LimitExceededError,
    TableMismatchError,
    TaskcodecError,
    UnsupportedVersionError,
)
from taskcodec.codec import (
    DEFAULT_MAX_SYMBOLS,
    CdfTable,
    FrameInfo,
    decode,
    encode,
    read_header,
)
from taskcodec import _core


_LAZY_SUBPACKAGES = ("fl",)


def __getattr__(name: str):
    """Subpackages with heavy dependencies (torch, flwr) load on first attribute access."""
    if name in _LAZY_SUBPACKAGES:
        import importlib

        return importlib.import_module(f"taskcodec.{name}")
    raise AttributeError(f"module 'taskcodec' has no attribute {name!r}")


def has_cuda() -> bool:
    """True when this build carries the CUDA kernels and a CUDA device is usable."""
    return bool(_core.has_cuda)


__all__ = [
    "__version__",
    "has_cuda",
    "CdfTable",
    "FrameInfo",
    "encode",
    "decode",
    "read_header",
    "DEFAULT_MAX_SYMBOLS",
    "TaskcodecError",
    "CorruptStreamError",
    "ChecksumError",
    "UnsupportedVersionError",
    "TableMismatchError",
    "LimitExceededError",
]
