"""bench/split_entropy_headroom.py: its ideal code lengths agree with the real coder, each
estimator finds the structure it is built for (and none where there is none), the checkerboard
prediction uses only what a decoder has, and the quick run writes well-formed rows."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ci_support import require, require_weights

require("torch")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def hr():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("split_entropy_headroom",
                                                      ROOT / "bench" / "split_entropy_headroom.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _smooth(rng, shape, sigma=3.0):
    """Integer fields whose neighbours are close: white noise blurred along both axes."""
    from scipy.ndimage import gaussian_filter

    x = gaussian_filter(rng.standard_normal(shape), sigma=(0, 0, sigma, sigma))
    return np.round(x / x.std() * 4).astype(np.int64)


def test_static_estimate_matches_the_real_coder(hr):
    import torch

    import taskcodec as tc

    rng = np.random.default_rng(0)
    scale = np.linspace(0.5, 3.0, 16).reshape(1, 16, 1, 1)
    f_cal = torch.from_numpy(rng.laplace(size=(64, 16, 28, 28)) * scale).float()
    f_ev = torch.from_numpy(rng.laplace(size=(8, 16, 28, 28)) * scale).float()
    codec = tc.nn.FeatureCodec.calibrate(f_cal, bits=2.0, params_in_frame=False)
    ideal = hr.static_bits(codec.quantize(f_cal), codec.quantize(f_ev))
    real = 8 * len(codec.compress(f_ev)) / f_ev.numel()
    assert ideal < real < 1.02 * ideal  # one 100 k-symbol frame: header, CRC, 14-bit tables


def test_checkerboard_finds_spatial_structure_and_none_in_noise(hr):
    rng = np.random.default_rng(1)
    smooth_cal, smooth_ev = _smooth(rng, (32, 4, 14, 14)), _smooth(rng, (16, 4, 14, 14))
    smooth = hr.checkerboard_bits(smooth_cal, smooth_ev)
    assert smooth["checkerboard"] < 0.8 * hr.static_bits(smooth_cal, smooth_ev)
    assert smooth["checkerboard+spread"] < 0.8 * hr.static_bits(smooth_cal, smooth_ev)
    noise_cal = np.round(rng.laplace(size=(32, 4, 14, 14)) * 2).astype(np.int64)
    noise_ev = np.round(rng.laplace(size=(16, 4, 14, 14)) * 2).astype(np.int64)
    noise = hr.checkerboard_bits(noise_cal, noise_ev)
    assert noise["checkerboard"] > hr.static_bits(noise_cal, noise_ev)
    assert noise["checkerboard+spread"] > hr.static_bits(noise_cal, noise_ev)


def test_the_prediction_of_a_predicted_position_uses_only_anchors(hr):
    rng = np.random.default_rng(2)
    q = rng.integers(-5, 6, size=(2, 3, 14, 14))
    yy, xx = np.mgrid[:14, :14]
    odd = (yy + xx) % 2 == 1
    changed = q.copy()
    changed[:, :, odd] += rng.integers(-9, 10, size=changed[:, :, odd].shape)
    assert np.array_equal(hr.neighbours(q)[..., odd], hr.neighbours(changed)[..., odd])
    assert not np.array_equal(hr.neighbours(q)[..., ~odd], hr.neighbours(changed)[..., ~odd])


def test_adaptive_scales_pay_off_only_where_scales_vary(hr):
    rng = np.random.default_rng(3)
    shape = (32, 4, 14, 14)
    scale = np.where(rng.random((32, 4, 2, 1, 2, 1)) < 0.5, 0.3, 6.0)  # per 7×7 block
    scale = np.broadcast_to(scale, (32, 4, 2, 7, 2, 7)).reshape(shape)
    mixed = np.round(rng.laplace(size=shape) * scale).astype(np.int64)
    cal, ev = mixed[:24], mixed[24:]
    static = hr.static_bits(cal, ev)
    s7, s2 = hr.scale_bits(cal, ev, 7), hr.scale_bits(cal, ev, 2)
    assert s7["bits"] < 0.87 * static and 0 < s7["side"] < 0.05
    assert s7["bits"] < s2["bits"] and s2["side"] > s7["side"]  # small blocks pay more side info
    flat = np.round(rng.laplace(size=shape) * 2).astype(np.int64)
    flat_static = hr.static_bits(flat[:24], flat[24:])
    assert hr.scale_bits(flat[:24], flat[24:], 14)["bits"] > 0.98 * flat_static
    with pytest.raises(ValueError):
        hr.scale_bits(cal, ev, 3)


@pytest.mark.slow
def test_split_entropy_headroom_quick(tmp_path):
    require("torchvision")
    require_weights()
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, str(ROOT / "bench" / "split_entropy_headroom.py"), "--quick",
                    "--out", str(tmp_path)], check=True, env=env, capture_output=True, text=True,
                   timeout=600)
    res = json.loads((tmp_path / "split_entropy_headroom_mobilenet_v2.json").read_text())
    assert [r["codec"] for r in res["rows"]] == ["FeatureCodec task 1.5 bits",
                                                 "SplitCodec (shipped)"]
    for r in res["rows"]:
        # the frames carry a header and a checksum on top of what the static tables need
        assert r["static"] < r["frame"] == pytest.approx(8 * r["frame_bytes"] / (96 * 14 * 14))
        for key in ("scales/14", "scales/7", "scales/2", "checkerboard", "checkerboard+spread"):
            assert 0 < r[key] < 3 * r["static"]
        assert r["scales/2 side"] > r["scales/14 side"] > 0
        assert -1 < r["best_saving_vs_static"] < 1
