"""What the edge and the cloud servers share: the token guard, request ids, JSON error bodies,
metrics of every response (500s included), a body reader bounded in size and in time, and the
uvicorn settings (keep-alive and header limits).

Every error a client causes is a 4xx with a JSON body ``{"detail": <what is wrong>, "error":
<its name>}``. An unexpected error is a 500 whose body names only a request id (also sent as
the ``X-Request-ID`` header of every response); the traceback goes to the server's log under
that id, never into the body. A client that disconnects mid-request is counted (status 499,
as nginx counts it) and logged in one line, without a traceback.
"""

from __future__ import annotations

import gc
import hmac
import logging
import statistics
import threading
import time
import uuid
from typing import Any, Dict, List, Optional

__all__ = ["Metrics", "ServerLimits", "install_common", "read_body", "error_response",
           "header_deadline_protocol", "serve", "settle_heap", "uvicorn_config", "OPEN_PATHS"]

log = logging.getLogger("taskcodec.server")

OPEN_PATHS = ("/health",)
"""The only paths answered without the bearer token (``/openapi.json``, ``/docs`` and
``/redoc`` need it like every other path)."""


class ServerLimits:
    """Timeouts and sizes of one server (seconds, bytes)."""

    def __init__(self, *, max_body_bytes: int, body_timeout_s: float = 30.0,
                 keep_alive_s: int = 5, max_header_bytes: int = 16 * 1024,
                 header_timeout_s: float = 10.0, max_connections: int = 256) -> None:
        self.max_body_bytes = int(max_body_bytes)
        self.body_timeout_s = float(body_timeout_s)  # the whole body, from the first read
        self.keep_alive_s = int(keep_alive_s)  # an idle connection is closed after this
        self.max_header_bytes = int(max_header_bytes)  # request line + headers (h11)
        # from the connection (or the last response) to the end of the next request's headers
        self.header_timeout_s = float(header_timeout_s)
        self.max_connections = int(max_connections)  # beyond this: 503


class Metrics:
    """Requests, errors, bytes in and latency per endpoint (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.per: Dict[str, Dict[str, Any]] = {}

    def record(self, endpoint: str, status: int, bytes_in: int, ms: float) -> None:
        with self._lock:
            m = self.per.setdefault(endpoint, {"requests": 0, "errors": 0, "server_errors": 0,
                                               "bytes_in": 0, "latency_ms": []})
            m["requests"] += 1
            m["errors"] += int(status >= 400)
            m["server_errors"] += int(status >= 500)
            m["bytes_in"] += bytes_in
            m["latency_ms"].append(ms)
            del m["latency_ms"][:-1000]  # keep the last 1000 for the percentiles

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            out: Dict[str, Any] = {"uptime_s": round(time.time() - self.started, 1),
                                   "requests": 0, "errors": 0, "server_errors": 0,
                                   "bytes_in": 0, "endpoints": {}}
            for ep, m in self.per.items():
                lat: List[float] = m["latency_ms"]
                for k in ("requests", "errors", "server_errors", "bytes_in"):
                    out[k] += m[k]
                out["endpoints"][ep] = {
                    "requests": m["requests"], "errors": m["errors"],
                    "server_errors": m["server_errors"], "bytes_in": m["bytes_in"],
                    "latency_ms_p50": round(statistics.median(lat), 2) if lat else None,
                    "latency_ms_max": round(max(lat), 2) if lat else None,
                }
            return out


_STATUS_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                 405: "MethodNotAllowed", 408: "RequestTimeout", 413: "PayloadTooLarge",
                 422: "UnprocessableEntity", 500: "InternalError", 502: "BadGateway",
                 503: "ServiceUnavailable"}


def error_response(status: int, detail: str, error: Optional[str] = None,
                   headers: Optional[Dict[str, str]] = None) -> Any:
    """The JSON error body every failure gets."""
    from starlette.responses import JSONResponse

    return JSONResponse({"detail": detail, "error": error or _STATUS_NAMES.get(status, "Error")},
                        status, headers=headers)


def _header(scope: Dict[str, Any], name: bytes) -> str:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.decode("latin-1")
    return ""


class _Guard:
    """Pure ASGI middleware (it sees every response, 500s included): request id, token,
    metrics, and the last word on unexpected errors and client disconnects."""

    def __init__(self, app: Any, *, token: Optional[str], metrics: Metrics) -> None:
        self.app, self.token, self.metrics = app, token, metrics
        self._expected = f"Bearer {token}".encode() if token is not None else b""

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.requests import ClientDisconnect

        rid = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        t0 = time.perf_counter()
        state = {"status": 0}

        async def send_with_id(message: Dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            if (self.token is not None and scope["path"] not in OPEN_PATHS
                    and not hmac.compare_digest(_header(scope, b"authorization").encode(),
                                                self._expected)):
                await error_response(401, "missing or wrong bearer token",
                                     headers={"WWW-Authenticate": "Bearer"})(
                    scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            state["status"] = state["status"] or 499
            log.info("request %s %s %s: the client disconnected", rid, scope.get("method"),
                     scope.get("path"))
        except Exception:  # the last line: a 500 naming the request id, traceback to the log
            log.exception("request %s %s %s failed", rid, scope.get("method"), scope.get("path"))
            if not state["status"]:
                try:
                    await error_response(500, f"internal error (request id {rid}); the "
                                              "server log has the details", "InternalError")(
                        scope, receive, send_with_id)
                except OSError:  # the client is gone too: nothing more to tell it
                    pass
            state["status"] = 500
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            try:
                n = max(0, int(_header(scope, b"content-length") or 0))
            except ValueError:
                n = 0
            self.metrics.record(endpoint, state["status"] or 500, n,
                                (time.perf_counter() - t0) * 1e3)


def install_common(app: Any, *, token: Optional[str], metrics: Metrics) -> None:
    """Add the guard middleware and the JSON error handlers to a FastAPI ``app``."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    async def http_error(request: Any, exc: StarletteHTTPException) -> Any:
        return error_response(exc.status_code, str(exc.detail), headers=exc.headers)

    async def validation_error(request: Any, exc: RequestValidationError) -> Any:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()))
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
        return error_response(422, "; ".join(parts) or "invalid request", "BadRequest")

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_middleware(_Guard, token=token, metrics=metrics)


async def read_body(request: Any, limits: ServerLimits) -> bytes:
    """The request body, refused with 413 past ``limits.max_body_bytes`` (on ``Content-Length`` first,
    then while streaming: no more than the limit is ever held) and with 408 when it has not
    arrived within ``limits.body_timeout_s``."""
    from fastapi import HTTPException

    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise HTTPException(400, "Content-Length is not a number")
        if int(declared) > limit:
            raise HTTPException(413, f"body of {int(declared)} bytes exceeds the limit of "
                                     f"{limit} bytes")
    import anyio

    chunks, total = [], 0
    try:
        with anyio.fail_after(limits.body_timeout_s):
            async for chunk in request.stream():
                total += len(chunk)
                if total > limit:
                    raise HTTPException(413, f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"the body did not arrive within {limits.body_timeout_s:g} s "
                                 f"({total} bytes read)") from None
    return b"".join(chunks)


def header_deadline_protocol(seconds: float) -> Any:
    """uvicorn's h11 protocol with a deadline on the request headers: a connection whose next
    request's headers are not complete ``seconds`` after it opened (or after the last
    response) is closed. uvicorn's own keep-alive timer restarts on every byte received, so
    a client trickling one header byte at a time (slowloris) would hold it forever."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class HeaderDeadlineH11Protocol(H11Protocol):
        _header_timer: Any = None

        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_header_deadline()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_deadline()

        def connection_lost(self, exc: Optional[Exception]) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            super().connection_lost(exc)

        def _arm_header_deadline(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(seconds, self._header_deadline_passed)

        def _header_deadline_passed(self) -> None:
            # IDLE: the next request's headers have not all arrived
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                log.info("closing a connection: request headers incomplete after %g s", seconds)
                self.transport.close()

    return HeaderDeadlineH11Protocol


def uvicorn_config(app: Any, host: str, port: int, limits: ServerLimits) -> Any:
    """uvicorn's settings for a taskcodec server: header deadline and size limit, keep-alive
    timeout, connection limit, quiet logs (no access log; errors in one line per request id)."""
    import uvicorn

    if not log.handlers:  # this module's lines only; the root logger is left alone
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    return uvicorn.Config(app, host=host, port=port, log_level="warning", ws="none",
                          http=header_deadline_protocol(limits.header_timeout_s),
                          access_log=False, timeout_keep_alive=limits.keep_alive_s,
                          h11_max_incomplete_event_size=limits.max_header_bytes,
                          limit_concurrency=limits.max_connections,
                          timeout_graceful_shutdown=5)


def settle_heap() -> None:
    """Collect, then exempt every object alive now (loaded models, imported libraries) from the
    garbage collector: its full collections then walk only what requests allocate. Call it
    once a server has loaded everything: a full collection holds the GIL, so every request in
    flight waits for it (``bench/gc_pause.py``: 210 ms for the edge's two models, 0.1 ms after
    this)."""
    gc.collect()
    gc.freeze()


def serve(app: Any, host: str, port: int, limits: ServerLimits) -> None:
    """Serve ``app`` until interrupted (after :func:`settle_heap`)."""
    import uvicorn

    settle_heap()
    uvicorn.Server(uvicorn_config(app, host, port, limits)).run()
