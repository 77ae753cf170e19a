"""Hostile requests against the edge and the cloud apps, in process: every request error is a
4xx with a JSON body naming the problem, an unexpected error a 500 with a request id that
``/metrics`` counts, nothing holds more memory than its limits allow, and the token guards
every path but ``/health``. One test per defect found by an adversarial pass (issue 14)."""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib

import pytest
from ci_support import require

from taskcodec.pipeline.cloud import OpenAIPlanner, PlanError, RulePlanner, create_cloud_app
from taskcodec.pipeline.edge import EdgeService, create_edge_app
from taskcodec.pipeline.procs import free_port
from taskcodec.pipeline.protocol import FRAME_MEDIA_TYPE, MAX_PLAN_BODY_BYTES
from taskcodec.pipeline.server_common import ServerLimits, uvicorn_config

with warnings.catch_warnings():  # starlette's test client names a deprecated anyio alias
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# ---------------------------------------------------------------------------- helpers
def _png(width: int, height: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), (120, 60, 30)).save(buf, format="PNG")
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` and holds one empty IDAT (no pixels)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b""))


def _asgi(app, method: str, path: str, receive, headers=(), query: bytes = b""):
    """Call ``app`` as a server would, with a caller-made ``receive``; (status, body, sent)."""
    sent = []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query, "root_path": "", "server": ("127.0.0.1", 1),
             "client": ("127.0.0.1", 2),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers]}
    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return (start["status"] if start else None), body, sent


def _assert_json_error(r, status: int, *words: str) -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert isinstance(body["detail"], str) and body["error"]
    for w in words:
        assert w.lower() in body["detail"].lower(), body
    assert "Traceback" not in r.text and " at 0x" not in r.text
    return body


# ---------------------------------------------------------------------------- apps
@pytest.fixture(scope="module")
def service(weights):
    """An edge service with MobileNetV2 (one codec at cut 16, fitted on two photos) and the
    small random BLIP, built in process (no calibration run)."""
    import torch

    from taskcodec.nn import FeatureCodec
    from taskcodec.zoo.photos import load_photo
    from taskcodec.zoo.runtimes import CodecCalibration, MobileNetRuntime
    from taskcodec.zoo.scene_runtime import SceneBlipRuntime

    svc = EdgeService(models=())
    rt = MobileNetRuntime()
    with torch.inference_mode():
        f = torch.cat([rt.head(rt.preprocess(load_photo(n)), 16) for n in ("coffee", "chelsea")])
    codec = FeatureCodec.calibrate(f, step_per_std=1.0)
    rt.calibrations[(16, 1.0)] = CodecCalibration(16, 1.0, codec, tuple(f.shape[1:]), 0.0, 1.0)
    svc.runtimes["mobilenet_v2"] = rt
    svc.runtimes["scenes-blip"] = SceneBlipRuntime()
    svc.feature = f
    return svc


@pytest.fixture(scope="module")
def edge_app(service):
    return create_edge_app(service, token=TOKEN, max_body_bytes=2_000_000)


@pytest.fixture(scope="module")
def cloud_app():
    return create_cloud_app(RulePlanner(), token=TOKEN)


@pytest.fixture(scope="module")
def edge(edge_app):
    return TestClient(edge_app, headers=AUTH, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def cloud(cloud_app):
    return TestClient(cloud_app, headers=AUTH, raise_server_exceptions=False)


# ---------------------------------------------------------------------------- edge
def test_e1_empty_batch_frame_is_a_400(edge, service):
    codec = service.runtimes["mobilenet_v2"].calibrations[(16, 1.0)].codec
    for n in (0, 2):
        frame = codec.compress(service.feature[:0] if n == 0 else service.feature)
        r = edge.post("/v1/split/mobilenet_v2", params={"at": 16}, content=frame,
                      headers={"Content-Type": FRAME_MEDIA_TYPE})
        _assert_json_error(r, 400, f"batch of {n}")
    r = edge.post("/v1/split/mobilenet_v2", params={"at": 16},
                  content=codec.compress(service.feature[:1]))
    assert r.status_code == 200 and r.json()["answer"] == "espresso"


def test_e2_long_vqa_question_is_truncated_not_a_500(edge):
    png = _png(64, 64)
    long_q = "is " + "a " * 990 + "red?"  # ~1000 tokens: over the text encoder's 32 positions
    assert len(long_q) <= 2000
    r = edge.post("/v1/infer/scenes-blip", params={"task": "vqa", "question": long_q},
                  content=png)
    assert r.status_code == 200, r.text
    assert r.json()["question_truncated"] is True
    r = edge.post("/v1/infer/scenes-blip", params={"task": "vqa", "question": "is it red?"},
                  content=png)
    assert r.status_code == 200 and r.json()["question_truncated"] is False
    r = edge.post("/v1/infer/scenes-blip", params={"task": "vqa", "question": "x" * 2001},
                  content=png)
    _assert_json_error(r, 400, "question", "2000")


def test_e3_thin_and_huge_images_are_refused_before_decoding(edge):
    for body, words in ((_png(8000, 1), ("8000x1", "elongated")),
                        (_png_header_only(1, 40_000_000), ("1x40000000",)),
                        (_png_header_only(9000, 9000), ("9000x9000", "pixels")),
                        (_png_header_only(20_000, 20_000), ("pixels",)),
                        (_png_header_only(100_000, 100_000), ("pixels",))):
        r = edge.post("/v1/infer/mobilenet_v2", content=body)
        _assert_json_error(r, 400, *words)
    r = edge.post("/v1/infer/mobilenet_v2", content=_png(4000, 200))  # 20:1 is allowed
    assert r.status_code == 200, r.text


def test_e3_memory_of_a_thin_png_and_a_large_jpeg_stays_small(tmp_path):
    """In a fresh process, after its imports: the 8000x1 PNG (once 1.6 GB) and a 4096x4096
    JPEG (50 MB of pixels, decoded at 1/8 by DCT scaling) raise the peak RSS by < 25 MB."""
    from PIL import Image

    Image.new("RGB", (4096, 4096), (9, 99, 199)).save(tmp_path / "big.jpg", format="JPEG")
    (tmp_path / "thin.png").write_bytes(_png(8000, 1))
    code = f"""import pathlib, resource, taskcodec.zoo.images as im
thin, big = (pathlib.Path({str(tmp_path)!r}) / n for n in ("thin.png", "big.jpg"))
thin, big = thin.read_bytes(), big.read_bytes()
peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
before = peak()
try:
    im.decode_jpeg(thin, min_side=512); raise SystemExit("8000x1 decoded")
except im.BadInputError:
    out = im.decode_jpeg(big, min_side=512)
print(min(out.shape[:2]), (peak() - before) // 1024)"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    short, grown_mb = map(int, res.stdout.split())
    assert short >= 512 and grown_mb < 25, res.stdout


class _Boom:
    """A runtime that fails in an unexpected way (not a TaskcodecError)."""

    class spec:  # the runtimes' attribute name
        tasks = ("classify",)

    def preprocess(self, photo):
        raise RuntimeError(f"kernel failed near {object()!r}")


def test_e4_unexpected_errors_are_500s_with_a_request_id_and_counted(edge, service, caplog):
    service.runtimes["boom"] = _Boom()
    try:
        before = edge.get("/metrics").json()
        with caplog.at_level(logging.ERROR, logger="taskcodec.server"):
            r = edge.post("/v1/infer/boom", content=_png(32, 32))
        body = _assert_json_error(r, 500, "request id")
        assert body["error"] == "InternalError"
        rid = r.headers["x-request-id"]
        assert rid in body["detail"] and "kernel failed" not in r.text
        assert any(rid in rec.getMessage() for rec in caplog.records)
        after = edge.get("/metrics").json()
        ep = after["endpoints"]["/v1/infer/{model}"]
        old = before["endpoints"].get("/v1/infer/{model}", {"server_errors": 0, "errors": 0})
        assert ep["server_errors"] == old["server_errors"] + 1
        assert ep["errors"] == old["errors"] + 1
    finally:
        del service.runtimes["boom"]


@pytest.mark.parametrize("which", ["edge_app", "cloud_app"])
def test_e5_schema_and_docs_need_the_token(which, request):
    app = request.getfixturevalue(which)
    with TestClient(app) as anon:
        for path in ("/openapi.json", "/docs", "/redoc", "/metrics", "/v1/models"):
            r = anon.get(path)
            _assert_json_error(r, 401, "token")
            assert r.headers["www-authenticate"] == "Bearer"
            assert anon.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
            assert anon.get(path, headers=AUTH).status_code == 200
        assert anon.get("/health").status_code == 200


def test_e6_timeouts_and_header_limits_are_configured():
    limits = ServerLimits(max_body_bytes=1000)
    cfg = uvicorn_config(object(), "127.0.0.1", 1, limits)
    assert cfg.timeout_keep_alive == limits.keep_alive_s == 5
    assert cfg.h11_max_incomplete_event_size == limits.max_header_bytes == 16 * 1024
    assert cfg.limit_concurrency == limits.max_connections
    assert cfg.http.__name__ == "HeaderDeadlineH11Protocol" and limits.header_timeout_s == 10
    assert 0 < limits.body_timeout_s <= 60


def test_e6_slowloris_headers_are_cut_off(cloud_app):
    """A real server: headers trickled past the header deadline lose the connection; a
    normal request on a new connection is answered."""
    import uvicorn


    port = free_port()
    limits = ServerLimits(max_body_bytes=1000, header_timeout_s=0.5)
    server = uvicorn.Server(uvicorn_config(cloud_app, "127.0.0.1", port, limits))
    threading.Thread(target=server.run, daemon=True).start()
    try:
        while not server.started:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            t0 = time.monotonic()
            with pytest.raises(OSError):  # the server closes it: a write or the read fails
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                while time.monotonic() - t0 < 3:
                    time.sleep(0.1)
                    s.sendall(b"X-Slow: 1\r\n")  # a header line every 0.1 s, never the end
                if s.recv(1) == b"":
                    raise ConnectionResetError("closed")
            assert time.monotonic() - t0 < 2.5
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        server.should_exit = True


def test_e6_a_body_that_never_arrives_gets_408(service):
    app = create_edge_app(service, limits=ServerLimits(max_body_bytes=1000, body_timeout_s=0.3))
    calls = []

    async def slow_receive():  # one byte, then nothing (a slowloris body)
        calls.append(1)
        if len(calls) == 1:
            return {"type": "http.request", "body": b"x", "more_body": True}
        await asyncio.sleep(30)

    status, body, _ = _asgi(app, "POST", "/v1/probe", slow_receive,
                            headers=[("content-length", "100")])
    assert status == 408 and b"did not arrive" in body


def test_e6_client_disconnect_is_counted_without_a_traceback(service, caplog):
    app = create_edge_app(service)

    async def gone():
        return {"type": "http.disconnect"}

    with caplog.at_level(logging.INFO):
        _asgi(app, "POST", "/v1/probe", gone, headers=[("content-length", "100")])
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert any("disconnected" in r.getMessage() for r in caplog.records)
    with TestClient(app) as c:
        assert c.get("/metrics").json()["endpoints"]["/v1/probe"]["errors"] == 1


def test_e6_health_never_waits_for_inference_and_bodies_hold_no_address(edge_app, edge,
                                                                        service):
    for route in edge_app.routes:
        if getattr(route, "path", "") in ("/health", "/metrics"):
            assert inspect.iscoroutinefunction(route.endpoint), route.path
    from taskcodec.zoo.images import encode_jpeg
    from taskcodec.zoo.photos import load_photo

    jpeg = encode_jpeg(load_photo("coffee"))
    answers = []
    with service.lock:  # an inference holds the models; a second one waits for them
        waiting = threading.Thread(target=lambda: answers.append(
            edge.post("/v1/infer/mobilenet_v2", content=jpeg).status_code))
        waiting.start()
        time.sleep(0.5)
        assert waiting.is_alive()  # the request is queued behind the lock
        health = []  # asked from a thread, so a /health that waited for the lock fails here
        asking = threading.Thread(target=lambda: health.append(edge.get("/health").status_code),
                                  daemon=True)
        asking.start()
        asking.join(1.0)
        assert health == [200]
    waiting.join(60)
    assert answers == [200]  # and is served once the models are free
    assert not service.lock.locked()
    r = edge.post("/v1/infer/mobilenet_v2", content=b"\x00garbage, not an image")
    _assert_json_error(r, 400, "not a readable image")
    assert "0x" not in r.text and "BytesIO" not in r.text


# ---------------------------------------------------------------------------- cloud
def test_c1_lone_surrogate_is_a_422(cloud):
    raw = b'{"request": "is the dog asleep? \\ud800"}'
    r = cloud.post("/v1/plan", content=raw, headers={"Content-Type": "application/json"})
    _assert_json_error(r, 422, "surrogate")
    r = cloud.post("/v1/plan", content=b'{"request": "\xff\xfe"}')
    _assert_json_error(r, 422, "utf-8")


def test_c2_deep_json_is_a_422_and_the_llm_parser_refuses_it(cloud):
    deep = b'{"request": ' + b"[" * 8000 + b"]" * 8000 + b"}"
    _assert_json_error(cloud.post("/v1/plan", content=deep), 422, "deeper")
    for body in (b"[1, 2", b'"just a string"', b'{"req": "x"}', b'{"request": 5}',
                 b'{"request": "  "}'):
        assert cloud.post("/v1/plan", content=body).status_code == 422, body
    with pytest.raises(PlanError, match="deeper"):
        OpenAIPlanner.parse("```json\n" + "[" * 8000 + "]" * 8000 + "\n```")


@pytest.mark.parametrize("length", [501, 1200, 2000])
def test_c3_vqa_requests_up_to_the_request_limit_plan(cloud, length):
    head, tail = "is the dog ", " asleep?"
    text = head + "very " * ((length - len(head) - len(tail)) // 5)
    text = (text + "x" * (length - len(text) - len(tail))) + tail
    assert len(text) == length
    r = cloud.post("/v1/plan", json={"request": text})
    assert r.status_code == 200, r.text
    step = r.json()["plan"][0]
    assert step["task"] == "visual-question-answering" and step["args"]["text"] == text
    _assert_json_error(cloud.post("/v1/plan", json={"request": "x" * 2001}), 422, "2000")


def test_c4_plan_body_limit_is_enforced_while_reading(cloud_app):
    chunk = b" " * 65536
    reads = []

    async def endless():  # 256 MiB on offer, no Content-Length
        reads.append(1)
        return {"type": "http.request", "body": chunk, "more_body": len(reads) < 4096}

    status, body, _ = _asgi(cloud_app, "POST", "/v1/plan", endless, headers=[
        ("authorization", AUTH["Authorization"])])
    assert status == 413 and json.loads(body)["error"] == "PayloadTooLarge"
    assert len(reads) <= MAX_PLAN_BODY_BYTES // len(chunk) + 1

    reads.clear()
    status, body, _ = _asgi(cloud_app, "POST", "/v1/plan", endless, headers=[
        ("authorization", AUTH["Authorization"]), ("content-length", str(256 << 20))])
    assert status == 413 and not reads  # refused on Content-Length, nothing read
    assert b"268435456" in body


# ---------------------------------------------------------------------------- fuzzing
@pytest.mark.slow
@pytest.mark.parametrize("which", ["edge_app", "cloud_app"])
def test_schema_fuzzing_finds_no_server_error(which, request):
    """Schemathesis over the app's own OpenAPI schema, in process: up to 1,000 generated
    requests per operation (derandomized: a fixed seed), none may get a 5xx or a body that breaks
    the declared response schema."""
    schemathesis = require("schemathesis")
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import response_schema_conformance

    app = request.getfixturevalue(which)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=1000, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def check(case):
            r = case.call(headers=AUTH)
            assert r.status_code < 500, (case.method, case.formatted_path, case.query,
                                         case.body, r.status_code, r.text[:300])
            kind = r.headers.get("content-type", [""])
            assert (kind[0] if isinstance(kind, list) else kind).startswith("application/json")
            # and the body follows the schema the app declares for that status, where it has one
            case.validate_response(r, checks=[response_schema_conformance])

        check()
        ran += 1
    assert ran >= (6 if which == "edge_app" else 4)
