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
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from taskcodec.errors import BadInputError, TaskcodecError
from taskcodec.pipeline.protocol import (DEFAULT_MAX_BODY_BYTES, FRAME_MEDIA_TYPE, MAX_REQUEST_CHARS,
                                         check_text)

__all__ = ["EdgeService", "EdgeRequest", "Runner", "threaded_runner", "batching_runner",
           "check_batching", "batching_info",
           "UnknownModel", "create_edge_app", "serve_edge", "DEFAULT_MAX_BODY_BYTES",
           "FRAME_MEDIA_TYPE"]



class UnknownModel(BadInputError):
    """A request names a model this edge does not serve (HTTP 404)."""


class EdgeService:
    """The models an edge serves, loaded once; thread-safe (one inference at a time)."""

    def __init__(self, models: Sequence[str] = ("mobilenet_v2", "scenes-blip"), *,
                 calibrate: bool = True, profile_runs: int = 5,
                 state: Optional[Dict[str, Any]] = None) -> None:
        from taskcodec.zoo.runtimes import REGISTRY, load_runtime

        self.runtimes: Dict[str, Any] = {name: load_runtime(name) for name in models}
        self.lock = threading.Lock()
        self.info: Dict[str, Dict[str, Any]] = {}
        if state is not None:  # another edge's calibrations and timings (its replicas)
            self._restore(state)
            return
        for name, rt in self.runtimes.items():
            entry = REGISTRY[name].to_json()
            if calibrate:
                rt.calibrate()
            # the tail of each cut (and, for the VLM, its text side), timed on this edge
            entry["tail_ms"] = {at: round(ms, 3) for at, ms in rt.tail_ms(profile_runs).items()}
            entry["full_ms"] = round(self._infer_ms(name, profile_runs), 3)
            self.info[name] = entry

    def state(self) -> Dict[str, Any]:
        """The codec calibrations and timings as JSON: ``EdgeService(models, state=...)``
        then serves the same codecs (replicas of one edge must: a device's frame may reach
        any of them) without calibrating again."""
        return {"info": self.info,
                "calibrations": {name: [c.to_json() for c in
                                        getattr(rt, "calibrations", {}).values()]
                                 for name, rt in self.runtimes.items()}}

    def _restore(self, state: Dict[str, Any]) -> None:
        from taskcodec.zoo.runtimes import CodecCalibration

        if set(state.get("info", {})) != set(self.runtimes):
            raise BadInputError(f"the state is of models {sorted(state.get('info', {}))}, "
                                f"not {sorted(self.runtimes)}")
        self.info = state["info"]
        for name, rt in self.runtimes.items():
            for d in state["calibrations"].get(name, []):
                c = CodecCalibration.from_json(d, rt.model)
                rt.calibrations[(c.at, "learned" if c.kind == "learned" else c.rate)] = c

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
        return _one(self.run([EdgeRequest("split", name, frame, at, task, question)]))

    def infer(self, name: str, image: bytes, task: Optional[str],
              question: Optional[str]) -> Dict[str, Any]:
        """The whole model on a JPEG / PNG; the answer as JSON."""
        return _one(self.run([EdgeRequest("infer", name, image, None, task, question)]))

    def run(self, requests: Sequence["EdgeRequest"]) -> List[Union[Dict[str, Any],
                                                                   TaskcodecError]]:
        """Answer many requests at once, in order: each is checked and decoded on its own (a
        bad one gets its error, the others their answers); those for the same model, kind,
        cut and task then run as one batch through the tail or the whole model."""
        import torch

        results: List[Any] = [None] * len(requests)
        groups: Dict[Tuple[str, str, Optional[int], str], List[Tuple[int, Any, Any]]] = {}
        for i, r in enumerate(requests):
            try:
                key, x = self._prepare(r)
            except TaskcodecError as exc:
                results[i] = exc
                continue
            groups.setdefault(key, []).append((i, x, r.question))
        for (kind, name, at, task), items in groups.items():
            rt = self.runtimes[name]
            x = torch.cat([x for _, x, _ in items]) if len(items) > 1 else items[0][1]
            questions = [q for _, _, q in items]
            try:
                with self.lock:
                    outs = (rt.answer_batch(x, at, task, questions) if kind == "split"
                            else rt.run_batch(x, task, questions))
            except TaskcodecError as exc:
                outs = [exc] * len(items)
            for (i, _, _), out in zip(items, outs):
                results[i] = out
        return results

    def _prepare(self, r: "EdgeRequest") -> Tuple[Tuple[str, str, Optional[int], str], Any]:
        """The batch key of a request and its input: decoded features ``[1, ...]`` (split) or
        the preprocessed image (infer)."""
        rt = self.runtime(r.model)
        task = self._task(rt, r.model, r.task, r.question)
        if r.kind == "infer":
            from taskcodec.zoo.images import decode_jpeg

            # Large photos are decoded reduced (JPEG DCT scaling, else an integer box
            # reduction), never below twice the models' 256-pixel resize on the short side.
            return ("infer", r.model, None, task), rt.preprocess(decode_jpeg(r.body, min_side=512))
        import taskcodec as tc
        from taskcodec.zoo.runtimes import decode_feature

        cal = [c for (a, _), c in getattr(rt, "calibrations", {}).items() if a == r.at]
        if not cal:
            raise BadInputError(f"{r.model} offers no split at cut {r.at}")
        info = tc.read_header(r.body, max_symbols=16 * int(np.prod(cal[0].shape)))
        # The codec whose tables made the frame; a foreign fingerprint fails in decode with
        # TableMismatchError. One answer per request: the frame holds one feature map.
        c = next((c for c in cal if c.codec.fingerprint == info.fingerprint), cal[0])
        return ("split", r.model, r.at, task), decode_feature(c.codec, r.body, c.shape,
                                                              max_batch=1)

    @staticmethod
    def _task(rt: Any, name: str, task: Optional[str], question: Optional[str]) -> str:
        task = task or rt.spec.tasks[0]
        if task not in rt.spec.tasks:
            raise BadInputError(f"{name} does {list(rt.spec.tasks)}, not {task!r}")
        if question is not None:
            check_text(question, "question", MAX_REQUEST_CHARS)
        elif task == "vqa":
            raise BadInputError("a VQA request needs a question")
        return task


@dataclass(frozen=True)
class EdgeRequest:
    """One split (``body`` a frame of cut ``at``) or edge-only (``body`` a JPEG / PNG)
    request, as :meth:`EdgeService.run` takes them."""

    kind: str  # "split" or "infer"
    model: str
    body: bytes
    at: Optional[int] = None
    task: Optional[str] = None
    question: Optional[str] = None


Runner = Callable[[EdgeRequest], Awaitable[Dict[str, Any]]]
"""Answers one request (raises :class:`~taskcodec.TaskcodecError` for a bad one)."""


def _one(results: List[Any]) -> Dict[str, Any]:
    if isinstance(results[0], TaskcodecError):
        raise results[0]
    return results[0]


def create_edge_app(service: EdgeService, *, token: Optional[str] = None,
                    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                    limits: Optional[Any] = None, runner: Optional[Runner] = None,
                    engine: Optional[Callable[[], Dict[str, Any]]] = None) -> Any:
    """The FastAPI application serving ``service``; ``limits`` (a
    :class:`~taskcodec.pipeline.server_common.ServerLimits`) overrides ``max_body_bytes``.

    ``runner`` answers one :class:`EdgeRequest` (a coroutine; default: ``service.run`` in the
    thread pool, one request at a time); Ray Serve's batching plugs in here
    (:mod:`taskcodec.pipeline.edge_ray`). ``engine`` returns what ``/health`` says of the
    serving engine (default ``{"engine": "uvicorn", "replicas": 1}``)."""
    from fastapi import FastAPI, Request

    from taskcodec.pipeline.server_common import (
        Metrics,
        ServerLimits,
        error_response,
        install_common,
        read_body,
    )

    limits = limits or ServerLimits(max_body_bytes=max_body_bytes)
    run = runner or threaded_runner(service)
    engine_info = engine or (lambda: {"engine": "uvicorn", "replicas": 1})
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
        return {"status": "ok", "models": sorted(service.runtimes), **engine_info()}

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
            out = await run(EdgeRequest("split", model, body, at, task, question))
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
            out = await run(EdgeRequest("infer", model, body, None, task, question))
        except TaskcodecError as exc:
            return failure(exc)
        out["server_ms"] = round((time.perf_counter() - t0) * 1e3, 3)
        return out

    return app


def threaded_runner(service: EdgeService) -> Runner:
    """The default runner: each request on its own, in the server's thread pool (the service
    lock runs one inference at a time)."""
    from starlette.concurrency import run_in_threadpool

    async def run(request: EdgeRequest) -> Dict[str, Any]:
        return _one(await run_in_threadpool(service.run, [request]))

    return run


def batching_runner(service: EdgeService, max_batch_size: int = 16,
                    batch_wait_s: float = 0.005) -> Tuple[Runner, Dict[str, int]]:
    """A runner that gathers concurrent requests in this process: the first waits up to
    ``batch_wait_s`` for company, then up to ``max_batch_size`` go to ``service.run`` together
    (in the thread pool); those that arrive meanwhile form the next batch. Also returns its
    counts (``batches``, ``requests``). Ray Serve's replicas use ``@serve.batch`` instead
    (:mod:`taskcodec.pipeline.edge_ray`)."""
    import asyncio

    from starlette.concurrency import run_in_threadpool

    pending: List[Tuple[EdgeRequest, Any]] = []
    counts = {"batches": 0, "requests": 0}
    worker: Dict[str, Any] = {"task": None}

    async def drain() -> None:
        await asyncio.sleep(batch_wait_s)
        while pending:
            batch = pending[:max_batch_size]
            del pending[:max_batch_size]
            counts["batches"] += 1
            counts["requests"] += len(batch)
            try:
                outs = await run_in_threadpool(service.run, [r for r, _ in batch])
            except Exception as exc:  # a bug: every request of the batch gets its 500
                outs = [exc] * len(batch)
            for (_, fut), out in zip(batch, outs):
                if not fut.done():
                    fut.set_result(out)
        worker["task"] = None

    async def run(request: EdgeRequest) -> Dict[str, Any]:
        fut = asyncio.get_running_loop().create_future()
        pending.append((request, fut))
        if worker["task"] is None:
            worker["task"] = asyncio.ensure_future(drain())
        out = await fut
        if isinstance(out, Exception):
            raise out
        return out

    return run, counts


def check_batching(max_batch_size: int, batch_wait_ms: float) -> None:
    """:class:`~taskcodec.BadInputError` unless 1 <= ``max_batch_size`` <= 256 and
    0 <= ``batch_wait_ms`` <= 1000 (both engines' limits)."""
    if not 1 <= int(max_batch_size) <= 256:
        raise BadInputError(f"max_batch_size must be 1 to 256, not {max_batch_size}")
    if not 0 <= float(batch_wait_ms) <= 1000:
        raise BadInputError(f"batch_wait_ms must be 0 to 1000, not {batch_wait_ms}")


def batching_info(on: bool, max_batch_size: int, batch_wait_ms: float,
                  counts: Dict[str, int]) -> Dict[str, Any]:
    """What ``/health`` says of batching: the settings and the batches so far."""
    return {"on": on, "max_batch_size": max_batch_size, "batch_wait_ms": batch_wait_ms,
            **counts}


def serve_edge(host: str = "127.0.0.1", port: int = 8600, *,
               models: Sequence[str] = ("mobilenet_v2", "scenes-blip"),
               token: Optional[str] = None, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               calibrate: bool = True, batch: bool = False, max_batch_size: int = 16,
               batch_wait_ms: float = 5.0) -> None:
    """Load the models, then serve until interrupted (binds loopback unless told otherwise).

    ``calibrate=False`` skips the codec calibration: the edge then offers no split. ``batch``
    gathers concurrent requests (:func:`batching_runner`); ``/health`` then shows its counts.
    Timeouts and header limits: :class:`~taskcodec.pipeline.server_common.ServerLimits`."""
    from taskcodec.pipeline.server_common import ServerLimits, serve

    if batch:
        check_batching(max_batch_size, batch_wait_ms)
    service = EdgeService(models, calibrate=calibrate)
    limits = ServerLimits(max_body_bytes=max_body_bytes)
    runner, engine = None, None
    if batch:
        runner, counts = batching_runner(service, max_batch_size, batch_wait_ms / 1e3)
        engine = lambda: {"engine": "uvicorn", "replicas": 1,  # noqa: E731
                          "batching": batching_info(True, max_batch_size, batch_wait_ms, counts)}
    app = create_edge_app(service, token=token, limits=limits, runner=runner, engine=engine)
    print(f"taskcodec edge: serving {sorted(service.runtimes)} on http://{host}:{port}",
          flush=True)
    serve(app, host, port, limits)
