"""Smoke runs of the feature benchmarks at tiny sizes: they run, write JSON + PNG, and their
structural results hold (no timing or accuracy bound: those live in the full runs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ci_support import FASHION_MNIST_HINT, missing, require, require_weights

require("torch")
require("matplotlib")

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _run(script: str, out: Path, *args: str) -> dict:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    subprocess.run([sys.executable, str(ROOT / "bench" / script), "--out", str(out), *args],
                   check=True, env=env, capture_output=True, text=True, timeout=600)
    name = script.replace(".py", "")
    assert (out / f"{name}.png").stat().st_size > 1000
    return json.loads((out / f"{name}.json").read_text())


def test_features_vit_smoke(tmp_path):
    require("transformers")
    res = _run("features_vit.py", tmp_path, "--bits", "1.0")
    rows = res["structure"]
    assert len(rows) == 14  # 2 models x (6 blocks + 1)
    assert all(r["head_tail_exact"] and r["codec_round_trip_exact"] for r in rows)
    assert all(r["shape"] == [65, 96] and r["frame_bytes"] < r["bytes_f16"] for r in rows)
    assert res["real_config_sizes"][0]["bytes_f16"] == 197 * 768 * 2
    assert res["pretrained"] is None


def test_features_mobilenet_smoke(tmp_path):
    require("skimage")

    require_weights()
    res = _run("features_mobilenet.py", tmp_path, "--quick")
    methods = {r["method"] for r in res["rows"]}
    assert methods == {"float16", "FeatureCodec", "JPEG"}
    fc = next(r for r in res["rows"] if r["method"] == "FeatureCodec")
    assert fc["bytes_per_image"] < 32 * 28 * 28 * 2 and 0 <= fc["agreement"] <= 1


def test_features_fmnist_smoke(tmp_path):
    require("compressai")
    try:
        import taskcodec as tc

        tc.nn.load_fashion_mnist("test")
    except FileNotFoundError as exc:
        missing(str(exc), FASHION_MNIST_HINT)
    res = _run("features_fmnist.py", tmp_path, "--quick", "--no-progress")
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["float32", "float16", "int8", "int8+zlib", "FeatureCodec", "TaskBottleneck"]
    f32 = res["rows"][0]
    assert f32["bytes_per_sample"] == 64 * 7 * 7 * 4
    assert res["rows"][1]["accuracy"] == pytest.approx(f32["accuracy"], abs=0.02)
    assert all(r["bytes_per_sample"] > 0 for r in res["rows"])
