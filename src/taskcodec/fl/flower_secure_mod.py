"""The client side of :mod:`taskcodec.fl.flower_secure`: the Flower mod that trains, then
replies with the compressed vector the server asks for (the shared support's values, packed
into SecAgg+'s field when the server asks, or a count sketch), and the node's copy of the
model that the downlink's step frames update."""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Tuple

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message
from flwr.common import FitIns, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_STATE as SECAGG_STATE
from flwr.compat.common import recorddict_compat as compat

from taskcodec.errors import DownlinkMismatch, TaskcodecError
from taskcodec.fl.flower import fingerprint
from taskcodec.fl.packing import FieldPacking
from taskcodec.fl.secure import CountSketch, SupportClient, read_support_frame

__all__ = ["secure_compression_mod", "PREFIX", "METHODS"]

#: Prefix of the FitIns config keys and the FitRes metrics this integration adds.
PREFIX = "taskcodec.secure."
METHODS = ("support", "sketch")
_STATE_MODEL = "taskcodec.secure.model"
_STATE_RESIDUAL = "taskcodec.secure.residual"
_STATE_CFG = "taskcodec.secure.state"

logger = logging.getLogger("taskcodec.fl.flower_secure")


def _flat(arrays: List[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.asarray(a, np.float32).reshape(-1) for a in arrays]) if arrays else \
        np.zeros(0, np.float32)


def _unflat(flat: np.ndarray, like: List[np.ndarray]) -> List[np.ndarray]:
    out, start = [], 0
    for a in like:
        out.append(flat[start:start + a.size].reshape(a.shape).astype(a.dtype, copy=False))
        start += a.size
    return out


def _dict(arrays: List[np.ndarray]) -> Dict[str, np.ndarray]:
    return {str(i): np.ascontiguousarray(a) for i, a in enumerate(arrays)}


def _crc(arrays: List[np.ndarray]) -> int:
    return fingerprint(_dict(arrays))


def _model_from(cfg: Dict[str, Any], fitins: FitIns, state: Any) -> Tuple[int, List[np.ndarray]]:
    """The dense model of a FitIns (sent dense, or the node's copy plus the step frame), its
    version; the node's copy is updated."""
    try:
        version, crc, n = int(cfg[PREFIX + "version"]), int(cfg[PREFIX + "crc"]), int(cfg[PREFIX + "n"])
    except (KeyError, TypeError, ValueError) as e:
        raise DownlinkMismatch(f"the secure-compression config is malformed: {e!r}") from None
    frame = cfg.get(PREFIX + "step")
    if n < 1 or (frame is not None and not isinstance(frame, bytes)):
        raise DownlinkMismatch("the secure-compression config holds no model size or a step that is not bytes")
    held = int(state[_STATE_CFG]["version"]) if _STATE_CFG in state else None
    if fitins.parameters.tensors:
        model = parameters_to_ndarrays(fitins.parameters)
    else:
        if held is None or held != version - 1 or _STATE_MODEL not in state:
            raise DownlinkMismatch(f"this node holds model version {held}, the server sent the step to "
                                   f"version {version}; it needs the dense model")
        rec = state[_STATE_MODEL]
        model = [rec[k].numpy().copy() for k in rec.keys()]
        if frame is not None:  # no frame: the model did not move
            (si, sv), _ = read_support_frame(frame, n)
            flat = _flat(model)
            flat[si] += sv
            model = _unflat(flat, model)
    if sum(a.size for a in model) != n or _crc(model) != crc:
        if _STATE_CFG in state:
            del state[_STATE_CFG]  # resynchronise: the server sends the dense model next time
        raise DownlinkMismatch(f"the model of version {version} does not match the server's fingerprint")
    state[_STATE_MODEL] = ArrayRecord({k: Array(v) for k, v in _dict(model).items()})
    state[_STATE_CFG] = ConfigRecord({"version": version})
    return version, model


def secure_compression_mod() -> Callable[[Message, Context, Callable], Message]:
    """A Flower client mod (legacy ``FitIns`` / ``FitRes`` messages) that replies with the
    compressed vector the server's
    :class:`~taskcodec.fl.flower_secure.SecureCompressedStrategy` asks for; put it after
    ``secaggplus_mod`` in ``mods``. Every setting comes from the server, in the FitIns config,
    and is checked before the client trains; a packing into SecAgg+'s field
    (:class:`~taskcodec.fl.packing.FieldPacking`) is checked against the settings this node's
    ``secaggplus_mod`` holds."""

    def mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
        if msg.metadata.message_type != "train" or "fitins.parameters" not in msg.content.array_records:
            return call_next(msg, context)
        fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
        cfg = dict(fitins.config)
        if cfg.get(PREFIX + "method") not in METHODS:
            return call_next(msg, context)
        version, model = _model_from(cfg, fitins, context.state)
        n = sum(a.size for a in model)
        support = decay = None
        packing = None
        if cfg[PREFIX + "method"] == "support":  # everything is checked before training
            (_, _), support = read_support_frame(cfg.get(PREFIX + "support"), n)
            try:
                decay = float(cfg[PREFIX + "decay"])
                SupportClient(1, decay=decay)
            except (KeyError, TypeError, ValueError, TaskcodecError) as e:
                raise DownlinkMismatch(f"the support config is malformed: {e!r}") from None
            if PREFIX + "pack" in cfg:
                try:
                    packing, pack_step = FieldPacking.from_config(
                        cfg[PREFIX + "pack"], context.state.config_records.get(SECAGG_STATE))
                except TaskcodecError as e:
                    raise DownlinkMismatch(str(e)) from None
        else:
            try:
                rows, cols, seed = (int(cfg[PREFIX + k]) for k in ("rows", "cols", "seed"))
                if rows * cols > 4 * n:  # a sketch never needs more cells than this; refuse absurd sizes
                    raise TaskcodecError(f"a sketch of {rows} x {cols} cells for a model of {n} values")
                sk = CountSketch(n, rows=rows, cols=cols, seed=seed)
            except (KeyError, TypeError, ValueError, TaskcodecError) as e:
                raise DownlinkMismatch(f"the sketch config is malformed: {e!r}") from None
        msg.content.array_records["fitins.parameters"] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters(model), keep_input=True)
        reply = call_next(msg, context)
        if reply.has_error() or "fitres.parameters" not in reply.content.array_records:
            return reply
        fitres = compat.recorddict_to_fitres(reply.content, keep_input=True)
        trained = parameters_to_ndarrays(fitres.parameters)
        if [a.shape for a in trained] != [a.shape for a in model]:
            raise TaskcodecError("the trained model's tensors differ from the model received")
        delta = _flat(trained) - _flat(model)
        if support is not None:
            client = SupportClient(n, decay=decay)
            if _STATE_RESIDUAL in context.state:
                held = context.state[_STATE_RESIDUAL]["r"].numpy()
                if held.size == n:
                    client.residual = held.astype(np.float32)
            vector = client.encode(delta, support)
            if packing is not None:  # what the rounding and clipping leave out stays with the client
                values = vector
                vector, sent = packing.encode(values, pack_step, fitres.num_examples)
                client.residual[support] += values - sent
            context.state[_STATE_RESIDUAL] = ArrayRecord({"r": Array(client.residual)})
        else:
            vector = sk.sketch(delta).reshape(-1)
        reply.content.array_records["fitres.parameters"] = compat.parameters_to_arrayrecord(
            ndarrays_to_parameters([vector]), keep_input=True)
        metrics = dict(fitres.metrics)
        metrics[PREFIX + "version"] = version
        reply.content.config_records["fitres.metrics"] = ConfigRecord(metrics)
        return reply

    return mod
