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
    decode_batch,
    dequantize,
    encode,
    quantize,
    read_header,
)
from taskcodec import _core


_LAZY_SUBMODULES = {"nn": "nn", "split": "nn"}  # submodule -> the extra that provides torch
_LAZY_SUBPACKAGES = ("fl",)  # numpy-level; its flower / ddp modules import flwr / torch


def __getattr__(name: str):  # PEP 562: heavy subpackages load on first attribute access
    import importlib

    if name in _LAZY_SUBMODULES:
        try:
            import torch  # noqa: F401
        except ImportError as e:
            raise ImportError(
                f"taskcodec.{name} needs PyTorch: install it with "
                f"pip install 'taskcodec[{_LAZY_SUBMODULES[name]}]'"
            ) from e
        module = importlib.import_module(f"taskcodec.{name}")
        globals()[name] = module
        return module
    if name in _LAZY_SUBPACKAGES:
        return importlib.import_module(f"taskcodec.{name}")
    raise AttributeError(f"module 'taskcodec' has no attribute {name!r}")


def has_cuda() -> bool:
    """True when this build carries the CUDA kernels and a CUDA device is usable.

    A CUDA build on a machine without a driver or GPU answers False and codes on the CPU.
    """
    return bool(_core.has_cuda) and bool(_core.cuda_available())


__all__ = [
    "__version__",
    "has_cuda",
    "CdfTable",
    "FrameInfo",
    "encode",
    "decode",
    "read_header",
    "quantize",
    "dequantize",
    "decode_batch",
    "DEFAULT_MAX_SYMBOLS",
    "TaskcodecError",
    "CorruptStreamError",
    "ChecksumError",
    "UnsupportedVersionError",
    "TableMismatchError",
    "LimitExceededError",
]
