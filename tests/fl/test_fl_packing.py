"""Several values in one SecAgg+ field element (taskcodec.fl.packing), checked against Flower's
own quantization, masking and unmasking arithmetic (the functions secaggplus_mod and
SecAggPlusWorkflow call), without a simulation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ci_support import require

require("flwr")

from taskcodec.errors import TaskcodecError  # noqa: E402
from taskcodec.fl.packing import FieldPacking  # noqa: E402

C, T, M, MAX_W = 8.0, 2 ** 30, 2 ** 40, 9000.0


def _packing(clients: int = 10, slots: int = 2) -> FieldPacking:
    return FieldPacking(clipping_range=C, quantization_range=T, modulus_range=M, max_weight=MAX_W,
                        clients=clients, slots=slots)


def _secagg_round(uploads, examples, rng):
    """What Flower does with the clients' float vectors: weigh, quantize (stochastic rounding),
    mask, sum modulo M, unmask, dequantize and divide by the total weight."""
    from flwr.common.secure_aggregation.ndarrays_arithmetic import factor_combine, factor_extract, parameters_multiply
    from flwr.common.secure_aggregation.quantization import dequantize, quantize

    total, masks = None, []
    for x, e in zip(uploads, examples):
        q_ratio = round(e / MAX_W * T)
        q = factor_combine(q_ratio, quantize(parameters_multiply([x], q_ratio / T), C, T))
        mask = [rng.integers(0, M, a.shape) for a in q]
        masks.append(mask)
        masked = [(a + m) % M for a, m in zip(q, mask)]
        total = masked if total is None else [(a + b) % M for a, b in zip(total, masked)]
    for mask in masks:  # what the unmask stage removes
        total = [(a - m) % M for a, m in zip(total, mask)]
    q_total, vec = factor_extract(total)
    agg = dequantize(vec, C, T)[0]
    return (agg - (len(uploads) - 1) * C) * (T / q_total)


def test_sizes_follow_the_field_and_the_clients():
    p = _packing()
    assert (p.bits, p.headroom, p.width) == (13, 4, 17)  # 17 + 13 <= 30; the sum needs 34 <= 40
    assert p.elements(123) == 62 and p.elements(124) == 62
    assert _packing(clients=2).bits == 14 and _packing(slots=3).bits == 7
    assert FieldPacking(clipping_range=8.0, quantization_range=2 ** 22, modulus_range=2 ** 32, max_weight=1.0,
                        clients=10).bits == 9  # Flower's default field: 9 bits a value
    with pytest.raises(TaskcodecError, match="powers of two"):
        FieldPacking(clipping_range=3.0, quantization_range=T, modulus_range=M, max_weight=1.0, clients=10)
    with pytest.raises(TaskcodecError, match="modulus range of at least 2\\^34"):
        FieldPacking(clipping_range=C, quantization_range=T, modulus_range=2 ** 32, max_weight=1.0, clients=10)
    with pytest.raises(TaskcodecError, match="bits a value"):
        _packing(slots=5)


@pytest.mark.parametrize("slots", [1, 2, 3])
def test_the_server_unpacks_the_exact_weighted_mean_of_what_was_packed(slots):
    rng = np.random.default_rng(slots)
    p = _packing(slots=slots)
    k, step = 1001, 2e-4
    values = [rng.normal(0, 0.02, k) for _ in range(7)]
    examples = [int(rng.integers(2000, 9000)) for _ in range(7)]
    uploads, sent = zip(*(p.encode(v, step, e) for v, e in zip(values, examples)))
    assert all(u.dtype == np.float64 and u.size == p.elements(k) for u in uploads)
    mean = p.decode(_secagg_round(uploads, examples, rng), k, step, examples)
    w = np.array([p.weight(e) for e in examples])
    exact = sum(wi * s.astype(np.float64) for wi, s in zip(w, sent)) / w.sum()
    # one unit of one client's slot would be step / sum(w) off; float32 rounding is far less
    np.testing.assert_allclose(mean, exact, rtol=0, atol=1e-3 * step / w.sum())
    # what was sent is the values rounded to the step, unless clipped to the slot's range
    for v, s, wi in zip(values, sent, w):
        inside = np.abs(v * wi / step) < p.half - 1
        assert np.abs(v - s)[inside].max() <= 0.5 * step / wi * (1 + 1e-6)
        assert (np.abs(s)[~inside] <= p.half * step / wi * (1 + 1e-6)).all()


def test_clipped_values_come_back_as_the_slot_limits():
    p = _packing()
    step = 1e-3
    upload, sent = p.encode(np.array([1e3, -1e3, 0.0]), step, MAX_W)  # weight 1
    np.testing.assert_allclose(sent, [(p.half - 1) * step, -p.half * step, 0.0], rtol=1e-6)
    mean = p.decode(upload, 3, step, [MAX_W])  # one client: SecAgg+'s aggregate is its own vector
    np.testing.assert_allclose(mean, sent, rtol=1e-6)


def test_config_round_trip_and_hostile_configs():
    p = _packing()
    held = {"clipping_range": C, "target_range": T, "mod_range": M, "max_weight": MAX_W}
    q, step = FieldPacking.from_config(p.config(0.5), held)
    assert q.settings() == p.settings() and step == 0.5
    bad = json.loads(p.config(0.5))
    for change, match in (({"step": 0.0}, "step"), ({"step": float("nan")}, "step"),
                          ({"clipping_range": 3.0}, "powers of two"), ({"slots": "two"}, "malformed")):
        with pytest.raises(TaskcodecError, match=match):
            FieldPacking.from_config(json.dumps(dict(bad, **change)), held)
    for spec in ("{", "[]", 7, None, json.dumps({"step": 1.0})):
        with pytest.raises(TaskcodecError, match="malformed"):
            FieldPacking.from_config(spec, held)
    with pytest.raises(TaskcodecError, match="no secaggplus_mod"):
        FieldPacking.from_config(p.config(0.5), None)
    with pytest.raises(TaskcodecError, match="this node's secaggplus_mod holds"):
        FieldPacking.from_config(p.config(0.5), dict(held, target_range=2 ** 22))


def test_decode_refuses_what_is_not_a_packed_sum():
    p = _packing()
    upload, _ = p.encode(np.zeros(10), 1e-3, MAX_W)
    with pytest.raises(TaskcodecError, match="elements"):
        p.decode(upload[:-1], 10, 1e-3, [MAX_W])
    with pytest.raises(TaskcodecError, match="clients"):
        p.decode(upload, 10, 1e-3, [MAX_W] * 11)
    for poison in (np.nan, np.inf, -1e6, 1e6, upload[0] + 0.3 * 2 * C / T):
        bad = upload.copy()
        bad[0] = poison
        with pytest.raises(TaskcodecError, match="not a sum of packed values"):
            p.decode(bad, 10, 1e-3, [MAX_W])
    with pytest.raises(TaskcodecError, match="other example counts"):  # weighed by other counts
        p.decode(upload, 10, 1e-3, [MAX_W / 3])
