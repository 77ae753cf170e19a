"""The bandwidth policy: where one request runs, edge-only, device-only or split.

For every request the :class:`Policy` compares the expected end-to-end latency of

* ``edge-only``: upload the photo as captured (JPEG), the edge runs the full model;
* ``device-only``: the device runs the full model (only when the registry says it fits);
* ``split`` at cut *k* with a codec calibration: the device runs the head and compresses the
  features, the edge decodes them and runs the tail;

from the link the device measured (uplink in kB/s, 1 kB = 1000 B; round trip in ms), the
device's compute profile, and the edge's profile and codec calibrations (mean frame size and
top-1 agreement per cut and codec). The arithmetic is :func:`taskcodec.split.choose`'s cost
model; the policy adds the accuracy floor (split options whose agreement is below it are
never taken) and says why it chose.
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any, Dict, List, Optional, Sequence, Tuple

from taskcodec.errors import ArgumentTypeError, PlanRefused, TaskcodecError

__all__ = ["MODES", "PLACEMENT_MODES", "ModeOption", "Policy"]

MODES = ("edge-only", "device-only", "split")
"""Where a request can run."""

PLACEMENT_MODES: Dict[str, str] = {"auto": "auto", "device": "device-only",
                                   "edge": "edge-only", "split": "split"}
"""A plan step's ``placement`` (:data:`taskcodec.pipeline.protocol.PLACEMENTS`) → a mode
(``auto``: the policy decides)."""

_REPLY_BYTES = 200  # an answer's JSON reply, sent back down


@dataclasses.dataclass(frozen=True)
class ModeOption:
    """One way to serve a request (a mode of :data:`MODES`) and its expected latency.

    Split options also say where they cut (``at``), how many bits per element of the head's
    features cross (``bits``, measured on the calibration photos), the top-1 agreement the
    codec kept there (``agreement``), and carry the codec calibration they send with
    (``calibration``: ``.codec``, ``.rate``, ``.mean_bytes``...).
    """

    mode: str
    expected_ms: float
    bytes_up: float
    agreement: float = 1.0
    at: Optional[int] = None
    bits: Optional[float] = None
    calibration: Any = dataclasses.field(default=None, compare=False, repr=False)

    def label(self) -> str:
        """``edge-only``, ``device-only``, ``split@<cut>/r<codec step>`` (a FeatureCodec's step in
        channel standard deviations), ``split@<cut>/learned`` (the shipped SplitCodec), or
        ``split@<cut>/<bits>b`` without a calibration."""
        if self.mode != "split":
            return self.mode
        if self.calibration is not None:
            return f"split@{self.at}/{self.calibration.label}"  # r<step> or learned
        return f"split@{self.at}" + ("" if self.bits is None else f"/{self.bits:.3g}b")

    def describe(self) -> str:
        """The label with what crosses the link, for reasons and logs."""
        if self.mode == "device-only":
            return self.label()
        if self.mode == "split" and self.bits is not None:
            return (f"{self.label()} ({self.bits:.2f} bits/element, {self.bytes_up:,.0f} B up, "
                    f"agreement {self.agreement:.2f})")
        return f"{self.label()} ({self.bytes_up:,.0f} B up)"


class Policy:
    """Lowest expected latency above an accuracy floor, computed by :func:`taskcodec.split.choose`.

    :meth:`options` turns the measurements into a :class:`taskcodec.split.Profile` (device
    head times, edge tail times scaled by the measured edge speed-up, the photo's JPEG size as
    edge-only's input) and per-cut :class:`taskcodec.split.CodecRate` (bits per element of
    each calibration at or above the floor, the calibration riding along), asks
    ``tc.split.choose`` for every option's expected latency, and adds the device's JPEG coding
    time to edge-only (``choose`` does not model it).
    """

    def __init__(self, accuracy_floor: float = 0.9) -> None:
        if isinstance(accuracy_floor, bool) or not isinstance(accuracy_floor, numbers.Real):
            raise ArgumentTypeError(f"accuracy_floor must be a number, got "
                                    f"{type(accuracy_floor).__name__}")
        if not 0.0 <= accuracy_floor <= 1.0:
            raise TaskcodecError(f"accuracy_floor must lie in [0, 1], got {accuracy_floor}")
        self.accuracy_floor = float(accuracy_floor)
        self.last_choice: Any = None  # the tc.split.Choice behind the last options()
        self.below_floor = 0

    def options(self, *, up_kB_s: float, rtt_ms: float, jpeg_bytes: int,
                edge: Optional[Dict[str, Any]], device: Optional[Dict[str, Any]],
                calibrations: Sequence[Any] = (), down_kB_s: Optional[float] = None
                ) -> List[ModeOption]:
        """Every option with its expected latency (ms); ``edge``/``device`` None = unavailable.

        ``up_kB_s`` / ``down_kB_s``: the link in kB/s (1 kB = 1000 B); ``down_kB_s`` defaults
        to twice ``up_kB_s``. ``edge``: ``{"full_ms", "tail_ms": {cut: ms}}``; ``device``:
        ``{"full_ms", "head_ms": {cut: ms}, "jpeg_ms", "codec_ms"}``; ``calibrations``: objects
        with ``at, label, shape, mean_bytes, agreement`` (:class:`taskcodec.zoo.runtimes.
        CodecCalibration`).
        """
        import numpy as np

        from taskcodec.split import DEVICE_ONLY, EDGE_ONLY, CodecRate, CutProfile, Link, Profile
        from taskcodec.split import choose

        if edge is None and (device is None or device.get("full_ms") is None):
            return []
        if device is not None and device.get("full_ms") is not None:
            dev_full = device["full_ms"]
            speedup = dev_full / edge["full_ms"] if edge is not None else 1.0
        else:  # only the heads run on the device: the tails are timed on the edge itself
            dev_full, speedup = edge["full_ms"], 1.0
        ok = [c for c in calibrations if c.agreement >= self.accuracy_floor]
        self.below_floor = len(calibrations) - len(ok)
        rates: Dict[Any, List[Any]] = {}
        elements: Dict[Any, int] = {}
        if edge is not None and device is not None:
            for c in ok:
                if device.get("head_ms", {}).get(c.at) is None or \
                        edge.get("tail_ms", {}).get(c.at) is None:
                    continue
                n = elements[c.at] = int(np.prod(c.shape))
                rates.setdefault(c.at, []).append(
                    CodecRate(8.0 * c.mean_bytes / n, c.label, codec=c))
        cuts = tuple(
            CutProfile(at, device["head_ms"][at] + device.get("codec_ms", 0.0),
                       edge["tail_ms"][at] * speedup, (1, n), 4 * n, 2 * n, None)
            for at, n in elements.items())
        prof = Profile(cuts, dev_full, (), int(jpeg_bytes), _REPLY_BYTES, 1)
        up = max(up_kB_s, 1e-3)
        link = Link(up_kB_s=up, down_kB_s=max(down_kB_s or 2 * up, 1e-3),
                    latency_ms=max(rtt_ms, 0.0))
        choice = choose(prof, link, codec_rates=rates, edge_speedup=speedup,
                        device_slowdown=1.0, include_edge_only=edge is not None,
                        include_device_only=device is not None
                        and device.get("full_ms") is not None)
        self.last_choice = choice
        out = []
        for o in choice.options:
            if o.at == EDGE_ONLY:
                out.append(ModeOption("edge-only",
                                      o.expected_ms + (device or {}).get("jpeg_ms", 0.0),
                                      o.bytes_up))
            elif o.at == DEVICE_ONLY:
                out.append(ModeOption("device-only", o.expected_ms, 0))
            else:  # the calibration came back with its rate: no lookup by label
                out.append(ModeOption("split", o.expected_ms, o.bytes_up, o.codec.agreement,
                                      int(o.at), o.bits, o.codec))
        return out

    def choose(self, options: Sequence[ModeOption]) -> Tuple[ModeOption, str]:
        """The option to take and a one-line reason; :class:`~taskcodec.errors.PlanRefused`
        when none is left (no edge, and the model does not fit on the device)."""
        ok = [o for o in options if o.agreement >= self.accuracy_floor]
        if not ok:
            raise PlanRefused("no way to serve this request: the edge is unavailable and "
                              "the model does not fit on the device")
        best = min(ok, key=lambda o: o.expected_ms)
        others = ", ".join(f"{o.label()} {o.expected_ms:.0f}"
                           for o in sorted(ok, key=lambda o: o.expected_ms)[1:4])
        dropped = self.below_floor + len(options) - len(ok)
        floor = (f"; {dropped} codec rates below the {self.accuracy_floor:.2f} floor"
                 if dropped else "")
        reason = (f"{best.describe()} expected {best.expected_ms:.0f} ms (next: "
                  f"{others or 'none'}{floor})")
        return best, reason
