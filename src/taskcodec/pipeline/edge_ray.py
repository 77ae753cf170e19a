"""The edge server on Ray Serve: replicas, dynamic batching and autoscaling.

``taskcodec serve-edge --engine ray --replicas N`` serves the same FastAPI application as the
default engine (:func:`taskcodec.pipeline.edge.create_edge_app`: routes, token, body limits,
JSON errors, metrics) as a Ray Serve deployment (``serve.ingress``) of ``N`` replicas. Each
replica loads the models; the codec calibrations are computed once, by the process that
starts the deployment, and handed to every replica, so a device's frame decodes on any of them.

With batching on, the concurrent split and edge-only requests that reach a replica are
gathered by ``@serve.batch`` (up to ``max_batch_size``, waiting at most ``batch_wait_ms`` for
more) and :meth:`EdgeService.run` answers them together: each request is checked and decoded
on its own, so a malformed frame gets its own 400 and the rest their answers, and those of
the same model, cut and task go through the tail (or the whole model) as one batch.

``/health`` adds ``"engine": "ray"``, ``"replicas"`` (the deployment's running replicas, as
Ray Serve's controller counts them) and the batching settings. The process that started a
local Ray instance stops it on SIGINT / SIGTERM (Ray Serve first, then Ray), leaving no Ray
process behind; with ``address`` it joins an existing cluster and only deletes its
application. Ray Serve's HTTP proxy, not uvicorn's settings here, handles the connections:
see docs/pipeline.md, "Scaling out".

``ingress="haproxy"`` replaces that Python proxy, which relays every request to a replica
through Ray's actor calls, with Ray Serve's direct ingress: each replica serves HTTP on its own
port and an HAProxy, configured by Ray Serve as replicas come and go, balances the
connections over them (least connections first). It needs the ``haproxy`` and ``socat``
programs (Debian: ``apt-get install haproxy socat``).
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from taskcodec.errors import BadInputError, PipelineError, TaskcodecError
from taskcodec.pipeline.edge import (EdgeRequest, EdgeService, Runner, batching_info,
                                     check_batching, create_edge_app)
from taskcodec.pipeline.procs import free_port

__all__ = ["RayEdgeOptions", "edge_deployment", "serve_edge_ray", "serve_batch_runner",
           "parse_autoscale", "APP_NAME", "DEPLOYMENT_NAME"]

APP_NAME = "taskcodec-edge"
# No access log line per request (the edge's /metrics counts them): warnings and errors only.
_LOGGING = {"log_level": "WARNING", "enable_access_log": False}
DEPLOYMENT_NAME = "TaskcodecEdge"
INGRESS = ("proxy", "haproxy")


@dataclass(frozen=True)
class RayEdgeOptions:
    """How the edge runs on Ray Serve.

    ``replicas``: replicas of the deployment (ignored under ``autoscale``). ``batch``: gather
    concurrent requests (``max_batch_size``, ``batch_wait_ms``). ``threads``: torch threads
    per replica (0: this machine's cores / replicas). ``replica_cpus``: CPUs Ray reserves per
    replica. ``autoscale``: ``(min, max)`` replicas, scaled to keep about
    ``target_ongoing`` requests per replica. ``address``: an existing Ray cluster to join
    (``"auto"``, ``"ray://head:10001"``); None starts a local Ray instance. ``ingress``:
    ``"proxy"`` (Ray Serve's HTTP proxy) or ``"haproxy"`` (direct ingress to the replicas
    behind HAProxy; a local Ray instance only: a cluster's nodes choose at ``ray start``)."""

    replicas: int = 1
    batch: bool = True
    max_batch_size: int = 16
    batch_wait_ms: float = 5.0
    threads: int = 0
    replica_cpus: float = 1.0
    autoscale: Optional[Tuple[int, int]] = None
    target_ongoing: float = 8.0
    address: Optional[str] = None
    ingress: str = "proxy"

    def __post_init__(self) -> None:
        if not 1 <= int(self.replicas) <= 256:
            raise BadInputError(f"replicas must be 1 to 256, not {self.replicas}")
        check_batching(self.max_batch_size, self.batch_wait_ms)
        if int(self.threads) < 0 or not float(self.replica_cpus) >= 0:
            raise BadInputError("threads and replica_cpus must not be negative")
        if self.autoscale is not None:
            lo, hi = (int(v) for v in self.autoscale)
            if not 0 <= lo <= hi or hi < 1:
                raise BadInputError(f"autoscale needs 0 <= min <= max, max >= 1; got {lo}:{hi}")
        if not float(self.target_ongoing) > 0:
            raise BadInputError(f"target_ongoing must be positive, not {self.target_ongoing}")
        if self.ingress not in INGRESS:
            raise BadInputError(f"ingress is one of {', '.join(INGRESS)}, not {self.ingress!r}")
        if self.ingress == "haproxy" and self.address is not None:
            raise BadInputError(
                "ingress haproxy applies to the Ray instance this command starts; on a cluster, "
                "start every node with RAY_SERVE_ENABLE_DIRECT_INGRESS=1 "
                "RAY_SERVE_ENABLE_HA_PROXY=1 (docs/pipeline.md, Scaling out)")

    def torch_threads(self) -> int:
        """Torch threads per replica: ``threads``, else the cores shared out."""
        most = self.autoscale[1] if self.autoscale else self.replicas
        return int(self.threads) or max(1, (os.cpu_count() or 1) // max(1, most))


def parse_autoscale(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """``"MIN:MAX"`` -> ``(MIN, MAX)`` (None for None or empty)."""
    if not text:
        return None
    lo, _, hi = text.partition(":")
    if not (lo.strip().isdigit() and hi.strip().isdigit()):
        raise BadInputError(f"autoscale takes MIN:MAX, e.g. 1:4; not {text!r}")
    return int(lo), int(hi)


def serve_batch_runner(service: EdgeService, max_batch_size: int,
                    batch_wait_s: float) -> Tuple[Runner, Dict[str, int]]:
    """A runner (see :func:`~taskcodec.pipeline.edge.create_edge_app`) that gathers concurrent
    requests with Ray Serve's ``@serve.batch`` (inside a Ray Serve replica only) and answers
    each batch with ``service.run`` in a worker thread (the event loop stays free for
    ``/health``); and its counts (``batches``, ``requests``)."""
    from ray import serve
    from starlette.concurrency import run_in_threadpool

    counts = {"batches": 0, "requests": 0}

    class Batcher:
        @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.005)
        async def answer(self, requests: List[EdgeRequest]) -> List[Any]:
            counts["batches"] += 1
            counts["requests"] += len(requests)
            return await run_in_threadpool(service.run, requests)

    batcher = Batcher()
    batcher.answer.set_max_batch_size(int(max_batch_size))
    batcher.answer.set_batch_wait_timeout_s(float(batch_wait_s))

    async def run(request: EdgeRequest) -> Dict[str, Any]:
        out = await batcher.answer(request)
        if isinstance(out, TaskcodecError):
            raise out
        return out

    return run, counts


def _replica_counter(every_s: float = 1.0) -> Callable[[], Optional[int]]:
    """The deployment's running replicas, refreshed by a daemon thread (the controller is
    asked outside the event loop)."""
    from ray import serve

    seen: Dict[str, Optional[int]] = {"n": None}

    def poll() -> None:
        while True:
            try:
                st = serve.status().applications[APP_NAME].deployments[DEPLOYMENT_NAME]
                seen["n"] = int(st.replica_states.get("RUNNING", 0))
            except Exception:  # the controller busy or gone: keep the last count
                pass
            time.sleep(every_s)

    threading.Thread(target=poll, name="taskcodec-replica-count", daemon=True).start()
    return lambda: seen["n"]


def _app_builder(models: Sequence[str], state: Dict[str, Any], token: Optional[str],
                 max_body_bytes: int, options: RayEdgeOptions) -> Callable[[], Any]:
    """The function every replica calls to build its ASGI app (``serve.ingress``)."""
    models = list(models)

    def build() -> Any:
        import torch

        from taskcodec.pipeline.edge import threaded_runner
        from taskcodec.pipeline.server_common import ServerLimits, settle_heap

        torch.set_num_threads(options.torch_threads())
        service = EdgeService(models, state=state)
        counts: Dict[str, int] = {}
        if options.batch:
            runner, counts = serve_batch_runner(service, options.max_batch_size,
                                                options.batch_wait_ms / 1e3)
        else:
            runner = threaded_runner(service)
        replicas = _replica_counter()

        def engine() -> Dict[str, Any]:
            # the batches are this replica's (the one answering)
            return {"engine": "ray", "ingress": options.ingress, "replicas": replicas(),
                    "torch_threads": torch.get_num_threads(),
                    "batching": batching_info(options.batch, options.max_batch_size,
                                              options.batch_wait_ms, counts)}

        app = create_edge_app(service, token=token, runner=runner, engine=engine,
                              limits=ServerLimits(max_body_bytes=max_body_bytes))
        settle_heap()
        return app

    return build


def edge_deployment(models: Sequence[str], state: Dict[str, Any], *, token: Optional[str],
                    max_body_bytes: int, options: RayEdgeOptions) -> Any:
    """The bound Ray Serve application of the edge (``serve.run`` it)."""
    from ray import serve

    # Every request a replica holds may be in one batch, and as many wait for the next.
    ongoing = max(32, 2 * options.max_batch_size)
    settings: Dict[str, Any] = {
        "name": DEPLOYMENT_NAME, "max_ongoing_requests": ongoing,
        "ray_actor_options": {"num_cpus": options.replica_cpus},
        "health_check_period_s": 2, "graceful_shutdown_timeout_s": 5,
        "logging_config": _LOGGING}
    if options.autoscale is not None:
        lo, hi = options.autoscale
        settings["autoscaling_config"] = {
            "min_replicas": lo, "max_replicas": hi, "initial_replicas": max(lo, 1),
            "target_ongoing_requests": options.target_ongoing}
    else:
        settings["num_replicas"] = options.replicas
    ingress = serve.ingress(_app_builder(models, state, token, max_body_bytes, options))
    return serve.deployment(**settings)(ingress()).bind()


def ingress_env(ingress: str, folder: str) -> Dict[str, str]:
    """Ray Serve's settings for ``ingress``, as the environment variables its controller and
    replicas read when they start (so they must be in ``os.environ`` before ``ray.init``).
    ``"haproxy"``: direct ingress behind HAProxy, its files in ``folder``, its connection limit
    within this process's file limit, and a stopping replica draining for 5 s, not 30 (with 30,
    Ray Serve's controller overran its own 30-s shutdown deadline; with 5 the edge stops in
    about 11 s). Ray Serve's fallback proxy and HAProxy's metrics take free ports, not their
    fixed defaults (8500, the cloud tier's, and 9101)."""
    if ingress == "proxy":
        return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "0", "RAY_SERVE_ENABLE_HA_PROXY": "0"}
    import resource

    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    files = 1 << 20 if files == resource.RLIM_INFINITY else files
    hap = os.path.join(folder, "haproxy")
    return {"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1",
            # HAProxy needs two descriptors a connection and a few of its own
            "RAY_SERVE_HAPROXY_MAXCONN": str(max(64, min(4096, (files - 64) // 2))),
            "RAY_SERVE_HAPROXY_NBTHREAD": str(max(1, min(4, (os.cpu_count() or 1) // 2))),
            "RAY_SERVE_HAPROXY_TCP_NODELAY": "1",
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": os.path.join(hap, "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": os.path.join(hap, "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": hap,
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": os.path.join(hap, "server-state"),
            "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "5",
            "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT": str(free_port("")),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port(""))}


def _check_ingress(ingress: str) -> None:
    """:class:`~taskcodec.PipelineError` when ``ingress`` needs programs this machine lacks."""
    if ingress != "haproxy":
        return
    missing = [p for p in ("haproxy", "socat") if shutil.which(p) is None]
    if missing:
        raise PipelineError(f"ingress haproxy needs {' and '.join(missing)} on the PATH "
                            f"(Debian / Ubuntu: apt-get install haproxy socat)")


def serve_edge_ray(host: str = "127.0.0.1", port: int = 8600, *,
                   models: Sequence[str] = ("mobilenet_v2", "scenes-blip"),
                   token: Optional[str] = None, max_body_bytes: int,
                   calibrate: bool = True, options: RayEdgeOptions = RayEdgeOptions()) -> None:
    """Calibrate once, deploy ``options.replicas`` replicas on Ray Serve at
    ``http://host:port/``, serve until SIGINT / SIGTERM, then shut down: the application,
    Ray Serve and (when this process started it) Ray."""
    if options.address is None:  # Ray's proxy would fail late, deep in a traceback
        _check_port(host, port)
    _check_ingress(options.ingress)
    state = EdgeService(models, calibrate=calibrate).state()
    stop = threading.Event()
    temp_dir = None
    if options.address is None:
        temp_dir = tempfile.mkdtemp(prefix="tcray")
        # before Ray's modules load and its processes start: both read them
        os.environ.update(ingress_env(options.ingress, temp_dir))
    import ray
    from ray import serve

    if options.address is None:
        most = options.autoscale[1] if options.autoscale else options.replicas
        ray.init(num_cpus=max(os.cpu_count() or 1, int(most * options.replica_cpus + 0.999)),
                 include_dashboard=False, _temp_dir=temp_dir, logging_level="WARNING",
                 log_to_driver=False)
    else:
        ray.init(address=options.address, logging_level="WARNING", log_to_driver=False)
    # after ray.init, whose core worker installs its own SIGTERM handler (it exits at once)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    try:
        serve.start(http_options={"host": host, "port": int(port)}, logging_config=_LOGGING)
        serve.run(edge_deployment(models, state, token=token, max_body_bytes=max_body_bytes,
                                  options=options), name=APP_NAME, route_prefix="/")
        scale = options.autoscale or options.replicas
        print(f"taskcodec edge (ray, {scale} replicas, {options.ingress} ingress, batching "
              f"{'on' if options.batch else 'off'}): serving {sorted(models)} on "
              f"http://{host}:{port}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        _shutdown(local=temp_dir is not None)
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _check_port(host: str, port: int) -> None:
    """:class:`~taskcodec.PipelineError` when ``host:port`` cannot be bound here."""
    import socket

    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, int(port)))
        except OSError as exc:
            raise PipelineError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None


def _shutdown(local: bool) -> None:
    import ray
    from ray import serve

    try:
        if local:
            serve.shutdown()
        else:
            serve.delete(APP_NAME)
    finally:
        ray.shutdown()
