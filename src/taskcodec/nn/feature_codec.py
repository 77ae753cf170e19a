"""Post-training feature codec: calibrate on sample activations, then compress any batch.

Quantization is :func:`taskcodec.quantize`'s per-channel affine rounding,
``q = rint((x - zero[c]) * (1 / step[c]))`` and ``x_hat = q * step[c] + zero[c]`` in float32,
with ``step[c] = step_per_std * std[c]`` (the channel's calibration standard deviation).
``step_per_std`` is given, or found by bisection so that the calibration features code at a
target number of ``bits`` per element, or reach a target ``snr_db``. The entropy model is one
integer table per channel, fitted by :func:`taskcodec.fit_table` on the calibration symbols
(smoothed histograms widened by a margin); values outside a row are escaped and still coded
exactly. Each :meth:`FeatureCodec.compress` call makes one core frame whose ``meta`` is the
``TCFQ`` block of :mod:`taskcodec.codec.quant` (the steps and zero points, or their digest), so
a frame is self-describing apart from the tables, which ship once with the model
(:meth:`FeatureCodec.to_bytes`, :meth:`FeatureCodec.save`). A frame coded with another
calibration's tables raises :class:`taskcodec.TableMismatchError`. With ``transform="task"`` the
symbols are the components of a tail-weighted decorrelating transform (:mod:`.transforms`).
"""

from __future__ import annotations

import io
import json
import math
import zipfile
from pathlib import Path
from typing import Any, Iterable, Optional, Tuple, Union

import numpy as np
import torch

import taskcodec as tc
import taskcodec.nn.transforms as _tf
from taskcodec.codec import quant
from taskcodec.codec.args import auto_lanes
from taskcodec.errors import ArgumentTypeError, CorruptStreamError, TaskcodecError

__all__ = ["FeatureCodec"]

_SAVE_FORMAT = "taskcodec.FeatureCodec"
_SAVE_VERSION = 1
_SAVE_VERSION_TRANSFORM = 2  # adds the channel transform (T, T^-1, mean)
_TF_KEYS = ("transform", "transform_inverse", "transform_mean")
_MAX_CALIB = 1 << 22  # elements per channel used for the step search and the histograms


def _to_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach()
        if x.device.type != "cpu":
            x = x.cpu()
        return x.float().numpy()
    return np.asarray(x, dtype=np.float32)


def _channels_first(x: np.ndarray, axis: int) -> np.ndarray:
    """``[C, everything else]`` view/copy of ``x`` with ``axis`` as the channel axis."""
    return np.ascontiguousarray(np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1))


def _entropy_bits(q: np.ndarray) -> float:
    """Mean empirical entropy (bits/element) of per-channel symbols ``q [C, M]``."""
    q = q.astype(np.int64)
    lo = q.min(axis=1, keepdims=True)
    width = int((q.max(axis=1, keepdims=True) - lo).max()) + 1
    idx = (q - lo) + np.arange(q.shape[0])[:, None] * width
    counts = np.bincount(idx.ravel(), minlength=q.shape[0] * width).reshape(q.shape[0], width)
    p = counts / q.shape[1]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return float(h.mean())


class FeatureCodec:
    """Calibrated per-channel quantizer + integer entropy tables for a model's activations.

    Build with :meth:`calibrate` (or :meth:`load`); then ``blob = codec.compress(features)`` on
    the device and ``features_hat = codec.decompress(blob)`` on the server. ``features`` may
    carry any batch size and extra dimensions: only the channel axis length is fixed.
    """

    def __init__(
        self,
        table: tc.CdfTable,
        steps: np.ndarray,
        zeros: np.ndarray,
        *,
        channel_axis: int = 1,
        step_per_std: float = float("nan"),
        info: Optional[dict] = None,
        params_in_frame: bool = True,
        transform: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
    ) -> None:
        steps = np.ascontiguousarray(steps, dtype=np.float32).reshape(-1)
        zeros = np.ascontiguousarray(zeros, dtype=np.float32).reshape(-1)
        if not isinstance(table, tc.CdfTable):
            raise ArgumentTypeError(f"table must be a taskcodec.CdfTable, got {type(table).__name__}")
        if steps.size != table.num_rows or zeros.size != table.num_rows:
            raise TaskcodecError(
                f"{table.num_rows} table rows but {steps.size} steps and {zeros.size} zero points"
            )
        if not (np.isfinite(steps).all() and (steps > 0).all() and np.isfinite(zeros).all()):
            raise TaskcodecError("steps must be finite and positive, zero points finite")
        self.table = table
        self.steps = steps
        self.zeros = zeros
        self.channel_axis = int(channel_axis)
        self.step_per_std = float(step_per_std)
        self.info = dict(info or {})
        self.params_in_frame = bool(params_in_frame)
        # (T, T^-1, mean) or None: the coded symbols are T (x - mean)
        self.transform = None if transform is None else _tf.check_transform(transform, steps.size)
        self._digest = quant.params_digest(steps, zeros)
        self._meta = quant.params_meta(steps, zeros, in_frame=self.params_in_frame)

    # ------------------------------------------------------------------ calibration
    @classmethod
    def calibrate(
        cls,
        samples: Union[torch.Tensor, np.ndarray, Iterable[Any]],
        *,
        channel_axis: int = 1,
        bits: Optional[float] = None,
        snr_db: Optional[float] = None,
        step_per_std: float = 0.5,
        center: str = "zero",
        precision: int = 14,
        smoothing: float = 0.5,
        margin: float = 0.25,
        params_in_frame: bool = True,
        transform: Optional[str] = None,
        tail: Any = None,
    ) -> "FeatureCodec":
        """Fit steps, zero points and tables on sample activations.

        Args:
            samples: a tensor/array of activations (batch first) or an iterable of such
                batches (concatenated along axis 0).
            channel_axis: the axis holding channels (1 for ``[N, C, H, W]``, -1 for a
                transformer's ``[N, tokens, hidden]``).
            bits: target rate in bits per element on the calibration data: ``step_per_std``
                is searched so the empirical entropy of the symbols matches it.
            snr_db: target signal-to-quantization-noise ratio on the calibration data
                (``10 log10(E x^2 / E (x - x_hat)^2)``); exclusive with ``bits``.
            step_per_std: the step as a multiple of each channel's standard deviation, used
                when neither target is given (0.5 ≈ 3 bits/element on Gaussian-like data).
            center: ``"zero"`` (zero point 0: exact zeros, e.g. after a ReLU, stay exact) or
                ``"mean"`` (zero point = channel mean).
            precision: bits of the integer tables (see :meth:`taskcodec.CdfTable.from_pmf`).
            smoothing: pseudo-count added to every histogram bin.
            margin: widen every row's range by this fraction of its calibration span.
            params_in_frame: write the steps and zero points (8 bytes per channel) into every
                frame's ``meta``, so a frame is self-describing; ``False`` writes an 8-byte
                digest of them instead (for small per-sample frames), checked on decode.
            transform: ``None`` (per-channel steps) or ``"task"``: code the components of a
                decorrelating transform weighted by the ``tail``'s sensitivity, one step for
                all (:mod:`taskcodec.nn.transforms`); the rate and SNR targets then apply to
                the components, and ``step_per_std`` is in units of their mean deviation.
            tail: the module that consumes the features (required by ``"task"``), or its
                Fisher matrix from :func:`taskcodec.nn.transforms.tail_fisher` (reused).
        """
        if bits is not None and snr_db is not None:
            raise TaskcodecError("give a target rate (bits) or a distortion (snr_db), not both")
        if center not in ("zero", "mean"):
            raise TaskcodecError(f"center must be 'zero' or 'mean', got {center!r}")
        if transform not in (None, "task") or (transform == "task" and tail is None):
            raise TaskcodecError(f"transform must be None or 'task' (with a tail), got {transform!r}")
        if isinstance(samples, (torch.Tensor, np.ndarray)):
            x = _to_numpy(samples)
        else:
            parts = [_to_numpy(s) for s in samples]
            if not parts:
                raise TaskcodecError("no calibration samples")
            x = np.concatenate(parts, axis=0)
        if x.ndim < 2:
            raise TaskcodecError(f"samples need a batch and a channel axis, got shape {x.shape}")
        axis = channel_axis + x.ndim if channel_axis < 0 else channel_axis
        if not 0 < axis < x.ndim:
            raise TaskcodecError(
                f"channel_axis {channel_axis} must name a non-batch axis of shape {x.shape}"
            )
        if not np.isfinite(x).all():
            raise TaskcodecError("calibration samples contain NaN or infinity")
        per_c = _channels_first(x, axis)
        if per_c.shape[1] > _MAX_CALIB:  # a fixed subsample keeps calibration bounded
            keep = np.random.default_rng(0).choice(per_c.shape[1], _MAX_CALIB, replace=False)
            per_c = np.ascontiguousarray(per_c[:, np.sort(keep)])
        tf = None
        if transform == "task":
            tf = _tf.task_transform(per_c, _tf.sensitivity(x, tail, channel_axis=axis))
            per_c, center = _tf.apply_transform(per_c, tf[0], tf[2], 0), "zero"
        wide = per_c.astype(np.float64)
        mean = wide.mean(axis=1)
        std = wide.std(axis=1)
        zeros = mean if center == "mean" else np.zeros_like(mean)
        dead = std <= 1e-12 * max(float(std.max()), 1e-30)
        if tf is not None:  # one step for all components, zero point 0
            std, dead, mean = np.ones_like(std), np.zeros_like(dead), np.zeros_like(mean)
        zeros = np.where(dead, mean, zeros).astype(np.float32)  # constant channels: one symbol, 0
        std_safe = np.where(dead, 1.0, std)
        signal = float((wide**2).mean())
        del wide

        def symbols(s: float) -> Tuple[np.ndarray, np.ndarray]:
            steps = np.where(dead, 1.0, s * std_safe).astype(np.float32)
            steps = np.maximum(steps, np.finfo(np.float32).tiny)
            return quant.quantize(per_c, steps, zeros, channel_axis=0), steps

        def snr(s: float) -> float:
            q, steps = symbols(s)
            err = float(((quant.dequantize(q, steps, zeros, channel_axis=0) - per_c).astype(np.float64) ** 2).mean())
            return 10 * math.log10(max(signal, 1e-30) / max(err, 1e-30))

        if bits is not None or snr_db is not None:
            if bits is not None and not bits > 0:
                raise TaskcodecError(f"bits must be positive, got {bits}")
            # Both the entropy and the SNR fall as the step grows: bisect on log(step).
            target = float(bits if bits is not None else snr_db)
            metric = (lambda s: _entropy_bits(symbols(s)[0])) if bits is not None else snr
            lo, hi = math.log(1e-3), math.log(1e3)
            for _ in range(40):
                mid = 0.5 * (lo + hi)
                if metric(math.exp(mid)) > target:
                    lo = mid
                else:
                    hi = mid
            step_per_std = math.exp(0.5 * (lo + hi))
        if not step_per_std > 0:
            raise TaskcodecError(f"step_per_std must be positive, got {step_per_std}")
        q, steps = symbols(step_per_std)
        table = tc.fit_table(q, channel_axis=0, precision=precision, smoothing=smoothing, margin=margin)
        info = {
            "calibration_elements_per_channel": int(per_c.shape[1]),
            "calibration_bits_per_element": _entropy_bits(q),
            "calibration_snr_db": snr(step_per_std),
            "center": center,
            "precision": int(precision),
        }
        if tf is not None:
            info["transform"] = "task"
        return cls(table, steps, zeros, channel_axis=channel_axis, step_per_std=step_per_std,
                   info=info, params_in_frame=params_in_frame, transform=tf)

    # ------------------------------------------------------------------ coding
    @property
    def channels(self) -> int:
        return int(self.steps.size)

    @property
    def fingerprint(self) -> int:
        """The tables' 64-bit fingerprint, written into every frame this codec makes."""
        return self.table.fingerprint

    def _axis(self, ndim: int) -> int:
        axis = self.channel_axis + ndim if self.channel_axis < 0 else self.channel_axis
        if not 0 <= axis < ndim:
            raise TaskcodecError(f"channel_axis {self.channel_axis} is out of range for {ndim} dims")
        return axis

    def quantize(self, features: Any) -> np.ndarray:
        """Integer symbols (``int32``) of ``features``, as :meth:`compress` codes them."""
        x = _to_numpy(features)
        axis = self._axis(x.ndim)
        if x.shape[axis] != self.channels:
            raise TaskcodecError(
                f"features have {x.shape[axis]} channels on axis {axis} (shape {x.shape}), "
                f"the codec was calibrated for {self.channels}"
            )
        if not np.isfinite(x).all():
            raise TaskcodecError("features contain NaN or infinity")
        if self.transform is not None:
            x = _tf.apply_transform(x, self.transform[0], self.transform[2], axis)
        try:
            return quant.quantize(np.ascontiguousarray(x), self.steps, self.zeros, channel_axis=axis)
        except TaskcodecError as e:
            raise TaskcodecError(f"features are too large for this calibration's steps: {e}") from None

    def dequantize(self, symbols: Any, axis: Optional[int] = None) -> torch.Tensor:
        """float32 tensor ``symbols * step + zero`` (channel axis ``axis`` or the codec's),
        mapped back through the inverse transform when the codec has one."""
        q = np.asarray(symbols)
        ax = self._axis(q.ndim) if axis is None else axis
        return self._untransform(quant.dequantize(q, self.steps, self.zeros, channel_axis=ax), ax)

    def _untransform(self, y: np.ndarray, axis: int) -> torch.Tensor:
        tf = self.transform
        return torch.from_numpy(y if tf is None else _tf.invert_transform(y, tf[1], tf[2], axis % y.ndim))

    def bits_per_element(self, features: Any) -> float:
        """Ideal code length of ``features`` under the tables (bits per element, no frame)."""
        q = self.quantize(features)
        return self.table.cost_bits(q, channel_axis=self._axis(q.ndim)) / max(q.size, 1)

    def compress(self, features: Any, *, lanes: Optional[int] = None, threads: int = 0) -> bytes:
        """One frame (header with the steps in ``meta``, rANS payload, CRC32C) for a batch.

        ``lanes`` (interleaved rANS states, each flushed with 4 bytes) defaults to 32 for
        tensors of 4096 elements or more and to fewer for small ones, where the flush would
        dominate; any decoder reads any lane count.
        """
        q = self.quantize(features)
        return tc.encode(q, self.table, channel_axis=self._axis(q.ndim), meta=self._meta,
                         lanes=auto_lanes(q.size) if lanes is None else lanes, threads=threads)

    def decompress(self, blob: Any, *, threads: int = 0) -> torch.Tensor:
        """The dequantized float32 tensor, in the compressed tensor's shape.

        Raises :class:`taskcodec.TableMismatchError` for a frame coded with other tables (or,
        with ``params_in_frame=False``, other steps) and :class:`taskcodec.CorruptStreamError`
        for damaged frames or foreign ``meta``.
        """
        header = tc.read_header(blob)  # validates structure and CRC
        q = tc.decode(blob, self.table, threads=threads)  # and the fingerprint
        if header.channel_axis is None:
            raise CorruptStreamError("the frame was not coded along a channel axis (not a FeatureCodec frame)")
        steps, zeros, digest = quant.read_params_meta(header.meta, self.channels)
        if steps is None:
            if digest != self._digest:
                raise tc.TableMismatchError(
                    "the frame was quantized with other steps / zero points than this codec's "
                    "(same tables, different calibration)"
                )
            steps, zeros = self.steps, self.zeros
        return self._untransform(quant.dequantize(q, steps, zeros, channel_axis=header.channel_axis),
                                 header.channel_axis)

    # ------------------------------------------------------------------ persistence
    def to_bytes(self) -> bytes:
        """The calibration (tables, steps, zero points, settings) as bytes: an ``.npz`` archive
        without pickles, the content of :meth:`save`. :meth:`from_bytes` reads it back."""
        header = {
            "format": _SAVE_FORMAT,
            "version": _SAVE_VERSION if self.transform is None else _SAVE_VERSION_TRANSFORM,
            "channel_axis": self.channel_axis,
            "step_per_std": self.step_per_std,
            "fingerprint": f"{self.fingerprint:016x}",
            "params_in_frame": self.params_in_frame,
            "info": self.info,
        }
        buf = io.BytesIO()
        extra = {} if self.transform is None else dict(zip(_TF_KEYS, self.transform))
        np.savez(
            buf,
            header=np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            table=np.frombuffer(self.table.to_bytes(), dtype=np.uint8),
            steps=self.steps,
            zeros=self.zeros,
            **extra,
        )
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: Any, *, source: str = "the data") -> "FeatureCodec":
        """Read what :meth:`to_bytes` wrote (checks format, version and fingerprint)."""
        try:
            with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                table = tc.CdfTable.from_bytes(bytes(z["table"]))
                steps, zeros = np.array(z["steps"]), np.array(z["zeros"])
                tf = tuple(np.array(z[k]) for k in _TF_KEYS) if _TF_KEYS[0] in z.files else None
            fmt, version = header.get("format"), header.get("version")
        except TaskcodecError:
            raise
        except (KeyError, ValueError, OSError, TypeError, AttributeError, EOFError, zipfile.BadZipFile) as e:
            raise TaskcodecError(f"{source} is not a saved FeatureCodec: {e}") from e
        expected = _SAVE_VERSION if tf is None else _SAVE_VERSION_TRANSFORM
        if fmt != _SAVE_FORMAT or version != expected:
            raise TaskcodecError(f"{source}: expected {_SAVE_FORMAT} v{expected}, found {fmt} v{version}")
        if header.get("fingerprint") != f"{table.fingerprint:016x}":
            raise tc.TableMismatchError(f"{source}: the stored tables do not match their fingerprint")
        try:
            return cls(table, steps, zeros, channel_axis=int(header["channel_axis"]),
                       step_per_std=float(header["step_per_std"]), info=header.get("info"),
                       params_in_frame=bool(header.get("params_in_frame", True)), transform=tf)
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, TaskcodecError):
                raise
            raise TaskcodecError(f"{source} is not a saved FeatureCodec: {e!r}") from e

    def save(self, path: Union[str, Path]) -> None:
        """Write :meth:`to_bytes` to a file (``.npz``; no pickle)."""
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def load(cls, path: Union[str, Path]) -> "FeatureCodec":
        """Read a calibration written by :meth:`save` (see :meth:`from_bytes`)."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise TaskcodecError(f"{path} cannot be read: {e}") from e
        return cls.from_bytes(data, source=str(path))

    def __repr__(self) -> str:
        return (
            f"FeatureCodec(channels={self.channels}, channel_axis={self.channel_axis}, "
            f"step_per_std={self.step_per_std:.4g}, fingerprint={self.fingerprint:016x})"
        )
