"""The edge server: model tails and full models behind FastAPI.

Endpoints (JSON replies; no pickle anywhere on the wire):

``GET  /health``                      liveness and the models served (no token needed)
``GET  /metrics``                     requests, errors, bytes in, latency per endpoint
``GET  /v1/models``                   registry entries, tail / full timings measured here
``GET  /v1/models/{model}/codecs``    codec calibrations per (cut, rate), for devices
``POST /v1/split/{model}?at=K&task=T&question=Q``  body: one frame (the head's features) → answer
``POST /v1/infer/{model}?task=T&question=Q``  body: a JPEG / PNG → answer
``POST /v1/probe``                    body: any bytes, discarded (devices time their uplink)

Bodies larger than ``max_body_bytes`` get 413; a malformed frame or image gets 400 with the
codec's (or the image decoder's) message, and the server keeps serving. With ``token`` set,
every path but ``/health`` (``/openapi.json``, ``/docs`` and ``/redoc`` included) needs
``Authorization: Bearer <token>``. Errors, timeouts and metrics: :mod:`.server_common`.
"""


import threading
import time
from typing import Any, Dict, Optional, Sequence

import numpy as np

from taskcodec.errors import BadInputError, TaskcodecError
from taskcodec.pipeline.protocol import (DEFAULT_MAX_BODY_BYTES, FRAME_MEDIA_TYPE, MAX_REQUEST_CHARS,
                                         check_text)

__all__ = ["EdgeService", "UnknownModel", "create_edge_app", "serve_edge",
           "DEFAULT_MAX_BODY_BYTES", "FRAME_MEDIA_TYPE"]



class UnknownModel(BadInputError):
    """A request names a model this edge does not serve (HTTP 404)."""


class EdgeService:
    """The models an edge serves, loaded once; thread-safe (one inference at a time)."""

    def __init__(self, models: Sequence[str] = ("mobilenet_v2", "scenes-blip"), *,
                 calibrate: bool = True, profile_runs: int = 5) -> None:
        from taskcodec.zoo.runtimes import REGISTRY, load_runtime

        self.runtimes: Dict[str, Any] = {name: load_runtime(name) for name in models}
        self.lock = threading.Lock()
        self.info: Dict[str, Dict[str, Any]] = {}
        for name, rt in self.runtimes.items():
            entry = REGISTRY[name].to_json()
            if calibrate:
                rt.calibrate()
            # the tail of each cut (and, for the VLM, its text side), timed on this edge
            entry["tail_ms"] = {at: round(ms, 3) for at, ms in rt.tail_ms(profile_runs).items()}
            entry["full_ms"] = round(self._infer_ms(name, profile_runs), 3)
            self.info[name] = entry

    def _infer_ms(self, name: str, runs: int) -> float:
        """Median ms of a full inference from a camera-sized JPEG (a calibration photo)."""
        from taskcodec.zoo.images import encode_jpeg
        from taskcodec.zoo.photos import load_photo

        jpeg = encode_jpeg(load_photo("motorcycle_left"))
        times = []
        for _ in range(max(1, runs)):
            t0 = time.perf_counter()
            self.infer(name, jpeg, None, None)
            times.append((time.perf_counter() - t0) * 1e3)
        return float(sorted(times)[len(times) // 2])

    def runtime(self, name: str) -> Any:
        from taskcodec.zoo.runtimes import REGISTRY

        if name not in self.runtimes:
            raise UnknownModel(
                f"model {name!r} is not served here; served: {sorted(self.runtimes)}"
                + ("" if name in REGISTRY else f"; registry: {sorted(REGISTRY)}"))
        return self.runtimes[name]

    def split(self, name: str, at: int, frame: bytes, task: Optional[str] = None,
              question: Optional[str] = None) -> Dict[str, Any]:
        """Decode a head's frame (cut ``at``) and run the tail; the answer as JSON."""
        import taskcodec as tc
        from taskcodec.zoo.runtimes import decode_feature

        rt = self.runtime(name)
        task = self._task(rt, name, task, question)
        cal = [c for (a, _), c in getattr(rt, "calibrations", {}).items() if a == at]
        if not cal:
            raise BadInputError(f"{name} offers no split at cut {at}")
        info = tc.read_header(frame, max_symbols=16 * int(np.prod(cal[0].shape)))
        # The codec whose tables made the frame; a foreign fingerprint fails in decode with
        # TableMismatchError.
        c = next((c for c in cal if c.codec.fingerprint == info.fingerprint), cal[0])
        with self.lock:
            # one answer per request: the frame holds one feature map
            z = decode_feature(c.codec, frame, c.shape, max_batch=1)
            return rt.answer_features(z, at, task, question)

    @staticmethod
    def _task(rt: Any, name: str, task: Optional[str], question: Optional[str]) -> str:
        task = task or rt.spec.tasks[0]
        if task not in rt.spec.tasks:
            raise BadInputError(f"{name} does {list(rt.spec.tasks)}, not {task!r}")
        if question is not None:
            check_text(question, "question", MAX_REQUEST_CHARS)
        return task

    def infer(self, name: str, image: bytes, task: Optional[str],
              question: Optional[str]) -> Dict[str, Any]:
        from taskcodec.zoo.images import decode_jpeg

        rt = self.runtime(name)
        task = self._task(rt, name, task, question)
        # Large photos are decoded reduced (JPEG DCT scaling, else an integer box reduction),
        # never below twice the models' 256-pixel resize on the short side.
        photo = decode_jpeg(image, min_side=512)
        with self.lock:
            x = rt.preprocess(photo)
            if name == "mobilenet_v2":
                return rt.answer(rt.full(x))
            return rt.run(x, task, question)


def create_edge_app(service: EdgeService, *, token: Optional[str] = None,
                    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                    limits: Optional[Any] = None) -> Any:
    """The FastAPI application serving ``service``; ``limits`` (a
    :class:`~taskcodec.pipeline.server_common.ServerLimits`) overrides ``max_body_bytes``."""
    from fastapi import FastAPI, Request

    from taskcodec.pipeline.server_common import (
        Metrics,
        ServerLimits,
        error_response,
        install_common,
        read_body,
    )

    limits = limits or ServerLimits(max_body_bytes=max_body_bytes)
    app = FastAPI(title="taskcodec edge", version="1")
    metrics = Metrics()
    install_common(app, token=token, metrics=metrics)

    def failure(exc: Exception) -> Any:
        if isinstance(exc, UnknownModel):
            return error_response(404, str(exc), "UnknownModel")
        return error_response(400, str(exc), type(exc).__name__)

    # Every handler is async: none waits for a thread-pool slot, so /health and /metrics
    # answer while inferences queue; the inferences run in the thread pool.
    @app.get("/health")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "models": sorted(service.runtimes)}

    @app.get("/metrics")
    async def get_metrics() -> Dict[str, Any]:
        return metrics.snapshot()

    @app.get("/v1/models")
    async def models() -> Dict[str, Any]:
        return {"models": service.info}

    @app.get("/v1/models/{model}/codecs")
    async def codecs(model: str) -> Any:
        try:
            rt = service.runtime(model)
        except UnknownModel as exc:
            return failure(exc)
        return {"model": model, "codecs": [c.to_json() for c in
                                           getattr(rt, "calibrations", {}).values()]}

    @app.post("/v1/probe")
    async def probe(request: Request) -> Dict[str, Any]:
        body = await read_body(request, limits)
        return {"bytes": len(body)}

    @app.post("/v1/split/{model}")
    async def split(model: str, at: int, request: Request, task: Optional[str] = None,
                    question: Optional[str] = None) -> Any:
        body = await read_body(request, limits)
        t0 = time.perf_counter()
        try:
            out = await _in_thread(service.split, model, at, body, task, question)
        except TaskcodecError as exc:
            return failure(exc)
        out["server_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return out

    @app.post("/v1/infer/{model}")
    async def infer(model: str, request: Request, task: Optional[str] = None,
                    question: Optional[str] = None) -> Any:
        body = await read_body(request, limits)
        t0 = time.perf_counter()
        try:
            out = await _in_thread(service.infer, model, body, task, question)
        except TaskcodecError as exc:
            return failure(exc)
        out["server_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return out

    return app


async def _in_thread(fn: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)


def serve_edge(host: str = "127.0.0.1", port: int = 8600, *,
               models: Sequence[str] = ("mobilenet_v2", "scenes-blip"),
               token: Optional[str] = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               calibrate: bool = True) -> None:
    """Load the models, then serve until interrupted (binds loopback unless told otherwise).

    ``calibrate=False`` skips the codec calibration: the edge then offers no split.
    Timeouts and header limits: :class:`~taskcodec.pipeline.server_common.ServerLimits`."""
    from taskcodec.pipeline.server_common import ServerLimits, serve

    service = EdgeService(models, calibrate=calibrate)
    limits = ServerLimits(max_body_bytes=max_body_bytes)
    app = create_edge_app(service, token=token, limits=limits)
    print(f"taskcodec edge: serving {sorted(service.runtimes)} on http://{host}:{port}",
          flush=True)
    serve(app, host, port, limits)
