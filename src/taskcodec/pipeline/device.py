"""The device client: runs heads and the feature codec, and picks where each request runs.

For every request the :class:`Policy` compares the expected end-to-end latency of

* ``edge-only``: upload the photo as captured (JPEG, quality 90), the edge runs the full model;
* ``device-only``: the device runs the full model (only when the registry says it fits);
* ``split`` at cut *k* with codec rate *r*: the device runs the head and compresses the
  features, the edge decodes and runs the tail;

from the link it has measured (uplink throughput from its own uploads and probes, round
trip from pings), its own compute profile, and the edge's profile and codec calibrations
(frame size and top-1 agreement per cut and rate), each mode's estimate scaled by how far
off that mode's past requests were (a per-mode correction factor, an EWMA of observed /
expected latency). It takes the fastest option whose
agreement is at or above ``accuracy_floor``. If the edge is unreachable, times out or fails,
the request falls back to device-only and says so; a model that does not fit the device
then ends with an explicit error. Every request ends with an answer or an error.

The device reaches the edge through a :class:`~taskcodec.pipeline.link.LinkEmulator` on its
real sockets unless ``emulate=False`` (a real link). ``slowdown`` emulates a device slower
than the machine it runs on: each device computation is followed by a sleep of
``(slowdown - 1)`` times its measured duration.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import numpy as np

from taskcodec.errors import TaskcodecError

__all__ = ["Option", "Policy", "Result", "DeviceClient", "EdgeUnavailable", "MODES"]

MODES = ("edge-only", "device-only", "split")


class EdgeUnavailable(TaskcodecError):
    """The edge could not be reached, timed out, or failed on its side."""


@dataclasses.dataclass(frozen=True)
class Option:
    """One way to serve a request and its expected latency."""

    mode: str
    expected_ms: float
    bytes_up: float
    agreement: float = 1.0
    at: Optional[int] = None
    rate: Optional[float] = None

    def label(self) -> str:
        return f"split@{self.at}/r{self.rate:g}" if self.mode == "split" else self.mode


@dataclasses.dataclass
class Result:
    """What one request returned, and how."""

    task: str
    model: str
    mode: str
    bytes_up: int
    latency_ms: float
    answer: Optional[str]
    detail: Dict[str, Any] = dataclasses.field(default_factory=dict)
    reason: str = ""
    fallback: Optional[str] = None
    error: Optional[str] = None
    untrained: bool = False
    option: Optional[Option] = None

    @property
    def ok(self) -> bool:
        return self.error is None


_REPLY_BYTES = 200  # an answer's JSON reply, sent back down


class Policy:
    """Lowest expected latency above an accuracy floor, computed by :func:`taskcodec.split.choose`.

    :meth:`options` turns the measurements into a :class:`taskcodec.split.Profile` (device
    head times, edge tail times scaled by the measured edge speed-up, the photo's JPEG size as
    edge-only's input) and per-cut codec rates (the calibrations at or above the floor), asks
    ``tc.split.choose`` for every option's expected latency, and adds the device's JPEG coding
    time to edge-only (``choose`` does not model it).
    """

    def __init__(self, accuracy_floor: float = 0.9) -> None:
        if not 0.0 <= accuracy_floor <= 1.0:
            raise ValueError(f"accuracy_floor must lie in [0, 1], got {accuracy_floor}")
        self.accuracy_floor = accuracy_floor
        self.last_choice: Any = None  # the tc.split.Choice behind the last options()
        self.below_floor = 0

    def options(self, *, up_Bps: float, rtt_ms: float, jpeg_bytes: int,
                edge: Optional[Dict[str, Any]], device: Optional[Dict[str, Any]],
                calibrations: Sequence[Any] = (), down_Bps: Optional[float] = None
                ) -> List[Option]:
        """Every option with its expected latency (ms); ``edge``/``device`` None = unavailable.

        ``edge``: ``{"full_ms", "tail_ms": {cut: ms}}``; ``device``: ``{"full_ms",
        "head_ms": {cut: ms}, "jpeg_ms", "codec_ms"}``; ``calibrations``: objects with ``at,
        rate, shape, mean_bytes, agreement``. ``down_Bps`` defaults to twice ``up_Bps``.
        """
        from taskcodec.split import CutProfile, Link, Profile, choose

        if edge is None and (device is None or device.get("full_ms") is None):
            return []
        dev_full = device["full_ms"] if device is not None else edge["full_ms"]
        speedup = dev_full / edge["full_ms"] if edge is not None else 1.0
        cuts, rates, agreement = [], {}, {}
        ok = [c for c in calibrations if c.agreement >= self.accuracy_floor]
        self.below_floor = len(calibrations) - len(ok)
        if edge is not None and device is not None:
            for c in ok:
                head = device.get("head_ms", {}).get(c.at)
                tail = edge.get("tail_ms", {}).get(c.at)
                if head is None or tail is None:
                    continue
                n = int(np.prod(c.shape))
                rates.setdefault(c.at, {})[f"r{c.rate:g}"] = 8.0 * c.mean_bytes / n
                agreement[(c.at, f"r{c.rate:g}")] = (c.agreement, c.rate)
            for at in rates:
                n = int(np.prod(next(c.shape for c in ok if c.at == at)))
                cuts.append(CutProfile(at, device["head_ms"][at] + device.get("codec_ms", 0.0),
                                       edge["tail_ms"][at] * speedup, (1, n), 4 * n, 2 * n,
                                       None))
        prof = Profile(tuple(cuts), dev_full, (), int(jpeg_bytes), _REPLY_BYTES, 1)
        up = max(up_Bps, 1.0) / 1e3
        link = Link(up, max(down_Bps or 2 * up_Bps, 1.0) / 1e3, max(rtt_ms, 0.0))
        choice = choose(prof, link, codec_rates=rates, edge_speedup=speedup,
                        device_slowdown=1.0, include_edge_only=edge is not None,
                        include_device_only=device is not None
                        and device.get("full_ms") is not None)
        self.last_choice = choice
        out = []
        for o in choice.options:
            if o.at == "edge-only":
                out.append(Option("edge-only", o.expected_ms + (device or {}).get("jpeg_ms", 0.0),
                                  o.bytes_up))
            elif o.at == "device-only":
                out.append(Option("device-only", o.expected_ms, 0))
            else:
                agree, rate = agreement[(o.at, o.rate)]
                out.append(Option("split", o.expected_ms, o.bytes_up, agree, int(o.at), rate))
        return out

    def choose(self, options: Sequence[Option]) -> Tuple[Option, str]:
        """The option to take and a one-line reason."""
        ok = [o for o in options if o.agreement >= self.accuracy_floor]
        if not ok:
            raise TaskcodecError("no way to serve this request: the edge is unavailable and "
                                 "the model does not fit on the device")
        best = min(ok, key=lambda o: o.expected_ms)
        others = ", ".join(f"{o.label()} {o.expected_ms:.0f}"
                           for o in sorted(ok, key=lambda o: o.expected_ms)[1:4])
        dropped = self.below_floor + len(options) - len(ok)
        reason = (f"{best.label()} expected {best.expected_ms:.0f} ms (next: {others or 'none'}"
                  f"{f'; {dropped} codec rates below the {self.accuracy_floor:.2f} floor' if dropped else ''})")
        return best, reason


def _preprocess_ms(rt: Any, runs: int) -> float:
    """Median ms of preprocessing a camera-sized photo (a calibration photo, 500 x 741)."""
    from taskcodec.demo import load_photo

    photo = load_photo("motorcycle_left")
    times = []
    for _ in range(max(1, runs)):
        t0 = time.perf_counter()
        rt.preprocess(photo)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


class DeviceClient:
    """A device: local models, the link to the edge, the policy, and the cloud planner.

    Use as a context manager (or :meth:`start` / :meth:`close`).
    """

    def __init__(self, edge_url: str, *, cloud_url: Optional[str] = None,
                 token: Optional[str] = None, emulate: bool = True,
                 up_kBps: float = 250.0, down_kBps: float = 500.0, latency_ms: float = 0.0,
                 timeout_s: float = 10.0, slowdown: float = 1.0, accuracy_floor: float = 0.9,
                 device_models: Sequence[str] = ("mobilenet_v2",), profile_runs: int = 5,
                 probe_bytes: int = 32_000, reprobe_s: float = 10.0) -> None:
        if slowdown < 1.0:
            raise ValueError(f"slowdown must be >= 1, got {slowdown}")
        self.edge_url, self.cloud_url, self.token = edge_url.rstrip("/"), cloud_url, token
        self.emulate = emulate
        self.link_settings = (up_kBps, down_kBps, latency_ms)
        self.timeout_s, self.slowdown = timeout_s, slowdown
        self.policy = Policy(accuracy_floor)
        self.device_models = tuple(device_models)
        self.profile_runs, self.probe_bytes, self.reprobe_s = profile_runs, probe_bytes, reprobe_s
        self.link: Any = None
        self.http: Any = None
        self.runtimes: Dict[str, Any] = {}
        self.device_profile: Dict[str, Dict[str, Any]] = {}
        self.edge_info: Optional[Dict[str, Any]] = None
        self.calibrations: Dict[str, List[Any]] = {}
        self.up_Bps: Optional[float] = None
        self.rtt_ms = 1.0
        self._measured_at = 0.0
        self._since_measure = 0
        self._jpeg_s = 0.0
        self._edge_error = "edge not connected"
        self.correction: Dict[Tuple[str, str], float] = {}

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "DeviceClient":
        import httpx

        from taskcodec.pipeline.link import LinkEmulator
        from taskcodec.pipeline.models import REGISTRY, load_runtime

        base = self.edge_url
        if self.emulate:
            parts = urlsplit(self.edge_url)
            self.link = LinkEmulator((parts.hostname or "127.0.0.1", parts.port or 80),
                                     *self.link_settings).start()
            base = self.link.url
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self.http = httpx.Client(base_url=base, headers=headers, timeout=self.timeout_s)
        for name in self.device_models:
            if not REGISTRY[name].device_fits:
                continue
            rt = self.runtimes[name] = load_runtime(name)
            prof = rt.profile(self.profile_runs)  # tc.split.profile on this device
            pre_ms = _preprocess_ms(rt, self.profile_runs)
            self.device_profile[name] = {
                "head_ms": {int(str(p.at).rsplit(".", 1)[1]): (pre_ms + p.head_ms)
                            * self.slowdown for p in prof},
                "full_ms": (pre_ms + prof.full_ms) * self.slowdown,
            }
        try:
            self.connect()
        except EdgeUnavailable as exc:
            self._edge_error = str(exc)  # every request will say so and fall back
        return self

    def close(self) -> None:
        if self.http is not None:
            self.http.close()
        if self.link is not None:
            self.link.close()

    def __enter__(self) -> "DeviceClient":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- edge, link
    def _request(self, method: str, path: str, **kw: Any) -> Any:
        import httpx

        try:
            r = self.http.request(method, path, **kw)
        except httpx.TimeoutException as exc:
            raise EdgeUnavailable(f"edge timed out after {self.timeout_s:g} s ({exc!r})") from None
        except httpx.HTTPError as exc:
            raise EdgeUnavailable(f"edge unreachable ({type(exc).__name__}: {exc})") from None
        if r.status_code >= 500:
            raise EdgeUnavailable(f"edge failed: HTTP {r.status_code} {r.text[:200]}")
        return r

    def connect(self) -> None:
        """Fetch the edge's models, timings and codec calibrations; measure the link."""
        from taskcodec.pipeline.models import CodecCalibration

        r = self._request("GET", "/v1/models")
        r.raise_for_status()
        info = r.json()["models"]
        for entry in info.values():  # JSON object keys are strings: cuts back to ints
            entry["tail_ms"] = {int(k): v for k, v in entry.get("tail_ms", {}).items()}
        self.edge_info = info
        for name in self.runtimes:
            if name in self.edge_info and self.edge_info[name].get("cut_points"):
                c = self._request("GET", f"/v1/models/{name}/codecs")
                c.raise_for_status()
                self.calibrations[name] = [CodecCalibration.from_json(d)
                                           for d in c.json()["codecs"]]
                self._profile_codec(name)
        self.measure_link()

    def _profile_codec(self, name: str) -> None:
        import torch

        cals = self.calibrations.get(name) or []
        rt = self.runtimes[name]
        x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
        times = []
        for c in cals[:3]:
            z = rt.head(x, c.at)
            t0 = time.perf_counter()
            c.codec.compress(z)
            times.append((time.perf_counter() - t0) * 1e3)
        self.device_profile[name]["codec_ms"] = (float(np.median(times)) if times else 0.0) \
            * self.slowdown

    def measure_link(self) -> Tuple[float, float]:
        """Ping the edge (round trip) and upload a probe (uplink B/s); returns both."""
        rtts = []
        for _ in range(3):
            t0 = time.perf_counter()
            self._request("GET", "/health")
            rtts.append((time.perf_counter() - t0) * 1e3)
        self.rtt_ms = min(rtts)
        payload = np.random.default_rng().integers(0, 256, self.probe_bytes, np.uint8).tobytes()
        t0 = time.perf_counter()
        r = self._request("POST", "/v1/probe", content=payload)
        ms = (time.perf_counter() - t0) * 1e3
        if r.status_code != 200:
            raise EdgeUnavailable(f"edge probe failed: HTTP {r.status_code} {r.text[:200]}")
        # At least 1 ms of transfer: a probe that fast says "fast", not how fast.
        self.up_Bps = len(payload) / max(ms - self.rtt_ms, 1.0) * 1e3
        self._measured_at, self._since_measure = time.monotonic(), 0
        return self.up_Bps, self.rtt_ms

    def _learn(self, bytes_up: int, net_ms: float, server_ms: float) -> None:
        """Update the uplink estimate from one upload (payloads of 4 kB or more)."""
        transfer = net_ms - server_ms - self.rtt_ms
        if bytes_up >= 4000 and transfer > 0:
            sample = bytes_up / transfer * 1e3
            self.up_Bps = sample if self.up_Bps is None else 0.4 * self.up_Bps + 0.6 * sample
            self._measured_at, self._since_measure = time.monotonic(), 0

    # ---------------------------------------------------------------- device compute
    def _compute(self, fn: Any) -> Any:
        t0 = time.perf_counter()
        out = fn()
        if self.slowdown > 1.0:
            time.sleep((time.perf_counter() - t0) * (self.slowdown - 1.0))
        return out

    # ---------------------------------------------------------------- requests
    def plan(self, request: str) -> List[Dict[str, Any]]:
        """Ask the cloud planner; raises :class:`~taskcodec.pipeline.cloud.PlanRefused`."""
        import httpx

        from taskcodec.pipeline.cloud import PlanError, PlanRefused, validate_plan

        if not self.cloud_url:
            raise PlanError("no cloud planner configured (cloud_url)")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        try:
            r = httpx.post(f"{self.cloud_url.rstrip('/')}/v1/plan", json={"request": request},
                           headers=headers, timeout=self.timeout_s)
        except httpx.HTTPError as exc:
            raise PlanError(f"cloud planner unreachable: {exc}") from None
        if r.status_code == 422 and r.json().get("error") == "PlanRefused":
            raise PlanRefused(r.json()["detail"])
        if r.status_code != 200:
            raise PlanError(f"cloud planner: HTTP {r.status_code} {r.text[:300]}")
        return validate_plan(r.json()["plan"])  # never trust the wire

    def ask(self, request: str, photo: np.ndarray) -> List[Result]:
        """Plan ``request`` in the cloud, then run each step on ``photo``."""
        from taskcodec.pipeline.cloud import TASKS

        results = []
        for step in self.plan(request):
            args = step["args"]
            if args["image"] != "<image>":
                results.append(Result(TASKS[step["task"]], args["model"], "none", 0, 0.0, None,
                                      error="steps on another step's output are not supported"))
                continue
            mode = {"auto": "auto", "device": "device-only", "edge": "edge-only",
                    "split": "split"}[args["placement"]]
            results.append(self.run(TASKS[step["task"]], args["model"], photo,
                                    question=args.get("text"), mode=mode))
        return results

    def options(self, model: str, jpeg_bytes: int) -> List[Option]:
        """The policy's options for ``model`` right now."""
        edge = None
        if self.edge_info is not None and model in self.edge_info:
            edge = self.edge_info[model]
        device = self.device_profile.get(model)
        if device is not None:  # this photo's JPEG coding time, at the device's speed
            device = {**device, "jpeg_ms": self._jpeg_s * 1e3 * self.slowdown}
        opts = self.policy.options(
            up_Bps=self.up_Bps or 1.0, rtt_ms=self.rtt_ms, jpeg_bytes=jpeg_bytes, edge=edge,
            device=device,
            calibrations=self.calibrations.get(model, ()))
        # What each mode really took against its estimate so far (the profiles were measured
        # once, at start-up; load on either host changes them).
        return [dataclasses.replace(o, expected_ms=o.expected_ms
                                    * self.correction.get((model, o.mode), 1.0)) for o in opts]

    def _observe(self, model: str, option: Option, latency_ms: float) -> None:
        """Fold one request's latency into the mode's correction factor (EWMA, clamped)."""
        if option.expected_ms <= 0:
            return
        key = (model, option.mode)
        prev = self.correction.get(key, 1.0)
        base = option.expected_ms / prev  # the uncorrected estimate
        ratio = min(max(latency_ms / base, 0.25), 4.0)
        self.correction[key] = 0.5 * prev + 0.5 * ratio

    def run(self, task: str, model: str, photo: np.ndarray, *, question: Optional[str] = None,
            mode: str = "auto") -> Result:
        """Serve one request; ``mode``: ``auto`` (the policy), or one of :data:`MODES`."""
        from taskcodec.pipeline.models import REGISTRY, encode_jpeg

        if model not in REGISTRY or task not in REGISTRY[model].tasks:
            return Result(task, model, "none", 0, 0.0, None,
                          error=f"{model!r} does not serve {task!r}")
        t0 = time.perf_counter()
        jpeg = encode_jpeg(photo)  # the policy needs its size; its time counts for edge-only
        self._jpeg_s = time.perf_counter() - t0
        t_start = time.perf_counter()
        stale = (time.monotonic() - self._measured_at > self.reprobe_s
                 or self._since_measure >= 3)
        if self.edge_info is None or (mode == "auto" and stale):
            try:
                if self.edge_info is None:
                    self.connect()
                else:
                    self.measure_link()
            except EdgeUnavailable as exc:
                self.edge_info, self._edge_error = None, str(exc)
        if self.edge_info is None and mode != "device-only":
            # No edge: whatever was asked for, the device answers or says why it cannot.
            if model not in self.runtimes:
                return Result(task, model, "none", 0, (time.perf_counter() - t_start) * 1e3,
                              None, error=f"{self._edge_error}; {model} does not fit on the "
                              "device, no answer")
            option = Option("device-only", self.device_profile[model]["full_ms"], 0)
            return self._local(task, model, photo, "the edge is unavailable",
                               f"{self._edge_error}; answered on the device instead", t_start,
                               option)
        opts = self.options(model, len(jpeg))
        try:
            if mode == "auto":
                option, reason = self.policy.choose(opts)
            else:
                picks = [o for o in opts if o.mode == mode]
                if mode == "split":
                    picks = [o for o in picks if o.agreement >= self.policy.accuracy_floor]
                if not picks:
                    raise TaskcodecError(f"mode {mode} is not available for {model}")
                option = min(picks, key=lambda o: o.expected_ms)
                reason = f"{option.label()} forced (expected {option.expected_ms:.0f} ms)"
        except TaskcodecError as exc:
            return Result(task, model, "none", 0, (time.perf_counter() - t_start) * 1e3, None,
                          error=str(exc))
        self._since_measure += 1
        fallback = None
        if option.mode != "device-only":
            try:
                return self._remote(task, model, photo, jpeg, question, option, reason, t_start)
            except EdgeUnavailable as exc:
                # reconnect (and re-measure) on a later request
                self.edge_info, self._edge_error = None, str(exc)
                fallback = f"{exc}; answered on the device instead"
                if model not in self.runtimes:
                    return Result(task, model, option.mode, 0,
                                  (time.perf_counter() - t_start) * 1e3, None, reason=reason,
                                  error=f"{exc}; {model} does not fit on the device, no answer")
        return self._local(task, model, photo, reason, fallback, t_start, option)

    def _local(self, task: str, model: str, photo: np.ndarray, reason: str,
               fallback: Optional[str], t_start: float, option: Option) -> Result:
        rt = self.runtimes[model]
        out = self._compute(lambda: rt.answer(rt.full(rt.preprocess(photo))))
        if fallback is None:
            self._observe(model, option, (time.perf_counter() - t_start) * 1e3)
        return Result(task, model, "device-only", 0, (time.perf_counter() - t_start) * 1e3,
                      out["answer"], out, reason, fallback, option=option)

    def _remote(self, task: str, model: str, photo: np.ndarray, jpeg: bytes,
                question: Optional[str], option: Option, reason: str, t_start: float) -> Result:
        from taskcodec.pipeline.edge import FRAME_MEDIA_TYPE

        if option.mode == "split":
            rt = self.runtimes[model]
            cal = next(c for c in self.calibrations[model]
                       if c.at == option.at and c.rate == option.rate)
            body = self._compute(lambda: cal.codec.compress(rt.head(rt.preprocess(photo),
                                                                    option.at)))
            path, params, ctype = f"/v1/split/{model}", {"at": option.at}, FRAME_MEDIA_TYPE
        else:
            # The JPEG was coded before the clock started: count it (at the device's speed).
            t_start -= self._jpeg_s * self.slowdown
            if self.slowdown > 1.0:
                time.sleep(self._jpeg_s * (self.slowdown - 1.0))
            body = jpeg
            params = {"task": task}
            if question:
                params["question"] = question
            path, ctype = f"/v1/infer/{model}", "image/jpeg"
        t_net = time.perf_counter()
        r = self._request("POST", path, params=params, content=body,
                          headers={"Content-Type": ctype})
        net_ms = (time.perf_counter() - t_net) * 1e3
        latency = (time.perf_counter() - t_start) * 1e3
        if r.status_code != 200:
            return Result(task, model, option.mode, len(body), latency, None, reason=reason,
                          error=f"edge refused: HTTP {r.status_code} {r.text[:300]}",
                          option=option)
        out = r.json()
        self._learn(len(body), net_ms, float(out.get("server_ms", 0.0)))
        self._observe(model, option, latency)
        return Result(task, model, option.mode, len(body), latency, out.get("answer"), out,
                      reason, untrained=bool(out.get("untrained")), option=option)
