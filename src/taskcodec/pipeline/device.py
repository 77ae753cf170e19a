"""The device client: runs heads and the feature codec, asks the policy where each request
runs, talks HTTP to the edge and the cloud, and falls back when the edge is gone.

Where a request runs is the :class:`~taskcodec.pipeline.policy.Policy`'s choice (edge-only,
device-only or split, from the link it measured with a
:class:`~taskcodec.pipeline.measure.LinkMeter`, its compute profile from
:mod:`~taskcodec.pipeline.profiling`, and the edge's profile and codec calibrations), each
mode's estimate scaled by how far off that mode's past requests were (a per-mode correction
factor, an EWMA of observed / expected latency).

Failures: if the edge is unreachable, times out or fails (HTTP 5xx), the request falls back to
device-only and says so (:attr:`Result.fallback`); a model that does not fit the device then
ends with an explicit error (:attr:`Result.error`). A server that refuses the token (HTTP 401 /
403) is a configuration error, not an outage: :meth:`DeviceClient.start`, :meth:`~DeviceClient.run`
and :meth:`~DeviceClient.plan` raise :class:`~taskcodec.errors.AuthenticationError`.

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

from taskcodec.errors import (
    AuthenticationError,
    EdgeUnavailable,
    PlanError,
    PlanRefused,
    TaskcodecError,
)
from taskcodec.pipeline.link import DEFAULT_DOWN_KB_S, DEFAULT_UP_KB_S
from taskcodec.pipeline.measure import LinkMeter
from taskcodec.pipeline.policy import PLACEMENT_MODES, ModeOption, Policy
from taskcodec.pipeline.protocol import FRAME_MEDIA_TYPE, JPEG_MEDIA_TYPE, TASKS
from taskcodec.pipeline.transport import EdgeConnection, json_reply, post_plan

__all__ = ["DeviceClient", "Result"]


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
    option: Optional[ModeOption] = None
    probe_ms: float = 0.0  # connecting or re-measuring the link first (not in latency_ms)

    @property
    def ok(self) -> bool:
        return self.error is None


class DeviceClient:
    """A device: local models, the link to the edge, the policy, and the cloud planner.

    Use as a context manager (or :meth:`start` / :meth:`close`). Link settings in kB/s
    (1 kB = 1000 B) and ms; ``up_kB_s`` / ``down_kB_s`` / ``latency_ms`` shape the emulated
    link (``emulate=True``) and are ignored on a real one. ``device_models``: the registry
    models the device loads, where the registry says the whole model fits (device-only and
    split) or only its heads do (split).
    """

    def __init__(self, edge_url: str, *, cloud_url: Optional[str] = None,
                 token: Optional[str] = None, emulate: bool = True,
                 up_kB_s: float = DEFAULT_UP_KB_S, down_kB_s: float = DEFAULT_DOWN_KB_S,
                 latency_ms: float = 0.0, timeout_s: float = 10.0, slowdown: float = 1.0,
                 accuracy_floor: float = 0.9,
                 device_models: Sequence[str] = ("mobilenet_v2", "scenes-blip"),
                 profile_runs: int = 5,
                 probe_bytes: int = 32_000, reprobe_s: float = 10.0) -> None:
        if not slowdown >= 1.0:
            raise TaskcodecError(f"slowdown must be >= 1, got {slowdown}")
        self.edge_url, self.cloud_url, self.token = edge_url.rstrip("/"), cloud_url, token
        self.emulate = emulate
        self.link_settings = (up_kB_s, down_kB_s, latency_ms)
        self.timeout_s, self.slowdown = timeout_s, slowdown
        self.policy = Policy(accuracy_floor)
        self.meter = LinkMeter(probe_bytes, reprobe_s)
        self.device_models = tuple(device_models)
        self.profile_runs = profile_runs
        self.link: Any = None
        self.http: Any = None
        self.runtimes: Dict[str, Any] = {}
        self.device_profile: Dict[str, Dict[str, Any]] = {}
        self.edge_info: Optional[Dict[str, Any]] = None
        self.calibrations: Dict[str, List[Any]] = {}
        self._jpeg_s = 0.0
        self._edge_error = "edge not connected"
        self.correction: Dict[Tuple[str, str], float] = {}

    # ---------------------------------------------------------------- measured link
    @property
    def up_kB_s(self) -> Optional[float]:
        """The measured uplink in kB/s (1 kB = 1000 B); None before the first measurement."""
        return self.meter.up_kB_s

    @property
    def rtt_ms(self) -> float:
        """The measured round trip to the edge in ms."""
        return self.meter.rtt_ms

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> "DeviceClient":
        """Open the link, profile the device's models and connect to the edge.

        An edge that cannot be reached is not an error here (requests fall back); one that
        refuses the token raises :class:`AuthenticationError`.
        """
        from taskcodec.pipeline.link import LinkEmulator
        from taskcodec.pipeline.profiling import profile_device
        from taskcodec.zoo.runtimes import REGISTRY, load_runtime

        try:
            base = self.edge_url
            if self.emulate:
                parts = urlsplit(self.edge_url)
                self.link = LinkEmulator((parts.hostname or "127.0.0.1", parts.port or 80),
                                         *self.link_settings).start()
                base = self.link.url
            self.http = EdgeConnection(base, self.token, self.timeout_s)
            for name in self.device_models:
                if not (REGISTRY[name].device_fits or REGISTRY[name].head_fits):
                    continue
                rt = self.runtimes[name] = load_runtime(name)
                self.device_profile[name] = profile_device(rt, self.profile_runs, self.slowdown)
            try:
                self.connect()
            except AuthenticationError:
                raise
            except EdgeUnavailable as exc:
                self._edge_error = str(exc)  # every request will say so and fall back
        except BaseException:
            self.close()
            raise
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
        """One request to the edge through :class:`~taskcodec.pipeline.transport.EdgeConnection`."""
        if self.http is None:
            raise EdgeUnavailable("the device client is not started: call start() first")
        return self.http.request(method, path, **kw)

    def connect(self) -> None:
        """Fetch the edge's models, timings and codec calibrations; measure the link."""
        from taskcodec.pipeline.profiling import codec_ms
        from taskcodec.zoo.runtimes import CodecCalibration

        if self.http is None:
            raise EdgeUnavailable("the device client is not started: call start() first")
        calibrations = {}
        try:
            info = self.http.get_json("/v1/models")["models"]
            for entry in info.values():  # JSON object keys are strings: cuts back to ints
                entry["tail_ms"] = {int(k): v for k, v in entry.get("tail_ms", {}).items()}
            for name in self.runtimes:
                if name in info and info[name].get("cut_points"):
                    codecs = self.http.get_json(f"/v1/models/{name}/codecs")["codecs"]
                    own = getattr(self.runtimes[name], "model", None)  # a learned codec shares it
                    calibrations[name] = [CodecCalibration.from_json(d, own) for d in codecs]
        except TaskcodecError:
            raise
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise EdgeUnavailable(f"the edge's model list or codec calibrations are malformed "
                                  f"({type(exc).__name__}: {exc})") from None
        self.edge_info = info
        for name, cals in calibrations.items():
            self.calibrations[name] = cals
            self.device_profile[name]["codec_ms"] = codec_ms(self.runtimes[name], cals,
                                                             self.slowdown)
        self.measure_link()

    def measure_link(self) -> Tuple[float, float]:
        """Ping the edge (round trip) and upload a probe; returns ``(up_kB_s, rtt_ms)``."""
        return self.meter.measure(self._request)

    # ---------------------------------------------------------------- device compute
    def _compute(self, fn: Any) -> Any:
        t0 = time.perf_counter()
        out = fn()
        if self.slowdown > 1.0:
            time.sleep((time.perf_counter() - t0) * (self.slowdown - 1.0))
        return out

    # ---------------------------------------------------------------- requests
    def plan(self, request: str) -> List[Dict[str, Any]]:
        """Ask the cloud planner for a validated plan; raises :class:`PlanRefused` (a request
        it cannot serve), :class:`PlanError` (no planner, unreachable, a bad plan) or
        :class:`AuthenticationError` (HTTP 401 / 403)."""
        from taskcodec.pipeline.protocol import validate_plan

        if not self.cloud_url:
            raise PlanError("no cloud planner configured (cloud_url)")
        # never trust the wire
        return validate_plan(post_plan(self.cloud_url, request, self.token, self.timeout_s))

    def ask(self, request: str, photo: np.ndarray) -> List[Result]:
        """Plan ``request`` in the cloud, then run each step on ``photo``."""
        results = []
        for step in self.plan(request):
            args = step["args"]
            if args["image"] != "<image>":
                results.append(Result(TASKS[step["task"]], args["model"], "none", 0, 0.0, None,
                                      error="steps on another step's output are not supported"))
                continue
            results.append(self.run(TASKS[step["task"]], args["model"], photo,
                                    question=args.get("text"),
                                    mode=PLACEMENT_MODES[args["placement"]]))
        return results

    def options(self, model: str, jpeg_bytes: int) -> List[ModeOption]:
        """The policy's options for ``model`` right now."""
        edge = None
        if self.edge_info is not None and model in self.edge_info:
            edge = self.edge_info[model]
        device = self.device_profile.get(model)
        if device is not None:  # this photo's JPEG coding time, at the device's speed
            device = {**device, "jpeg_ms": self._jpeg_s * 1e3 * self.slowdown}
        opts = self.policy.options(
            up_kB_s=self.meter.up_kB_s or 1e-3, rtt_ms=self.meter.rtt_ms,
            jpeg_bytes=jpeg_bytes, edge=edge, device=device,
            calibrations=self.calibrations.get(model, ()))
        # What each mode really took against its estimate so far (the profiles were measured
        # once, at start-up; load on either host changes them).
        return [dataclasses.replace(o, expected_ms=o.expected_ms
                                    * self.correction.get((model, o.mode), 1.0)) for o in opts]

    def _observe(self, model: str, option: ModeOption, latency_ms: float) -> None:
        """Fold one request's latency into the mode's correction factor (EWMA, clamped)."""
        if option.expected_ms <= 0:
            return
        key = (model, option.mode)
        prev = self.correction.get(key, 1.0)
        base = option.expected_ms / prev  # the uncorrected estimate
        ratio = min(max(latency_ms / base, 0.25), 4.0)
        self.correction[key] = 0.5 * prev + 0.5 * ratio

    def _fits(self, model: str) -> bool:
        """Whether the device can answer ``model``'s requests by itself (device-only)."""
        from taskcodec.zoo.runtimes import REGISTRY

        return model in self.runtimes and REGISTRY[model].device_fits

    def _ms(self, t_start: float) -> float:
        return (time.perf_counter() - t_start) * 1e3

    def run(self, task: str, model: str, photo: np.ndarray, *, question: Optional[str] = None,
            mode: str = "auto") -> Result:
        """Serve one request; ``mode``: ``auto`` (the policy), or one of
        :data:`~taskcodec.pipeline.policy.MODES`. Raises only :class:`AuthenticationError`;
        every other failure ends in the :class:`Result` (an answer, a fallback or an error)."""
        from taskcodec.zoo.images import encode_jpeg
        from taskcodec.zoo.runtimes import REGISTRY

        if model not in REGISTRY or task not in REGISTRY[model].tasks:
            return Result(task, model, "none", 0, 0.0, None,
                          error=f"{model!r} does not serve {task!r}")
        t0 = time.perf_counter()
        jpeg = encode_jpeg(photo)  # the policy needs its size; its time counts for edge-only
        self._jpeg_s = time.perf_counter() - t0
        probe_ms = 0.0
        if self.edge_info is None or (mode == "auto" and self.meter.stale):
            t_probe = time.perf_counter()
            try:
                if self.edge_info is None:
                    self.connect()
                else:
                    self.measure_link()
            except AuthenticationError:
                raise
            except EdgeUnavailable as exc:
                self.edge_info, self._edge_error = None, str(exc)
            # Link upkeep, reported apart: a 32 kB probe at 100 kB/s is 320 ms that the
            # request itself did not take.
            probe_ms = self._ms(t_probe)
        result = self._serve(task, model, photo, jpeg, question, mode, time.perf_counter())
        return dataclasses.replace(result, probe_ms=probe_ms)

    def _serve(self, task: str, model: str, photo: np.ndarray, jpeg: bytes,
               question: Optional[str], mode: str, t_start: float) -> Result:
        """:meth:`run` once the link is measured; latencies count from ``t_start``."""
        if self.edge_info is None and mode != "device-only":
            # No edge: whatever was asked for, the device answers or says why it cannot.
            if not self._fits(model):
                return Result(task, model, "none", 0, self._ms(t_start), None,
                              error=f"{self._edge_error}; {model} does not fit on the "
                              "device, no answer")
            option = ModeOption("device-only", self.device_profile[model]["full_ms"], 0)
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
                    raise PlanRefused(f"mode {mode} is not available for {model}")
                option = min(picks, key=lambda o: o.expected_ms)
                reason = f"{option.describe()} forced (expected {option.expected_ms:.0f} ms)"
        except TaskcodecError as exc:
            return Result(task, model, "none", 0, self._ms(t_start), None, error=str(exc))
        self.meter.count_request()
        fallback = None
        if option.mode != "device-only":
            try:
                return self._remote(task, model, photo, jpeg, question, option, reason, t_start)
            except AuthenticationError:
                raise
            except EdgeUnavailable as exc:
                # reconnect (and re-measure) on a later request
                self.edge_info, self._edge_error = None, str(exc)
                fallback = f"{exc}; answered on the device instead"
                if not self._fits(model):
                    return Result(task, model, option.mode, 0, self._ms(t_start), None,
                                  reason=reason,
                                  error=f"{exc}; {model} does not fit on the device, no answer")
        return self._local(task, model, photo, reason, fallback, t_start, option)

    def _local(self, task: str, model: str, photo: np.ndarray, reason: str,
               fallback: Optional[str], t_start: float, option: ModeOption) -> Result:
        rt = self.runtimes[model]
        out = self._compute(lambda: rt.answer(rt.full(rt.preprocess(photo))))
        if fallback is None:
            self._observe(model, option, self._ms(t_start))
        return Result(task, model, "device-only", 0, self._ms(t_start), out["answer"], out,
                      reason, fallback, option=option)

    def _remote(self, task: str, model: str, photo: np.ndarray, jpeg: bytes,
                question: Optional[str], option: ModeOption, reason: str,
                t_start: float) -> Result:
        if option.mode == "split":
            rt, codec = self.runtimes[model], option.calibration.codec
            body = self._compute(lambda: codec.compress(rt.head(rt.preprocess(photo),
                                                                option.at)))
            path, params, ctype = f"/v1/split/{model}", {"at": option.at}, FRAME_MEDIA_TYPE
            params["task"] = task
            if question:
                params["question"] = question
        else:
            # The JPEG was coded before the clock started: count it (at the device's speed).
            t_start -= self._jpeg_s * self.slowdown
            if self.slowdown > 1.0:
                time.sleep(self._jpeg_s * (self.slowdown - 1.0))
            body = jpeg
            params = {"task": task}
            if question:
                params["question"] = question
            path, ctype = f"/v1/infer/{model}", JPEG_MEDIA_TYPE
        t_net = time.perf_counter()
        r = self._request("POST", path, params=params, content=body,
                          headers={"Content-Type": ctype})
        net_ms = self._ms(t_net)
        latency = self._ms(t_start)
        if r.status_code != 200:
            return Result(task, model, option.mode, len(body), latency, None, reason=reason,
                          error=f"edge refused: HTTP {r.status_code} {r.text[:300]}",
                          option=option)
        out = json_reply(r)
        self.meter.learn(len(body), net_ms, float(out.get("server_ms", 0.0)))
        self._observe(model, option, latency)
        return Result(task, model, option.mode, len(body), latency, out.get("answer"), out,
                      reason, option=option)
