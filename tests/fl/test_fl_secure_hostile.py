"""The secure-aggregation mod and strategy against bad input, driven without Flower's engine:
a damaged support frame, a malformed config, a step for a model the node does not hold and an
absurd sketch are refused with the project's errors before the client trains; an aggregate of
the wrong length or with a NaN leaves the model as it was."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ci_support import require

require("flwr")

from flwr.app import Context, Message, RecordDict  # noqa: E402
from flwr.common import (  # noqa: E402
    Code,
    FitIns,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as compat  # noqa: E402

from taskcodec.errors import CorruptStreamError, DownlinkMismatch, TaskcodecError  # noqa: E402
from taskcodec.fl.flower import fingerprint  # noqa: E402
from taskcodec.fl.flower_secure import PREFIX, SecureCompressedStrategy, secure_compression_mod  # noqa: E402
from taskcodec.fl.packing import FieldPacking  # noqa: E402
from taskcodec.fl.secure import support_frame  # noqa: E402

pytestmark = pytest.mark.usefixtures("flower_run_identity")

MODEL = [np.arange(12, dtype=np.float32).reshape(3, 4), np.ones(4, np.float32)]
N = 16


def _cfg(**extra):
    cfg = {PREFIX + "method": "support", PREFIX + "n": N, PREFIX + "version": 1,
           PREFIX + "crc": fingerprint({str(i): a for i, a in enumerate(MODEL)}),
           PREFIX + "support": support_frame(N, None, np.array([0, 5, 15], np.uint32)), PREFIX + "decay": 0.7}
    cfg.update(extra)
    return {k: v for k, v in cfg.items() if v is not None}


def _message(cfg, dense=True):
    params = ndarrays_to_parameters(MODEL) if dense else ndarrays_to_parameters([])
    return Message(content=compat.fitins_to_recorddict(FitIns(params, cfg), keep_input=True), dst_node_id=3,
                   message_type="train")


def _run(cfg, dense=True, trained=None):
    """The mod around a client that adds 1 to every weight; the reply, whether it trained, the
    node's context."""
    trained = [] if trained is None else trained

    def client(msg, context):
        trained.append(True)
        arrays = parameters_to_ndarrays(compat.recorddict_to_fitins(msg.content, keep_input=True).parameters)
        res = FitRes(Status(Code.OK, ""), ndarrays_to_parameters([a + 1 for a in arrays]), 10, {})
        return Message(content=compat.fitres_to_recorddict(res, keep_input=True), reply_to=msg)

    ctx = Context(run_id=1, node_id=3, node_config={}, state=RecordDict(), run_config={})
    reply = secure_compression_mod()(_message(cfg, dense), ctx, client)
    return reply, bool(trained), ctx


def test_the_mod_sends_the_support_and_keeps_the_rest():
    reply, trained, ctx = _run(_cfg())
    assert trained
    vec = parameters_to_ndarrays(compat.recorddict_to_fitres(reply.content, keep_input=True).parameters)
    assert len(vec) == 1 and vec[0].tolist() == [1.0, 1.0, 1.0]
    res = ctx.state["taskcodec.secure.residual"]["r"].numpy()
    assert res.shape == (N,) and np.allclose(np.delete(res, [0, 5, 15]), 0.7) and res[[0, 5, 15]].sum() == 0


@pytest.mark.parametrize("cfg, dense, error", [
    (_cfg(**{PREFIX + "support": b"\x00" * 40}), True, CorruptStreamError),
    (_cfg(**{PREFIX + "support": support_frame(N + 1, None, np.array([1], np.uint32))}), True, CorruptStreamError),
    (_cfg(**{PREFIX + "decay": None}), True, DownlinkMismatch),
    (_cfg(**{PREFIX + "decay": 7.0}), True, DownlinkMismatch),
    (_cfg(**{PREFIX + "n": "many"}), True, DownlinkMismatch),
    (_cfg(**{PREFIX + "crc": 12345}), True, DownlinkMismatch),  # not the model the server holds
    (_cfg(), False, DownlinkMismatch),  # a step for a node that holds no model
    (_cfg(**{PREFIX + "method": "sketch", PREFIX + "rows": 5, PREFIX + "cols": 10 ** 9, PREFIX + "seed": 1}),
     True, DownlinkMismatch),
    # packing into SecAgg+'s field, but this node runs no secaggplus_mod (or a malformed request)
    (_cfg(**{PREFIX + "pack": FieldPacking(clipping_range=8.0, quantization_range=2 ** 30, modulus_range=2 ** 40,
                                           max_weight=20.0, clients=2).config(1e-3)}), True, DownlinkMismatch),
    (_cfg(**{PREFIX + "pack": "{not json"}), True, DownlinkMismatch),
])
def test_the_mod_refuses_bad_input_before_training(cfg, dense, error):
    trained = []
    with pytest.raises(error):
        _run(cfg, dense, trained)
    assert not trained


def test_a_damaged_support_frame_never_trains():
    blob = bytearray(support_frame(N, None, np.array([0, 5], np.uint32)))
    blob[len(blob) // 2] ^= 0xFF
    trained = []
    with pytest.raises(TaskcodecError):
        _run(_cfg(**{PREFIX + "support": bytes(blob)}), True, trained)
    assert not trained


def _results(vectors):
    return [(SimpleNamespace(node_id=i + 1), FitRes(Status(Code.OK, ""), ndarrays_to_parameters([v]), 10,
                                                     {PREFIX + "version": 1}))
            for i, v in enumerate(vectors)]


class _Manager:
    def num_available(self):
        return 2

    def wait_for(self, *a, **k):
        return True

    def sample(self, num_clients, min_num_clients=None, criterion=None):
        return [SimpleNamespace(node_id=1), SimpleNamespace(node_id=2)][:num_clients]


def test_the_strategy_keeps_the_model_on_a_bad_aggregate():
    from flwr.server.strategy import FedAvg

    strategy = SecureCompressedStrategy(FedAvg(min_fit_clients=2, min_available_clients=2), ratio=0.25,
                                        dense_below=1, warmup=0)
    ins = strategy.configure_fit(1, ndarrays_to_parameters(MODEL), _Manager())
    k = strategy._support.size
    assert len(ins) == 2 and k == 4
    assert strategy.aggregate_fit(1, _results([np.ones(k + 1, np.float32)] * 2), []) == (None, {})
    bad = np.ones(k, np.float32)
    bad[1] = np.nan
    assert strategy.aggregate_fit(1, _results([bad, np.ones(k, np.float32)]), []) == (None, {})
    params, _ = strategy.aggregate_fit(1, _results([np.ones(k, np.float32), 3 * np.ones(k, np.float32)]), [])
    moved = np.concatenate([a.reshape(-1) for a in parameters_to_ndarrays(params)]) - \
        np.concatenate([a.reshape(-1) for a in MODEL])
    assert np.count_nonzero(moved) == k and np.allclose(moved[moved != 0], 2.0)  # the mean, on the support


def test_the_packing_strategy_keeps_the_model_on_an_aggregate_that_does_not_unpack():
    from flwr.server.strategy import FedAvg

    secagg = {"clipping_range": 8.0, "quantization_range": 2 ** 30, "modulus_range": 2 ** 40, "max_weight": 20.0}
    strategy = SecureCompressedStrategy(FedAvg(min_fit_clients=2, min_available_clients=2), ratio=0.25,
                                        dense_below=1, warmup=0, secagg=secagg, pack_range=4.0)
    ins = strategy.configure_fit(1, ndarrays_to_parameters(MODEL), _Manager())
    k = strategy._support.size
    packing, step = FieldPacking.from_config(ins[0][1].config[PREFIX + "pack"], {
        "clipping_range": 8.0, "target_range": 2 ** 30, "mod_range": 2 ** 40, "max_weight": 20.0})
    assert packing.clients == 2 and step == 4.0 / packing.half
    upload, sent = packing.encode(np.full(k, 0.5), step, 10)  # both clients send the same
    for bad in (upload[:-1], np.full_like(upload, 1e9), np.full_like(upload, np.nan)):
        assert strategy.aggregate_fit(1, _results([bad] * 2), []) == (None, {})
    params, _ = strategy.aggregate_fit(1, _results([upload] * 2), [])  # SecAgg+ hands every result the mean
    moved = np.concatenate([a.reshape(-1) for a in parameters_to_ndarrays(params)]) - \
        np.concatenate([a.reshape(-1) for a in MODEL])
    assert np.count_nonzero(moved) == k and np.allclose(moved[moved != 0], sent[0])
    with pytest.raises(TaskcodecError, match="powers of two"):
        SecureCompressedStrategy(FedAvg(), secagg=dict(secagg, clipping_range=3.0))
