"""Downlink compression in the Flower wrapper and mod, driven without Flower's engine: the
server's broadcast becomes step frames from the model version a node holds (one frame after
one round, a chain after several rounds unsampled), every node's copy equals the server's
replica bit for bit, and nodes that failed, hold no copy, fall too far behind or receive a
damaged step are resynchronised with the dense model."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ci_support import require

require("flwr")

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict  # noqa: E402

import taskcodec as tc  # noqa: E402
from taskcodec.fl.flower import (  # noqa: E402
    DOWNLINK_KEY,
    UPDATE_KEY,
    CompressedStrategy,
    DownlinkMismatch,
    compression_mod,
    fingerprint,
)

NODES = (11, 12, 13)
SHAPES = {"w": (40, 30), "b": (30,)}


pytestmark = pytest.mark.usefixtures("flower_run_identity")


class Inner:
    """Like FedAvg: one shared content for every node sampled (``sample(round)``, all nodes
    by default); aggregates the mean of the models."""

    def __init__(self, sample=None):
        self.sample = sample or (lambda rnd: NODES)

    def configure_train(self, server_round, arrays, config, grid):
        content = RecordDict({"arrays": arrays, "config": config})
        return [Message(content=content, dst_node_id=n, message_type="train") for n in self.sample(server_round)]

    def aggregate_train(self, server_round, replies):
        models = [{k: r.content["arrays"][k].numpy() for k in SHAPES} for r in replies if not r.has_error()]
        if not models:
            return None, None
        return ArrayRecord({k: Array(np.mean([m[k] for m in models], axis=0).astype(np.float32))
                            for k in SHAPES}), None


class Reply:
    def __init__(self, node, content=None, error=False):
        self.content = content if content is not None else RecordDict()
        self.metadata = SimpleNamespace(src_node_id=node)
        self._error = error

    def has_error(self):
        return self._error


def _context(node):
    return Context(run_id=1, node_id=node, node_config={}, state=RecordDict(), run_config={})


def _train(seed):
    """A ClientApp stand-in: moves every weight by a seeded random step."""

    def call_next(msg, context):
        rng = np.random.default_rng(seed)
        rec = msg.content["arrays"]
        moved = {k: rec[k].numpy() + 0.1 * rng.standard_normal(SHAPES[k]).astype(np.float32) for k in SHAPES}
        return Reply(context.node_id, RecordDict({"arrays": ArrayRecord({k: Array(v) for k, v in moved.items()})}))

    return call_next


def _fail(msg, context):
    raise RuntimeError(f"node {context.node_id} drops out")


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return ArrayRecord({k: Array(rng.standard_normal(s).astype(np.float32)) for k, s in SHAPES.items()})


def _run_round(strategy, rnd, arrays, contexts, mod, fail=()):
    messages = list(strategy.configure_train(rnd, arrays, ConfigRecord({"server-round": rnd}), None))
    replies, received = [], {}
    for msg in messages:
        node = msg.metadata.dst_node_id
        received[node] = len(msg.content[DOWNLINK_KEY].get("steps", []))
        if node in fail:  # the ClientApp raises after the mod has stored the model
            with pytest.raises(RuntimeError, match="drops out"):
                mod(msg, contexts[node], _fail)
            replies.append(Reply(node, error=True))
            continue
        replies.append(mod(msg, contexts[node], _train(100 * rnd + node)))
    new_arrays, _ = strategy.aggregate_train(rnd, replies)
    return (new_arrays if new_arrays is not None else arrays), received


def _held(context):
    return {k: context.state["taskcodec.fl.replica"][k].numpy() for k in SHAPES}


def test_steps_go_to_nodes_holding_the_previous_version_and_copies_match_bit_for_bit():
    strategy = CompressedStrategy(Inner(), downlink={"ratio": 0.1, "values": "int8"})
    mod = compression_mod(ratio=0.1, values="int8")
    contexts = {n: _context(n) for n in NODES}
    arrays = _model()
    dense = sum(4 * int(np.prod(s)) for s in SHAPES.values())

    arrays, got = _run_round(strategy, 1, arrays, contexts, mod)
    assert got == {n: 0 for n in NODES}  # first contact: the dense model
    assert strategy.downlink_bytes[1] == 3 * dense and strategy.downlink_frames[1] == 0

    arrays, got = _run_round(strategy, 2, arrays, contexts, mod, fail=(13,))
    assert got == {n: 1 for n in NODES}
    assert 0 < strategy.downlink_bytes[2] < 3 * dense / 4  # measured: three 480 B frames vs 4,920 B dense each
    replica = strategy._replica
    for n in NODES:  # 13 failed after storing the step: its copy is right, but the server cannot know
        assert fingerprint(_held(contexts[n])) == fingerprint(replica)

    arrays, got = _run_round(strategy, 3, arrays, contexts, mod)
    assert got == {11: 1, 12: 1, 13: 0}  # the failed node is resynchronised densely
    assert strategy.downlink_frames[3] == 2
    for n in NODES:
        assert fingerprint(_held(contexts[n])) == fingerprint(strategy._replica)
    # The server's model is the replica plus what the downlink compressor still withholds.
    model = {k: arrays[k].numpy() for k in SHAPES}
    _run_round(strategy, 4, arrays, contexts, mod)
    for k in SHAPES:
        withheld = strategy._down.residuals[k].reshape(SHAPES[k])
        np.testing.assert_allclose(strategy._replica[k] + withheld, model[k], atol=1e-5)
    # Replies report the version they trained from; the uplink is still compressed.
    assert all(len(strategy.dropped[r]) == 0 for r in (1, 2, 3, 4))
    assert 0 < strategy.uplink_bytes[4] < 3 * dense / 4


def _step_message(strategy, contexts, mod):
    """Two rounds: the second round's message to node 11, a step from version 1."""
    arrays, _ = _run_round(strategy, 1, _model(), contexts, mod)
    messages = list(strategy.configure_train(2, arrays, ConfigRecord({}), None))
    msg = next(m for m in messages if m.metadata.dst_node_id == 11)
    assert len(msg.content[DOWNLINK_KEY]["steps"]) == 1
    return msg


def test_nodes_not_sampled_get_a_chain_of_steps_or_the_dense_model_when_too_far_behind():
    absent = {13: range(2, 4), 12: range(2, 14)}  # 13 misses rounds 2-3, 12 misses rounds 2-13
    strategy = CompressedStrategy(Inner(lambda rnd: [n for n in NODES if rnd not in absent.get(n, ())]),
                                  downlink={"ratio": 0.1, "values": "int8"})
    mod = compression_mod(ratio=0.1, values="int8")
    contexts = {n: _context(n) for n in NODES}
    arrays = _model()
    for rnd in range(1, 15):
        arrays, got = _run_round(strategy, rnd, arrays, contexts, mod)
        if rnd == 4:
            assert got == {11: 1, 13: 3}, got  # 13 gets the steps to versions 2, 3 and 4
        if rnd == 14:
            # Thirteen steps (~480 B each) would outweigh the model (4,920 B): dense.
            assert got == {11: 1, 12: 0, 13: 1}, got
        for n in got:
            assert fingerprint(_held(contexts[n])) == fingerprint(strategy._replica), (rnd, n)
    # The server keeps no more steps than a chain smaller than the model needs.
    assert sum(len(f) for f in strategy._steps.values()) < sum(4 * int(np.prod(v)) for v in SHAPES.values())


def _step_setup(down_values="int8"):
    """The mod, the nodes' contexts after round 1, and round 2's step message to node 11."""
    strategy = CompressedStrategy(Inner(), downlink={"ratio": 0.1, "values": down_values})
    mod = compression_mod(ratio=0.1, values="int8")
    contexts = {n: _context(n) for n in NODES}
    return mod, contexts, _step_message(strategy, contexts, mod)


def _first_message():
    """A first-contact train message (the dense model and its version)."""
    strategy = CompressedStrategy(Inner(), downlink={"ratio": 0.1, "values": "int8"})
    return list(strategy.configure_train(1, _model(), ConfigRecord({}), None))[0]


def test_a_node_without_the_previous_version_fails_with_a_clear_error():
    mod, _, msg = _step_setup(down_values="sign")
    with pytest.raises(DownlinkMismatch, match="holds model version None.*needs the dense model"):
        mod(msg, _context(11), _train(0))  # a restarted node: no copy of the model


def test_a_damaged_step_raises_the_frame_error_and_a_wrong_result_fails_the_fingerprint():
    mod, contexts, msg = _step_setup()
    cfg = msg.content[DOWNLINK_KEY]
    frame = cfg["steps"][0]
    bad = bytearray(frame)
    bad[len(bad) // 2] ^= 0x10
    cfg["steps"] = [bytes(bad)]
    with pytest.raises(tc.ChecksumError):
        mod(msg, contexts[11], _train(0))
    assert int(contexts[11].state["taskcodec.fl.replica_version"]["version"]) == 1  # untouched

    cfg["steps"] = [frame]
    cfg["crc"] = (int(cfg["crc"]) + 1) & 0xFFFFFFFF
    with pytest.raises(DownlinkMismatch, match="fingerprint"):
        mod(msg, contexts[11], _train(0))
    assert "taskcodec.fl.replica_version" not in contexts[11].state  # it asks for the dense model


def test_malformed_downlink_records_fail_with_downlink_mismatch():
    mod, contexts, msg = _step_setup()
    cfg = msg.content[DOWNLINK_KEY]
    del cfg["base"]
    with pytest.raises(DownlinkMismatch, match="malformed.*base"):
        mod(msg, contexts[11], _train(0))
    cfg["base"] = 1
    frame = cfg["steps"][0]
    cfg["steps"] = ["not bytes"]
    with pytest.raises(DownlinkMismatch, match="not bytes"):
        mod(msg, contexts[11], _train(0))
    cfg["steps"] = [frame, frame]  # two steps cannot lead from version 1 to 2
    with pytest.raises(DownlinkMismatch, match="do not lead from version 1 to 2"):
        mod(msg, contexts[11], _train(0))
    # A first-contact (dense) message whose model does not match its fingerprint.
    first = _first_message()
    first.content[DOWNLINK_KEY]["crc"] = 0
    fresh = _context(11)
    with pytest.raises(DownlinkMismatch, match="fingerprint"):
        mod(first, fresh, _train(0))
    assert "taskcodec.fl.replica" not in fresh.state
    # A dense message without its model.
    second = _first_message()
    del second.content["arrays"]
    with pytest.raises(DownlinkMismatch, match="no dense model"):
        mod(second, fresh, _train(0))


def test_a_failed_reply_or_a_dropped_update_sends_the_dense_model_next_round():
    strategy = CompressedStrategy(Inner(), downlink={"ratio": 0.1, "values": "int8"})
    mod = compression_mod(ratio=0.1, values="int8")
    contexts = {n: _context(n) for n in NODES}
    arrays, _ = _run_round(strategy, 1, _model(), contexts, mod)
    # Round 2: node 12's update is damaged on the way (dropped with its reason).
    messages = list(strategy.configure_train(2, arrays, ConfigRecord({}), None))
    replies = []
    for msg in messages:
        node = msg.metadata.dst_node_id
        reply = mod(msg, contexts[node], _train(node))
        if node == 12:
            f = bytearray(reply.content[UPDATE_KEY]["frame"])
            f[-1] ^= 1
            reply.content[UPDATE_KEY]["frame"] = bytes(f)
        replies.append(reply)
    arrays, _ = strategy.aggregate_train(2, replies)
    assert [n for n, _ in strategy.dropped[2]] == [12]
    messages = list(strategy.configure_train(3, arrays, ConfigRecord({}), None))
    got = {m.metadata.dst_node_id: "steps" in m.content[DOWNLINK_KEY] for m in messages}
    assert got == {11: True, 12: False, 13: True}
    dense_msg = next(m for m in messages if m.metadata.dst_node_id == 12)
    assert "arrays" in dense_msg.content.array_records
    # Messages are separate copies: the dense one did not leak into the others' content.
    assert all("arrays" not in m.content.array_records for m in messages if m.metadata.dst_node_id != 12)


def test_without_downlink_messages_pass_through_unchanged():
    strategy = CompressedStrategy(Inner())
    messages = list(strategy.configure_train(1, _model(), ConfigRecord({}), None))
    assert all(DOWNLINK_KEY not in m.content for m in messages)
    assert strategy.downlink_bytes == {}
