"""Link emulation on real sockets: a shaping TCP relay between the device and the edge.

:class:`LinkEmulator` listens on a loopback port and relays every connection to the edge
server. Bytes going up (device → edge) and down (edge → device) each pass a token bucket
(``up_kB_s`` / ``down_kB_s`` in kB/s: kilobytes per second, 1 kB = 1000 B, not 1024) and a
one-way delay of ``latency_ms``, so an HTTP client pointed at :attr:`LinkEmulator.url` sees
the link the study used (250 kB/s up, 500 kB/s down by default) on real TCP sockets. The
rates can be changed while connections are open (:meth:`LinkEmulator.set`), which is how
the bandwidth sweeps and the policy tests drop the bandwidth mid-run.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Callable, Deque, List, Optional, Tuple

from taskcodec.errors import PipelineError, TaskcodecError

__all__ = ["TokenBucket", "LinkEmulator", "DEFAULT_UP_KB_S", "DEFAULT_DOWN_KB_S"]

DEFAULT_UP_KB_S = 250.0
"""The study's device uplink in kB/s (kilobytes per second, 1 kB = 1000 B)."""
DEFAULT_DOWN_KB_S = 500.0
"""The study's device downlink in kB/s (1 kB = 1000 B)."""

_CHUNK = 1500  # bytes per relay step (an Ethernet MTU): the shaping granularity
_BURST = 1500  # a bucket holds at most this many bytes of credit


class TokenBucket:
    """A token bucket of ``rate`` bytes per second holding at most ``burst`` bytes.

    :meth:`take` blocks until ``n`` tokens are available. ``rate`` may change at any time.
    ``clock`` / ``sleep`` default to :func:`time.monotonic` / :func:`time.sleep`.
    """

    def __init__(self, rate: float, burst: float = _BURST, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not rate > 0:
            raise TaskcodecError(f"rate must be positive bytes/s, got {rate}")
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self.rate = float(rate)
        self.burst = float(burst)
        self._tokens = float(burst)
        self._stamp = clock()

    def set_rate(self, rate: float) -> None:
        if not rate > 0:
            raise TaskcodecError(f"rate must be positive bytes/s, got {rate}")
        with self._lock:
            self._refill()
            self.rate = float(rate)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def take(self, n: int) -> None:
        """Wait until ``n`` bytes may pass (``n`` larger than the burst is paid on credit)."""
        with self._lock:
            self._refill()
            self._tokens -= n
            deficit = -self._tokens
            rate = self.rate
        if deficit > 0:
            self._sleep(deficit / rate)


class _Pipe:
    """One direction of one connection: reader → (bucket, delay) → writer."""

    def __init__(self, src: socket.socket, dst: socket.socket, bucket: TokenBucket,
                 link: "LinkEmulator", direction: str) -> None:
        self.src, self.dst, self.bucket = src, dst, bucket
        self.link, self.direction = link, direction
        self._queue: Deque[Tuple[float, bytes]] = collections.deque()
        self._cond = threading.Condition()
        self._eof = False

    def start(self) -> List[threading.Thread]:
        threads = [
            threading.Thread(target=self._read, daemon=True, name=f"link-{self.direction}-rx"),
            threading.Thread(target=self._write, daemon=True, name=f"link-{self.direction}-tx"),
        ]
        for t in threads:
            t.start()
        return threads

    def _read(self) -> None:
        try:
            while True:
                data = self.src.recv(_CHUNK)
                if not data:
                    break
                # Serialise on the bucket at the sender, then stamp the propagation delay.
                self.bucket.take(len(data))
                due = time.monotonic() + self.link.latency_ms / 1000.0
                with self._cond:
                    self._queue.append((due, data))
                    self._cond.notify()
        except OSError:
            pass
        with self._cond:
            self._eof = True
            self._cond.notify()

    def _write(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._eof:
                        self._cond.wait()
                    if not self._queue:
                        break
                    due, data = self._queue.popleft()
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.link._count(self.direction, len(data))
                self.dst.sendall(data)
            self.dst.shutdown(socket.SHUT_WR)
        except OSError:
            # The other side went away: close both so the peer pipe ends too.
            for s in (self.src, self.dst):
                try:
                    s.close()
                except OSError:
                    pass


class LinkEmulator:
    """A shaping relay from ``127.0.0.1:<port>`` to ``target`` (``(host, port)``).

    Use as a context manager, or call :meth:`start` / :meth:`close`. Rates are in kB/s
    (kilobytes per second, 1 kB = 1000 B: the buckets run at ``1000 * rate`` bytes per
    second); ``latency_ms`` is added one way in each direction.
    """

    def __init__(self, target: Tuple[str, int], up_kB_s: float = DEFAULT_UP_KB_S,
                 down_kB_s: float = DEFAULT_DOWN_KB_S, latency_ms: float = 0.0,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        if latency_ms < 0:
            raise TaskcodecError(f"latency_ms must be >= 0, got {latency_ms}")
        self.target = (str(target[0]), int(target[1]))
        self.up = TokenBucket(up_kB_s * 1000.0)
        self.down = TokenBucket(down_kB_s * 1000.0)
        self.latency_ms = float(latency_ms)
        self._host, self._port = host, port
        self._server: Optional[socket.socket] = None
        self._sockets: List[socket.socket] = []
        self._lock = threading.Lock()
        self.bytes_up = 0
        self.bytes_down = 0

    # ---------------------------------------------------------------- settings
    @property
    def up_kB_s(self) -> float:
        return self.up.rate / 1000.0

    @property
    def down_kB_s(self) -> float:
        return self.down.rate / 1000.0

    def set(self, up_kB_s: Optional[float] = None, down_kB_s: Optional[float] = None,
            latency_ms: Optional[float] = None) -> None:
        """Change the link while it runs (open connections see the change at once)."""
        if up_kB_s is not None:
            self.up.set_rate(up_kB_s * 1000.0)
        if down_kB_s is not None:
            self.down.set_rate(down_kB_s * 1000.0)
        if latency_ms is not None:
            if latency_ms < 0:
                raise TaskcodecError(f"latency_ms must be >= 0, got {latency_ms}")
            self.latency_ms = float(latency_ms)

    def _count(self, direction: str, n: int) -> None:
        with self._lock:
            if direction == "up":
                self.bytes_up += n
            else:
                self.bytes_down += n

    # ---------------------------------------------------------------- lifecycle
    @property
    def address(self) -> Tuple[str, int]:
        if self._server is None:
            raise PipelineError("the link emulator is not started: call start() first")
        host, port = self._server.getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        """``http://host:port`` of the shaped side, for an HTTP client."""
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> "LinkEmulator":
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self._host, self._port))
        srv.listen(16)
        self._server = srv
        threading.Thread(target=self._accept, daemon=True, name="link-accept").start()
        return self

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
                upstream.settimeout(None)
            except OSError:
                client.close()  # the edge is unreachable: the device sees the reset
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                # Small kernel buffers, so the shaping is not hidden behind megabytes of slack.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
            with self._lock:
                self._sockets += [client, upstream]
            _Pipe(client, upstream, self.up, self, "up").start()
            _Pipe(upstream, client, self.down, self, "down").start()

    def close(self) -> None:
        """Stop accepting and drop every relayed connection."""
        if self._server is not None:
            try:
                self._server.close()
            except OSError:
                pass
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> "LinkEmulator":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()
