"""Profile candidate cuts of a model on this machine (the measurements the cost model uses).

``profile(model, example, candidates)`` times the head and the tail of every cut (median of
``runs`` runs after a warm-up, under ``torch.inference_mode``), records the activation that
crosses it (shape, float32 / float16 bytes) and counts FLOPs. Times in milliseconds, sizes in
bytes.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Iterator, Optional, Sequence, Tuple

import torch
from torch import nn

from taskcodec._tables import format_table
from taskcodec.errors import ArgumentTypeError, SplitError, TaskcodecError
from taskcodec.split.partition import Cut, partition

__all__ = ["CutProfile", "Profile", "profile"]

@dataclasses.dataclass(frozen=True)
class CutProfile:
    """Measurements of one cut (times in milliseconds, median of the runs)."""

    at: Cut
    head_ms: float
    tail_ms: float
    shape: Tuple[int, ...]
    bytes_f32: int
    bytes_f16: int
    flops: Optional[int]  # head + tail FLOPs (None when they could not be counted)
    head_flops: Optional[int] = None
    tail_flops: Optional[int] = None

    @property
    def elements(self) -> int:
        n = 1
        for s in self.shape:
            n *= int(s)
        return n


@dataclasses.dataclass(frozen=True)
class Profile:
    """Per-cut records plus the whole model's time and input/output sizes. Iterable over
    :class:`CutProfile` records."""

    cuts: Tuple[CutProfile, ...]
    full_ms: float
    input_shape: Tuple[int, ...]
    input_bytes: int  # the example input as sent for edge-only (uint8 pixels by default)
    output_bytes: int  # the model's output in float32 (sent back down)
    runs: int

    def __iter__(self) -> Iterator[CutProfile]:
        return iter(self.cuts)

    def __len__(self) -> int:
        return len(self.cuts)

    def __getitem__(self, i: int) -> CutProfile:
        return self.cuts[i]

    def table(self) -> str:
        """The records as a printable table."""
        rows = [
            [str(c.at), f"{c.head_ms:.2f}", f"{c.tail_ms:.2f}", "x".join(map(str, c.shape)),
             f"{c.bytes_f32:,}", f"{c.bytes_f16:,}",
             "-" if c.head_flops is None else f"{c.head_flops / 1e6:.1f}",
             "-" if c.tail_flops is None else f"{c.tail_flops / 1e6:.1f}"]
            for c in self.cuts
        ]
        return format_table(["cut", "head ms", "tail ms", "shape", "f32 B", "f16 B", "head MFLOPs",
                             "tail MFLOPs"], rows)


def _main_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        v = getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ArgumentTypeError(f"cannot find the output tensor in a {type(out).__name__}")


def _median_ms(fn: Callable[[], Any], runs: int) -> Tuple[float, Any]:
    out = fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), out


def _count_flops(fn: Callable[[], Any]) -> Optional[int]:
    try:
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False) as counter:
            fn()
        return int(counter.get_total_flops())
    except Exception:  # counting is best effort (custom ops, unsupported kernels)
        return None


def profile(
    model: nn.Module,
    example: torch.Tensor,
    candidates: Sequence[Cut],
    *,
    runs: int = 5,
    flops: bool = True,
    input_bytes: Optional[int] = None,
) -> Profile:
    """Measure every candidate cut of ``model`` on ``example`` on this machine.

    For each cut: head and tail latency (median of ``runs`` timed runs after one warm-up,
    under ``torch.inference_mode``), the shape of the activation that crosses the cut, its size
    in float32 and float16, and FLOPs (``torch.utils.flop_counter``; ``None`` where they could
    not be counted). Also times the whole model (for the device-only and edge-only options).

    ``input_bytes`` is what edge-only sends per request; by default the example's pixels as
    uint8 (``example.numel()`` bytes). Pass a JPEG size to compare against a compressed image.
    """
    if not isinstance(model, nn.Module):
        raise ArgumentTypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(example, torch.Tensor):
        raise ArgumentTypeError(f"example must be a torch.Tensor, got {type(example).__name__}")
    if isinstance(runs, bool) or not isinstance(runs, int):
        raise ArgumentTypeError(f"runs must be an int, got {type(runs).__name__} {runs!r}")
    if runs < 1:
        raise TaskcodecError(f"runs must be >= 1, got {runs}")
    if not candidates:
        raise TaskcodecError("give at least one candidate cut")
    records = []
    with torch.inference_mode():
        full_ms, out = _median_ms(lambda: model(example), runs)
        out_t = _main_tensor(out)
        for at in candidates:
            head, tail = partition(model, at)
            head_ms, feat = _median_ms(lambda: head(example), runs)
            if not isinstance(feat, torch.Tensor):
                raise SplitError(f"the head of cut {at!r} returns a {type(feat).__name__}, "
                                 "not one tensor")
            tail_ms, _ = _median_ms(lambda: tail(feat), runs)
            hf = _count_flops(lambda: head(example)) if flops else None
            tf = _count_flops(lambda: tail(feat)) if flops else None
            records.append(
                CutProfile(
                    at=at,
                    head_ms=head_ms,
                    tail_ms=tail_ms,
                    shape=tuple(int(s) for s in feat.shape),
                    bytes_f32=feat.numel() * 4,
                    bytes_f16=feat.numel() * 2,
                    flops=None if hf is None or tf is None else hf + tf,
                    head_flops=hf,
                    tail_flops=tf,
                )
            )
    return Profile(
        cuts=tuple(records),
        full_ms=full_ms,
        input_shape=tuple(int(s) for s in example.shape),
        input_bytes=int(example.numel() if input_bytes is None else input_bytes),
        output_bytes=out_t.numel() * 4,
        runs=runs,
    )
