"""Smoke runs of the FL benchmarks at tiny sizes (numbers are not checked; bench/ measures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def _run(args, tmp_path):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.run([sys.executable, *args, "--out", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_fl_topk_smoke(tmp_path):
    pytest.importorskip("torch")
    out = _run([str(ROOT / "bench" / "fl_topk.py"), "--n", "200000", "--repeats", "1"], tmp_path)
    res = json.loads((tmp_path / "fl_topk.json").read_text())
    assert all(r["same_selection"] for r in res["rows"])  # taskcodec and torch pick the same set
    assert (tmp_path / "fl_topk.png").stat().st_size > 0 and "0.1%" in out


@pytest.mark.skipif(not FMNIST.exists(), reason="Fashion-MNIST IDX files not installed")
def test_fl_fmnist_smoke(tmp_path):
    pytest.importorskip("torch")
    _run([str(ROOT / "bench" / "fl_fmnist.py"), "--rounds", "1", "--clients", "3", "--samples-per-client", "50",
          "--configs", "dense", "0.05:int8", "--partitions", "iid", "dir0.5", "--no-progress"], tmp_path)
    res = json.loads((tmp_path / "fl_fmnist.json").read_text())
    assert {(s["partition"], s["config"]) for s in res["summary"]} == {
        ("iid", "dense"), ("iid", "0.05:int8"), ("dir0.5", "dense"), ("dir0.5", "0.05:int8")}
    assert all(s["uplink_reduction_x"] > 1 for s in res["summary"] if s["config"] != "dense")
