"""The edge server: model tails and full models behind FastAPI.

Endpoints (JSON replies; no pickle anywhere on the wire):

``GET  /health``                      liveness and the models served (no token needed)
``GET  /metrics``                     requests, errors, bytes in, latency per endpoint
``GET  /v1/models``                   registry entries, tail / full timings measured here
``GET  /v1/models/{model}/codecs``    codec calibrations per (cut, rate), for devices
``POST /v1/split/{model}?at=K``       body: one taskcodec frame (the head's features) → answer
``POST /v1/infer/{model}?task=T&question=Q``  body: a JPEG / PNG → answer
``POST /v1/probe``                    body: any bytes, discarded (devices time their uplink)

Bodies larger than ``max_body_bytes`` get 413; a malformed frame or image gets 400 with the
codec's (or the image decoder's) message, and the server keeps serving. With ``token`` set,
every endpoint but ``/health`` needs ``Authorization: Bearer <token>``.
"""


import hmac
import statistics
import threading
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from taskcodec.errors import BadInputError, TaskcodecError
from taskcodec.pipeline.protocol import FRAME_MEDIA_TYPE

__all__ = ["EdgeService", "UnknownModel", "create_edge_app", "serve_edge",
           "DEFAULT_MAX_BODY_BYTES", "FRAME_MEDIA_TYPE"]

DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024


class UnknownModel(BadInputError):
    """A request names a model this edge does not serve (HTTP 404)."""


class _Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.per: Dict[str, Dict[str, Any]] = {}

    def record(self, endpoint: str, status: int, bytes_in: int, ms: float) -> None:
        with self._lock:
            m = self.per.setdefault(endpoint, {"requests": 0, "errors": 0, "bytes_in": 0,
                                               "latency_ms": []})
            m["requests"] += 1
            m["errors"] += int(status >= 400)
            m["bytes_in"] += bytes_in
            m["latency_ms"].append(ms)
            del m["latency_ms"][:-1000]  # keep the last 1000 for the percentiles

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            out: Dict[str, Any] = {"uptime_s": round(time.time() - self.started, 1),
                                   "requests": 0, "errors": 0, "bytes_in": 0, "endpoints": {}}
            for ep, m in self.per.items():
                lat: List[float] = m["latency_ms"]
                out["requests"] += m["requests"]
                out["errors"] += m["errors"]
                out["bytes_in"] += m["bytes_in"]
                out["endpoints"][ep] = {
                    "requests": m["requests"], "errors": m["errors"], "bytes_in": m["bytes_in"],
                    "latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
                    "latency_ms_max": round(max(lat), 2) if lat else None,
                }
            return out


class EdgeService:
    """The models an edge serves, loaded once; thread-safe (one inference at a time)."""

    def __init__(self, models: Sequence[str] = ("mobilenet_v2", "blip-tiny"), *,
                 calibrate: bool = True, profile_runs: int = 5) -> None:
        from taskcodec.zoo.runtimes import REGISTRY, load_runtime

        self.runtimes: Dict[str, Any] = {name: load_runtime(name) for name in models}
        self.lock = threading.Lock()
        self.info: Dict[str, Dict[str, Any]] = {}
        for name, rt in self.runtimes.items():
            entry = REGISTRY[name].to_json()
            if name == "mobilenet_v2":
                if calibrate:
                    rt.calibrate()
                # tc.split.profile: the tail of each cut, timed on this edge
                entry["tail_ms"] = {int(str(p.at).rsplit(".", 1)[1]): round(p.tail_ms, 3)
                                    for p in rt.profile(profile_runs)}
                entry["full_ms"] = round(self._infer_ms(name, profile_runs), 3)
            else:
                entry["full_ms"] = round(self._infer_ms(name, 1), 3)
                entry["untrained"] = bool(rt.untrained)
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

    def split(self, name: str, at: int, frame: bytes) -> Dict[str, Any]:
        """Decode a head's frame (cut ``at``) and run the tail; the answer as JSON."""
        import taskcodec as tc
        from taskcodec.zoo.runtimes import decode_feature

        rt = self.runtime(name)
        cal = [c for (a, _), c in getattr(rt, "calibrations", {}).items() if a == at]
        if not cal:
            raise BadInputError(f"{name} offers no split at cut {at}")
        info = tc.read_header(frame, max_symbols=16 * int(np.prod(cal[0].shape)))
        # The codec whose tables made the frame; a foreign fingerprint fails in decode with
        # TableMismatchError.
        c = next((c for c in cal if c.codec.fingerprint == info.fingerprint), cal[0])
        with self.lock:
            z = decode_feature(c.codec, frame, c.shape)
            return rt.answer(rt.tail(z, at))

    def infer(self, name: str, image: bytes, task: Optional[str],
              question: Optional[str]) -> Dict[str, Any]:
        from taskcodec.zoo.images import decode_jpeg

        rt = self.runtime(name)
        photo = decode_jpeg(image)
        task = task or rt.spec.tasks[0]
        if task not in rt.spec.tasks:
            raise BadInputError(f"{name} does {list(rt.spec.tasks)}, not {task!r}")
        with self.lock:
            x = rt.preprocess(photo)
            if name == "mobilenet_v2":
                return rt.answer(rt.full(x))
            return rt.run(x, task, question)


def create_edge_app(service: EdgeService, *, token: Optional[str] = None,
                    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Any:
    """The FastAPI application serving ``service``."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse

    app = FastAPI(title="taskcodec edge", version="1")
    metrics = _Metrics()

    def check_token(request: Request) -> None:
        if token is None:
            return
        got = request.headers.get("authorization", "")
        if not hmac.compare_digest(got.encode(), f"Bearer {token}".encode()):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise HTTPException(400, f"bad Content-Length {declared!r}") from None
            if n > max_body_bytes:
                raise HTTPException(413, f"body of {n} bytes exceeds the limit of "
                                         f"{max_body_bytes} bytes")
        chunks, total = [], 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_body_bytes:
                raise HTTPException(413, f"body exceeds the limit of {max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    @app.middleware("http")
    async def count(request: Request, call_next: Any) -> Any:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        try:
            n = int(request.headers.get("content-length", "0"))
        except ValueError:
            n = 0
        metrics.record(endpoint, response.status_code, n, (time.perf_counter() - t0) * 1e3)
        return response

    def failure(exc: Exception) -> JSONResponse:
        if isinstance(exc, UnknownModel):
            return JSONResponse({"detail": str(exc), "error": "UnknownModel"}, 404)
        return JSONResponse({"detail": str(exc), "error": type(exc).__name__}, 400)

    @app.get("/health")
    def health() -> Dict[str, Any]:
        return {"status": "ok", "models": sorted(service.runtimes)}

    @app.get("/metrics")
    def get_metrics(request: Request) -> Dict[str, Any]:
        check_token(request)
        return metrics.snapshot()

    @app.get("/v1/models")
    def models(request: Request) -> Dict[str, Any]:
        check_token(request)
        return {"models": service.info}

    @app.get("/v1/models/{model}/codecs")
    def codecs(model: str, request: Request) -> Any:
        check_token(request)
        try:
            rt = service.runtime(model)
        except UnknownModel as exc:
            return failure(exc)
        return {"model": model, "codecs": [c.to_json() for c in
                                           getattr(rt, "calibrations", {}).values()]}

    @app.post("/v1/probe")
    async def probe(request: Request) -> Dict[str, Any]:
        check_token(request)
        body = await read_body(request)
        return {"bytes": len(body)}

    @app.post("/v1/split/{model}")
    async def split(model: str, at: int, request: Request) -> Any:
        check_token(request)
        body = await read_body(request)
        t0 = time.perf_counter()
        try:
            out = await _in_thread(service.split, model, at, body)
        except TaskcodecError as exc:
            return failure(exc)
        out["server_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return out

    @app.post("/v1/infer/{model}")
    async def infer(model: str, request: Request, task: Optional[str] = None,
                    question: Optional[str] = None) -> Any:
        check_token(request)
        body = await read_body(request)
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
               models: Sequence[str] = ("mobilenet_v2", "blip-tiny"),
               token: Optional[str] = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               calibrate: bool = True) -> None:
    """Load the models, then serve until interrupted (binds loopback unless told otherwise).

    ``calibrate=False`` skips the codec calibration: the edge then offers no split."""
    import uvicorn

    from taskcodec.zoo.runtimes import UNTRAINED_BANNER

    service = EdgeService(models, calibrate=calibrate)
    if any(i.get("untrained") for i in service.info.values()):
        print(UNTRAINED_BANNER, flush=True)
    app = create_edge_app(service, token=token, max_body_bytes=max_body_bytes)
    print(f"taskcodec edge: serving {sorted(service.runtimes)} on http://{host}:{port}",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", ws="none")
