"""Link emulation (token bucket with a fake clock; the relay on real sockets) and lazy imports."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading

import pytest

from taskcodec.pipeline.link import LinkEmulator, TokenBucket


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
    with pytest.raises(ValueError):
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
    with server, LinkEmulator(server.getsockname(), up_kBps=2000, down_kBps=4000,
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
        link.set(up_kBps=50, latency_ms=0)
        assert link.up_kBps == 50 and link.down_kBps == 4000
        with pytest.raises(ValueError):
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
