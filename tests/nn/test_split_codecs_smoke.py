"""Smoke run of bench/split_codecs.py (--quick): it runs, writes JSON + PNG, and its rows and
metrics are well formed (no accuracy bound: those live in the full run). On the offline photo
pool when it is fetched, else on scikit-image's bundled photos, so it never skips for data."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_support import require, require_weights

require("torch")
require("torchvision")
require("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def test_split_codecs_quick(tmp_path):
    from taskcodec.errors import MissingDataError
    from taskcodec.zoo import pool

    require_weights()
    try:
        pool.photos("train"), pool.photos("val")
        expected_source = "pool"
    except MissingDataError:
        require("skimage")
        expected_source = "skimage"
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, str(ROOT / "bench" / "split_codecs.py"), "--quick",
                    "--out", str(tmp_path)], check=True, env=env, capture_output=True, text=True,
                   timeout=600)
    assert (tmp_path / "split_codecs_mobilenet_v2.png").stat().st_size > 1000
    res = json.loads((tmp_path / "split_codecs_mobilenet_v2.json").read_text())
    assert res["settings"]["photo_source"] == expected_source
    assert res["machine"]
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["float16", "FeatureCodec", "FeatureCodec task", "SplitCodec (learned)",
                       "JPEG", "WebP"]  # the shipped learned codec is always measured
    f16 = res["rows"][0]
    assert f16["bytes_per_image"] == 96 * 14 * 14 * 2 and f16["agreement"] == 1.0
    assert f16["expected_loss_pt"] == pytest.approx(0.0, abs=1e-6)
    for r in res["rows"]:
        assert 0 < r["bytes_per_image"]
        assert 0 <= r["agreement"] <= 1 and 0 <= r["top5_agreement"] <= 1
        assert r["expected_loss_pt"] >= -1e-6 and r["kl_mean"] >= -1e-6
        assert math.isnan(r["agreement_confident"]) or 0 <= r["agreement_confident"] <= 1
    for r in res["rows"][1:4]:  # the coded rows beat float16 on bytes
        assert r["bytes_per_image"] < f16["bytes_per_image"] / 4
        assert r["ratio_vs_f16"] == pytest.approx(f16["bytes_per_image"] / r["bytes_per_image"])
