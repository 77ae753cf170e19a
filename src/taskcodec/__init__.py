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
    ArgumentTypeError,
    AuthenticationError,
    BadInputError,
    ChecksumError,
    CorruptStreamError,
    CudaUnavailableError,
    DownlinkMismatch,
    EdgeUnavailable,
    LimitExceededError,
    MissingDataError,
    MissingDependencyError,
    MissingWeightsError,
    ModelMismatch,
    PipelineError,
    PlanError,
    PlanRefused,
    SplitError,
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
    fit_table,
    quantize,
    read_header,
)
from taskcodec import _core


# Subpackages that load on first attribute access (PEP 562), and the extra that provides what
# they import: ``tc.nn`` and ``tc.split`` need torch; ``tc.zoo`` and ``tc.pipeline`` need torch
# once a model is loaded; ``tc.fl`` is numpy-level (its flower / ddp modules import flwr / torch).
_LAZY_SUBPACKAGES = {"nn": "nn", "split": "nn", "fl": None, "zoo": None, "pipeline": None}


def __getattr__(name: str):
    import importlib
    import importlib.util

    if name not in _LAZY_SUBPACKAGES:
        raise AttributeError(f"module 'taskcodec' has no attribute {name!r}")
    extra = _LAZY_SUBPACKAGES[name]
    if extra is not None and importlib.util.find_spec("torch") is None:
        raise MissingDependencyError(
            f"taskcodec.{name} needs PyTorch: install it with pip install 'taskcodec[{extra}]'")
    module = importlib.import_module(f"taskcodec.{name}")
    globals()[name] = module
    return module


def has_cuda() -> bool:
    """True when this build carries the CUDA kernels and a CUDA device is usable.

    A CUDA build on a machine without a driver or GPU answers False and codes on the CPU.
    """
    return bool(_core.has_cuda) and bool(_core.cuda_available())


__all__ = [
    "__version__",
    "has_cuda",
    "CdfTable",
    "fit_table",
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
    "ArgumentTypeError",
    "CudaUnavailableError",
    "SplitError",
    "MissingDataError",
    "MissingDependencyError",
    "MissingWeightsError",
    "ModelMismatch",
    "DownlinkMismatch",
    "PipelineError",
    "BadInputError",
    "PlanError",
    "PlanRefused",
    "EdgeUnavailable",
    "AuthenticationError",
]
