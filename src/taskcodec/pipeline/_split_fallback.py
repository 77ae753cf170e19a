"""PRIVATE FALLBACK for the split layer (``taskcodec.split`` / ``taskcodec.nn.FeatureCodec``).

The pipeline's split mode is written against ``tc.split.partition / profile / choose`` and
``tc.nn.FeatureCodec``. Until those land, this module provides the smallest pieces the
pipeline needs, under the same names and shapes:

* :class:`PlainFeatureCodec` — per-channel uniform quantizer (step = ``step_per_std`` x the
  channel's calibration std) + per-channel integer tables from smoothed calibration
  histograms (the codec of :mod:`taskcodec.demo`), with ``calibrate`` / ``compress`` /
  ``decompress`` / ``to_bytes`` / ``from_bytes``.
* :class:`CutProfile` records (``at, head_ms, tail_ms, shape, bytes_f32, bytes_f16``) and
  :func:`choose_mode`, the expected-latency rule of the policy.

Replace with the real layer once it is merged; nothing outside :mod:`taskcodec.pipeline`
imports this module.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, Optional, Tuple

import numpy as np

import taskcodec as tc
from taskcodec.errors import TaskcodecError

__all__ = ["PlainFeatureCodec", "CutProfile"]

_MAGIC = b"TCPF"  # serialized codec: magic, u32 JSON length, JSON, CdfTable bytes


class PlainFeatureCodec:
    """Quantize ``round(x / step[c])`` and entropy-code with per-channel tables."""

    def __init__(self, steps: np.ndarray, table: tc.CdfTable, shape: Tuple[int, ...]) -> None:
        self.steps = np.asarray(steps, dtype=np.float32)
        self.table = table
        self.shape = tuple(int(s) for s in shape)  # [C, H, W] of one sample
        if self.steps.shape != (self.shape[0],) or table.num_rows != self.shape[0]:
            raise TaskcodecError(
                f"codec for {self.shape[0]} channels got {self.steps.shape} steps and a "
                f"{table.num_rows}-row table"
            )

    @classmethod
    def calibrate(cls, samples: Any, *, step_per_std: float = 0.5,
                  precision: int = 14) -> "PlainFeatureCodec":
        """Fit steps and tables on float features ``samples [N, C, H, W]`` (torch or numpy)."""
        from taskcodec.demo import _fit_tables

        x = np.asarray(samples.detach().numpy() if hasattr(samples, "detach") else samples,
                       dtype=np.float32)
        if x.ndim != 4:
            raise TaskcodecError(f"calibration samples must be [N, C, H, W], got {x.shape}")
        std = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1).std(axis=1)
        steps = np.maximum(step_per_std * std, 1e-6).astype(np.float32)
        q = np.rint(x / steps.reshape(1, -1, 1, 1)).astype(np.int32)
        return cls(steps, _fit_tables(q, precision), x.shape[1:])

    def compress(self, feature: Any) -> bytes:
        """Float feature ``[1, C, H, W]`` -> one taskcodec frame (steps ride in ``meta``)."""
        from taskcodec.demo import _pack_steps

        x = np.asarray(feature.detach().numpy() if hasattr(feature, "detach") else feature,
                       dtype=np.float32)
        if x.shape[1:] != self.shape:
            raise TaskcodecError(f"codec expects [N, {self.shape}] features, got {x.shape}")
        q = np.rint(x / self.steps.reshape(1, -1, 1, 1)).astype(np.int32)
        return tc.encode(q, self.table, channel_axis=1, meta=_pack_steps(self.steps))

    def decompress(self, blob: bytes, *, max_symbols: Optional[int] = None) -> Any:
        """One frame -> float torch tensor; raises a :class:`TaskcodecError` on a bad frame."""
        import torch

        from taskcodec.demo import _unpack_steps

        limit = max_symbols or 64 * int(np.prod(self.shape))
        info = tc.read_header(blob, max_symbols=limit)
        if tuple(info.shape[1:]) != self.shape:
            raise TaskcodecError(
                f"frame holds a {info.shape} tensor, this cut expects [N, {self.shape}]"
            )
        q = tc.decode(blob, self.table)
        steps = _unpack_steps(info.meta, self.shape[0])
        return torch.from_numpy(q.astype(np.float32) * steps.reshape(1, -1, 1, 1))

    def to_bytes(self) -> bytes:
        head = json.dumps({"steps": self.steps.tolist(), "shape": list(self.shape)}).encode()
        return _MAGIC + struct.pack("<I", len(head)) + head + self.table.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "PlainFeatureCodec":
        if data[:4] != _MAGIC or len(data) < 8:
            raise TaskcodecError("not a serialized feature codec (bad magic)")
        (n,) = struct.unpack_from("<I", data, 4)
        if 8 + n > len(data):
            raise TaskcodecError("serialized feature codec is truncated")
        head = json.loads(data[8 : 8 + n])
        return cls(np.asarray(head["steps"], np.float32), tc.CdfTable.from_bytes(data[8 + n :]),
                   tuple(head["shape"]))


@dataclasses.dataclass(frozen=True)
class CutProfile:
    """One candidate cut: where, how long each side takes, and what would travel."""

    at: int
    head_ms: float
    tail_ms: float
    shape: Tuple[int, ...]
    bytes_f32: int
    bytes_f16: int
