"""CompressedStrategy on its own: replies are rebuilt against the model sent in the round,
and every frame that does not fit that model is dropped with its reason (no Flower run needed)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from ci_support import require

require("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict  # noqa: E402

import taskcodec as tc  # noqa: E402
from taskcodec.fl.flower import UPDATE_KEY, CompressedStrategy  # noqa: E402


class Reply:
    """The parts of a Flower reply Message the wrapper reads."""

    def __init__(self, node: int, frame, key: str = "arrays"):
        self.content = RecordDict({UPDATE_KEY: ConfigRecord({"frame": frame, "key": key})})
        self.metadata = SimpleNamespace(src_node_id=node)

    def has_error(self) -> bool:
        return False


class Inner:
    """A stand-in strategy that records what it is asked to aggregate."""

    def __init__(self):
        self.received = None

    def configure_train(self, server_round, arrays, config, grid):
        return []

    def aggregate_train(self, server_round, replies):
        self.received = list(replies)
        return None, None


MODEL = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float32)}


def _round(frames):
    inner = Inner()
    strategy = CompressedStrategy(inner)
    strategy.configure_train(1, ArrayRecord({k: Array(v) for k, v in MODEL.items()}), ConfigRecord({}), None)
    strategy.aggregate_train(1, [Reply(node, f) for node, f in enumerate(frames)])
    return strategy, inner


def test_a_good_frame_becomes_the_dense_model_plus_delta():
    delta = {"w": np.full((3, 4), 0.5, np.float32), "b": np.array([0, -2, 0, 0], np.float32)}
    frame = tc.fl.TopKCompressor(ratio=1.0, values="float32").compress(delta)
    strategy, inner = _round([frame])
    assert strategy.dropped[1] == [] and strategy.uplink_bytes[1] == len(frame)
    (msg,) = inner.received
    assert UPDATE_KEY not in msg.content
    rec = msg.content["arrays"]
    np.testing.assert_array_equal(rec["w"].numpy(), MODEL["w"] + 0.5)
    np.testing.assert_array_equal(rec["b"].numpy(), MODEL["b"] + delta["b"])


def test_frames_that_do_not_fit_the_sent_model_are_dropped_with_reasons():
    comp = lambda: tc.fl.TopKCompressor(ratio=0.5, values="float32")  # noqa: E731
    good = comp().compress({k: np.ones_like(v) for k, v in MODEL.items()})
    bigger = comp().compress({"w": np.ones((3, 4), np.float32), "b": np.ones(4, np.float32),
                              "extra": np.ones(1_000_000, np.float32)})
    huge_tensor = comp().compress({"w": np.ones(10_000, np.float32)})
    renamed = comp().compress({"w": np.ones((3, 4), np.float32), "c": np.ones(4, np.float32)})
    reshaped = comp().compress({"w": np.ones((4, 3), np.float32), "b": np.ones(4, np.float32)})
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2] ^= 0x40
    strategy, inner = _round([good, bigger, huge_tensor, renamed, reshaped, bytes(corrupt), b"", "text"])
    reasons = dict(strategy.dropped[1])
    assert len(inner.received) == 1 and strategy.uplink_bytes[1] == len(good)
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 7}
    # More tensors or values than the model: refused by the frame reader's limits, before
    # a dense buffer is allocated for them.
    assert reasons[1].startswith("LimitExceededError") and "max_tensors = 2" in reasons[1]
    assert reasons[2].startswith("LimitExceededError") and "max_elements = 16" in reasons[2]
    assert reasons[3] == "ModelMismatch: the frame's tensors are not the model's"
    assert reasons[4] == "ModelMismatch: tensor 'w' has shape (4, 3), the model's is (3, 4)"
    assert reasons[5].startswith("ChecksumError")
    assert reasons[6].startswith("CorruptStreamError")
    assert reasons[7] == "the update record does not hold a frame and a key"
