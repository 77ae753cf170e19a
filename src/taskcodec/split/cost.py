"""The cost model of a split: which cut, at which codec rate, for a link (Neurosurgeon's rule).

``choose(profile, link)`` adds the transfer time of the activation that crosses each profiled
cut (at each codec rate) to the device and edge compute times and returns the fastest option,
with a table of every option and a printable explanation; it also weighs sending the input
(edge-only) and running everything on the device (device-only).

Units: times in milliseconds; sizes in bytes; link rates in kilobytes per second, kB/s with
1 kB = 1000 B (so bytes / kB/s = milliseconds); codec rates in bits per element of the
crossing activation (32 for float32, 16 for float16, ~1 for a feature codec).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

from taskcodec.errors import ArgumentTypeError, TaskcodecError
from taskcodec.split.partition import Cut
from taskcodec._tables import format_table
from taskcodec.split.profiling import Profile

__all__ = ["Link", "CodecRate", "SplitOption", "Choice", "choose", "EDGE_ONLY", "DEVICE_ONLY"]

EDGE_ONLY = "edge-only"
DEVICE_ONLY = "device-only"

@dataclasses.dataclass(frozen=True)
class Link:
    """A device–edge link: uplink and downlink in kilobytes per second (kB/s, 1 kB = 1000 B),
    and a one-way latency in milliseconds (paid once per request).

    ``Link(up_kB_s=250, down_kB_s=500, latency_ms=20)`` is the study's device link.
    """

    up_kB_s: float
    down_kB_s: float
    latency_ms: float = 0.0

    def __post_init__(self) -> None:
        for name in ("up_kB_s", "down_kB_s", "latency_ms"):
            _require_number(name, getattr(self, name))
        if not (self.up_kB_s > 0 and self.down_kB_s > 0):
            raise TaskcodecError(f"link rates must be positive kB/s, got up={self.up_kB_s}, "
                                 f"down={self.down_kB_s}")
        if not self.latency_ms >= 0:
            raise TaskcodecError(f"latency_ms must be >= 0, got {self.latency_ms}")

    def up_ms(self, nbytes: float) -> float:
        """Milliseconds to send ``nbytes`` up (bytes / (kB/s) = ms)."""
        return nbytes / self.up_kB_s

    def down_ms(self, nbytes: float) -> float:
        """Milliseconds to send ``nbytes`` down."""
        return nbytes / self.down_kB_s


@dataclasses.dataclass(frozen=True)
class CodecRate:
    """One way to send the activation at a cut: ``bits`` per element, a ``name`` for tables,
    and any object of the caller's (``codec``: a codec, a calibration) that comes back
    unchanged in the :class:`SplitOption` built from it."""

    bits: float
    name: str = ""
    codec: Any = dataclasses.field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        _require_number("bits", self.bits)
        if not (self.bits > 0 and math.isfinite(self.bits)):
            raise TaskcodecError(f"a codec rate must be a positive number of bits per element, "
                                 f"got {self.bits}")
        object.__setattr__(self, "bits", float(self.bits))


@dataclasses.dataclass(frozen=True)
class SplitOption:
    """One way to run the request: where to cut, how many bits per element cross, and the
    expected time of each part (ms).

    ``at`` is a cut, or :data:`EDGE_ONLY` / :data:`DEVICE_ONLY`; ``bits`` is ``None`` for
    those two (edge-only sends the input, ``bytes_up`` bytes; device-only sends nothing).
    ``name`` and ``codec`` are the :class:`CodecRate`'s.
    """

    at: Union[Cut, str]
    bits: Optional[float]
    bytes_up: float
    device_ms: float
    transfer_ms: float
    edge_ms: float
    name: str = ""
    codec: Any = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def expected_ms(self) -> float:
        return self.device_ms + self.transfer_ms + self.edge_ms

    def describe(self) -> str:
        """``cut 'features.6' at 1.2 bits/element (codec)``, ``edge-only (send the input)``..."""
        if self.at == EDGE_ONLY:
            return "edge-only (send the input)"
        if self.at == DEVICE_ONLY:
            return "device-only (send nothing)"
        return f"cut {self.at!r} at {_rate_text(self)}"


@dataclasses.dataclass(frozen=True)
class Choice:
    """The result of :func:`choose`: the best option and every option considered."""

    best: SplitOption
    options: Tuple[SplitOption, ...]
    link: Link
    edge_speedup: float
    device_slowdown: float

    @property
    def at(self) -> Union[Cut, str]:
        return self.best.at

    @property
    def bits(self) -> Optional[float]:
        return self.best.bits

    @property
    def expected_ms(self) -> float:
        return self.best.expected_ms

    def table(self) -> str:
        """Every option, fastest first, as a printable table."""
        rows = [
            [str(o.at), o.name or "-", "-" if o.bits is None else f"{o.bits:.3g}",
             f"{o.bytes_up:,.0f}", f"{o.device_ms:.2f}", f"{o.transfer_ms:.2f}",
             f"{o.edge_ms:.2f}", f"{o.expected_ms:.2f}"]
            for o in sorted(self.options, key=lambda o: o.expected_ms)
        ]
        return format_table(["cut", "rate", "bits/elem", "bytes up", "device ms", "transfer ms",
                        "edge ms", "total ms"], rows)

    @property
    def reasoning(self) -> str:
        """Why this option won, for printing."""
        b = self.best
        ranked = sorted(self.options, key=lambda o: o.expected_ms)
        runner = ranked[1] if len(ranked) > 1 else None
        lines = [
            f"link: up {self.link.up_kB_s:g} kB/s, down {self.link.down_kB_s:g} kB/s, "
            f"latency {self.link.latency_ms:g} ms; edge {self.edge_speedup:g}x faster than the "
            f"profiled machine, device {self.device_slowdown:g}x slower",
            "rule: total = device compute + latency + bytes up / uplink + output down / downlink "
            "+ edge compute",
            f"chosen: {b.describe()}: {b.device_ms:.2f} ms on the device + "
            f"{b.transfer_ms:.2f} ms on the link ({b.bytes_up:,.0f} B up) + {b.edge_ms:.2f} ms on "
            f"the edge = {b.expected_ms:.2f} ms",
        ]
        if runner is not None:
            lines.append(
                f"runner-up: {runner.describe()}: {runner.expected_ms:.2f} ms "
                f"(+{runner.expected_ms - b.expected_ms:.2f} ms)"
            )
        lines += ["", self.table()]
        return "\n".join(lines)


def _rate_text(o: SplitOption) -> str:
    return f"{o.bits:.3g} bits/element" + (f" ({o.name})" if o.name else "")


def _require_number(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")


_DEFAULT_RATES = (CodecRate(32.0, "f32"), CodecRate(16.0, "f16"))


def _rate_set(spec: Any, where: str) -> Tuple[CodecRate, ...]:
    """One set of rates: ``{name: bits}`` or a sequence of bits / :class:`CodecRate`."""
    if isinstance(spec, Mapping):
        out = []
        for name, bits in spec.items():
            if isinstance(bits, CodecRate):
                out.append(dataclasses.replace(bits, name=bits.name or str(name)))
            else:
                _require_number(f"the rate {name!r}{where}", bits)
                out.append(CodecRate(float(bits), str(name)))
        return tuple(out)
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        out = []
        for item in spec:
            if not isinstance(item, CodecRate):
                _require_number(f"a rate{where}", item)
                item = CodecRate(float(item))
            out.append(item)
        return tuple(out)
    raise ArgumentTypeError(f"codec rates{where} must be a mapping name -> bits per element or a "
                            f"sequence of bits / CodecRate, got {type(spec).__name__}")


def _per_cut(codec_rates: Any) -> bool:
    if not isinstance(codec_rates, Mapping) or not codec_rates:
        return False
    nested = [isinstance(v, (Mapping, Sequence)) and not isinstance(v, (str, bytes))
              for v in codec_rates.values()]
    if any(nested) and not all(nested):
        raise ArgumentTypeError("codec_rates mixes per-cut entries and rates: give either "
                                "{name: bits} for every cut or {cut: rates} per cut")
    return all(nested)


def _rates_for(cut: Cut, codec_rates: Any, per_cut: bool) -> Tuple[CodecRate, ...]:
    if codec_rates is None:
        return _DEFAULT_RATES
    if per_cut:
        rates = codec_rates.get(cut, codec_rates.get(str(cut)))
        return () if rates is None else _rate_set(rates, f" of cut {cut!r}")
    return _rate_set(codec_rates, "")


def choose(
    prof: Profile,
    link: Link,
    *,
    codec_rates: Optional[Any] = None,
    edge_speedup: float = 1.0,
    device_slowdown: float = 1.0,
    include_device_only: bool = True,
    include_edge_only: bool = True,
) -> Choice:
    """Pick the cut and codec rate that minimise device + transfer + edge time.

    Args:
        prof: from :func:`profile` (measured on one machine).
        link: the device–edge :class:`Link` (kB/s, 1 kB = 1000 B).
        codec_rates: bits per element of the crossing activation, for every cut as
            ``{"f16": 16, "codec": 1.2}`` (the names label the table) or as a sequence of
            numbers / :class:`CodecRate`; or per cut, ``{"features.6": <rates>, ...}`` (a
            measured rate differs per cut; cuts not listed are not considered). Default:
            float32 and float16.
        edge_speedup: the edge runs ``edge_speedup`` times faster than the profiled machine.
        device_slowdown: the device runs this many times slower than the profiled machine
            (1.0 when the profile was measured on the device itself).
        include_device_only: also consider running everything on the device (no upload; the
            result is already where it is needed).
        include_edge_only: also consider sending the input (``prof.input_bytes``) and running
            everything on the edge.

    Returns:
        :class:`Choice` with ``.best`` (a :class:`SplitOption`: ``.at``, ``.bits``, the times),
        ``.at``, ``.bits``, ``.expected_ms``, ``.options`` (every option), ``.table()`` and
        ``.reasoning``. Split and edge-only options pay the link latency and send the output
        (``prof.output_bytes``) back down.
    """
    if not isinstance(prof, Profile):
        raise ArgumentTypeError(f"prof must come from taskcodec.split.profile, got "
                                f"{type(prof).__name__}")
    if not isinstance(link, Link):
        raise ArgumentTypeError(f"link must be a taskcodec.split.Link, got {type(link).__name__}")
    _require_number("edge_speedup", edge_speedup)
    _require_number("device_slowdown", device_slowdown)
    if not (edge_speedup > 0 and device_slowdown > 0):
        raise TaskcodecError(f"edge_speedup and device_slowdown must be positive, got "
                             f"{edge_speedup} and {device_slowdown}")
    per_cut = _per_cut(codec_rates)
    down = link.down_ms(prof.output_bytes)
    options: List[SplitOption] = []
    if include_edge_only:
        options.append(SplitOption(EDGE_ONLY, None, float(prof.input_bytes), 0.0,
                                   link.latency_ms + link.up_ms(prof.input_bytes) + down,
                                   prof.full_ms / edge_speedup, name="input"))
    if include_device_only:
        options.append(SplitOption(DEVICE_ONLY, None, 0.0, prof.full_ms * device_slowdown,
                                   0.0, 0.0))
    for c in prof:
        for rate in _rates_for(c.at, codec_rates, per_cut):
            nbytes = c.elements * rate.bits / 8.0
            options.append(SplitOption(c.at, rate.bits, nbytes, c.head_ms * device_slowdown,
                                       link.latency_ms + link.up_ms(nbytes) + down,
                                       c.tail_ms / edge_speedup, rate.name, rate.codec))
    if not options:
        raise TaskcodecError("no option to choose from (no cut has a rate, and device-only and "
                             "edge-only are excluded)")
    best = min(options, key=lambda o: o.expected_ms)
    return Choice(best, tuple(options), link, float(edge_speedup), float(device_slowdown))
