"""Sparse-update frames (docs/format.md section 21): the metadata block, reading, decompressing
and accumulating frames into dense updates.

The metadata is a JSON object ``{"v": 1, "kind", "names", "shapes", "dtypes"}`` plus, for
updates of torch tensors, ``"lib": "torch"`` (absent: numpy), so :func:`decompress` gives back
the kind of update and the dtypes that went into the compressor. Frames without the key (every
frame of earlier versions) decode to numpy, as before. Every reader checks the metadata
against its schema before decoding (:func:`_check_schema`: distinct string names, shapes of
at most :data:`MAX_RANK` non-negative ints that hold the records, numeric dtype names, no
nesting beyond the recursion limit) and refuses values that are not finite or do not fit
the recorded dtype; all of it as :class:`CorruptStreamError`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.errors import ArgumentTypeError, CorruptStreamError, TaskcodecError
from taskcodec.fl.coding import DEFAULT_MAX_ELEMENTS, DEFAULT_MAX_TENSORS
from taskcodec.fl.updates import Flat, Update

__all__ = ["write_frame", "read_update", "decompress", "decode_flat", "accumulate", "MAX_RANK"]

META_VERSION = 1
_KINDS = ("tensor", "dict", "arrayrecord")
_LIBS = ("numpy", "torch")
#: Most dimensions a tensor of a frame may have (numpy 1.x's own limit).
MAX_RANK = 32
_TORCH_FLOAT = re.compile(r"b?float[0-9]{1,2}(_[a-z0-9]{1,12})?")


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


def _dtype_ok(name: Any) -> bool:
    """A numeric dtype name as the compressor writes it: numpy's canonical name of a numeric
    type, or a torch-only floating type (``bfloat16``, ``float8_e4m3fn``)."""
    if not isinstance(name, str) or len(name) > 32:
        return False
    try:
        dt = np.dtype(name)
    except TypeError:
        return _TORCH_FLOAT.fullmatch(name) is not None
    return dt.kind in "fiub" and dt.names is None and dt.subdtype is None and str(dt) == name


def _check_schema(meta: Any, recs: List[Dict[str, Any]], max_elements: int) -> None:
    """The metadata's schema, checked before any dense buffer exists: names are distinct
    strings, shapes are lists of at most :data:`MAX_RANK` non-negative ints that hold the
    record's values, dtypes are numeric dtype names; one of each per record."""
    if not isinstance(meta, dict):
        raise CorruptStreamError("sparse-update meta block is not a JSON object")
    names, shapes, dtypes = meta.get("names"), meta.get("shapes"), meta.get("dtypes")
    if not (meta.get("v") == META_VERSION and meta.get("kind") in _KINDS
            and meta.get("lib", "numpy") in _LIBS):
        raise CorruptStreamError("sparse-update meta block has an unknown version, kind or library")
    if not all(isinstance(x, list) and len(x) == len(recs) for x in (names, shapes, dtypes)):
        raise CorruptStreamError("sparse-update meta block does not describe the frame's tensors")
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise CorruptStreamError("tensor names must be distinct strings")
    if meta["kind"] == "tensor" and len(names) != 1:
        raise CorruptStreamError("a frame of kind 'tensor' holds exactly one tensor")
    for name, shape, dtype, rec in zip(names, shapes, dtypes, recs):
        if not (isinstance(shape, list) and len(shape) <= MAX_RANK
                and all(type(d) is int and d >= 0 for d in shape)):
            raise CorruptStreamError(f"tensor {name!r}: shape {str(shape)[:80]} is not a list of at most "
                                     f"{MAX_RANK} non-negative ints")
        # With a zero dimension the others are bounded too (numpy refuses [2**70, 0]).
        if math.prod(shape) != rec["n"] or math.prod(d for d in shape if d) > max(rec["n"], max_elements):
            raise CorruptStreamError(f"tensor {name!r}: shape {shape} does not hold the record's "
                                     f"{rec['n']} values")
        if not _dtype_ok(dtype):
            raise CorruptStreamError(f"tensor {name!r}: {str(dtype)[:40]!r} is not a numeric dtype name")


def _meta(blob: Any, max_tensors: int, max_elements: int) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    raw, recs, _ = _core.sparse_read(_as_bytes(blob), int(max_tensors), int(max_elements))
    try:
        meta = json.loads(raw.decode())
    except RecursionError:  # metadata nested deeper than the interpreter's recursion limit
        raise CorruptStreamError("sparse-update meta block is nested too deep") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CorruptStreamError(f"sparse-update meta block is not valid: {e}") from None
    _check_schema(meta, recs, int(max_elements))
    return meta, recs


def _check_finite(meta: Dict[str, Any], flats: List[np.ndarray]) -> None:
    for name, flat in zip(meta["names"], flats):
        if not np.isfinite(flat).all():
            raise CorruptStreamError(f"tensor {name!r} holds non-finite values (infinity or NaN)")


def decode_flat(blob: Any, *, max_tensors: int = DEFAULT_MAX_TENSORS,
                max_elements: int = DEFAULT_MAX_ELEMENTS,
                check: Optional[Callable[[Dict[str, Any]], None]] = None,
                ) -> Tuple[Dict[str, Any], List[np.ndarray]]:
    """The frame's checked metadata and its tensors as flat float32 arrays (the coded values,
    before any cast to the recorded dtypes). ``check(meta)`` runs after the schema check and
    before anything is decoded (a caller's model-dependent checks). Non-finite values raise
    :class:`CorruptStreamError` (the compressor never writes them)."""
    meta, recs = _meta(blob, max_tensors, max_elements)
    if check is not None:
        check(meta)
    flats = [np.zeros(r["n"], np.float32) for r in recs]
    _core.sparse_accumulate(_as_bytes(blob), flats, 1.0, int(max_tensors), int(max_elements))
    _check_finite(meta, flats)
    return meta, flats


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
        if dt.kind in "iu":
            info = np.iinfo(dt)
            if a.size and (a.min() < info.min - 0.5 or a.max() > info.max + 0.5):
                raise CorruptStreamError(f"tensor values outside the range of {dtype}")
            a = np.clip(np.rint(a), info.min, info.max).astype(dt)  # int64's ends are not float32s
        elif dt.kind == "b":
            a = np.rint(a).astype(dt)
        elif dt != np.float32 and dt.kind == "f":
            with np.errstate(over="ignore"):
                a = a.astype(dt)
            if not np.isfinite(a).all():
                raise CorruptStreamError(f"tensor values outside the range of {dtype}")
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
    meta, flats = decode_flat(blob, max_tensors=max_tensors, max_elements=max_elements)
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
            for name, (_, values) in zip(meta["names"], _core.sparse_decode(_as_bytes(blob), int(max_tensors),
                                                                             int(max_elements))):
                with np.errstate(over="ignore"):
                    if not np.isfinite(values * np.float32(wi)).all():
                        raise CorruptStreamError(f"tensor {name!r} holds non-finite values (infinity or NaN)")
            _core.sparse_accumulate(_as_bytes(blob), flats, wi, int(max_tensors), int(max_elements))
            used.append(i)
        except TaskcodecError as e:
            errors.append(f"frame {i}: {type(e).__name__}: {e}")
    if meta0 is None:
        raise TaskcodecError("no update could be decoded: " + "; ".join(errors))
    return _restore(meta0, flats), used, errors
