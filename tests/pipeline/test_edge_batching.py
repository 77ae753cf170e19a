"""Batched answers of the edge (EdgeService.run): the same as one request at a time, errors
kept to the request that caused them; replicas' state (calibrations handed over)."""

from __future__ import annotations

import numpy as np
import pytest

import taskcodec as tc
from taskcodec.errors import BadInputError, TaskcodecError
from taskcodec.pipeline.edge import EdgeRequest, EdgeService
from taskcodec.zoo import scenes
from taskcodec.zoo.images import encode_jpeg


@pytest.fixture(scope="module")
def service(weights):
    return EdgeService(("mobilenet_v2", "scenes-blip"), calibrate=True, profile_runs=1)


@pytest.fixture(scope="module")
def requests(service, photos):
    """Split frames and JPEGs of both models, and requests that must fail, interleaved."""
    import torch

    mn = service.runtimes["mobilenet_v2"]
    cal = mn.calibrations[(13, 1.0)]
    blip = service.runtimes["scenes-blip"]
    bcal = next(c for (a, _), c in blip.calibrations.items() if a == 2)
    imgs = [scenes.scene(5, "test", i).image for i in range(3)]
    with torch.inference_mode():
        frames = [cal.codec.compress(mn.head(mn.preprocess(p), 13)) for p in photos.values()]
        tokens = [bcal.codec.compress(blip.head(blip.preprocess(im), 2)) for im in imgs]
    reqs = [EdgeRequest("split", "mobilenet_v2", f, 13) for f in frames]
    reqs += [EdgeRequest("infer", "mobilenet_v2", encode_jpeg(p)) for p in photos.values()]
    reqs += [EdgeRequest("split", "scenes-blip", t, 2, "caption") for t in tokens]
    reqs += [EdgeRequest("split", "scenes-blip", t, 2, "vqa", q) for t, q in
             zip(tokens, ["what color is the largest object?", "how many objects are there?",
                          "is there a red circle in the picture of the scene?"])]
    reqs += [EdgeRequest("infer", "scenes-blip", encode_jpeg(imgs[0]), None, "caption")]
    bad = [EdgeRequest("split", "mobilenet_v2", b"\x00" * 64, 13),  # not a frame
           EdgeRequest("split", "mobilenet_v2", frames[0], 7),  # no such cut
           EdgeRequest("split", "scenes-blip", tokens[0], 2, "vqa"),  # no question
           EdgeRequest("infer", "mobilenet_v2", b"GIF89a"),  # not a JPEG / PNG
           EdgeRequest("infer", "resnet_9000", frames[0])]  # no such model
    out = []
    for i, r in enumerate(reqs):  # the bad ones spread among the good
        out.append(r)
        if i % 3 == 0 and bad:
            out.append(bad.pop())
    return out + bad


def _same(a, b):
    assert type(a) is type(b)
    if isinstance(a, TaskcodecError):
        assert str(a) == str(b)
        return
    assert a["answer"] == b["answer"]
    assert a.get("class_index") == b.get("class_index")
    assert a.get("question_truncated") == b.get("question_truncated")
    assert abs(a.get("p", 0) - b.get("p", 0)) < 2e-3


def test_batched_answers_equal_single_ones(service, requests, monkeypatch):
    sizes = []
    for rt in service.runtimes.values():
        for name in ("answer_batch", "run_batch"):
            real = getattr(rt, name)

            def spy(x, *a, _real=real, _name=name, _model=rt.spec.name):
                sizes.append((_model, _name, int(x.shape[0])))
                return _real(x, *a)

            monkeypatch.setattr(rt, name, spy)
    batched = service.run(requests)
    grouped = list(sizes)
    single = [service.run([r])[0] for r in requests]
    assert len(batched) == len(requests)
    for a, b in zip(batched, single):
        _same(a, b)
    # one batch per (model, kind, cut, task): 3 + 3 MobileNet, 3 + 3 + 1 BLIP rows
    assert sorted(grouped) == sorted([("mobilenet_v2", "answer_batch", 3),
                                      ("mobilenet_v2", "run_batch", 3),
                                      ("scenes-blip", "answer_batch", 3),
                                      ("scenes-blip", "answer_batch", 3),
                                      ("scenes-blip", "run_batch", 1)])
    errors = [(r, o) for r, o in zip(requests, batched) if isinstance(o, TaskcodecError)]
    assert len(errors) == 5
    assert {type(o).__name__ for _, o in errors} >= {"UnknownModel", "BadInputError"}
    # and the answers are right: the classes the whole model gives on the same photos
    mn = service.runtimes["mobilenet_v2"]
    frames = [(r, o) for r, o in zip(requests, batched)
              if r.kind == "split" and r.model == "mobilenet_v2" and isinstance(o, dict)]
    for r, o in frames:
        z = mn.calibrations[(13, 1.0)].codec.decompress(r.body)
        assert o["class_index"] == int(mn.tail(z, 13).argmax(1)[0])


def test_one_request_keeps_its_own_error(service, requests):
    """A request that fails alone fails the same inside a batch, and the API raises it."""
    tokens = next(r.body for r in requests if r.model == "scenes-blip" and r.kind == "split")
    with pytest.raises(BadInputError, match="needs a question"):
        service.split("scenes-blip", 2, tokens, "vqa", None)
    with pytest.raises(tc.CorruptStreamError):
        service.split("mobilenet_v2", 13, b"TCF1" + b"\x00" * 60)


def test_state_hands_over_the_calibrations(service, photos):
    """A replica built from another edge's state serves the same codecs (same fingerprints,
    same answers) without calibrating."""
    other = EdgeService(("mobilenet_v2", "scenes-blip"), state=service.state())
    for name, rt in service.runtimes.items():
        mine = {k: c.codec.fingerprint for k, c in rt.calibrations.items()}
        theirs = {k: c.codec.fingerprint for k, c in other.runtimes[name].calibrations.items()}
        assert mine == theirs and len(mine) >= 3
        assert other.info[name] == service.info[name]
    cal = service.runtimes["mobilenet_v2"].calibrations[(16, 0.5)]
    mn = service.runtimes["mobilenet_v2"]
    frame = cal.codec.compress(mn.head(mn.preprocess(photos["coffee"]), 16))
    assert other.split("mobilenet_v2", 16, frame) == service.split("mobilenet_v2", 16, frame)
    with pytest.raises(BadInputError, match="state is of models"):
        EdgeService(("mobilenet_v2",), state=service.state())
    assert np.isfinite(service.info["mobilenet_v2"]["full_ms"])


def test_in_process_batching_gathers_concurrent_requests(service, requests):
    """``serve-edge --batch on``: requests that arrive together run as one batch, each gets
    its own answer or error, and a lone request is answered after the short wait."""
    import asyncio

    from taskcodec.pipeline.edge import batching_runner

    run, counts = batching_runner(service, max_batch_size=64, batch_wait_s=0.05)

    async def all_at_once():
        return await asyncio.gather(*(run(r) for r in requests), return_exceptions=True)

    got = asyncio.run(all_at_once())
    assert counts == {"batches": 1, "requests": len(requests)}
    for r, out in zip(requests, got):
        _same(out, service.run([r])[0])
    run, counts = batching_runner(service, max_batch_size=4, batch_wait_s=0.0)
    got = asyncio.run(all_at_once())
    assert counts["requests"] == len(requests) and counts["batches"] >= len(requests) / 4
    assert asyncio.run(run(requests[0]))["class_index"] == got[0]["class_index"]
