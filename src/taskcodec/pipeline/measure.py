"""What a device knows of its link to the edge: uplink throughput and round trip.

:class:`LinkMeter` measures the link with pings (``GET /health``, round trip) and a probe
upload (``POST /v1/probe``, uplink), and refines the uplink from every real upload of 4 kB or
more. Throughput is in kB/s (kilobytes per second, 1 kB = 1000 B, so bytes per millisecond);
the round trip in milliseconds.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Tuple

import numpy as np

from taskcodec.errors import EdgeUnavailable

__all__ = ["LinkMeter"]

Request = Callable[..., Any]  # (method, path, **httpx kwargs) -> response; raises EdgeUnavailable


class LinkMeter:
    """Uplink (``up_kB_s``) and round trip (``rtt_ms``) estimates of one device–edge link.

    ``probe_bytes``: size of the probe upload; the estimate goes stale after ``reprobe_s``
    seconds or ``requests_per_probe`` requests, and the client measures again.
    """

    def __init__(self, probe_bytes: int = 32_000, reprobe_s: float = 10.0,
                 requests_per_probe: int = 3) -> None:
        self.probe_bytes, self.reprobe_s = int(probe_bytes), float(reprobe_s)
        self.requests_per_probe = int(requests_per_probe)
        self.up_kB_s: Optional[float] = None
        self.rtt_ms = 1.0
        self._measured_at = 0.0
        self._since_measure = 0

    @property
    def stale(self) -> bool:
        """True when the estimate is too old to trust (time or requests since measured)."""
        return (time.monotonic() - self._measured_at > self.reprobe_s
                or self._since_measure >= self.requests_per_probe)

    def count_request(self) -> None:
        self._since_measure += 1

    def _fresh(self) -> None:
        self._measured_at, self._since_measure = time.monotonic(), 0

    def measure(self, request: Request) -> Tuple[float, float]:
        """Ping the edge three times (round trip) and upload a probe (uplink); returns
        ``(up_kB_s, rtt_ms)``. ``request`` is the client's request function."""
        rtts = []
        for _ in range(3):
            t0 = time.perf_counter()
            request("GET", "/health")
            rtts.append((time.perf_counter() - t0) * 1e3)
        self.rtt_ms = min(rtts)
        payload = np.random.default_rng().integers(0, 256, self.probe_bytes, np.uint8).tobytes()
        t0 = time.perf_counter()
        r = request("POST", "/v1/probe", content=payload)
        ms = (time.perf_counter() - t0) * 1e3
        if r.status_code != 200:
            raise EdgeUnavailable(f"edge probe failed: HTTP {r.status_code} {r.text[:200]}")
        # At least 1 ms of transfer: a probe that fast says "fast", not how fast.
        self.up_kB_s = len(payload) / max(ms - self.rtt_ms, 1.0)  # bytes per ms = kB/s
        self._fresh()
        return self.up_kB_s, self.rtt_ms

    def learn(self, bytes_up: int, net_ms: float, server_ms: float) -> None:
        """Update the uplink estimate from one upload of ``bytes_up`` bytes that took
        ``net_ms`` end to end, ``server_ms`` of it on the server (payloads of 4 kB or more)."""
        transfer = net_ms - server_ms - self.rtt_ms
        if bytes_up >= 4000 and transfer > 0:
            sample = bytes_up / transfer
            self.up_kB_s = sample if self.up_kB_s is None else 0.4 * self.up_kB_s + 0.6 * sample
            self._fresh()
