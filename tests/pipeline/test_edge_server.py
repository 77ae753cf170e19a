"""The edge server as a real process: each endpoint, bad payloads, size limit, token."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest

import taskcodec as tc
from taskcodec.pipeline.protocol import FRAME_MEDIA_TYPE
from taskcodec.zoo import scenes


@pytest.fixture(scope="module")
def client(edge):
    with httpx.Client(base_url=edge.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def edge_codec(client):
    """The edge's codec for cut 16, rate 0.5, as a device fetches it."""
    from taskcodec.zoo.runtimes import CodecCalibration

    cals = [CodecCalibration.from_json(d)
            for d in client.get("/v1/models/mobilenet_v2/codecs").json()["codecs"]]
    return next(c for c in cals if c.at == 16 and c.rate == 0.5)


@pytest.fixture(scope="module")
def good_frame(client, photos):
    """A real split frame of the coffee photo at cut 16, coded with the edge's codec."""
    import torch

    from taskcodec.zoo.runtimes import CodecCalibration, MobileNetRuntime

    cals = [CodecCalibration.from_json(d)
            for d in client.get("/v1/models/mobilenet_v2/codecs").json()["codecs"]]
    cal = next(c for c in cals if c.at == 16 and c.rate == 0.5)
    rt = MobileNetRuntime()
    with torch.inference_mode():
        return cal.codec.compress(rt.head(rt.preprocess(photos["coffee"]), 16))


def _split(client, body, at=16):
    return client.post("/v1/split/mobilenet_v2", params={"at": at}, content=body,
                       headers={"Content-Type": FRAME_MEDIA_TYPE})


def test_health_models_and_codecs(client):
    h = client.get("/health").json()
    assert h == {"status": "ok", "models": ["mobilenet_v2", "scenes-blip"], "engine": "uvicorn",
                 "replicas": 1}
    models = client.get("/v1/models").json()["models"]
    assert set(models["mobilenet_v2"]["tail_ms"]) == {"6", "10", "13", "16"}
    assert set(models["scenes-blip"]["tail_ms"]) == {"1", "2", "4"}
    blip = client.get("/v1/models/scenes-blip/codecs").json()["codecs"]
    assert sorted((c["at"], c["rate"]) for c in blip) == [(a, r) for a in (1, 2, 4) for r in (0.5, 1.0, 2.0)]
    assert all(c["shape"] == [65, 128] and c["mean_bytes"] < 65 * 128 * 2 for c in blip)
    codecs = client.get("/v1/models/mobilenet_v2/codecs").json()["codecs"]
    assert len(codecs) == 4 * 3 + 1  # every (cut, rate) of the registry + the learned codec
    learned = [c for c in codecs if c["kind"] == "learned"]
    assert [(c["at"], c["model"]) for c in learned] == [(13, "mobilenet_v2")]
    assert "codec" not in learned[0]  # it ships with the package: only its fingerprint travels
    assert all(0.0 <= c["agreement"] <= 1.0 and c["mean_bytes"] > 0 for c in codecs)
    assert client.get("/v1/models/nope/codecs").status_code == 404


def test_split_and_full_inference(client, good_frame, photos):
    from taskcodec.zoo.images import encode_jpeg

    r = _split(client, good_frame)
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == "espresso"
    r = client.post("/v1/infer/mobilenet_v2", content=encode_jpeg(photos["coffee"]),
                    headers={"Content-Type": "image/jpeg"})
    assert r.status_code == 200 and r.json()["answer"] == "espresso"
    scene = scenes.scene(0, "test", 1)
    question = "what colour is the largest object?"
    r = client.post("/v1/infer/scenes-blip", params={"task": "vqa", "question": question},
                    content=encode_jpeg(scene.image))
    assert r.status_code == 200 and r.json()["answer"] == scene.objects[0].colour


def test_split_vqa_and_caption_from_a_token_map(client):
    """A device-side token map of a scene, coded with the edge's codec, gets the edge's
    answer and caption; the same frame with another task or no question is refused."""
    from taskcodec.zoo.runtimes import CodecCalibration
    from taskcodec.zoo.scene_runtime import SceneBlipRuntime

    cals = [CodecCalibration.from_json(d)
            for d in client.get("/v1/models/scenes-blip/codecs").json()["codecs"]]
    cal = next(c for c in cals if c.at == 4 and c.rate == 1.0)
    rt = SceneBlipRuntime()
    scene = scenes.scene(0, "test", 1)
    frame = cal.codec.compress(rt.head(rt.preprocess(scene.image), 4))
    assert len(frame) < 65 * 128 * 2 / 8
    question = "what colour is the largest object?"
    r = client.post("/v1/split/scenes-blip", params={"at": 4, "task": "vqa", "question": question},
                    content=frame, headers={"Content-Type": FRAME_MEDIA_TYPE})
    assert r.status_code == 200, r.text
    assert r.json()["answer"] == scene.objects[0].colour
    r = client.post("/v1/split/scenes-blip", params={"at": 4, "task": "caption"}, content=frame,
                    headers={"Content-Type": FRAME_MEDIA_TYPE})
    assert r.status_code == 200 and f"{scene.objects[0].colour} {scene.objects[0].shape}" in r.json()["answer"]
    for params, words in (({"at": 4, "task": "vqa"}, "question"), ({"at": 4, "task": "classify"}, "not 'classify'"),
                          ({"at": 3, "task": "caption"}, "no split at cut 3")):
        r = client.post("/v1/split/scenes-blip", params=params, content=frame,
                        headers={"Content-Type": FRAME_MEDIA_TYPE})
        assert r.status_code == 400 and words in r.json()["detail"], r.text


@pytest.mark.parametrize(
    "mutate, status, message",
    [
        (lambda f: b"not a frame at all", 400, "header"),
        (lambda f: f[: len(f) // 2], 400, ""),  # truncated
        (lambda f: f[:-1], 400, ""),  # last byte of the trailer gone
        (lambda f: f[:40] + bytes([f[40] ^ 0xFF]) + f[41:], 400, ""),  # flipped header byte
        (lambda f: f[:-8] + bytes(b ^ 0x55 for b in f[-8:]), 400, ""),  # payload + CRC
        (lambda f: b"", 400, ""),
    ],
    ids=["garbage", "truncated-half", "truncated-1", "flipped-header", "flipped-tail", "empty"],
)
def test_malformed_frames_get_400_and_the_server_keeps_serving(client, edge_codec, good_frame,
                                                                 mutate, status, message):
    bad = mutate(good_frame)
    r = _split(client, bad)
    assert r.status_code == status, r.text
    body = r.json()
    assert message.lower() in body["detail"].lower()
    # The message is the codec's own: decoding the same bytes here raises the same error.
    from taskcodec.zoo.runtimes import decode_feature

    with pytest.raises(tc.TaskcodecError) as local:
        decode_feature(edge_codec.codec, bad, edge_codec.shape)
    assert body["detail"] == str(local.value)
    assert body["error"] == type(local.value).__name__
    assert _split(client, good_frame).json()["answer"] == "espresso"


def test_frame_for_another_cut_or_codec_is_refused(client, good_frame):
    r = _split(client, good_frame, at=6)
    assert r.status_code == 400 and "expects" in r.json()["detail"]
    r = _split(client, good_frame, at=7)
    assert r.status_code == 400 and "no split at cut 7" in r.json()["detail"]
    # Same shape, tables of another codec: the fingerprint check refuses it.
    table = tc.CdfTable.from_pmf(np.ones((160, 9)), np.full(160, -4))
    foreign = tc.encode(np.zeros((1, 160, 7, 7), np.int32), table, meta=b"TCQS" + bytes(640))
    r = _split(client, foreign)
    assert r.status_code == 400 and r.json()["error"] == "TableMismatchError"
    assert _split(client, good_frame).status_code == 200


def test_bad_images_get_400(client, photos):
    from taskcodec.zoo.images import encode_jpeg

    jpeg = encode_jpeg(photos["chelsea"])
    for body in (b"\xff\xd8\xff garbage", jpeg[: len(jpeg) // 3], b"GIF89a" + bytes(100)):
        r = client.post("/v1/infer/mobilenet_v2", content=body)
        assert r.status_code == 400, r.text
        assert "image" in r.json()["detail"].lower()
    r = client.post("/v1/infer/mobilenet_v2", params={"task": "caption"}, content=jpeg)
    assert r.status_code == 400 and "not 'caption'" in r.json()["detail"]
    r = client.post("/v1/infer/scenes-blip", params={"task": "vqa"}, content=jpeg)
    assert r.status_code == 400 and "question" in r.json()["detail"]
    assert client.post("/v1/infer/unknown", content=jpeg).status_code == 404
    assert client.post("/v1/infer/mobilenet_v2", content=jpeg).json()["answer"] == \
        "Egyptian cat"


def test_oversized_bodies_get_413(client, good_frame, max_body):
    big = bytes(max_body + 1)
    assert _split(client, big).status_code == 413
    assert client.post("/v1/infer/mobilenet_v2", content=big).status_code == 413

    def chunks():  # no Content-Length: the limit is enforced while streaming
        for _ in range(max_body // 65536 + 2):
            yield bytes(65536)

    r = _split(client, chunks())
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]
    assert _split(client, good_frame).json()["answer"] == "espresso"


def test_metrics_count_requests_bytes_and_errors(client, good_frame):
    before = client.get("/metrics").json()
    _split(client, good_frame)
    _split(client, b"junk")
    after = client.get("/metrics").json()
    ep_before = before["endpoints"].get("/v1/split/{model}", {"requests": 0, "errors": 0,
                                                               "bytes_in": 0})
    ep = after["endpoints"]["/v1/split/{model}"]
    assert ep["requests"] == ep_before["requests"] + 2
    assert ep["errors"] == ep_before["errors"] + 1
    assert ep["bytes_in"] == ep_before["bytes_in"] + len(good_frame) + 4
    assert ep["latency_ms_p50"] > 0


def test_bearer_token_and_loopback_default():
    """A model-less edge in a thread: the token guards everything but /health."""
    import uvicorn

    from taskcodec.pipeline.edge import EdgeService, create_edge_app
    from taskcodec.pipeline.procs import free_port

    port = free_port()
    app = create_edge_app(EdgeService(models=()), token="s3cret", max_body_bytes=1000)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", ws="none"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            if server.started:
                break
            threading.Event().wait(0.05)
        assert httpx.get(f"{url}/health").status_code == 200
        assert httpx.post(f"{url}/v1/probe", content=b"x").status_code == 401
        bad = {"Authorization": "Bearer wrong"}
        assert httpx.post(f"{url}/v1/probe", content=b"x", headers=bad).status_code == 401
        ok = {"Authorization": "Bearer s3cret"}
        assert httpx.post(f"{url}/v1/probe", content=b"xyz", headers=ok).json() == {"bytes": 3}
        assert httpx.get(f"{url}/metrics", headers=ok).status_code == 200
        assert httpx.post(f"{url}/v1/probe", content=bytes(1001), headers=ok).status_code == 413
    finally:
        server.should_exit = True
        thread.join(10)
    import inspect

    from taskcodec.pipeline.edge import serve_edge

    assert inspect.signature(serve_edge).parameters["host"].default == "127.0.0.1"


def test_split_with_the_shipped_learned_codec(client, photos):
    """A device codes the cut-13 features with the shipped SplitCodec (as the edge announces
    it); the edge decodes them with its own copy; a codec whose tables differ is refused."""
    import torch

    from taskcodec.errors import ModelMismatch
    from taskcodec.zoo.runtimes import CodecCalibration, MobileNetRuntime

    entry = next(d for d in client.get("/v1/models/mobilenet_v2/codecs").json()["codecs"]
                 if d["kind"] == "learned")
    rt = MobileNetRuntime()
    cal = CodecCalibration.from_json(entry, rt.model)
    assert cal.label == "learned" and cal.codec.head is not None
    with torch.inference_mode():
        frame = cal.codec.compress(rt.head(rt.preprocess(photos["coffee"]), 13))
    assert len(frame) < cal.shape[0] * cal.shape[1] * cal.shape[2] * 2 / 5  # well under float16
    r = _split(client, frame, at=13)
    assert r.status_code == 200 and r.json()["answer"] == "espresso"
    with pytest.raises(ModelMismatch):
        CodecCalibration.from_json({**entry, "fingerprint": "0" * 16}, rt.model)
    with pytest.raises(tc.TaskcodecError):
        CodecCalibration.from_json({**entry, "kind": "bogus"})


def test_a_settled_heap_is_out_of_the_collectors_reach():
    """``settle_heap`` (servers call it once loaded) freezes what is alive: full collections
    no longer walk it, and later collections leave it frozen."""
    import gc

    from taskcodec.pipeline.server_common import settle_heap

    loaded = [[i] for i in range(100_000)]  # long-lived objects, as a loaded model's are
    before = gc.get_freeze_count()
    try:
        settle_heap()
        assert gc.get_freeze_count() >= before + len(loaded)
        assert not any(o is loaded for o in gc.get_objects(generation=2))
        gc.collect()
        assert gc.get_freeze_count() >= before + len(loaded)
    finally:
        gc.unfreeze()
