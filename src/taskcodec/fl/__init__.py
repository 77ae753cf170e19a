"""Federated-learning update compression.

Top-k sparsification with error feedback, quantized values and entropy-coded indices, in a
checksummed frame of kind "sparse update" (docs/format.md section 21)::

    import taskcodec as tc
    comp = tc.fl.TopKCompressor(ratio=0.01, values="int8")
    blob = comp.compress({"w": delta_w, "b": delta_b})     # bytes to upload
    dense = comp.decompress(blob)                          # {"w": ..., "b": ...} as they went in

Modules: :mod:`~taskcodec.fl.coding` (top-k and value-coding settings),
:mod:`~taskcodec.fl.updates` (what an update is), :mod:`~taskcodec.fl.compressor` (one round
of top-k with error feedback), :mod:`~taskcodec.fl.frames` (reading, decompressing and
accumulating frames), :mod:`~taskcodec.fl.gpu` (the device kernels), :mod:`~taskcodec.fl.secure` (compressors
whose sum is all the server needs: shared-support top-k and count sketches, for secure
aggregation), :mod:`~taskcodec.fl.packing` (several values in one element of SecAgg+'s field).

Importing this package needs only numpy. :mod:`taskcodec.fl.flower` (Flower client mod and
server strategy wrapper) and :mod:`taskcodec.fl.flower_secure` (the same under Flower's
SecAgg+; its client mod lives in :mod:`taskcodec.fl.flower_secure_mod`) import ``flwr``; :mod:`taskcodec.fl.ddp` (torch DDP comm hook)
imports ``torch``; they load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from taskcodec.fl.coding import (
    DEFAULT_RATIO,
    DEFAULT_VALUES,
    VALUE_CODINGS,
    topk_count,
    topk_select,
)
from taskcodec.fl.compressor import TopKCompressor
from taskcodec.fl.frames import accumulate, decompress, read_update
from taskcodec.fl.secure import CountSketch, SketchServer, SupportClient, SupportPlanner

__all__ = [
    "TopKCompressor",
    "VALUE_CODINGS",
    "DEFAULT_RATIO",
    "DEFAULT_VALUES",
    "accumulate",
    "decompress",
    "read_update",
    "topk_count",
    "topk_select",
    "CountSketch",
    "SketchServer",
    "SupportClient",
    "SupportPlanner",
    "flower",
    "flower_secure",
    "ddp",
]


def __getattr__(name: str) -> Any:
    if name in ("flower", "flower_secure", "ddp"):
        return importlib.import_module(f"taskcodec.fl.{name}")
    raise AttributeError(f"module 'taskcodec.fl' has no attribute {name!r}")
