"""Flower: the compression mod and strategy wrapper in Flower's simulation engine.

The simulation runs in a child process (Ray starts its own workers and installs signal
handlers; keeping it out of the pytest process keeps both clean).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from ci_support import require

require("flwr")
require("ray")

HERE = os.path.dirname(os.path.abspath(__file__))


def _simulate(tmp_path, *options):
    """Runs ``flower_app.py OUT [options]`` in a child process; its output and summary."""
    out = tmp_path / "summary.json"
    env = dict(os.environ)
    # Ray's workers import the ClientApp's module: they inherit this environment.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, *sys.path) if p)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "flower_app.py"), str(out), *options], env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(out.read_text())


@pytest.mark.slow
def test_simulation_ten_clients_dropout_and_a_corrupt_update(tmp_path):
    proc, res = _simulate(tmp_path)
    losses = res["losses"]
    assert len(losses) == 9  # before round 1, then after each of 8 rounds
    # The corrupted frame of round 2 is dropped with its reason (logged); the round goes on.
    assert [r for r, d in res["dropped"].items() if d] == ["2"]
    assert "ChecksumError" in res["dropped"]["2"][0][1]
    assert "dropping the update of node" in proc.stderr + proc.stdout
    # 30 % dropout each round, 10 % of the values sent: still converging. Measured: the
    # mean squared error falls from 38.9 to 2.44 over 8 rounds.
    assert losses[-1] < 0.25 * losses[0]
    sys.path.insert(0, HERE)
    import flower_app

    dense_bytes = (flower_app.DIM_IN * flower_app.DIM_OUT + flower_app.DIM_OUT) * 4
    arrived = sum(not flower_app.dropped(1, p) for p in range(10))
    per_client = res["uplink_bytes"]["1"] / arrived  # measured 328 bytes against 1640 dense
    assert per_client < dense_bytes / 3


@pytest.mark.slow
def test_simulation_with_the_downlink_compressed_too(tmp_path):
    """The same run with the server's broadcast compressed: nodes that took part in the last
    round get a step frame, the others (30 % drop out each round) the dense model."""
    _, res = _simulate(tmp_path, "--downlink")
    losses = res["losses"]
    sys.path.insert(0, HERE)
    import flower_app

    dense_bytes = (flower_app.DIM_IN * flower_app.DIM_OUT + flower_app.DIM_OUT) * 4
    frames = {int(r): n for r, n in res["downlink_frames"].items()}
    down = {int(r): b for r, b in res["downlink_bytes"].items()}
    # Dense to everyone in round 1; later, frames to the nodes whose update of the round
    # before arrived (a dropped-out node or the corrupted round-2 update: dense again).
    assert frames == flower_app.frames_expected(10, flower_app.ROUNDS), frames
    assert down[1] == 10 * dense_bytes
    for rnd in range(2, flower_app.ROUNDS + 1):
        assert down[rnd] < (10 - frames[rnd]) * dense_bytes + frames[rnd] * dense_bytes / 3
    assert [r for r, d in res["dropped"].items() if d] == ["2"]
    # Measured: the server model's mean squared error falls from 38.9 to 2.26 (2.44 with the
    # downlink dense); a frame is 328 B against 1,640 B for the dense model.
    assert losses[-1] < 0.25 * losses[0]
