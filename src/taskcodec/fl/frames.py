"""Sparse-update frames (docs/format.md section 21): the metadata block, reading, decompressing
and accumulating frames into dense updates.

The metadata is a JSON object ``{"v": 1, "kind", "names", "shapes", "dtypes"}`` plus, for
updates of torch tensors, ``"lib": "torch"`` (absent: numpy), so :func:`decompress` gives back
the kind of update and the dtypes that went into the compressor. Frames without the key (every
frame of earlier versions) decode to numpy, as before.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.errors import ArgumentTypeError, CorruptStreamError, TaskcodecError
from taskcodec.fl.coding import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_TENSORS
from taskcodec.fl.updates import Flat, Update

__all__ = ["write_frame", "read_update", "decompress", "accumulate"]

META_VERSION = 1
_KINDS = ("tensor", "dict", "arrayrecord")
_LIBS = ("numpy", "torch")


def write_frame(records: List[bytes], flat: Flat, checksum: bool) -> bytes:
    """The frame around one round's records; its metadata restores names, shapes, dtypes and
    the library of the update."""
    meta: Dict[str, Any] = {"v": META_VERSION, "kind": flat.kind, "names": flat.names,
                            "shapes": flat.shapes, "dtypes": flat.dtypes}
    if flat.lib != "numpy":
        meta["lib"] = flat.lib
    return _core.sparse_write_frame(records, json.dumps(meta, separators=(",", ":")).encode(), bool(checksum))


def _as_bytes(blob: Any) -> Any:
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return blob
    if isinstance(blob, np.ndarray) and blob.dtype == np.uint8:
        return blob
    raise ArgumentTypeError(f"a frame must be bytes, got {type(blob).__name__}")


def _meta(blob: Any, max_tensors: int, max_elements: int) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    raw, recs, _ = _core.sparse_read(_as_bytes(blob), int(max_tensors), int(max_elements))
    try:
        meta = json.loads(raw.decode())
        names, shapes, dtypes = meta["names"], meta["shapes"], meta["dtypes"]
        ok = (
            meta.get("v") == META_VERSION
            and meta.get("kind") in _KINDS
            and meta.get("lib", "numpy") in _LIBS
            and len(names) == len(shapes) == len(dtypes) == len(recs)
        )
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise CorruptStreamError(f"sparse-update meta block is not valid: {e}") from None
    if not ok:
        raise CorruptStreamError("sparse-update meta block does not describe the frame's tensors")
    for shape, rec in zip(shapes, recs):
        if not all(isinstance(d, int) and d >= 0 for d in shape) or math.prod(shape) != rec["n"]:
            raise CorruptStreamError(f"tensor shape {shape} does not hold the record's {rec['n']} values")
    return meta, recs


def read_update(blob: bytes, *, max_tensors: int = DEFAULT_MAX_TENSORS,
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> List[Dict[str, Any]]:
    """Per tensor: name, shape, dtype, n, k, value and index coding, and their byte counts."""
    meta, recs = _meta(blob, max_tensors, max_elements)
    out = []
    for name, shape, dtype, rec in zip(meta["names"], meta["shapes"], meta["dtypes"], recs):
        out.append(dict(rec, name=name, shape=tuple(shape), dtype=dtype))
    return out


def _restore(meta: Dict[str, Any], flats: List[np.ndarray]) -> Update:
    torch_lib = meta.get("lib", "numpy") == "torch"
    arrays: List[Any] = []
    for shape, dtype, flat in zip(meta["shapes"], meta["dtypes"], flats):
        a = flat.reshape(shape)
        try:
            dt = np.dtype(dtype)
        except TypeError:  # a torch-only type (bfloat16): float32 here, cast below
            dt = np.dtype(np.float32)
        if dt.kind in "iub":
            a = np.rint(a).astype(dt)
        elif dt != np.float32 and dt.kind == "f":
            a = a.astype(dt)
        arrays.append(_device.from_numpy(a, dtype) if torch_lib else a)
    kind = meta["kind"]
    if kind == "tensor":
        return arrays[0]
    if kind == "arrayrecord":
        from flwr.app import Array, ArrayRecord

        return ArrayRecord({n: Array(a) for n, a in zip(meta["names"], arrays)})
    return dict(zip(meta["names"], arrays))


def decompress(blob: Any, *, max_tensors: int = DEFAULT_MAX_TENSORS,
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> Update:
    """Dense update of a sparse-update frame, of the kind that was compressed: a tensor, a
    dict of them or a Flower ArrayRecord; numpy arrays, or CPU torch tensors where torch
    tensors were compressed; each in the dtype it had. Needs no compressor state. Corrupt or
    truncated frames raise :class:`CorruptStreamError` (or another core error)."""
    meta, recs = _meta(blob, max_tensors, max_elements)
    flats = [np.zeros(r["n"], np.float32) for r in recs]
    _core.sparse_accumulate(_as_bytes(blob), flats, 1.0, int(max_tensors), int(max_elements))
    return _restore(meta, flats)


def accumulate(blobs: Iterable[Any], weights: Optional[Sequence[float]] = None, *,
               max_tensors: int = DEFAULT_MAX_TENSORS,
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> Tuple[Update, List[int], List[str]]:
    """Weighted sum of sparse updates into one dense update (decode-and-accumulate).

    Returns ``(dense, used, errors)``: ``used`` lists the positions of the frames summed;
    a frame that does not decode, or whose tensors differ from the first good frame's, is
    skipped and its reason appended to ``errors`` (as ``"frame i: reason"``). Raises
    :class:`TaskcodecError` when no frame decodes. The sum has the first good frame's kind.
    """
    blobs = list(blobs)
    w = [1.0] * len(blobs) if weights is None else [float(x) for x in weights]
    if len(w) != len(blobs):
        raise TaskcodecError(f"{len(blobs)} frames but {len(w)} weights")
    meta0: Optional[Dict[str, Any]] = None
    flats: List[np.ndarray] = []
    used: List[int] = []
    errors: List[str] = []
    for i, (blob, wi) in enumerate(zip(blobs, w)):
        try:
            meta, recs = _meta(blob, max_tensors, max_elements)
            if meta0 is None:
                meta0 = meta
                flats = [np.zeros(r["n"], np.float32) for r in recs]
            elif (meta["names"], meta["shapes"]) != (meta0["names"], meta0["shapes"]):
                raise TaskcodecError("its tensors differ from those of the other updates")
            _core.sparse_accumulate(_as_bytes(blob), flats, wi, int(max_tensors), int(max_elements))
            used.append(i)
        except TaskcodecError as e:
            errors.append(f"frame {i}: {type(e).__name__}: {e}")
    if meta0 is None:
        raise TaskcodecError("no update could be decoded: " + "; ".join(errors))
    return _restore(meta0, flats), used, errors
