"""The device against a real edge: each mode, policy switching, fallback when the edge dies,
and a wrong token."""

from __future__ import annotations

import socket
import threading

import numpy as np
import pytest

import taskcodec as tc
from taskcodec.pipeline.device import DeviceClient
from taskcodec.pipeline.policy import ModeOption, Policy
from taskcodec.zoo import scenes

from conftest import SERVER_ENV


@pytest.fixture(scope="module")
def device(edge):
    with DeviceClient(edge.url, profile_runs=3, probe_bytes=8000) as dev:
        yield dev


def test_each_mode_answers(device, photos):
    device.link.set(up_kB_s=250, down_kB_s=500)
    coffee = photos["coffee"]
    res = {m: device.run("classify", "mobilenet_v2", coffee, mode=m)
           for m in ("edge-only", "device-only", "split")}
    for mode, r in res.items():
        assert r.ok, r.error
        assert r.mode == mode and r.fallback is None
        assert r.answer == "espresso", (mode, r.detail)  # a confident photo (p 0.99)
    assert res["device-only"].bytes_up == 0
    # Measured: JPEG 72,326 B; best split frame 2-10 kB depending on the chosen cut/rate.
    assert res["split"].bytes_up * 5 < res["edge-only"].bytes_up
    assert res["split"].option.agreement >= device.policy.accuracy_floor
    scene = scenes.scene(0, "test", 1)
    name = f"{scene.objects[0].colour} {scene.objects[0].shape}"
    for mode in ("edge-only", "split"):  # the device runs the vision head, never all of BLIP
        cap = device.run("caption", "scenes-blip", scene.image, mode=mode)
        assert cap.ok and cap.mode == mode and name in cap.answer, (cap.error, cap.answer)
        vqa = device.run("vqa", "scenes-blip", scene.image, mode=mode,
                         question="what colour is the largest object?")
        assert vqa.ok and vqa.answer == scene.objects[0].colour, (vqa.error, vqa.answer)
    assert vqa.bytes_up * 8 < 65 * 128 * 2  # a coded token map, not a float16 one
    assert not device.run("caption", "scenes-blip", scene.image, mode="device-only").ok
    assert not device.run("caption", "mobilenet_v2", coffee).ok


def test_link_probe_is_reported_apart_from_the_request(device, photos):
    """A request that first re-measures the link reports the probe's time in ``probe_ms``,
    not in its latency (8 kB at 40 kB/s: about 200 ms)."""
    device.link.set(up_kB_s=40, down_kB_s=80)
    saved, device.meter.reprobe_s = device.meter.reprobe_s, 0.0  # stale: measure first
    try:
        r = device.run("classify", "mobilenet_v2", photos["coffee"])
    finally:
        device.meter.reprobe_s = saved
    assert r.ok and r.probe_ms > 100, r
    assert 20 < device.up_kB_s < 80, device.up_kB_s
    again = device.run("classify", "mobilenet_v2", photos["coffee"], mode=r.mode)
    assert again.ok and again.probe_ms == 0.0
    if r.mode == "device-only":  # nothing crossed the link: the probe is all the wait
        assert r.latency_ms < r.probe_ms, r


def _modes_by_bandwidth(dev, jpeg_bytes, grid):
    """The policy's mode for MobileNetV2 at each uplink of ``grid`` (kB/s), with the profiles
    and corrections ``dev`` holds now."""
    saved = dev.meter.up_kB_s
    try:
        modes = []
        for bw in grid:
            dev.meter.up_kB_s = float(bw)
            modes.append(dev.policy.choose(dev.options("mobilenet_v2", jpeg_bytes))[0].mode)
        return modes
    finally:
        dev.meter.up_kB_s = saved


def test_policy_switches_mode_as_the_bandwidth_drops(edge, photos):
    """Edge-only on a fast link, split on a slow one, device-only on a very slow one.

    The device is emulated 20x slower than the edge. Where the modes switch depends on this
    machine's speed (device-only measured 0.3-1 s on different hosts; the split band ran from
    about 70 to 450 kB/s on the fastest), so before each request the test asks the policy,
    with the profiles and corrections it holds then, where each mode's band lies: the modes in
    order, and a split band at least 4x wide before the first request and when the split
    request is made. (A split request that took longer than estimated may, rightly, leave no
    split band for the last one.) It then sets the link inside the mode's band and checks what
    the measured link and the real request give.
    """
    from taskcodec.zoo.images import encode_jpeg

    coffee = photos["coffee"]
    jpeg_bytes = len(encode_jpeg(coffee))
    grid = np.geomspace(10_000, 1, 161)  # falling bandwidth, 20 points a decade
    modes = {}
    with DeviceClient(edge.url, slowdown=20.0, profile_runs=3, probe_bytes=6000,
                      up_kB_s=5000, down_kB_s=5000, device_models=("mobilenet_v2",)) as dev:
        for step in ("edge-only", "split", "device-only"):
            predicted = _modes_by_bandwidth(dev, jpeg_bytes, grid)
            order = [m for i, m in enumerate(predicted) if i == 0 or m != predicted[i - 1]]
            assert order[0] == "edge-only" and order[-1] == "device-only" and \
                order in (["edge-only", "split", "device-only"], ["edge-only", "device-only"]), \
                (step, list(zip(grid, predicted)), dev.correction)
            band = grid[[m == step for m in predicted]]
            hi, lo = float(band[0]), float(band[-1])
            if step != "device-only":  # the split band: before the first request, and now
                split = grid[[m == "split" for m in predicted]]
                assert len(split) and split[0] / split[-1] >= 4, (split, dev.device_profile)
            bw = {"edge-only": 5000.0, "split": (hi * lo) ** 0.5,
                  "device-only": min(8.0, hi / 4)}[step]
            dev.link.set(up_kB_s=bw, down_kB_s=bw)
            dev.measure_link()
            if step == "edge-only":
                # The 6 kB probe takes about a millisecond here, less than the HTTP overhead
                # on a loaded machine (measured 1.5-3 MB/s): it only tells "fast".
                assert dev.up_kB_s > lo, (dev.up_kB_s, lo)
            else:  # transfer-dominated: within a factor of 2 of the set rate
                assert bw / 2 < dev.up_kB_s < bw * 2, (bw, dev.up_kB_s)
            r = dev.run("classify", "mobilenet_v2", coffee)
            assert r.ok and r.answer == "espresso", r
            modes[step] = (r.mode, r.reason, bw, (lo, hi))
    assert {step: m[0] for step, m in modes.items()} == {
        "edge-only": "edge-only", "split": "split", "device-only": "device-only"}, modes
    assert "expected" in modes["split"][1]


def test_policy_rule_is_the_lowest_expected_latency_above_the_floor():
    policy = Policy(accuracy_floor=0.9)

    class Cal:
        def __init__(self, at, rate, mean_bytes, agreement):
            self.at, self.rate, self.mean_bytes, self.agreement = at, rate, mean_bytes, agreement
            self.shape = (32, 28, 28) if at == 6 else (160, 7, 7)
            self.label = f"r{rate:g}"  # as CodecCalibration.label

    cals = [Cal(6, 0.5, 10_000, 1.0), Cal(16, 2.0, 1_000, 0.25)]
    edge = {"full_ms": 20.0, "tail_ms": {6: 10.0, 16: 2.0}}
    device = {"full_ms": 400.0, "head_ms": {6: 100.0, 16: 390.0}, "jpeg_ms": 5.0}
    opts = policy.options(up_kB_s=250, rtt_ms=2.0, jpeg_bytes=70_000, edge=edge,
                          device=device, calibrations=cals)
    by = {o.label(): o for o in opts}
    assert set(by) == {"edge-only", "device-only", "split@6/r0.5"}  # 16/r2 is below the floor
    down = 200 / 500  # the JSON reply at the default downlink (2 x uplink), ms
    assert by["edge-only"].expected_ms == pytest.approx(5 + 2 + 280 + down + 20)
    assert by["split@6/r0.5"].expected_ms == pytest.approx(100 + 2 + 40 + down + 10)
    assert by["split@6/r0.5"].bytes_up == pytest.approx(10_000)
    assert by["device-only"].expected_ms == pytest.approx(400)
    best, reason = policy.choose(opts)
    assert best.label() == "split@6/r0.5" and "1 codec rates below the 0.90 floor" in reason
    # The rate travels as bits per element with its calibration, not as a label.
    assert best.bits == pytest.approx(8 * 10_000 / (32 * 28 * 28)) and best.calibration is cals[0]
    assert best.agreement == 1.0 and f"{best.bits:.2f} bits/element" in reason
    assert policy.last_choice.at == 6 and policy.last_choice.best.codec is cals[0]
    assert policy.last_choice.bits == pytest.approx(best.bits)
    # split@16/r2 would be fastest at 20 kB/s but misses the floor: never chosen.
    opts = policy.options(up_kB_s=20, rtt_ms=2.0, jpeg_bytes=70_000, edge=edge,
                          device=device, calibrations=cals)
    assert policy.choose(opts)[0].mode == "device-only"
    # No edge and no device model: an explicit error, not a guess.
    with pytest.raises(tc.PlanRefused, match="no way to serve"):
        policy.choose(policy.options(up_kB_s=0.001, rtt_ms=1, jpeg_bytes=1, edge=None,
                                     device=None))
    assert ModeOption("split", 1.0, 1, at=6, bits=0.5).label() == "split@6/0.5b"
    assert ModeOption("split", 1.0, 1, at=6, bits=0.5, calibration=cals[0]).label() \
        == "split@6/r0.5"
    with pytest.raises(tc.TaskcodecError):
        Policy(accuracy_floor=1.5)
    with pytest.raises(tc.ArgumentTypeError):
        Policy(accuracy_floor="high")


def test_killing_the_edge_mid_run_falls_back_to_the_device(tmp_path, weights, photos):
    from taskcodec.pipeline.procs import start_service

    edge = start_service("edge", ["--threads", "1", "--models", "mobilenet_v2", "--no-split"],
                         log_path=str(tmp_path / "edge.log"), env=SERVER_ENV)
    try:
        with DeviceClient(edge.url, profile_runs=2, probe_bytes=4000, timeout_s=5) as dev:
            first = dev.run("classify", "mobilenet_v2", photos["coffee"], mode="edge-only")
            assert first.ok and first.mode == "edge-only" and first.fallback is None
            edge.kill()
            second = dev.run("classify", "mobilenet_v2", photos["coffee"], mode="edge-only")
            assert second.ok and second.answer == "espresso"
            assert second.mode == "device-only"
            assert "edge unreachable" in second.fallback
            assert "answered on the device" in second.fallback
            third = dev.run("classify", "mobilenet_v2", photos["chelsea"])  # policy, no edge
            assert third.ok and third.mode == "device-only"
            blip = dev.run("caption", "scenes-blip", scenes.scene(0, "test", 1).image)
            assert not blip.ok and blip.answer is None
            assert "does not fit on the device" in blip.error or "no way" in blip.error
    finally:
        edge.stop()


def test_an_edge_that_hangs_times_out_into_the_fallback(weights, photos):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)  # accepts connections (backlog) and never answers
    try:
        port = hung.getsockname()[1]
        dev = DeviceClient(f"http://127.0.0.1:{port}", timeout_s=1.0, profile_runs=1)
        with dev:
            assert dev.edge_info is None  # the start-up connect timed out too
            r = dev.run("classify", "mobilenet_v2", photos["coffee"], mode="edge-only")
            assert r.ok and r.mode == "device-only" and r.answer == "espresso"
            assert "timed out" in r.fallback or "unreachable" in r.fallback
    finally:
        hung.close()


def test_device_cli_against_the_edge(edge, capsys, tmp_path):
    from taskcodec.apps import cli

    rc = cli.main(["device", "--edge", edge.url, "--image", "coffee", "--mode", "split",
                   "--up-kB-s", "300"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "mode split@" in out and "-> espresso" in out and "policy:" in out
    from PIL import Image

    scene = scenes.scene(0, "test", 1)
    Image.fromarray(scene.image).save(tmp_path / "scene.png")
    rc = cli.main(["device", "--edge", edge.url, "--image", str(tmp_path / "scene.png"), "--task",
                   "visual-question-answering", "--request", "what colour is the largest object?",
                   "--up-kB-s", "100"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "vqa (scenes-blip): mode split@" in out and f"-> {scene.objects[0].colour}" in out


class _Served:
    """A FastAPI app on a loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        from taskcodec.pipeline.procs import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", ws="none"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            threading.Event().wait(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(10)


def test_a_wrong_token_raises_authentication_error_not_a_fallback():
    """An edge and a cloud that want a token: no token or a wrong one is a configuration
    error (AuthenticationError, an EdgeUnavailable), never an httpx error or a silent
    device-only fallback."""
    import numpy as np

    from taskcodec.pipeline.cloud import RulePlanner, create_cloud_app
    from taskcodec.pipeline.edge import EdgeService, create_edge_app

    edge_app = create_edge_app(EdgeService(models=()), token="s3cret")
    cloud_app = create_cloud_app(RulePlanner(), token="s3cret")
    with _Served(edge_app) as edge, _Served(cloud_app) as cloud:
        for token in ("wrong", None):
            dev = DeviceClient(edge.url, cloud_url=cloud.url, token=token, device_models=(),
                               timeout_s=10)
            with pytest.raises(tc.AuthenticationError, match="HTTP 401") as info:
                dev.start()
            assert isinstance(info.value, tc.EdgeUnavailable)
            assert ("the token given" if token else "no token") in str(info.value)
            with pytest.raises(tc.AuthenticationError, match="cloud planner"):
                dev.plan("describe this photo")
        photo = np.zeros((32, 32, 3), np.uint8)
        with DeviceClient(edge.url, cloud_url=cloud.url, token="s3cret", device_models=(),
                          probe_bytes=4000, timeout_s=10) as dev:
            assert dev.edge_info == {} and dev.up_kB_s > 0 and dev.rtt_ms > 0
            assert dev.plan("describe this photo")[0]["task"] == "image-to-text"
            # The servers' token changes while the device runs: the next request that
            # reaches them raises instead of falling back.
            dev.token = "stale"
            dev.http.http.headers["Authorization"] = "Bearer stale"
            dev.meter.reprobe_s = 0.0  # re-measure the link (a token-guarded probe) now
            with pytest.raises(tc.AuthenticationError, match="edge refused"):
                dev.run("classify", "mobilenet_v2", photo)
            with pytest.raises(tc.AuthenticationError):
                dev.ask("describe this photo", photo)
