"""Link emulation (token bucket with a fake clock; the relay on real sockets) and lazy imports."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

import taskcodec as tc
from taskcodec.pipeline.link import DEFAULT_DOWN_KB_S, DEFAULT_UP_KB_S, LinkEmulator, TokenBucket


def test_token_bucket_charges_each_byte_at_the_rate():
    now = [0.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    bucket = TokenBucket(1000.0, burst=100, clock=lambda: now[0], sleep=sleep)
    bucket.take(100)  # the burst: free
    assert slept == []
    bucket.take(500)  # 500 bytes at 1000 B/s
    assert slept == [pytest.approx(0.5)]
    now[0] += 0.05  # 50 bytes of credit earned while idle
    bucket.take(50)
    assert len(slept) == 1
    bucket.set_rate(10.0)
    bucket.take(10)
    assert slept[-1] == pytest.approx(1.0)
    now[0] += 1000  # credit is capped at the burst
    bucket.take(100)
    assert len(slept) == 2
    bucket.take(1)
    assert slept[-1] == pytest.approx(0.1)
    with pytest.raises(tc.TaskcodecError):
        TokenBucket(0)


def test_relay_carries_every_byte_both_ways_and_counts_them():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def echo_upper():
        conn, _ = server.accept()
        with conn:
            data = b""
            while len(data) < 50_000:
                data += conn.recv(65536)
            conn.sendall(data.upper())

    t = threading.Thread(target=echo_upper, daemon=True)
    t.start()
    payload = bytes(range(97, 123)) * 1923 + b"xx"  # 50,000 bytes
    with server, LinkEmulator(server.getsockname(), up_kB_s=2000, down_kB_s=4000,
                              latency_ms=5) as link:
        with socket.create_connection(link.address) as c:
            c.sendall(payload)
            got = b""
            while len(got) < len(payload):
                chunk = c.recv(65536)
                assert chunk, "relay closed early"
                got += chunk
        assert got == payload.upper()
        assert link.bytes_up == len(payload) and link.bytes_down == len(payload)
        link.set(up_kB_s=50, latency_ms=0)
        assert link.up_kB_s == 50 and link.down_kB_s == 4000
        assert link.up.rate == 50_000  # kB/s with 1 kB = 1000 B
        with pytest.raises(tc.TaskcodecError):
            link.set(latency_ms=-1)
    t.join(5)


def test_import_taskcodec_loads_neither_torch_nor_fastapi():
    code = ("import sys, taskcodec, taskcodec.pipeline; "
            "bad = [m for m in ('torch', 'fastapi', 'uvicorn', 'transformers') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    import taskcodec.pipeline as p

    assert p.link.LinkEmulator is LinkEmulator
    with pytest.raises(AttributeError):
        p.nothing_here  # noqa: B018


def test_default_link_is_the_studys_250_up_500_down_kB_s():
    assert (DEFAULT_UP_KB_S, DEFAULT_DOWN_KB_S) == (250.0, 500.0)
    link = LinkEmulator(("127.0.0.1", 9))
    assert (link.up_kB_s, link.down_kB_s) == (250.0, 500.0) and link.up.rate == 250_000
    with pytest.raises(tc.PipelineError, match="not started"):
        link.url  # noqa: B018


def test_wire_forms_live_in_the_protocol_module():
    from taskcodec.pipeline import cloud, edge, protocol

    assert edge.FRAME_MEDIA_TYPE is protocol.FRAME_MEDIA_TYPE
    assert cloud.TASKS is protocol.TASKS and cloud.PLAN_SCHEMA is protocol.PLAN_SCHEMA
    assert cloud.validate_plan is protocol.validate_plan
    assert protocol.PLAN_SCHEMA["items"]["properties"]["task"]["enum"] == list(protocol.TASKS)
    assert protocol.auth_headers("t") == {"Authorization": "Bearer t"}
    assert protocol.auth_headers(None) == {}


def test_pipeline_modules_import_no_app_and_split_no_pipeline():
    code = ("import sys, importlib\n"
            "mods = ['protocol', 'policy', 'measure', 'profiling', 'transport', 'link', "
            "'device', 'edge', 'cloud', 'procs']\n"
            "for m in mods:\n"
            "    importlib.import_module('taskcodec.pipeline.' + m)\n"
            "bad = sorted(m for m in sys.modules if m.startswith('taskcodec.apps'))\n"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_edge_connection_retries_what_got_no_answer_and_nothing_else():
    """Idempotent edge requests are sent again after a connection error, a 502 / 503 / 504 or
    a 500 that is not the edge's own; never after a timeout, a 4xx or the edge's own 500."""
    import httpx

    from taskcodec.errors import EdgeUnavailable
    from taskcodec.pipeline.transport import EdgeConnection

    def conn_with(replies, retries=2):
        seen = []

        def handler(request):
            seen.append(request.url.path)
            r = replies[min(len(seen), len(replies)) - 1]
            if isinstance(r, Exception):
                raise r
            return r

        c = EdgeConnection("http://edge", None, 5.0, retries=retries)
        c.http = httpx.Client(base_url="http://edge", transport=httpx.MockTransport(handler))
        return c, seen

    ok = httpx.Response(200, json={"answer": "cat"})
    ours = httpx.Response(500, json={"detail": "internal error (request id 1)",
                                     "error": "InternalError"})
    for first in (httpx.Response(503), httpx.Response(502), httpx.Response(500, text="boom"),
                  httpx.ConnectError("refused"), httpx.RemoteProtocolError("closed")):
        c, seen = conn_with([first, ok])
        assert c.request("POST", "/v1/split/m", content=b"x").json() == {"answer": "cat"}
        assert len(seen) == 2 and c.retried == 1
    c, seen = conn_with([ours, ok])  # the edge's own 500: the same on every try
    with pytest.raises(EdgeUnavailable, match="HTTP 500 .*InternalError"):
        c.request("POST", "/v1/split/m", content=b"x")
    assert len(seen) == 1 and c.retried == 0
    c, seen = conn_with([httpx.Response(400, json={"detail": "bad", "error": "BadInputError"}),
                         ok])
    assert c.request("POST", "/v1/split/m", content=b"x").status_code == 400
    assert len(seen) == 1 and c.retried == 0
    c, seen = conn_with([httpx.ReadTimeout("slow"), ok])
    with pytest.raises(EdgeUnavailable, match="timed out"):
        c.request("GET", "/health")
    assert len(seen) == 1
    c, seen = conn_with([httpx.Response(503)], retries=2)
    with pytest.raises(EdgeUnavailable, match=r"HTTP 503.*after 3 tries"):
        c.request("GET", "/health")
    assert len(seen) == 3
