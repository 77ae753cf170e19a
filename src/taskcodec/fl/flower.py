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
reason; the round goes on with the others. Each round's updates are bounded in norm (by default
ten times the round's median update norm; larger ones are scaled down to the bound).

Downlink (optional, ``CompressedStrategy(..., downlink={"ratio": 0.1, "values": "int8"})``):
the server also compresses what it broadcasts. It keeps the clients' copy of the model (the
*replica*, versioned) beside its own; each round it compresses the change of its model since
the last round with its own error-feedback :class:`~taskcodec.fl.TopKCompressor`, and sends
each node the frames that take the version it is known to hold to the current one (one frame
for a node that took part in the last round; a chain for one that was not sampled since, as
long as the chain is smaller than the model). A node that failed, is new, or is too far
behind gets the dense replica instead. The mod keeps the replica in the node's
``context.state``, applies the frames, checks the result against the server's fingerprint
(CRC-32 of the replica) and trains from it; a node whose copy does not match fails that
round with a clear error and is sent the dense replica in the next. Clients train from the
replica; the server's model is replica + its residual, and its updates are the clients'
deltas added to that model. Evaluation messages stay dense.
"""

from __future__ import annotations

import logging
import zlib
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Strategy

from taskcodec.errors import DownlinkMismatch, ModelMismatch, TaskcodecError
from taskcodec.fl.coding import DEFAULT_MAX_ELEMENTS
from taskcodec.fl.compressor import TopKCompressor
from taskcodec.fl.flower_guard import add_frame as _add_frame
from taskcodec.fl.flower_guard import (
    apply_delta,
    check_factor,
    decode_delta,
    norm_bound,
    scale_to,
    update_norm,
)

__all__ = ["compression_mod", "CompressedStrategy", "UPDATE_KEY", "DOWNLINK_KEY", "ModelMismatch",
           "DownlinkMismatch", "fingerprint"]

#: Name of the ConfigRecord that carries a compressed update in a reply.
UPDATE_KEY = "taskcodec.fl.update"
#: Name of the ConfigRecord that carries the model's version (and compressed steps) in a
#: train message of a server with downlink compression.
DOWNLINK_KEY = "taskcodec.fl.downlink"
_STATE_REPLICA = "taskcodec.fl.replica"
_STATE_REPLICA_CFG = "taskcodec.fl.replica_version"
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


def fingerprint(arrays: Dict[str, np.ndarray]) -> int:
    """CRC-32 over the names, dtypes, shapes and bytes of a model's arrays, in order."""
    crc = 0
    for k, v in arrays.items():
        v = np.ascontiguousarray(v)
        crc = zlib.crc32(f"{k}:{v.dtype.str}:{v.shape};".encode(), crc)
        crc = zlib.crc32(v.view(np.uint8).reshape(-1), crc)
    return crc


def _same_layout(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> bool:
    return list(a) == list(b) and all(a[k].shape == b[k].shape and a[k].dtype == b[k].dtype for k in a)


def _receive_model(msg: Message, context: Context) -> Tuple[int, Dict[str, np.ndarray]]:
    """Puts the dense model of a downlink message into its content (the held replica plus
    the steps, or the dense replica sent) and stores it as this node's replica; its version
    and the model."""
    cfg = msg.content[DOWNLINK_KEY]
    try:
        key, version, crc = str(cfg["key"]), int(cfg["version"]), int(cfg["crc"])
        steps, base = (cfg["steps"], int(cfg["base"])) if "steps" in cfg else (None, None)
    except (KeyError, TypeError, ValueError) as e:
        raise DownlinkMismatch(f"the downlink record is malformed: {e!r}") from None
    state = context.state
    if steps is not None:
        held_version = int(state[_STATE_REPLICA_CFG]["version"]) if _STATE_REPLICA_CFG in state else None
        if held_version is None or _STATE_REPLICA not in state or held_version != base:
            raise DownlinkMismatch(f"this node holds model version {held_version}, the server sent steps "
                                   f"from version {base}; it needs the dense model")
        if not isinstance(steps, list) or not steps or base + len(steps) != version:
            raise DownlinkMismatch(f"the downlink steps do not lead from version {base} to {version}")
        model = _to_dict(state[_STATE_REPLICA])
        for frame in steps:
            if not isinstance(frame, bytes):
                raise DownlinkMismatch("a downlink step is not bytes")
            model = _add_frame(model, frame)
    else:
        if key not in msg.content.array_records:
            raise DownlinkMismatch(f"the message holds no dense model {key!r} and no step")
        model = _to_dict(msg.content[key])
    if fingerprint(model) != crc:
        if _STATE_REPLICA_CFG in state:  # resynchronise: the server sends the dense model next
            del state[_STATE_REPLICA_CFG]
        raise DownlinkMismatch(f"the model of version {version} does not match the server's fingerprint")
    state[_STATE_REPLICA] = ArrayRecord({k: Array(v) for k, v in model.items()})
    state[_STATE_REPLICA_CFG] = ConfigRecord({"version": version})
    del msg.content[DOWNLINK_KEY]
    msg.content[key] = ArrayRecord({k: Array(v) for k, v in model.items()})  # Array copies
    return version, model


def compression_mod(**compressor_args: Any) -> Callable[[Message, Context, Callable], Message]:
    """A Flower client mod compressing the trained model's delta (arguments: those of
    :class:`~taskcodec.fl.TopKCompressor`, e.g. ``ratio=0.01, values="int8"``).

    Only ``train`` messages whose content holds exactly one ArrayRecord (or a
    :data:`DOWNLINK_KEY` record, from a server with downlink compression) are touched; every
    other message passes through unchanged. The reply's ArrayRecord is replaced by a
    ConfigRecord :data:`UPDATE_KEY` holding ``{"frame": bytes, "key": record name}`` (and
    ``"version"``, the model version trained from, under downlink compression).
    """
    TopKCompressor(**compressor_args)  # validate the arguments now, not in the first round

    def mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type != "train":
            return call_next(msg, context)
        version, sent = _receive_model(msg, context) if DOWNLINK_KEY in msg.content else (None, None)
        if len(msg.content.array_records) != 1:
            return call_next(msg, context)
        if sent is None:
            sent = {k: v.copy() for k, v in _to_dict(next(iter(msg.content.array_records.values()))).items()}
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
        record: Dict[str, Any] = {"frame": frame, "key": key}
        if version is not None:
            record["version"] = version
        reply.content[UPDATE_KEY] = ConfigRecord(record)
        return reply

    return mod


class CompressedStrategy(Strategy):
    """Wraps a Flower strategy so that it receives dense updates from compressing clients.

    Args:
        strategy: the strategy doing the aggregation (``FedAvg()`` when None).
        max_elements: per-frame limit on dense values (the frame decoder's caller limit).
        downlink: :class:`~taskcodec.fl.TopKCompressor` arguments (e.g.
            ``{"ratio": 0.1, "values": "int8"}``) to compress the model sent in train
            messages too (see the module's text); None sends it dense.
        norm_bound_factor: each round, a compressed update whose L2 norm exceeds this many
            times the round's median update norm (the lower median) is scaled down to that
            bound before the wrapped strategy sees it; None disables the bound.

    Attributes:
        uplink_bytes: per round, the bytes of the compressed frames received.
        downlink_bytes: per round, the model bytes of the train messages sent (frames or
            dense arrays); kept under downlink compression only.
        downlink_frames: per round, how many train messages carried frames (the others
            carried the dense model).
        dropped: per round, ``(node_id, reason)`` of replies whose update was dropped.
        clipped: per round, ``(node_id, norm, bound)`` of updates scaled down to the bound.
        norm_bounds: per round, the bound applied (absent: no bound that round).
    """

    def __init__(self, strategy: Optional[Strategy] = None, *, max_elements: int = DEFAULT_MAX_ELEMENTS,
                 downlink: Optional[Dict[str, Any]] = None,
                 norm_bound_factor: Optional[float] = 10.0) -> None:
        self.strategy = strategy if strategy is not None else FedAvg()
        self.max_elements = int(max_elements)
        self.norm_bound_factor = check_factor(norm_bound_factor)
        self.clipped: Dict[int, List[Tuple[int, float, float]]] = {}
        self.norm_bounds: Dict[int, float] = {}
        self._sent_round: Optional[int] = None  # the round of the last train messages and
        self._sent_model: Dict[str, np.ndarray] = {}  # the server's model then
        self.uplink_bytes: Dict[int, int] = {}
        self.dropped: Dict[int, List[Tuple[int, str]]] = {}
        self._downlink_args = dict(downlink) if downlink is not None else None
        self._down = TopKCompressor(**self._downlink_args) if self._downlink_args is not None else None
        self._replica: Optional[Dict[str, np.ndarray]] = None
        self._version = 0
        self._node_version: Dict[int, int] = {}
        self._steps: Dict[int, bytes] = {}  # version v -> the frame from v - 1 to v
        self.downlink_bytes: Dict[int, int] = {}
        self.downlink_frames: Dict[int, int] = {}

    def __getattr__(self, name: str) -> Any:  # the wrapped strategy's own attributes
        if name == "strategy":
            raise AttributeError(name)
        return getattr(self.strategy, name)

    def summary(self) -> None:
        logger.info("CompressedStrategy (taskcodec sparse updates) around:")
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        model = {k: v.copy() for k, v in _to_dict(arrays).items()}
        previous, self._sent_round, self._sent_model = self._sent_model, server_round, model
        if self._down is None:
            return self.strategy.configure_train(server_round, arrays, config, grid)
        frame = None
        if self._replica is None or not _same_layout(previous, model):
            self._replica = {k: v.copy() for k, v in model.items()}
            self._down = TopKCompressor(**self._downlink_args)  # a new model: no residual
            self._node_version.clear()
            self._steps.clear()
        else:
            # What the model moved since the last broadcast; the compressor's residual keeps
            # what earlier frames withheld, so replica + residual == model.
            step = {k: model[k].astype(np.float32) - previous[k].astype(np.float32) for k in model}
            frame = self._down.compress(step)
            self._replica = _add_frame(self._replica, frame)
        self._version += 1
        dense_bytes = sum(v.nbytes for v in self._replica.values())
        if frame is not None:
            self._steps[self._version] = frame
            # Keep the newest frames while their sum is below the model's size: a longer chain
            # is never sent (the dense model is smaller).
            total = 0
            for v in sorted(self._steps, reverse=True):
                total += len(self._steps[v])
                if total >= dense_bytes:
                    del self._steps[v]
        crc = fingerprint(self._replica)
        replica = ArrayRecord({k: Array(v) for k, v in self._replica.items()})
        messages = self.strategy.configure_train(server_round, replica, config, grid)
        self.downlink_bytes[server_round] = 0
        self.downlink_frames[server_round] = 0
        return [self._downlink_message(server_round, m, crc, dense_bytes) for m in messages]

    def _chain(self, node: int, dense_bytes: int) -> Optional[List[bytes]]:
        """The frames from the version ``node`` holds to the current one; None when the node's
        version is unknown or the chain would not be smaller than the dense model."""
        held = self._node_version.get(node)
        if held is None or held >= self._version:
            return None
        chain = [self._steps.get(v) for v in range(held + 1, self._version + 1)]
        if any(f is None for f in chain) or sum(len(f) for f in chain) >= dense_bytes:
            return None
        return chain

    def _downlink_message(self, server_round: int, msg: Message, crc: int, dense_bytes: int) -> Message:
        """A copy of the wrapped strategy's train message (they share one content) carrying
        the frames from the version the node holds, else the dense replica."""
        records = list(msg.content.array_records)
        if len(records) != 1:
            return msg
        key = records[0]
        node = msg.metadata.dst_node_id
        content = RecordDict({k: v for k, v in msg.content.items() if k != key})
        down: Dict[str, Any] = {"key": key, "version": self._version, "crc": crc}
        chain = self._chain(node, dense_bytes)
        if chain is not None:
            down.update(steps=chain, base=self._version - len(chain))
            self.downlink_bytes[server_round] += sum(len(f) for f in chain)
            self.downlink_frames[server_round] += 1
        else:
            content[key] = msg.content[key]
            self.downlink_bytes[server_round] += dense_bytes
        content[DOWNLINK_KEY] = ConfigRecord(down)
        return Message(content=content, dst_node_id=node, message_type=msg.metadata.message_type,
                       ttl=msg.metadata.ttl, group_id=msg.metadata.group_id)

    def _decode(self, server_round: int, msg: Message) -> Tuple[Optional[str], Any]:
        """The reason a compressed update cannot be used, or None and ``(key, delta)``."""
        cfg = msg.content[UPDATE_KEY]
        if server_round != self._sent_round:
            return "no model was sent in this round", None
        try:
            frame, key = cfg["frame"], cfg["key"]
            if not isinstance(frame, bytes) or not isinstance(key, str):
                return "the update record does not hold a frame and a key", None
            delta = decode_delta(self._sent_model, frame, self.max_elements)
        except TaskcodecError as e:
            return f"{type(e).__name__}: {e}", None
        except KeyError as e:
            return f"the update record lacks {e}", None
        self.uplink_bytes[server_round] = self.uplink_bytes.get(server_round, 0) + len(frame)
        return None, (key, delta)

    def _densify(self, server_round: int, msg: Message, key: str,
                 delta: Dict[str, np.ndarray]) -> Optional[str]:
        """Replaces a compressed update by the dense model; the reason when it cannot."""
        try:
            trained = apply_delta(self._sent_model, delta)
        except TaskcodecError as e:
            return f"{type(e).__name__}: {e}"
        if self._down is not None and msg.content[UPDATE_KEY].get("version") == self._version:
            self._node_version[msg.metadata.src_node_id] = self._version
        del msg.content[UPDATE_KEY]
        msg.content[key] = ArrayRecord({k: Array(v) for k, v in trained.items()})
        return None

    def _drop(self, server_round: int, msg: Message, reason: str) -> None:
        node = msg.metadata.src_node_id
        logger.warning("round %d: dropping the update of node %s: %s", server_round, node, reason)
        self.dropped[server_round].append((node, reason))

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> Tuple[Optional[ArrayRecord], Optional[MetricRecord]]:
        kept: List[Message] = []
        decoded: List[Tuple[Message, str, Dict[str, np.ndarray], float]] = []
        self.dropped.setdefault(server_round, [])
        self.clipped.setdefault(server_round, [])
        for msg in replies:
            # A node that replies is sent steps later only if its reply says it holds the
            # current version (set in _densify); any other reply resynchronises it. Nodes not
            # sampled keep the version they last reported.
            self._node_version.pop(msg.metadata.src_node_id, None)
            if not msg.has_error() and UPDATE_KEY in msg.content:
                reason, got = self._decode(server_round, msg)
                if reason is not None:
                    self._drop(server_round, msg, reason)
                    continue
                decoded.append((msg, got[0], got[1], update_norm(got[1])))
            kept.append(msg)
        bound = norm_bound([n for *_, n in decoded], self.norm_bound_factor)
        if bound is not None:
            self.norm_bounds[server_round] = bound
        dropped = set()
        for msg, key, delta, norm in decoded:
            if bound is not None and norm > bound:
                node = msg.metadata.src_node_id
                logger.warning("round %d: scaling the update of node %s from norm %.4g to the bound %.4g",
                               server_round, node, norm, bound)
                self.clipped[server_round].append((node, norm, bound))
                delta = scale_to(delta, norm, bound)
            reason = self._densify(server_round, msg, key, delta)
            if reason is not None:
                self._drop(server_round, msg, reason)
                dropped.add(id(msg))
        return self.strategy.aggregate_train(server_round, [m for m in kept if id(m) not in dropped])

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> Optional[MetricRecord]:
        return self.strategy.aggregate_evaluate(server_round, replies)
