"""Profile candidate cuts and choose one for a link (Neurosurgeon's rule).

``profile(model, example, candidates)`` times the head and the tail of every cut on this
machine and records the activation that crosses it. ``choose(profile, link)`` adds the
transfer time of the activation (at each codec rate) to the device and edge compute times and
returns the fastest option, with a table of every option and a printable explanation.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from taskcodec.split.partition import Cut, partition

__all__ = ["CutProfile", "Profile", "Link", "Option", "Choice", "profile", "choose"]

EDGE_ONLY = "edge-only"
DEVICE_ONLY = "device-only"


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
             f"{c.bytes_f32:,}", f"{c.bytes_f16:,}", "-" if c.head_flops is None else f"{c.head_flops / 1e6:.1f}",
             "-" if c.tail_flops is None else f"{c.tail_flops / 1e6:.1f}"]
            for c in self.cuts
        ]
        return _format(["cut", "head ms", "tail ms", "shape", "f32 B", "f16 B", "head MFLOPs", "tail MFLOPs"], rows)


@dataclasses.dataclass(frozen=True)
class Link:
    """A device–edge link: uplink and downlink in kilobytes per second (1 KB = 1000 B), and a
    one-way latency in milliseconds (paid once per request)."""

    up_kbps: float
    down_kbps: float
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        if not (self.up_kbps > 0 and self.down_kbps > 0):
            raise ValueError(f"link rates must be positive, got up={self.up_kbps}, down={self.down_kbps}")
        if not self.latency_ms >= 0:
            raise ValueError(f"latency_ms must be >= 0, got {self.latency_ms}")

    def up_ms(self, nbytes: float) -> float:
        return nbytes / self.up_kbps  # bytes / (KB/s) = ms

    def down_ms(self, nbytes: float) -> float:
        return nbytes / self.down_kbps


@dataclasses.dataclass(frozen=True)
class Option:
    """One way to run the request: where to cut and how many bytes cross."""

    at: Union[Cut, str]
    rate: Optional[str]
    bytes_up: float
    device_ms: float
    transfer_ms: float
    edge_ms: float

    @property
    def expected_ms(self) -> float:
        return self.device_ms + self.transfer_ms + self.edge_ms


@dataclasses.dataclass(frozen=True)
class Choice:
    """The result of :func:`choose`: the best option and every option considered."""

    at: Union[Cut, str]
    rate: Optional[str]
    expected_ms: float
    options: Tuple[Option, ...]
    link: Link
    edge_speedup: float
    device_slowdown: float

    @property
    def best(self) -> Option:
        return min(self.options, key=lambda o: o.expected_ms)

    def table(self) -> str:
        """Every option, fastest first, as a printable table."""
        rows = [
            [str(o.at), o.rate or "-", f"{o.bytes_up:,.0f}", f"{o.device_ms:.2f}",
             f"{o.transfer_ms:.2f}", f"{o.edge_ms:.2f}", f"{o.expected_ms:.2f}"]
            for o in sorted(self.options, key=lambda o: o.expected_ms)
        ]
        return _format(["cut", "rate", "bytes up", "device ms", "transfer ms", "edge ms", "total ms"], rows)

    @property
    def reasoning(self) -> str:
        """Why this option won, for printing."""
        b = self.best
        ranked = sorted(self.options, key=lambda o: o.expected_ms)
        runner = ranked[1] if len(ranked) > 1 else None
        lines = [
            f"link: up {self.link.up_kbps:g} KB/s, down {self.link.down_kbps:g} KB/s, "
            f"latency {self.link.latency_ms:g} ms; edge {self.edge_speedup:g}x faster than the "
            f"profiled machine, device {self.device_slowdown:g}x slower",
            "rule: total = device compute + latency + bytes up / uplink + output down / downlink "
            "+ edge compute",
            f"chosen: cut {b.at!r} at rate {b.rate or '-'}: {b.device_ms:.2f} ms on the device + "
            f"{b.transfer_ms:.2f} ms on the link ({b.bytes_up:,.0f} B up) + {b.edge_ms:.2f} ms on "
            f"the edge = {b.expected_ms:.2f} ms",
        ]
        if runner is not None:
            lines.append(
                f"runner-up: cut {runner.at!r} at rate {runner.rate or '-'}: "
                f"{runner.expected_ms:.2f} ms (+{runner.expected_ms - b.expected_ms:.2f} ms)"
            )
        lines += ["", self.table()]
        return "\n".join(lines)


def _format(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    fmt = lambda cells: "  ".join(  # noqa: E731
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
    ).rstrip()
    return "\n".join([fmt(headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def _main_tensor(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    for key in ("logits", "last_hidden_state"):
        v = getattr(out, key, None)
        if isinstance(v, torch.Tensor):
            return v
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"cannot find the output tensor in a {type(out).__name__}")


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
    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if not candidates:
        raise ValueError("give at least one candidate cut")
    records = []
    with torch.inference_mode():
        full_ms, out = _median_ms(lambda: model(example), runs)
        out_t = _main_tensor(out)
        for at in candidates:
            head, tail = partition(model, at)
            head_ms, feat = _median_ms(lambda: head(example), runs)
            if not isinstance(feat, torch.Tensor):
                raise TypeError(f"the head of cut {at!r} returned {type(feat).__name__}, not a tensor")
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


RateSpec = Mapping[str, float]


def _rates_for(cut: Cut, codec_rates: Any) -> Dict[str, float]:
    if codec_rates is None:
        return {"f32": 32.0, "f16": 16.0}
    values = list(codec_rates.values())
    if values and isinstance(values[0], Mapping):  # per cut
        rates = codec_rates.get(cut, codec_rates.get(str(cut)))
        return {} if rates is None else {str(k): float(v) for k, v in rates.items()}
    return {str(k): float(v) for k, v in codec_rates.items()}


def choose(
    prof: Profile,
    link: Link,
    *,
    codec_rates: Optional[Mapping[Any, Any]] = None,
    edge_speedup: float = 1.0,
    device_slowdown: float = 1.0,
    include_device_only: bool = True,
    include_edge_only: bool = True,
) -> Choice:
    """Pick the cut and codec rate that minimise device + transfer + edge time.

    Args:
        prof: from :func:`profile` (measured on one machine).
        link: the device–edge :class:`Link`.
        codec_rates: bits per feature element of each rate, e.g.
            ``{"f16": 16, "codec@1.2b": 1.2}`` for every cut, or per cut
            ``{"features.6": {...}, ...}`` (a measured rate differs per cut). Default: float32
            and float16.
        edge_speedup: the edge runs ``edge_speedup`` times faster than the profiled machine.
        device_slowdown: the device runs this many times slower than the profiled machine
            (1.0 when the profile was measured on the device itself).
        include_device_only: also consider running everything on the device (no upload; the
            result is already where it is needed).
        include_edge_only: also consider sending the input (``prof.input_bytes``) and running
            everything on the edge.

    Returns:
        :class:`Choice` with ``.at``, ``.rate``, ``.expected_ms``, ``.options`` (every option),
        ``.table()`` and ``.reasoning``. Split and edge-only options pay the link latency and
        send the output (``prof.output_bytes``) back down.
    """
    if not isinstance(prof, Profile):
        raise TypeError(f"prof must come from taskcodec.split.profile, got {type(prof).__name__}")
    if not (edge_speedup > 0 and device_slowdown > 0):
        raise ValueError("edge_speedup and device_slowdown must be positive")
    down = link.down_ms(prof.output_bytes)
    options: List[Option] = []
    if include_edge_only:
        options.append(
            Option(EDGE_ONLY, "input", float(prof.input_bytes), 0.0,
                   link.latency_ms + link.up_ms(prof.input_bytes) + down, prof.full_ms / edge_speedup)
        )
    if include_device_only:
        options.append(Option(DEVICE_ONLY, None, 0.0, prof.full_ms * device_slowdown, 0.0, 0.0))
    for c in prof:
        for name, bits in _rates_for(c.at, codec_rates).items():
            nbytes = c.elements * bits / 8.0
            options.append(
                Option(c.at, name, nbytes, c.head_ms * device_slowdown,
                       link.latency_ms + link.up_ms(nbytes) + down, c.tail_ms / edge_speedup)
            )
    if not options:
        raise ValueError("no option to choose from (no cuts with rates and device/edge-only excluded)")
    best = min(options, key=lambda o: o.expected_ms)
    return Choice(best.at, best.rate, best.expected_ms, tuple(options), link, edge_speedup, device_slowdown)
