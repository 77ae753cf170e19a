"""TopKCompressor: model updates <-> sparse-update frames (numpy; torch and Flower by duck typing)."""

from __future__ import annotations

import json
import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from taskcodec import _core
from taskcodec.errors import CorruptStreamError, TaskcodecError

__all__ = ["TopKCompressor", "VALUE_CODINGS", "accumulate", "read_update", "topk_count", "topk_select"]

#: Value codings by name -> core code. Errors are per value, relative to the block scale:
#: float32 exact; float16 relative 2^-11; int8 half a step of max|v|/127 per block;
#: sign: sign kept, magnitude = the block's mean |v|; qsgd: one step of max|v|/levels, unbiased.
VALUE_CODINGS: Dict[str, int] = {"float32": 0, "float16": 1, "int8": 2, "sign": 3, "qsgd": 4}

_META_VERSION = 1
DEFAULT_MAX_TENSORS: int = int(_core.SPARSE_DEFAULT_MAX_TENSORS)
DEFAULT_MAX_ELEMENTS: int = int(_core.SPARSE_DEFAULT_MAX_ELEMENTS)

Update = Union[np.ndarray, Mapping[str, Any], Any]


def topk_count(n: int, ratio: float) -> int:
    """k = max(1, ceil(ratio * n)) for n > 0 (at most n); 0 for n == 0."""
    return int(_core.topk_count(int(n), float(ratio)))


def topk_select(x: Any, k: int, threads: int = 0) -> np.ndarray:
    """Indices (uint32, ascending) of the k elements of x with the largest |x|; ties go to the
    lower index. NaN or infinity in x raises :class:`TaskcodecError`."""
    a = np.ascontiguousarray(_to_numpy(x), dtype=np.float32).reshape(-1)
    return _core.topk_select(a, int(k), int(threads))


def _is_torch(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "device")


def _to_numpy(x: Any) -> np.ndarray:
    if _is_torch(x):
        if getattr(x.device, "type", "cpu") != "cpu":
            x = x.cpu()
        x = x.detach()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()
        return x.numpy()
    if hasattr(x, "numpy") and callable(x.numpy) and not isinstance(x, np.ndarray):  # flwr Array
        return np.asarray(x.numpy())
    return np.asarray(x)


def _is_array_record(x: Any) -> bool:
    return type(x).__name__ == "ArrayRecord" and type(x).__module__.startswith("flwr")


def _flatten(update: Update) -> Tuple[str, List[str], List[np.ndarray]]:
    """(kind, names, arrays) of a tensor, a mapping of named tensors or a Flower ArrayRecord."""
    if _is_array_record(update):
        names = list(update.keys())
        return "arrayrecord", names, [_to_numpy(update[n]) for n in names]
    if isinstance(update, Mapping):
        names = [str(n) for n in update.keys()]
        return "dict", names, [_to_numpy(v) for v in update.values()]
    if isinstance(update, np.ndarray) or _is_torch(update):
        return "tensor", [""], [_to_numpy(update)]
    raise TaskcodecError(
        f"update must be an array, a torch tensor, a mapping of them or a Flower ArrayRecord; "
        f"got {type(update).__name__}"
    )


def _flatten_raw(update: Update) -> Tuple[str, List[str], List[Any]]:
    """(kind, names, tensors) as given (no copies, no host transfer)."""
    if _is_array_record(update):
        names = list(update.keys())
        return "arrayrecord", names, [update[n] for n in names]
    if isinstance(update, Mapping):
        return "dict", [str(n) for n in update.keys()], list(update.values())
    return "tensor", [""], [update]


def _device_update(update: Update) -> bool:
    """True when the update's tensors live on a CUDA device and this build can code them there."""
    from taskcodec.codec import cuda as tcc

    if _is_array_record(update) or not (isinstance(update, Mapping) or _is_torch(update)
                                        or tcc.is_device_array(update)):
        return False
    tensors = list(update.values()) if isinstance(update, Mapping) else [update]
    on_device = [tcc.is_device_array(t) for t in tensors]
    return bool(tensors) and all(on_device) and tcc.available()


def _host_array(x: Any) -> Any:
    """A state array in host memory (residuals may live on a device after GPU rounds)."""
    if x is None or isinstance(x, np.ndarray):
        return x
    return x.detach().cpu().numpy()


def _device_array(x: Any, like: Any, torch: Any) -> Any:
    """A float32 state tensor on like's device with like's size (zeros when absent or resized)."""
    if x is None or (x.size if isinstance(x, np.ndarray) else x.numel()) != like.numel():
        return torch.zeros(like.numel(), dtype=torch.float32, device=like.device)
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x, np.float32).reshape(-1)).to(like.device)
    return x.to(device=like.device, dtype=torch.float32).reshape(-1).contiguous()


def _numpy_dtype_name(dtype: Any) -> str:
    name = str(dtype).replace("torch.", "")
    return "float32" if name == "bfloat16" else name  # as the CPU path, which casts bfloat16 up


def _f32_flat(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype.kind not in "fiub":
        raise TaskcodecError(f"tensor {name!r} has dtype {a.dtype}; only numeric tensors are compressed")
    return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)


class TopKCompressor:
    """Sparsifies model updates to their top ``ratio`` fraction by magnitude, with error feedback.

    Args:
        ratio: fraction of each tensor's elements sent; ``k = max(1, ceil(ratio * n))``.
        values: value coding, one of :data:`VALUE_CODINGS` (``"int8"`` by default).
        error_feedback: keep what was not sent (and the coding error) and add it to the next
            update, so nothing is lost over rounds (Seide et al.; Lin et al., DGC).
        block_size: values per scale block of ``int8``, ``sign`` and ``qsgd`` (a power of two).
        levels: QSGD levels ``s`` (1..127).
        seed: seed of QSGD's stochastic rounding (together with the round and tensor number).
        momentum: DGC momentum correction: the compressor keeps a velocity
            ``u = momentum * u + update`` and accumulates ``u`` instead of the raw update; the sent
            coordinates of ``u`` are zeroed (momentum factor masking). ``None`` disables it.
        warmup_ratios: DGC's warm-up: the ratios of the first rounds (e.g. ``(0.25, 0.0625,
            0.015625, 0.004)``), one per call of :meth:`compress`; ``ratio`` afterwards.
        clip_norm: local gradient clipping: an update whose global L2 norm exceeds it is scaled
            down to it before accumulation.
        checksum: write the CRC32C trailer (on by default).
        threads: core threads for large tensors (0 = automatic).

    The per-client state (residuals, velocities, round counter) is :meth:`state_dict` /
    :meth:`load_state_dict`, plain numpy arrays that ``np.savez`` can store (:meth:`save`).
    """

    def __init__(
        self,
        ratio: float = 0.01,
        values: str = "int8",
        error_feedback: bool = True,
        *,
        block_size: int = 256,
        levels: int = 16,
        seed: int = 0,
        momentum: Optional[float] = None,
        warmup_ratios: Sequence[float] = (),
        clip_norm: Optional[float] = None,
        checksum: bool = True,
        threads: int = 0,
    ) -> None:
        self._check_ratio(ratio)
        if values not in VALUE_CODINGS:
            raise TaskcodecError(f"values must be one of {sorted(VALUE_CODINGS)}, got {values!r}")
        if block_size < 1 or block_size & (block_size - 1) or block_size > 2**20:
            raise TaskcodecError(f"block_size must be a power of two up to 2^20, got {block_size}")
        if not 1 <= levels <= 127:
            raise TaskcodecError(f"levels must be in 1..127, got {levels}")
        if momentum is not None and not 0.0 <= momentum < 1.0:
            raise TaskcodecError(f"momentum must be in [0, 1), got {momentum}")
        if momentum is not None and not error_feedback:
            raise TaskcodecError("momentum correction needs error_feedback=True")
        for r in warmup_ratios:
            self._check_ratio(r)
        if clip_norm is not None and not clip_norm > 0:
            raise TaskcodecError(f"clip_norm must be > 0, got {clip_norm}")
        self.ratio = float(ratio)
        self.values = values
        self.error_feedback = bool(error_feedback)
        self.block_size = int(block_size)
        self.levels = int(levels)
        self.seed = int(seed) & (2**64 - 1)
        self.momentum = momentum
        self.warmup_ratios = tuple(float(r) for r in warmup_ratios)
        self.clip_norm = clip_norm
        self.checksum = bool(checksum)
        self.threads = int(threads)
        self.residuals: Dict[str, np.ndarray] = {}
        self.velocities: Dict[str, np.ndarray] = {}
        self.round = 0

    @staticmethod
    def _check_ratio(r: float) -> None:
        if not (isinstance(r, (int, float)) and 0.0 < float(r) <= 1.0):
            raise TaskcodecError(f"ratio must be in (0, 1], got {r!r}")

    def _clip_scale(self, sum_of_squares: float) -> Optional[np.float32]:
        """The float32 factor that brings the global L2 norm down to ``clip_norm``; None when
        the norm is already within it (both the host and the device path use this)."""
        norm = math.sqrt(sum_of_squares)
        return np.float32(self.clip_norm / norm) if norm > self.clip_norm else None

    def current_ratio(self) -> float:
        """The ratio the next :meth:`compress` uses (warm-up schedule, then ``ratio``)."""
        if self.round < len(self.warmup_ratios):
            return self.warmup_ratios[self.round]
        return self.ratio

    # ---- compress ---------------------------------------------------------------------

    def compress(self, update: Update) -> bytes:
        """Codes an update (tensor, mapping of named tensors, or Flower ArrayRecord) into a
        sparse-update frame. With error feedback, what is not sent stays in the residuals.

        Tensors on a CUDA device (torch, or any DLPack array) are selected there, with their
        residuals kept on the device, when this build has the CUDA kernels: only the k sent
        values and indices come to the host to be coded, and the frame is the one the CPU
        path writes for the same update (with ``clip_norm``, the norm is summed in another
        order on the GPU and the scale can differ in its last bit).
        """
        if _device_update(update):
            return self._compress_device(update)
        kind, names, arrays = _flatten(update)
        if len(set(names)) != len(names):
            raise TaskcodecError("tensor names must be unique")
        flats = [_f32_flat(a, n) for n, a in zip(names, arrays)]
        if self.clip_norm is not None:
            s = self._clip_scale(sum(float(np.dot(f.astype(np.float64), f.astype(np.float64))) for f in flats))
            if s is not None:
                flats = [f * s for f in flats]
        ratio = self.current_ratio()
        coding = VALUE_CODINGS[self.values]
        block_log2 = self.block_size.bit_length() - 1
        records = []
        for t, (name, flat) in enumerate(zip(names, flats)):
            k = topk_count(flat.size, ratio)
            residual = None
            src = flat
            if self.error_feedback:
                residual = _host_array(self.residuals.get(name))
                if residual is not None:
                    self.residuals[name] = residual
                if residual is None or residual.size != flat.size:
                    residual = np.zeros(flat.size, np.float32)
                    self.residuals[name] = residual
                if self.momentum is not None:
                    vel = _host_array(self.velocities.get(name))
                    if vel is None or vel.size != flat.size:
                        vel = np.zeros(flat.size, np.float32)
                    self.velocities[name] = vel
                    vel *= np.float32(self.momentum)
                    vel += flat
                    src = vel
            # The stream number makes QSGD's rounding differ between rounds and tensors.
            stream = (self.round << 20) + t
            rec, sent = _core.sparse_compress_tensor(
                src, residual, k, coding, block_log2, self.levels, self.seed, stream, self.threads
            )
            if self.momentum is not None:
                self.velocities[name][sent] = 0.0  # momentum factor masking
            records.append(rec)
        return self._frame(records, kind, names, [list(a.shape) for a in arrays],
                           [str(a.dtype) for a in arrays])

    def _frame(self, records: List[bytes], kind: str, names: List[str], shapes: List[List[int]],
               dtypes: List[str]) -> bytes:
        """The frame around a round's records (the metadata restores names, shapes, dtypes)."""
        meta = {"v": _META_VERSION, "kind": kind, "names": names, "shapes": shapes, "dtypes": dtypes}
        self.round += 1
        return _core.sparse_write_frame(records, json.dumps(meta, separators=(",", ":")).encode(), self.checksum)

    def _compress_device(self, update: Update) -> bytes:
        from taskcodec.codec import cuda as tcc

        torch = tcc._require()
        kind, names, tensors = _flatten_raw(update)
        tensors = [tcc._as_torch(t, torch) for t in tensors]
        if len(set(names)) != len(names):
            raise TaskcodecError("tensor names must be unique")
        for n, t in zip(names, tensors):
            if t.dtype.is_complex or t.dtype == torch.bool:
                raise TaskcodecError(f"tensor {n!r} has dtype {t.dtype}; only numeric tensors are compressed")
        flats = [t.detach().reshape(-1).to(torch.float32).contiguous() for t in tensors]
        if self.clip_norm is not None:
            s = self._clip_scale(sum(float(torch.dot(f.double(), f.double())) for f in flats))
            if s is not None:
                flats = [f * float(s) for f in flats]
        ratio = self.current_ratio()
        coding = VALUE_CODINGS[self.values]
        block_log2 = self.block_size.bit_length() - 1
        records = []
        for t, (name, flat) in enumerate(zip(names, flats)):
            dev = flat.device
            k = topk_count(flat.numel(), ratio)
            src = flat
            residual = None
            if self.error_feedback:
                residual = _device_array(self.residuals.get(name), flat, torch)
                self.residuals[name] = residual
                if self.momentum is not None:
                    vel = _device_array(self.velocities.get(name), flat, torch)
                    vel.mul_(float(np.float32(self.momentum)))
                    vel.add_(flat)
                    self.velocities[name] = vel
                    src = vel
            idx, val = tcc.topk(src, k, residual=residual)
            stream = (self.round << 20) + t
            rec, deq = _core.sparse_encode_selected(
                idx.cpu().numpy().view(np.uint32), val.cpu().numpy(), flat.numel(), coding, block_log2,
                self.levels, self.seed, stream,
            )
            if residual is not None and k:
                tcc.residual_subtract(residual, idx, torch.from_numpy(deq).to(dev))
            if self.momentum is not None and k:
                self.velocities[name][idx.long()] = 0.0  # momentum factor masking
            records.append(rec)
        return self._frame(records, kind, names, [list(t.shape) for t in tensors],
                           [_numpy_dtype_name(t.dtype) for t in tensors])

    # ---- decompress -------------------------------------------------------------------

    def decompress(
        self,
        blob: bytes,
        *,
        max_tensors: int = DEFAULT_MAX_TENSORS,
        max_elements: int = DEFAULT_MAX_ELEMENTS,
    ) -> Update:
        """Dense update of a frame: a float32 array, a dict of them, or a Flower ArrayRecord,
        as was compressed (tensors of other dtypes are cast back to them). Corrupt or
        truncated frames raise the core's errors (:class:`CorruptStreamError`, ...)."""
        return decompress(blob, max_tensors=max_tensors, max_elements=max_elements)

    # ---- state ------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Per-client state: residuals, velocities (numpy arrays) and the round counter."""
        return {
            "round": self.round,
            "residuals": {k: _host_array(v).copy() for k, v in self.residuals.items()},
            "velocities": {k: _host_array(v).copy() for k, v in self.velocities.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned."""
        self.round = int(state["round"])
        self.residuals = {str(k): np.ascontiguousarray(v, np.float32).reshape(-1).copy()
                          for k, v in state["residuals"].items()}
        self.velocities = {str(k): np.ascontiguousarray(v, np.float32).reshape(-1).copy()
                           for k, v in state.get("velocities", {}).items()}

    def reset(self) -> None:
        """Forgets residuals, velocities and the round counter."""
        self.residuals, self.velocities, self.round = {}, {}, 0

    def save(self, path: str) -> None:
        """Writes the state to an ``.npz`` file (no pickle)."""
        arrays = {f"r/{k}": _host_array(v) for k, v in self.residuals.items()}
        arrays.update({f"u/{k}": _host_array(v) for k, v in self.velocities.items()})
        np.savez(path, __round__=np.array(self.round, np.int64), **arrays)

    def load(self, path: str) -> None:
        """Reads a state written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            self.round = int(z["__round__"])
            self.residuals = {k[2:]: z[k].copy() for k in z.files if k.startswith("r/")}
            self.velocities = {k[2:]: z[k].copy() for k in z.files if k.startswith("u/")}


def _meta(blob: Any, max_tensors: int, max_elements: int) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    raw, recs, _ = _core.sparse_read(_as_bytes(blob), int(max_tensors), int(max_elements))
    try:
        meta = json.loads(raw.decode())
        names, shapes, dtypes = meta["names"], meta["shapes"], meta["dtypes"]
        ok = (
            meta.get("v") == _META_VERSION
            and meta.get("kind") in ("tensor", "dict", "arrayrecord")
            and len(names) == len(shapes) == len(dtypes) == len(recs)
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise CorruptStreamError(f"sparse-update meta block is not valid: {e}") from None
    if not ok:
        raise CorruptStreamError("sparse-update meta block does not describe the frame's tensors")
    for shape, rec in zip(shapes, recs):
        if not all(isinstance(d, int) and d >= 0 for d in shape) or math.prod(shape) != rec["n"]:
            raise CorruptStreamError(f"tensor shape {shape} does not hold the record's {rec['n']} values")
    return meta, recs


def _as_bytes(blob: Any) -> Any:
    if isinstance(blob, (bytes, bytearray, memoryview)):
        return blob
    if isinstance(blob, np.ndarray) and blob.dtype == np.uint8:
        return blob
    raise TaskcodecError(f"a frame must be bytes, got {type(blob).__name__}")


def read_update(blob: bytes, *, max_tensors: int = DEFAULT_MAX_TENSORS,
                max_elements: int = DEFAULT_MAX_ELEMENTS) -> List[Dict[str, Any]]:
    """Per tensor: name, shape, dtype, n, k, value and index coding, and their byte counts."""
    meta, recs = _meta(blob, max_tensors, max_elements)
    out = []
    for name, shape, dtype, rec in zip(meta["names"], meta["shapes"], meta["dtypes"], recs):
        out.append(dict(rec, name=name, shape=tuple(shape), dtype=dtype))
    return out


def _restore(meta: Dict[str, Any], flats: List[np.ndarray]) -> Update:
    arrays = []
    for shape, dtype, flat in zip(meta["shapes"], meta["dtypes"], flats):
        a = flat.reshape(shape)
        try:
            dt = np.dtype(dtype)
        except TypeError:
            dt = np.dtype(np.float32)
        if dt.kind in "iub":
            a = np.rint(a).astype(dt)
        elif dt != np.float32 and dt.kind == "f":
            a = a.astype(dt)
        arrays.append(a)
    kind = meta["kind"]
    if kind == "tensor":
        return arrays[0]
    if kind == "arrayrecord":
        from flwr.app import Array, ArrayRecord

        return ArrayRecord({n: Array(a) for n, a in zip(meta["names"], arrays)})
    return dict(zip(meta["names"], arrays))


def decompress(blob: Any, *, max_tensors: int = DEFAULT_MAX_TENSORS,
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> Update:
    """Module-level form of :meth:`TopKCompressor.decompress` (needs no compressor state)."""
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
    :class:`TaskcodecError` when no frame decodes.
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
