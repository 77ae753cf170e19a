"""TopKCompressor: model updates -> sparse-update frames, with error feedback and DGC options.

One round of selection and error feedback (:meth:`TopKCompressor.compress`) serves both
the host and CUDA devices: it is written once against a small set of array operations,
:class:`HostRound` (numpy and the C++ core) or :class:`taskcodec.fl.gpu.DeviceRound`.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec import _device
from taskcodec.errors import TaskcodecError
from taskcodec.fl import frames
from taskcodec.fl.coding import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_LEVELS,
    DEFAULT_MAX_ELEMENTS,
    DEFAULT_MAX_TENSORS,
    DEFAULT_RATIO,
    DEFAULT_VALUES,
    VALUE_CODINGS,
    topk_count,
)
from taskcodec.fl.updates import Flat, Update, flatten

__all__ = ["TopKCompressor", "HostRound"]


def _numel(x: Any) -> int:
    return int(x.size) if isinstance(x, np.ndarray) else int(x.numel())


class HostRound:
    """The array operations of one compressor round in host memory (numpy and the C++ core,
    which fuses accumulate, top-k, value coding and error feedback)."""

    def flat(self, tensor: Any) -> np.ndarray:
        a = tensor if isinstance(tensor, np.ndarray) else _device.to_host(tensor, None)
        return np.ascontiguousarray(a, dtype=np.float32).reshape(-1)

    def sum_of_squares(self, f: np.ndarray) -> float:
        d = f.astype(np.float64)
        return float(np.dot(d, d))

    def scaled(self, f: np.ndarray, s: np.float32) -> np.ndarray:
        return f * s

    def state(self, x: Any, like: np.ndarray) -> np.ndarray:
        """A float32 state array in host memory (zeros when absent; residuals may come back
        from a device after GPU rounds)."""
        if x is None:
            return np.zeros(like.size, np.float32)
        if isinstance(x, np.ndarray) and x.dtype == np.float32 and x.flags.c_contiguous and x.ndim == 1:
            return x
        return np.ascontiguousarray(_device.to_host(x), np.float32).reshape(-1)

    def add_momentum(self, vel: np.ndarray, momentum: float, f: np.ndarray) -> None:
        vel *= np.float32(momentum)
        vel += f

    def select_and_code(self, src: np.ndarray, residual: Optional[np.ndarray], k: int, coding: int,
                        block_log2: int, levels: int, seed: int, stream: int,
                        threads: int) -> Tuple[bytes, np.ndarray]:
        return _core.sparse_compress_tensor(src, residual, k, coding, block_log2, levels, seed, stream, threads)

    def zero_at(self, vel: np.ndarray, sent: np.ndarray) -> None:
        vel[sent] = 0.0


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

    The per-client state (residuals, velocities, the shapes they belong to, the round counter)
    is :meth:`state_dict` / :meth:`load_state_dict`, plain numpy arrays that ``np.savez`` can
    store (:meth:`save`). A tensor whose shape changed while it has a residual raises
    :class:`TaskcodecError` (call :meth:`reset` when the model changed on purpose).
    """

    def __init__(
        self,
        ratio: float = DEFAULT_RATIO,
        values: str = DEFAULT_VALUES,
        error_feedback: bool = True,
        *,
        block_size: int = DEFAULT_BLOCK_SIZE,
        levels: int = DEFAULT_LEVELS,
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
        self.residuals: Dict[str, Any] = {}
        self.velocities: Dict[str, Any] = {}
        self.shapes: Dict[str, Tuple[int, ...]] = {}
        self.round = 0

    @staticmethod
    def _check_ratio(r: float) -> None:
        if not (isinstance(r, (int, float)) and 0.0 < float(r) <= 1.0):
            raise TaskcodecError(f"ratio must be in (0, 1], got {r!r}")

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
        order on the GPU and the scale can differ in its last bit). :func:`decompress` gives
        back the kind of update and the dtypes that went in.
        """
        flat = flatten(update)
        self._check_shapes(flat)
        ops: Any = HostRound()
        if flat.on_device and _device.available():
            from taskcodec.fl.gpu import DeviceRound

            ops = DeviceRound()
        records = self._round(flat, ops)
        if self.error_feedback:
            self.shapes.update((n, tuple(s)) for n, s in zip(flat.names, flat.shapes))
        self.round += 1
        return frames.write_frame(records, flat, self.checksum)

    def _check_shapes(self, flat: Flat) -> None:
        """Raise before any state changes when a tensor with a residual changed its shape."""
        for name, shape in zip(flat.names, flat.shapes):
            held = [x for x in (self.residuals.get(name), self.velocities.get(name)) if x is not None]
            if not held:
                continue
            before = self.shapes.get(name)
            n = math.prod(shape)
            if (before is not None and tuple(before) != tuple(shape)) or any(_numel(x) != n for x in held):
                was = f"shape {tuple(before)}" if before is not None else f"{_numel(held[0])} elements"
                raise TaskcodecError(
                    f"tensor {name!r} has shape {tuple(shape)}, but its error-feedback state belongs to "
                    f"a tensor of {was}: the model changed between rounds; call reset() to start "
                    f"over (or delete that tensor's residual and velocity)"
                )

    def _round(self, flat: Flat, ops: Any) -> List[bytes]:
        """One round of top-k with error feedback (and DGC momentum) over every tensor."""
        flats = [ops.flat(t) for t in flat.tensors]
        if self.clip_norm is not None:
            norm = math.sqrt(sum(ops.sum_of_squares(f) for f in flats))
            if norm > self.clip_norm:
                s = np.float32(self.clip_norm / norm)
                flats = [ops.scaled(f, s) for f in flats]
        ratio = self.current_ratio()
        coding = VALUE_CODINGS[self.values]
        block_log2 = self.block_size.bit_length() - 1
        records = []
        for t, (name, f) in enumerate(zip(flat.names, flats)):
            k = topk_count(_numel(f), ratio)
            src, residual, vel = f, None, None
            if self.error_feedback:
                residual = self.residuals[name] = ops.state(self.residuals.get(name), f)
                if self.momentum is not None:
                    vel = self.velocities[name] = ops.state(self.velocities.get(name), f)
                    ops.add_momentum(vel, self.momentum, f)
                    src = vel
            # The stream number makes QSGD's rounding differ between rounds and tensors.
            stream = (self.round << 20) + t
            rec, sent = ops.select_and_code(src, residual, k, coding, block_log2, self.levels, self.seed,
                                            stream, self.threads)
            if vel is not None:
                ops.zero_at(vel, sent)  # momentum factor masking
            records.append(rec)
        return records

    # ---- decompress -------------------------------------------------------------------

    def decompress(self, blob: bytes, *, max_tensors: int = DEFAULT_MAX_TENSORS,
                   max_elements: int = DEFAULT_MAX_ELEMENTS) -> Update:
        """Dense update of a frame (see :func:`taskcodec.fl.decompress`)."""
        return frames.decompress(blob, max_tensors=max_tensors, max_elements=max_elements)

    # ---- state ------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """Per-client state: residuals, velocities (flat numpy arrays), the tensor shapes they
        belong to and the round counter."""
        return {
            "round": self.round,
            "residuals": {k: _device.to_host(v).copy() for k, v in self.residuals.items()},
            "velocities": {k: _device.to_host(v).copy() for k, v in self.velocities.items()},
            "shapes": {k: list(v) for k, v in self.shapes.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restores what :meth:`state_dict` returned (``shapes`` may be absent)."""
        self.round = int(state["round"])
        self.residuals = {str(k): np.ascontiguousarray(v, np.float32).reshape(-1).copy()
                          for k, v in state["residuals"].items()}
        self.velocities = {str(k): np.ascontiguousarray(v, np.float32).reshape(-1).copy()
                           for k, v in state.get("velocities", {}).items()}
        self.shapes = {str(k): tuple(int(d) for d in v) for k, v in state.get("shapes", {}).items()}

    def reset(self) -> None:
        """Forgets residuals, velocities, shapes and the round counter."""
        self.residuals, self.velocities, self.shapes, self.round = {}, {}, {}, 0

    def save(self, path: str) -> None:
        """Writes the state to an ``.npz`` file (no pickle)."""
        arrays = {f"r/{k}": _device.to_host(v) for k, v in self.residuals.items()}
        arrays.update({f"u/{k}": _device.to_host(v) for k, v in self.velocities.items()})
        arrays.update({f"s/{k}": np.asarray(v, np.int64) for k, v in self.shapes.items()})
        np.savez(path, __round__=np.array(self.round, np.int64), **arrays)

    def load(self, path: str) -> None:
        """Reads a state written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            self.round = int(z["__round__"])
            self.residuals = {k[2:]: z[k].copy() for k in z.files if k.startswith("r/")}
            self.velocities = {k[2:]: z[k].copy() for k in z.files if k.startswith("u/")}
            self.shapes = {k[2:]: tuple(int(d) for d in z[k]) for k in z.files if k.startswith("s/")}
