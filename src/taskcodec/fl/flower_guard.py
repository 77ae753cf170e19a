"""What the Flower strategy wrapper checks before a client's frame reaches the model: the
frame's metadata against the model (names, shapes, dtypes) before anything is decoded, the
decoded values (finite), the result in the model's dtypes (finite, in range), and the bound
on the norm of each round's updates (a multiple of the round's median update norm)."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Sequence

import numpy as np

from taskcodec.errors import ModelMismatch, TaskcodecError
from taskcodec.fl.coding import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_TENSORS
from taskcodec.fl.frames import decode_flat

__all__ = ["decode_delta", "apply_delta", "add_frame", "update_norm", "norm_bound", "scale_to",
           "check_factor", "DELTA_DTYPE"]

#: The dtype every update frame of :func:`~taskcodec.fl.flower.compression_mod` (and every
#: downlink step) records: deltas are computed and coded in float32.
DELTA_DTYPE = "float32"


def _model_check(model: Dict[str, np.ndarray]) -> Callable[[Dict[str, Any]], None]:
    def check(meta: Dict[str, Any]) -> None:
        if meta["kind"] not in ("dict", "arrayrecord") or meta["names"] != list(model):
            raise ModelMismatch("the frame's tensors are not the model's")
        for name, shape, dtype in zip(meta["names"], meta["shapes"], meta["dtypes"]):
            v = model[name]
            if tuple(shape) != v.shape:
                raise ModelMismatch(f"tensor {name!r} has shape {tuple(shape)}, the model's is {v.shape}")
            if dtype not in (DELTA_DTYPE, str(v.dtype)):
                raise ModelMismatch(f"tensor {name!r} has dtype {dtype}, the model's is {v.dtype} "
                                    f"(an update is {DELTA_DTYPE} or the model's dtype)")

    return check


def decode_delta(model: Dict[str, np.ndarray], frame: bytes,
                 max_elements: int = DEFAULT_MAX_ELEMENTS) -> Dict[str, np.ndarray]:
    """The frame's update of ``model`` as float32 arrays of the model's shapes.

    The frame may describe no more tensors or values than the model has, so a hostile frame
    is refused before any dense buffer is allocated for it (the frame's own errors); its
    metadata must name the model's tensors, shapes and dtypes (:class:`ModelMismatch`) before
    anything is decoded; its values must be finite (:class:`~taskcodec.CorruptStreamError`).
    """
    meta, flats = decode_flat(frame, max_tensors=min(len(model), DEFAULT_MAX_TENSORS) or 1,
                              max_elements=max(1, min(max_elements, sum(v.size for v in model.values()))),
                              check=_model_check(model))
    return {k: f.reshape(model[k].shape) for k, f in zip(meta["names"], flats)}


def apply_delta(model: Dict[str, np.ndarray], delta: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """model + delta in the model's dtypes; :class:`ModelMismatch` when a result would not be
    finite or not fit an integer tensor's type (it would wrap)."""
    out = {}
    for k, v in model.items():
        with np.errstate(over="ignore", invalid="ignore"):
            s = v + delta[k]
            if v.dtype.kind in "iu":
                info = np.iinfo(v.dtype)
                if s.size and not (info.min <= s.min() and s.max() <= info.max):
                    raise ModelMismatch(f"the update takes tensor {k!r} outside the range of {v.dtype}")
            r = s.astype(v.dtype, copy=False)
        if v.dtype.kind == "f" and not np.isfinite(r).all() and np.isfinite(v).all():
            raise ModelMismatch(f"the update makes tensor {k!r} non-finite in {v.dtype}")
        out[k] = r
    return out


def add_frame(model: Dict[str, np.ndarray], frame: bytes,
              max_elements: int = DEFAULT_MAX_ELEMENTS) -> Dict[str, np.ndarray]:
    """model + the decoded frame, in the model's dtypes: the same arithmetic for the clients'
    updates on the server and for the server's steps on the server and the nodes."""
    return apply_delta(model, decode_delta(model, frame, max_elements))


def update_norm(delta: Dict[str, np.ndarray]) -> float:
    """The L2 norm of an update over all its tensors (summed in float64: no overflow)."""
    return math.sqrt(sum(float(np.dot(d.ravel().astype(np.float64), d.ravel().astype(np.float64)))
                         for d in delta.values()))


def norm_bound(norms: Sequence[float], factor: Optional[float]) -> Optional[float]:
    """``factor`` times the round's lower median update norm (None: no bound, or no update).

    The lower median (the smaller middle value of an even count) keeps one absurd update of
    two from setting the bound itself."""
    if factor is None or not norms:
        return None
    ordered = sorted(norms)
    return float(factor) * ordered[(len(ordered) - 1) // 2]


def scale_to(delta: Dict[str, np.ndarray], norm: float, bound: float) -> Dict[str, np.ndarray]:
    """The update scaled down to norm ``bound`` (unchanged when it is within)."""
    if norm <= bound:
        return delta
    s = bound / norm
    return {k: (d.astype(np.float64) * s).astype(np.float32) for k, d in delta.items()}


def check_factor(factor: Optional[float]) -> Optional[float]:
    """``norm_bound_factor`` checked: None, or a finite number above 0."""
    if factor is None:
        return None
    try:
        f = float(factor)
    except (TypeError, ValueError):
        raise TaskcodecError(f"norm_bound_factor must be a number or None, got {factor!r}") from None
    if not (math.isfinite(f) and f > 0.0):
        raise TaskcodecError(f"norm_bound_factor must be finite and above 0 (or None), got {factor!r}")
    return f

