"""Compressed updates under Flower's secure aggregation, in Flower's simulation engine: ten
clients run ``secaggplus_mod`` around ``secure_compression_mod``; the server runs Flower's
``SecAggPlusWorkflow`` with ``SecureCompressedStrategy``; 30 % of the clients drop out of each
round. Spies on the clients record each client's compressed vector (inside SecAgg+) and the
masked vector that leaves it (outside); the server records the aggregate SecAgg+ revealed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ci_support import require

require("flwr")
require("ray")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def _simulate(tmp_path, method: str):
    spy = tmp_path / "spy"
    spy.mkdir()
    out = tmp_path / "summary.json"
    env = dict(os.environ, TASKCODEC_SPY_DIR=str(spy))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, *sys.path) if p)
    proc = subprocess.run([sys.executable, os.path.join(HERE, "secure_app.py"), str(out), method], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and out.exists(), proc.stderr[-3000:]
    return json.loads(out.read_text()), spy


def _load(spy: Path, kind: str, rnd: int) -> dict:
    out = {}
    for f in spy.glob(f"{kind}-{rnd}-*.npy"):
        out[int(re.fullmatch(rf"{kind}-{rnd}-(\d+)\.npy", f.name).group(1))] = np.load(f)
    return out


def _check_rounds(spy: Path, rounds: int, drop: bool = True, field: str = "default") -> None:
    """Each round: the clients that did not drop out sent vectors, the aggregate SecAgg+
    revealed is their mean up to SecAgg+'s quantization, and what left each client is masked."""
    import flower_app
    import secure_app

    levels, modulus = secure_app.FIELD[field]
    step = 2 * 8.0 / levels  # SecAgg+'s quantization step (clipping range 8)
    for rnd in range(1, rounds + 1):
        vecs, masked = _load(spy, "vec", rnd), _load(spy, "masked", rnd)
        survivors = [p for p in range(10) if not (drop and flower_app.dropped(rnd, p))]
        assert sorted(vecs) == survivors and sorted(masked) == survivors, (rnd, survivors, sorted(vecs), sorted(masked))
        agg = np.load(spy / f"agg-{rnd}.npy")
        mean = np.mean([vecs[p] for p in survivors], axis=0)  # equal weights: 64 samples each
        assert np.abs(agg - mean).max() < 2 * step, (rnd, np.abs(agg - mean).max())
        for p in survivors:
            # Unmasked, every quantized element lies in [0, levels]. Masked, the vector is
            # spread over the field: an element lands within `levels` of its quantized value by
            # chance with probability 2 * levels / modulus (2^-9).
            q = (np.clip(vecs[p] * 0.5, -8, 8) + 8) / step  # SecAgg+ weighs each client by 64 / 128
            near = np.abs(masked[p].astype(np.float64) - q) < levels
            assert near.mean() < 0.05, (rnd, p, near.sum(), near.size)
            assert masked[p].max() > modulus // 4


@pytest.mark.slow
def test_shared_support_under_secagg_with_dropout(tmp_path):
    import flower_app

    res, spy = _simulate(tmp_path, "support")
    losses = res["losses"]
    assert len(losses) == 7
    _check_rounds(spy, 6)
    # 30 % drop out each round, the support is 30 % of the weights (and the bias): measured,
    # the squared error falls from 38.9 to 15.7 in six rounds.
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.6 * losses[0]
    # Each round's step touches the support only: 123 of the model's 410 values.
    for rnd in range(1, 7):
        moved = np.load(spy / f"model-{rnd}.npy") - np.load(spy / f"model-{rnd - 1}.npy")
        assert 0 < np.count_nonzero(moved) <= res["uplink_values"][str(rnd)] == 123
    # The step reaches the nodes that took part in the round before as a frame, not the model.
    frames = {int(r): n for r, n in res["downlink_frames"].items()}
    assert frames == {1: 0, **{r: sum(not flower_app.dropped(r - 1, p) for p in range(10)) for r in range(2, 7)}}


@pytest.mark.slow
def test_packed_shared_support_under_secagg_with_dropout(tmp_path):
    """Two values in each SecAgg+ field element: each client's upload is half the support
    long, SecAgg+ still masks it, the server unpacks the exact weighted mean of what the
    surviving clients packed, and the model moves by that mean on the support."""
    import flower_app
    import secure_app

    res, spy = _simulate(tmp_path, "support-packed")
    _check_rounds(spy, 6, field="packed")
    for rnd in range(1, 7):
        assert res["uplink_values"][str(rnd)] == 62  # 123 support values, two an element
        survivors = [p for p in range(10) if not flower_app.dropped(rnd, p)]
        mean = secure_app.check_unpacked(str(spy), rnd, survivors)
        moved = np.load(spy / f"model-{rnd}.npy") - np.load(spy / f"model-{rnd - 1}.npy")
        support = np.load(spy / f"support-{rnd}.npy")
        np.testing.assert_allclose(moved[support], mean, rtol=0, atol=1e-6)  # float32 weights near 1
        assert not np.delete(moved, support).any()
    losses = res["losses"]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.slow
def test_count_sketch_under_secagg(tmp_path):
    """The sum of the clients' sketches is what SecAgg+ reveals, and the server's step is the
    sketch server's on that sum (replayed here from the recorded aggregates)."""
    import secure_app

    from taskcodec.fl.secure import CountSketch, SketchServer

    res, spy = _simulate(tmp_path, "sketch")
    _check_rounds(spy, 6)
    cfg = secure_app.SETTINGS["sketch"]
    n = 410
    sketch = CountSketch(n, rows=cfg["rows"], cols=int(cfg["ratio"] * n) // cfg["rows"], seed=1)
    server = SketchServer(sketch, int(cfg["k_ratio"] * n), momentum=0.0)
    for rnd in range(1, 7):
        idx, val = server.step(np.load(spy / f"agg-{rnd}.npy").astype(np.float32))
        expect = np.zeros(n, np.float32)
        expect[idx] = val
        moved = np.load(spy / f"model-{rnd}.npy") - np.load(spy / f"model-{rnd - 1}.npy")
        np.testing.assert_allclose(moved, expect, atol=1e-5)


@pytest.mark.slow
def test_flower_central_dp_wraps_the_secure_strategy(tmp_path):
    """Flower's DifferentialPrivacyClientSideFixedClipping around SecureCompressedStrategy,
    fixedclipping_mod inside the compression mod: the round still aggregates exactly under
    SecAgg+, the noise the DP wrapper adds reaches every weight, and the nodes get that noised
    model dense (their copies cannot follow it with a sparse step)."""
    import secure_app

    res, spy = _simulate(tmp_path, "support-dp")
    _check_rounds(spy, 6, drop=False)
    losses = res["losses"]
    assert losses[-1] < 0.6 * losses[0], losses  # measured: 38.9 to 15.3
    for rnd in range(1, 7):
        moved = np.load(spy / f"model-{rnd}.npy") - np.load(spy / f"model-{rnd - 1}.npy")
        assert np.count_nonzero(moved) == moved.size  # the DP noise is dense
        noise = np.delete(moved, np.flatnonzero(np.abs(moved) > 5 * secure_app.DP_NOISE))
        assert 0.5 < noise.std() / (secure_app.DP_NOISE * secure_app.DP_CLIP / 10) < 1.5
    assert set(res["downlink_frames"].values()) == {0}


@pytest.mark.slow
def test_server_momentum_with_a_compressed_downlink(tmp_path):
    """The defaults' server momentum (the step moves positions outside the support too), its
    steps sent through a top-k int8 downlink: the nodes that took part in the round before
    rebuild the server's model from the frame (their copies match its fingerprint, or the
    round would fail), and the loss falls."""
    import flower_app

    res, spy = _simulate(tmp_path, "support-down")
    _check_rounds(spy, 6)
    frames = {int(r): n for r, n in res["downlink_frames"].items()}
    assert frames == {1: 0, **{r: sum(not flower_app.dropped(r - 1, p) for p in range(10)) for r in range(2, 7)}}
    losses = res["losses"]
    assert all(a > b for a, b in zip(losses, losses[1:])), losses
    assert losses[-1] < 0.5 * losses[0], losses  # measured: 38.9 to 15.9 (15.7 without momentum, exact steps)
