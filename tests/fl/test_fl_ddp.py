"""tc.fl.ddp: the comm hook in a real two-process gloo DDP run on the CPU."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
from ci_support import require

torch = require("torch")

HERE = os.path.dirname(os.path.abspath(__file__))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(mode: str, tmp_path) -> dict:
    out = tmp_path / f"{mode}.json"
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "ddp_worker.py"), str(r), str(port), mode, str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    errs = []
    try:
        for p in procs:
            try:
                _, err = p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate()
            errs.append(err)
    finally:
        for p in procs:  # never leave a rank (or its pipes) behind for the next test
            if p.poll() is None:
                p.kill()
                p.communicate()
    for p, err in zip(procs, errs):
        assert p.returncode == 0, err[-3000:]
    return json.loads(out.read_text())


def test_state_validation():
    from taskcodec.fl.ddp import TopKState

    with pytest.raises(ValueError):
        TopKState(start_iter=-1)
    with pytest.raises(ValueError):
        TopKState(ratio=2.0)


@pytest.mark.slow
def test_two_gloo_processes_reach_the_dense_loss(tmp_path):
    dense = _run("dense", tmp_path)
    sparse = _run("float16", tmp_path)
    assert sparse["ranks_equal"] and dense["ranks_equal"]
    assert sparse["iters"] == 300
    assert sparse["final_loss"] < 0.2 * sparse["first"]
    # `pytest tests/fl/test_fl_ddp.py -s` shows the numbers the README quotes.
    print(f"\nDDP, 300 steps: final loss dense {dense['final_loss']:.4f}, "
          f"5 % top-k float16 {sparse['final_loss']:.4f}")
    # Measured over 300 steps (20 of them dense warm-up): full-data MSE 0.0999 dense, 0.1324
    # with 5 % top-k, float16 values and error feedback (1.32x); the stated tolerance is 1.5x.
    assert sparse["final_loss"] <= dense["final_loss"] * 1.5 + 1e-3
