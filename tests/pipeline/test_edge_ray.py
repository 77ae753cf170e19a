"""The edge on Ray Serve as a real process (``serve-edge --engine ray``), behind Ray Serve's
proxy and behind HAProxy (direct ingress): the same routes, token and errors, batched
answers equal to the model's, a replica killed under load restarted while devices retry, and
no Ray (or HAProxy) process left after it stops."""

from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from ci_support import missing, require
from conftest import SERVER_ENV

from taskcodec.errors import BadInputError, EdgeUnavailable

require("ray")

TOKEN = "s3cret"


@pytest.fixture(scope="module", params=["proxy", "haproxy"])
def ray_edge(request, weights, tmp_path_factory):
    """Two replicas of an edge serving MobileNetV2 (batching on) behind the ingress, and every
    process the server started (Ray's included), captured while it runs."""
    from taskcodec.pipeline.procs import start_service

    if request.param == "haproxy" and not (shutil.which("haproxy") and shutil.which("socat")):
        missing("ingress haproxy needs the haproxy and socat programs",
                install="scripts/setup-system.sh (apt-get install haproxy socat)")
    log = tmp_path_factory.mktemp("ray-edge") / "edge.log"
    svc = start_service("edge", ["--engine", "ray", "--replicas", "2", "--models", "mobilenet_v2",
                                 "--token", TOKEN, "--max-body-bytes", "2000000",
                                 "--batch-wait-ms", "20", "--ingress", request.param],
                        log_path=str(log), env=SERVER_ENV, ready_timeout=600)
    svc.ingress = request.param
    svc.family = {svc.proc.pid}
    yield svc
    svc.stop(timeout=90)


def _family(svc):
    for p in psutil.Process(svc.proc.pid).children(recursive=True):
        svc.family.add(p.pid)
    return svc.family


def _health(svc, replicas=None, timeout=120.0):
    """``/health``, once the replica count (when given) is reached."""
    deadline = time.monotonic() + timeout
    while True:
        h = httpx.get(f"{svc.url}/health", timeout=10).json()
        if replicas is None or h.get("replicas") == replicas or time.monotonic() > deadline:
            return h
        time.sleep(0.5)


@pytest.fixture(scope="module")
def work(ray_edge, photos):
    """Frames (the Ray edge's own codec, cut 13) and JPEGs of the photos, with the answers the
    model gives them here."""
    import torch

    from taskcodec.pipeline.protocol import auth_headers
    from taskcodec.zoo.images import decode_jpeg, encode_jpeg
    from taskcodec.zoo.runtimes import CodecCalibration, MobileNetRuntime

    codecs = httpx.get(f"{ray_edge.url}/v1/models/mobilenet_v2/codecs",
                       headers=auth_headers(TOKEN), timeout=30).json()["codecs"]
    cal = next(CodecCalibration.from_json(d) for d in codecs if d["at"] == 13 and d["rate"] == 1.0)
    rt = MobileNetRuntime()
    jobs = []
    with torch.inference_mode():
        for p in photos.values():
            frame = cal.codec.compress(rt.head(rt.preprocess(p), 13))
            want = int(rt.tail(cal.codec.decompress(frame), 13).argmax(1)[0])
            jobs.append(("/v1/split/mobilenet_v2?at=13", frame, want))
            jpeg = encode_jpeg(p)
            want = int(rt.full(rt.preprocess(decode_jpeg(jpeg, min_side=512))).argmax(1)[0])
            jobs.append(("/v1/infer/mobilenet_v2", jpeg, want))
    return jobs


def test_health_routes_token_and_errors(ray_edge):
    h = _health(ray_edge, replicas=2)
    assert h["status"] == "ok" and h["engine"] == "ray" and h["replicas"] == 2
    assert h["ingress"] == ray_edge.ingress
    assert h["models"] == ["mobilenet_v2"] and h["batching"]["on"] is True
    assert h["torch_threads"] >= 1
    with httpx.Client(base_url=ray_edge.url, timeout=30) as c:
        r = c.get("/v1/models")
        assert r.status_code == 401 and r.json()["error"] == "Unauthorized"
        c.headers["Authorization"] = f"Bearer {TOKEN}"
        assert "mobilenet_v2" in c.get("/v1/models").json()["models"]
        r = c.post("/v1/split/mobilenet_v2", params={"at": 13}, content=b"\x00" * 64)
        assert r.status_code == 400 and r.json()["error"] in ("CorruptStreamError", "BadInputError")
        r = c.post("/v1/infer/resnet_9000", content=b"x")
        assert r.status_code == 404 and r.json()["error"] == "UnknownModel"
        r = c.post("/v1/probe", content=b"x" * 2_000_001)
        assert r.status_code == 413


def test_concurrent_requests_are_batched_and_answered_right(ray_edge, work):
    from taskcodec.pipeline.protocol import auth_headers

    def send(job):
        path, body, want = job
        r = httpx.post(f"{ray_edge.url}{path}", content=body, headers=auth_headers(TOKEN),
                       timeout=60)
        return r.status_code, r.json(), want

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(send, work * 4))
    for status, out, want in results:
        assert status == 200, out
        assert out["class_index"] == want
    # batches of more than one request formed on the replicas that answer /health
    seen = [_health(ray_edge)["batching"] for _ in range(8)]
    assert any(b["requests"] > b["batches"] > 0 for b in seen), seen


def test_a_killed_replica_is_restarted_and_devices_retry(ray_edge, work):
    """SIGKILL one replica under load: every request a device sends (EdgeConnection, with its
    retries) is answered right or fails with an explicit EdgeUnavailable, none is lost; Ray
    starts a new replica."""
    from taskcodec.pipeline.transport import EdgeConnection

    replicas = [p for p in psutil.Process(ray_edge.proc.pid).children(recursive=True)
                if p.name().startswith("ray::ServeReplica")]
    assert len(replicas) == 2
    _family(ray_edge)
    stop = threading.Event()
    outcomes, retried = [], []

    def device(k):
        conn = EdgeConnection(ray_edge.url, TOKEN, 60.0, retries=3)
        i = k
        while not stop.is_set():
            path, body, want = work[i % len(work)]
            i += 1
            try:
                r = conn.request("POST", path, content=body)
                outcomes.append(("ok" if r.json().get("class_index") == want else
                                 f"wrong {r.status_code} {r.text[:100]}"))
            except EdgeUnavailable as exc:
                outcomes.append(f"unavailable: {exc}")
        retried.append(conn.retried)
        conn.close()

    threads = [threading.Thread(target=device, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    time.sleep(3)
    replicas[0].kill()
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join(120)
    assert outcomes and not any(t.is_alive() for t in threads)
    wrong = [o for o in outcomes if o.startswith("wrong")]
    assert not wrong, wrong[:3]
    failed = [o for o in outcomes if o != "ok"]
    # retries carry the devices over the dead replica: at most a handful fail, each explicitly
    assert len(failed) <= 2, failed
    h = _health(ray_edge, replicas=2, timeout=180)
    assert h["replicas"] == 2, h
    new = [p for p in psutil.Process(ray_edge.proc.pid).children(recursive=True)
           if p.name().startswith("ray::ServeReplica")]
    assert replicas[0].pid not in {p.pid for p in new} and len(new) == 2


def test_stop_leaves_no_ray_process(ray_edge):
    family = _family(ray_edge)
    assert len(family) >= 6  # the server, Ray's GCS and raylet, Serve's controller, proxy, replicas
    names = {psutil.Process(p).name() for p in family if psutil.pid_exists(p)}
    assert ("haproxy" in names) == (ray_edge.ingress == "haproxy"), names
    ray_edge.stop(timeout=90)
    assert ray_edge.proc.returncode == 0, ray_edge.log()[-2000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = [p for p in family if psutil.pid_exists(p)
                 and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        if not alive:
            break
        time.sleep(0.5)
    assert not alive, [psutil.Process(p).cmdline()[:2] for p in alive]
    assert "Traceback" not in ray_edge.log()


def test_options_are_checked_before_anything_loads(capsys):
    from taskcodec.apps.cli import main
    from taskcodec.pipeline.edge_ray import RayEdgeOptions, parse_autoscale

    assert parse_autoscale("1:4") == (1, 4) and parse_autoscale(None) is None
    for bad in ("4", "a:b", "1:"):
        with pytest.raises(BadInputError):
            parse_autoscale(bad)
    for kw in ({"replicas": 0}, {"max_batch_size": 0}, {"batch_wait_ms": -1},
               {"autoscale": (3, 2)}, {"autoscale": (0, 0)}, {"target_ongoing": 0},
               {"ingress": "nginx"}, {"ingress": "haproxy", "address": "auto"}):
        with pytest.raises(BadInputError):
            RayEdgeOptions(**kw)
    assert RayEdgeOptions(replicas=2, threads=3).torch_threads() == 3
    for argv in (["--replicas", "0"], ["--autoscale", "x"], ["--max-batch-size", "1000"],
                 ["--ingress", "haproxy", "--ray-address", "auto"]):
        assert main(["serve-edge", "--engine", "ray", *argv]) == 2
        assert "error:" in capsys.readouterr().err
    import socket

    with socket.socket() as busy:  # a port in use: one line, before any model or Ray starts
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        assert main(["serve-edge", "--engine", "ray", "--port", port, "--no-split"]) == 1
        assert f"cannot serve on 127.0.0.1:{port}" in capsys.readouterr().err


def test_haproxy_ingress_settings_and_missing_programs(tmp_path, monkeypatch, capsys):
    """Ray Serve reads the ingress from its environment: HAProxy's files in the server's own
    folder, its connection limit within the file limit, no fixed ports; the programs it needs
    are asked for by name, before anything loads."""
    import resource

    from taskcodec.apps.cli import main
    from taskcodec.pipeline.edge_ray import ingress_env

    assert ingress_env("proxy", str(tmp_path))["RAY_SERVE_ENABLE_HA_PROXY"] == "0"
    env = ingress_env("haproxy", str(tmp_path))
    assert env["RAY_SERVE_ENABLE_HA_PROXY"] == env["RAY_SERVE_ENABLE_DIRECT_INGRESS"] == "1"
    for key in ("CONFIG_FILE_LOC", "SOCKET_PATH", "SERVER_STATE_BASE", "SERVER_STATE_FILE"):
        assert env[f"RAY_SERVE_HAPROXY_{key}"].startswith(str(tmp_path)), key
    files = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    maxconn = int(env["RAY_SERVE_HAPROXY_MAXCONN"])  # two descriptors a connection, 64 spare
    assert 64 <= maxconn <= 4096 and 2 * maxconn + 64 <= max(files, 192), (maxconn, files)
    assert env["RAY_SERVE_FALLBACK_PROXY_HTTP_PORT"] != "8500"  # the cloud tier's port
    monkeypatch.setenv("PATH", str(tmp_path))  # no haproxy, no socat
    assert main(["serve-edge", "--engine", "ray", "--ingress", "haproxy", "--no-split",
                 "--port", "0"]) == 1
    err = capsys.readouterr().err
    assert "needs haproxy and socat" in err and "apt-get install haproxy socat" in err
