"""Flower integration: a client mod that uploads compressed model deltas, and a strategy
wrapper that decompresses them for any Flower strategy (FedAvg by default).

Client side (``ClientApp(train_fn..., mods=[...])``)::

    from taskcodec.fl.flower import compression_mod
    app = ClientApp(mods=[compression_mod(ratio=0.01, values="int8")])

Server side::

    from taskcodec.fl.flower import CompressedStrategy
    strategy = CompressedStrategy(FedAvg(fraction_train=1.0))

The mod takes the model the server sent (the message's single ArrayRecord), lets the
ClientApp train, computes ``delta = trained - received``, compresses it with a
:class:`~taskcodec.fl.TopKCompressor` whose residuals live in the node's ``context.state``
(so error feedback carries across rounds, in simulation and deployment alike), and replies
with the frame in a ConfigRecord instead of the dense ArrayRecord. The strategy wrapper
rebuilds ``received + delta`` for each reply and hands dense replies to the wrapped
strategy. A reply whose frame does not decode is dropped from the round with a logged
reason; the round goes on with the others.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy

from taskcodec.errors import TaskcodecError
from taskcodec.fl.compressor import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_TENSORS, TopKCompressor, decompress

__all__ = ["compression_mod", "CompressedStrategy", "UPDATE_KEY"]

#: Name of the ConfigRecord that carries a compressed update in a reply.
UPDATE_KEY = "taskcodec.fl.update"
_STATE_ARRAYS = "taskcodec.fl.residuals"
_STATE_VEL = "taskcodec.fl.velocities"
_STATE_CFG = "taskcodec.fl.state"

logger = logging.getLogger("taskcodec.fl.flower")


def _to_dict(rec: ArrayRecord) -> Dict[str, np.ndarray]:
    return {k: np.asarray(rec[k].numpy()) for k in rec.keys()}


def _load_state(comp: TopKCompressor, state: RecordDict) -> None:
    if _STATE_CFG in state:
        comp.load_state_dict({
            "round": int(state[_STATE_CFG]["round"]),
            "residuals": _to_dict(state[_STATE_ARRAYS]) if _STATE_ARRAYS in state else {},
            "velocities": _to_dict(state[_STATE_VEL]) if _STATE_VEL in state else {},
        })


def _save_state(comp: TopKCompressor, state: RecordDict) -> None:
    state[_STATE_CFG] = ConfigRecord({"round": comp.round})
    state[_STATE_ARRAYS] = ArrayRecord({k: Array(v) for k, v in comp.residuals.items()})
    if comp.velocities:
        state[_STATE_VEL] = ArrayRecord({k: Array(v) for k, v in comp.velocities.items()})


def compression_mod(**compressor_args: Any) -> Callable[[Message, Context, Callable], Message]:
    """A Flower client mod compressing the trained model's delta (arguments: those of
    :class:`~taskcodec.fl.TopKCompressor`, e.g. ``ratio=0.01, values="int8"``).

    Only ``train`` messages whose content holds exactly one ArrayRecord are touched; every
    other message passes through unchanged. The reply's ArrayRecord is replaced by a
    ConfigRecord :data:`UPDATE_KEY` holding ``{"frame": bytes, "key": record name}``.
    """
    TopKCompressor(**compressor_args)  # validate the arguments now, not in the first round

    def mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type != "train" or len(msg.content.array_records) != 1:
            return call_next(msg, context)
        sent = _to_dict(next(iter(msg.content.array_records.values())))
        sent = {k: v.copy() for k, v in sent.items()}
        reply = call_next(msg, context)
        if reply.has_error() or len(reply.content.array_records) != 1:
            return reply
        key, trained_rec = next(iter(reply.content.array_records.items()))
        trained = _to_dict(trained_rec)
        if list(trained) != list(sent) or any(trained[k].shape != sent[k].shape for k in sent):
            return reply  # not a model update of the received model: leave it dense
        delta = {k: trained[k].astype(np.float32) - sent[k].astype(np.float32) for k in sent}
        comp = TopKCompressor(**compressor_args)
        _load_state(comp, context.state)
        frame = comp.compress(delta)
        _save_state(comp, context.state)
        del reply.content.array_records[key]
        reply.content[UPDATE_KEY] = ConfigRecord({"frame": frame, "key": key})
        return reply

    return mod


class CompressedStrategy(Strategy):
    """Wraps a Flower strategy so that it receives dense updates from compressing clients.

    Args:
        strategy: the strategy doing the aggregation (``FedAvg()`` when None).
        max_elements: per-frame limit on dense values (the frame decoder's caller limit).

    Attributes:
        uplink_bytes: per round, the bytes of the compressed frames received.
        dropped: per round, ``(node_id, reason)`` of replies whose update was dropped.
    """

    def __init__(self, strategy: Optional[Strategy] = None, *, max_elements: int = DEFAULT_MAX_ELEMENTS) -> None:
        self.strategy = strategy if strategy is not None else FedAvg()
        self.max_elements = int(max_elements)
        self._sent: Dict[int, Dict[str, np.ndarray]] = {}
        self.uplink_bytes: Dict[int, int] = {}
        self.dropped: Dict[int, List[Tuple[int, str]]] = {}

    def __getattr__(self, name: str) -> Any:  # the wrapped strategy's own attributes
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def summary(self) -> None:
        logger.info("CompressedStrategy (taskcodec sparse updates) around:")
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self._sent = {server_round: {k: v.copy() for k, v in _to_dict(arrays).items()}}
        return self.strategy.configure_train(server_round, arrays, config, grid)

    def _densify(self, server_round: int, msg: Message) -> Optional[str]:
        """Replaces a compressed update by the dense model; the reason when it cannot."""
        cfg = msg.content[UPDATE_KEY]
        base = self._sent.get(server_round)
        if base is None:
            return "no model was sent in this round"
        try:
            frame, key = cfg["frame"], cfg["key"]
            if not isinstance(frame, bytes) or not isinstance(key, str):
                return "the update record does not hold a frame and a key"
            # The frame may describe no more tensors or values than the model sent this round:
            # a hostile frame is refused before any dense buffer is allocated for it.
            delta = decompress(frame, max_tensors=min(len(base), DEFAULT_MAX_TENSORS) or 1,
                               max_elements=min(self.max_elements, sum(v.size for v in base.values())))
        except TaskcodecError as e:
            return f"{type(e).__name__}: {e}"
        except KeyError as e:
            return f"the update record lacks {e}"
        if not isinstance(delta, dict) or list(delta) != list(base):
            return "the update's tensors are not the model's"
        for k, v in base.items():
            if delta[k].shape != v.shape:
                return f"tensor {k!r} has shape {delta[k].shape}, the model's is {v.shape}"
        self.uplink_bytes[server_round] = self.uplink_bytes.get(server_round, 0) + len(frame)
        dense = ArrayRecord({k: Array((v + delta[k]).astype(v.dtype, copy=False)) for k, v in base.items()})
        del msg.content[UPDATE_KEY]
        msg.content[key] = dense
        return None

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        kept: List[Message] = []
        self.dropped.setdefault(server_round, [])
        for msg in replies:
            if not msg.has_error() and UPDATE_KEY in msg.content:
                reason = self._densify(server_round, msg)
                if reason is not None:
                    node = msg.metadata.src_node_id
                    logger.warning("round %d: dropping the update of node %s: %s", server_round, node, reason)
                    self.dropped[server_round].append((node, reason))
                    continue
            kept.append(msg)
        return self.strategy.aggregate_train(server_round, kept)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Optional[MetricRecord]:
        return self.strategy.aggregate_evaluate(server_round, replies)
