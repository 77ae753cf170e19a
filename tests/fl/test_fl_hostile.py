"""Hostile clients against CompressedStrategy, driven without Flower's engine: malformed frame
metadata, dtypes that do not fit the model, non-finite values and absurd magnitudes are
dropped (or bounded) with a reason while the round still produces a model; and the wrapper
composes with Flower's own robust and differential-privacy strategies."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from ci_support import require

require("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict  # noqa: E402
from flwr.serverapp import strategy as fls  # noqa: E402

import taskcodec as tc  # noqa: E402
from taskcodec import _core  # noqa: E402
from taskcodec.fl import frames  # noqa: E402
from taskcodec.fl.flower import UPDATE_KEY, CompressedStrategy  # noqa: E402

MODEL = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float32)}
NODES = (1, 2, 3, 4)


pytestmark = pytest.mark.usefixtures("flower_run_identity")


class Reply:
    """The parts of a Flower reply Message the wrapper and Flower's strategies read."""

    def __init__(self, node: int, frame, key: str = "arrays"):
        self.content = RecordDict({UPDATE_KEY: ConfigRecord({"frame": frame, "key": key}),
                                   "metrics": MetricRecord({"num-examples": 10})})
        self.metadata = SimpleNamespace(src_node_id=node)

    def has_error(self) -> bool:
        return False


class Grid:
    def get_node_ids(self):
        return list(NODES)


class Mean:
    """A stand-in strategy: the plain mean of the models it is given."""

    def configure_train(self, server_round, arrays, config, grid):
        return []

    def aggregate_train(self, server_round, replies):
        models = [{k: r.content["arrays"][k].numpy() for k in MODEL} for r in replies]
        if not models:
            return None, None
        return ArrayRecord({k: Array(np.mean([m[k] for m in models], axis=0).astype(np.float32))
                            for k in MODEL}), None


def _frame(delta, values="float32"):
    return tc.fl.TopKCompressor(ratio=1.0, values=values).compress(delta)


def _records(delta):
    """The records the compressor writes for ``delta`` (its frame's metadata left out)."""
    got = {}
    real = frames.write_frame

    def spy(records, flat, checksum):
        got["records"] = records
        return real(records, flat, checksum)

    with mock.patch.object(frames, "write_frame", spy):
        _frame(delta)
    return got["records"]


def _forged(meta, delta=None):
    """A well-formed, checksummed frame whose metadata is ``meta`` (an object or raw bytes)."""
    delta = delta if delta is not None else {k: np.ones_like(v) for k, v in MODEL.items()}
    raw = meta if isinstance(meta, bytes) else json.dumps(meta).encode()
    return _core.sparse_write_frame(_records(delta), raw, True)


def _meta(**changes):
    meta = {"v": 1, "kind": "dict", "names": ["w", "b"], "shapes": [[3, 4], [4]],
            "dtypes": ["float32", "float32"]}
    meta.update(changes)
    return meta


def _run(frames_, inner=None, **kwargs):
    strategy = CompressedStrategy(inner if inner is not None else Mean(), **kwargs)
    strategy.configure_train(1, ArrayRecord({k: Array(v) for k, v in MODEL.items()}), ConfigRecord({}), Grid())
    arrays, _ = strategy.aggregate_train(1, [Reply(n, f) for n, f in zip(NODES, frames_)])
    return strategy, (None if arrays is None else {k: arrays[k].numpy() for k in MODEL})


GOOD_DELTA = {"w": np.full((3, 4), 0.25, np.float32), "b": np.array([0, -1, 0, 0.5], np.float32)}
NESTED = (b'{"v":1,"kind":"dict","names":["w","b"],"dtypes":["float32","float32"],"shapes":'
          + b"[" * 100_000 + b"]" * 100_000 + b"}")

# F1: each malformed metadata, with the start of the reason it is dropped for.
MALFORMED = {
    "shapes null": (_meta(shapes=None), "CorruptStreamError: sparse-update meta block does not describe"),
    "shapes not lists": (_meta(shapes=[12, 4]), "CorruptStreamError: tensor 'w': shape 12 is not a list"),
    "shape of strings": (_meta(shapes=[["3", "4"], [4]]), "CorruptStreamError: tensor 'w': shape"),
    "shape of bools": (_meta(shapes=[[3, 4], [True, 4]]), "CorruptStreamError: tensor 'b': shape"),
    "names are lists": (_meta(names=[["w"], "b"]), "CorruptStreamError: tensor names must be distinct strings"),
    "int names, array record": (_meta(kind="arrayrecord", names=[0, 1]),
                                "CorruptStreamError: tensor names must be distinct strings"),
    "40 dimensions": (_meta(shapes=[[1] * 38 + [3, 4], [4]]), "CorruptStreamError: tensor 'w': shape"),
    "shape [2**70, 0]": (None, "CorruptStreamError: tensor 'b': shape [1180591620717411303424, 0] does not hold"),
    "nested 100,000 deep": (NESTED, "CorruptStreamError: sparse-update meta block is nested too deep"),
    "not an object": (b"[1, 2]", "CorruptStreamError: sparse-update meta block is not a JSON object"),
    "structured dtype": (_meta(dtypes=["float32,int8", "float32"]), "CorruptStreamError: tensor 'w': "),
    "object dtype": (_meta(dtypes=["object", "float32"]), "CorruptStreamError: tensor 'w': 'object' is not"),
}


def _malformed(case):
    meta, _ = MALFORMED[case]
    if case == "shape [2**70, 0]":  # an empty record whose shape claims 2**70 rows
        delta = {"w": np.ones((3, 4), np.float32), "b": np.zeros(0, np.float32)}
        return _forged(_meta(shapes=[[3, 4], [2**70, 0]]), delta)
    return _forged(meta)


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_metadata_is_dropped_with_its_reason_and_the_round_goes_on(case):
    bad = _malformed(case)
    with pytest.raises(tc.CorruptStreamError):  # every reader refuses it, not only the wrapper
        tc.fl.decompress(bad)
    good = _frame(GOOD_DELTA)
    strategy, model = _run([good, bad])
    (node, reason), = strategy.dropped[1]
    assert node == 2 and reason.startswith(MALFORMED[case][1]), reason
    np.testing.assert_array_equal(model["w"], MODEL["w"] + 0.25)
    np.testing.assert_array_equal(model["b"], MODEL["b"] + GOOD_DELTA["b"])


@pytest.mark.parametrize("dtype, value", [("float16", 1e6), ("int8", 1000.0), ("int64", 3e38)])
def test_a_dtype_that_is_not_the_models_is_dropped(dtype, value):
    """F2: the frame's dtype is checked against the model's before decoding; a reader without
    a model refuses values its recorded dtype cannot hold (no inf, no wrap-around)."""
    delta = {"w": np.full((3, 4), value, np.float32), "b": np.ones(4, np.float32)}
    lying = _forged(_meta(dtypes=[dtype, "float32"]), delta)
    with pytest.raises(tc.CorruptStreamError, match=f"outside the range of {dtype}"):
        tc.fl.decompress(lying)
    strategy, model = _run([_frame(GOOD_DELTA), lying])
    (node, reason), = strategy.dropped[1]
    assert node == 2 and reason == (f"ModelMismatch: tensor 'w' has dtype {dtype}, the model's is float32 "
                                    "(an update is float32 or the model's dtype)")
    np.testing.assert_array_equal(model["w"], MODEL["w"] + 0.25)


def test_the_models_own_dtype_is_accepted():
    as_model = _forged(_meta(), GOOD_DELTA)
    strategy, model = _run([as_model])
    assert strategy.dropped[1] == []
    np.testing.assert_array_equal(model["w"], MODEL["w"] + 0.25)


def test_non_finite_values_are_dropped():
    """Infinity in a record is refused by the frame reader; a sum that leaves the model's
    dtype (a float32 model near its largest value) by the wrapper."""
    marked = {"w": np.full((3, 4), 0.5, np.float32), "b": np.ones(4, np.float32)}
    marked["w"][1, 1] = 1234.5
    records = _records(marked)
    records[0] = records[0].replace(np.float32(1234.5).tobytes(), np.float32(np.inf).tobytes())
    inf_frame = _core.sparse_write_frame(records, json.dumps(_meta()).encode(), True)
    strategy, model = _run([_frame(GOOD_DELTA), inf_frame])
    (node, reason), = strategy.dropped[1]
    assert node == 2 and reason.startswith("CorruptStreamError") and "not finite" in reason
    assert np.isfinite(model["w"]).all()

    big = {"w": np.full(4, 3e38, np.float32)}
    strategy = CompressedStrategy(Mean(), norm_bound_factor=None)
    strategy.configure_train(1, ArrayRecord({"w": Array(big["w"])}), ConfigRecord({}), Grid())
    strategy.aggregate_train(1, [Reply(1, _frame({"w": np.full(4, 3e38, np.float32)}))])
    assert strategy.dropped[1] == [(1, "ModelMismatch: the update makes tensor 'w' non-finite in float32")]


def _honest(seed):
    rng = np.random.default_rng(seed)
    return {k: (0.01 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in MODEL.items()}


def _norm(d):
    return math.sqrt(sum(float(np.sum(np.square(v.astype(np.float64)))) for v in d.values()))


HONEST = [_honest(s) for s in range(3)]
ABSURD = {"w": np.full((3, 4), 3.4e38, np.float32), "b": np.zeros(4, np.float32)}


def test_one_absurd_client_of_four_is_scaled_to_the_bound():
    """F3: without the bound, one client of four sending 3.4e38 moved FedAvg's model to
    ~7.5e37; with it (default 10x the round's median update norm) the update is scaled down."""
    strategy, model = _run([_frame(d) for d in HONEST] + [_frame(ABSURD)], fls.FedAvg())
    norms = sorted(_norm(d) for d in HONEST)
    bound = 10.0 * norms[1]  # lower median of the four norms: the second honest one
    assert strategy.dropped[1] == []
    ((node, norm, used),) = strategy.clipped[1]
    assert node == 4 and norm > 1e38 and used == pytest.approx(bound) == strategy.norm_bounds[1]
    step = {k: model[k] - MODEL[k] for k in MODEL}
    assert all(np.isfinite(v).all() for v in model.values())
    assert _norm(step) <= bound * (1 + 1e-5)
    honest_mean = {k: np.mean([d[k] for d in HONEST], axis=0) for k in MODEL}
    # The absurd client's weight is a quarter of an update of norm <= bound.
    off = _norm({k: step[k] - 0.75 * honest_mean[k] for k in MODEL})
    assert off <= bound / 4 * (1 + 1e-5)

    _, unbounded = _run([_frame(d) for d in HONEST] + [_frame(ABSURD)], fls.FedAvg(), norm_bound_factor=None)
    assert unbounded["w"].min() > 1e37  # what the bound prevents


def test_norm_bound_factor_is_checked():
    for bad in (0, -1.0, float("inf"), "ten"):
        with pytest.raises(tc.TaskcodecError):
            CompressedStrategy(Mean(), norm_bound_factor=bad)


def _models(deltas):
    return [{k: (MODEL[k] + d[k]).astype(np.float32) for k in MODEL} for d in deltas]


ROBUST = {
    "FedMedian": lambda: fls.FedMedian(),
    "FedTrimmedAvg": lambda: fls.FedTrimmedAvg(beta=0.25),
    "Krum": lambda: fls.Krum(num_malicious_nodes=1),
    "MultiKrum": lambda: fls.MultiKrum(num_malicious_nodes=1, num_nodes_to_select=2),
}


@pytest.mark.parametrize("name", sorted(ROBUST))
def test_composes_with_flowers_robust_strategies(name):
    """Flower's own robust aggregators receive the rebuilt dense models: one absurd client of
    four (already bounded by the wrapper) does not move their result outside the honest ones."""
    strategy, model = _run([_frame(d) for d in HONEST] + [_frame(ABSURD)], ROBUST[name]())
    assert strategy.dropped[1] == [] and len(strategy.clipped[1]) == 1
    honest = _models(HONEST)
    for k in MODEL:
        lo = np.min([m[k] for m in honest], axis=0)
        hi = np.max([m[k] for m in honest], axis=0)
        assert np.all(model[k] >= lo - 1e-6) and np.all(model[k] <= hi + 1e-6), (name, k)
    if name == "Krum":  # Krum picks one client's model: an honest one
        assert any(all(np.array_equal(model[k], m[k]) for k in MODEL) for m in honest)


def test_composes_with_flowers_server_side_dp_clipping():
    """CompressedStrategy outside DifferentialPrivacyServerSideFixedClipping: the DP wrapper
    clips the rebuilt dense updates against the model it was given, so the round's step is
    within its clipping norm (noise 0 here, to check the clipping exactly)."""
    clip = 0.005
    dp = fls.DifferentialPrivacyServerSideFixedClipping(fls.FedAvg(), noise_multiplier=0.0, clipping_norm=clip,
                                                        num_sampled_clients=len(NODES))
    strategy, model = _run([_frame(d) for d in HONEST] + [_frame(ABSURD)], dp)
    assert strategy.dropped[1] == []
    step = {k: model[k] - MODEL[k] for k in MODEL}
    assert 0 < _norm(step) <= clip * (1 + 1e-4)


def test_accumulate_skips_a_frame_whose_weighted_values_overflow():
    big = _frame({k: np.full_like(v, 1e3) for k, v in MODEL.items()})
    dense, used, errors = tc.fl.accumulate([_frame(GOOD_DELTA), big], [1.0, 1e36])
    assert used == [0] and len(errors) == 1 and "non-finite" in errors[0]
    np.testing.assert_array_equal(dense["w"], np.full((3, 4), 0.25, np.float32))
