"""Integer CDF tables shared by encoder and decoder."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

import taskcodec._core as _core
from taskcodec.codec.rows import rows_for
from taskcodec.errors import ArgumentTypeError, TaskcodecError

__all__ = ["CdfTable", "fit_table", "DEFAULT_PRECISION", "DEFAULT_SMOOTHING", "DEFAULT_MARGIN"]

DEFAULT_PRECISION = 14
DEFAULT_SMOOTHING = 0.5
"""Pseudo-count added to every bin of a fitted histogram (:func:`fit_table`)."""
DEFAULT_MARGIN = 0.25
"""Fraction of a row's observed span added on either side by :func:`fit_table`."""


class CdfTable:
    """Per-row integer frequency tables, one escape symbol per row.

    Row ``r`` codes the values ``offsets[r] .. offsets[r] + lengths[r] - 1`` with
    frequencies summing to ``2**precision``; any other value is escaped and coded
    losslessly. Tables are built once in integer arithmetic, so every machine that
    builds a table from the same inputs gets the same integers, and ``fingerprint``
    (a 64-bit FNV-1a hash of :meth:`to_bytes`) identifies them in every frame.

    Build with :meth:`from_pmf` (probabilities), :meth:`from_counts` (histograms; or
    :func:`fit_table` straight from sample symbols), :meth:`from_freqs` (integers) or
    :meth:`from_bytes` (shipped tables). Instances are immutable and hashable.
    """

    __slots__ = ("_t",)

    def __init__(self, core_table: Any) -> None:
        if not isinstance(core_table, _core.Table):
            raise ArgumentTypeError("use CdfTable.from_pmf, from_counts, from_freqs or from_bytes")
        self._t = core_table

    # ------------------------------------------------------------------ builders
    @classmethod
    def from_pmf(
        cls,
        pmf: Any,
        offsets: Any,
        precision: int = DEFAULT_PRECISION,
        *,
        lengths: Any = None,
        escape: Any = None,
        trim_tails: bool = True,
    ) -> "CdfTable":
        """Quantize probabilities to integer tables.

        Args:
            pmf: float array ``[C, K]``; row ``r`` gives the (unnormalized, non-negative)
                weights of values ``offsets[r] + 0 .. K - 1``. Rows need not sum to 1.
            offsets: int array ``[C]``, the value of bin 0 of each row.
            precision: bits of the integer tables (1..16); ``2**precision`` must exceed
                the symbols of a row plus its escape. The default, 14, is the size
                optimum for 32-bit rANS states with 16-bit words: 16 bits tables code
                about 0.1 % larger (README, "Decisions").
            lengths: optional int array ``[C]``: row ``r`` uses its first ``lengths[r]``
                bins only (for ragged tables such as CompressAI's).
            escape: optional float array ``[C]`` (or scalar) of escape weights in the pmf's
                units; by default escapes get the smallest frequency, 1.
            trim_tails: leave out of each row the bins at either end whose probability is
                below ``2**-(precision + 3)``: every bin needs at least one of the
                ``2**precision`` slots, which costs all other symbols more than escaping
                those rare values does (they are still coded exactly). The table's
                ``offsets`` and ``lengths`` then describe the trimmed rows. Turn it off to
                keep the rows exactly as given.
        """
        p = np.asarray(pmf, dtype=np.float64)
        if p.ndim == 1:
            p = p[None, :]
        if p.ndim != 2:
            raise TaskcodecError(f"pmf must be 2-D [rows, symbols], got shape {p.shape}")
        rows = p.shape[0]
        offs = _int_vector(offsets, rows, "offsets", np.int32)
        lens = None if lengths is None else _int_vector(lengths, rows, "lengths", np.uint32)
        esc = None
        if escape is not None:
            e = np.asarray(escape, dtype=np.float64)
            if e.ndim > 1 or (e.ndim == 1 and e.shape[0] != rows):
                raise TaskcodecError(
                    f"escape must be a scalar or have one entry per row ({rows}), got shape {e.shape}"
                )
            esc = np.broadcast_to(e, (rows,)).copy()
        _check_precision(precision)
        return cls(
            _core.Table.from_pmf(np.ascontiguousarray(p), offs, int(precision), lens, esc, bool(trim_tails))
        )

    @classmethod
    def from_counts(
        cls,
        counts: Any,
        offsets: Any,
        precision: int = DEFAULT_PRECISION,
        *,
        lengths: Any = None,
        smoothing: float = DEFAULT_SMOOTHING,
        trim_tails: bool = True,
    ) -> "CdfTable":
        """Tables from histograms: ``counts [C, K]`` of the values ``offsets[r] + 0 .. K - 1``.

        Every bin of a row (its first ``lengths[r]`` bins, all ``K`` by default) gets the
        pseudo-count ``smoothing``, so values seen in no sample keep a small probability;
        ``trim_tails`` is :meth:`from_pmf`'s. This is the one histogram -> table step
        of the package (:func:`fit_table` builds the histograms from sample symbols).
        """
        c = np.asarray(counts, dtype=np.float64)
        if c.ndim != 2 or c.shape[1] < 1:
            raise TaskcodecError(f"counts must be 2-D [rows, bins], got shape {c.shape}")
        if not np.isfinite(c).all() or (c < 0).any():
            raise TaskcodecError("counts must be finite and non-negative")
        if not (isinstance(smoothing, (int, float, np.floating)) and smoothing >= 0):
            raise TaskcodecError(f"smoothing must be a number >= 0, got {smoothing!r}")
        width = c.shape[1]
        if lengths is None:
            lens = np.full(c.shape[0], width, dtype=np.int64)
        else:
            lens = _int_vector(lengths, c.shape[0], "lengths", np.uint32).astype(np.int64)
            if lens.size and (lens.max() > width or lens.min() < 1):
                raise TaskcodecError(f"lengths must lie in 1..{width} (the bins of counts)")
        used = np.arange(width)[None, :] < lens[:, None]
        pmf = np.where(used, c + float(smoothing), 0.0)
        return cls.from_pmf(pmf, offsets, precision, lengths=lens, trim_tails=trim_tails)

    @classmethod
    def from_freqs(cls, freqs: Any, offsets: Any, precision: int = DEFAULT_PRECISION, *, lengths: Any = None) -> "CdfTable":
        """Use integer frequencies as they are.

        ``freqs`` is ``[C, K + 1]`` (escape in the last column) or, with ``lengths``,
        ``[C, max(lengths) + 1]`` where row ``r``'s escape sits at column ``lengths[r]``
        (the layout of :attr:`freqs`). Every row must sum to ``2**precision`` and every
        used entry must be at least 1.
        """
        f = np.asarray(freqs)
        if f.ndim != 2 or f.shape[1] < 2:
            raise TaskcodecError(f"freqs must be 2-D [rows, symbols + 1], got shape {f.shape}")
        if not np.issubdtype(f.dtype, np.integer):
            raise TaskcodecError(f"freqs must be integers, got {f.dtype}")
        rows = f.shape[0]
        offs = _int_vector(offsets, rows, "offsets", np.int32)
        if lengths is None:
            lens = np.full(rows, f.shape[1] - 1, dtype=np.uint32)
        else:
            lens = _int_vector(lengths, rows, "lengths", np.uint32)
            if lens.max(initial=0) + 1 > f.shape[1]:
                raise TaskcodecError("lengths[r] + 1 must not exceed the width of freqs")
        if f.min(initial=1) < 0 or f.max(initial=0) >= 2**16:
            raise TaskcodecError("frequencies must lie in 1 .. 2**16 - 1")
        _check_precision(precision)
        flat = np.concatenate([f[r, : int(lens[r]) + 1] for r in range(rows)]).astype(np.uint32)
        return cls(_core.Table.from_freqs(flat, offs, lens, int(precision)))

    @classmethod
    def from_bytes(cls, data: bytes) -> "CdfTable":
        """Load tables written by :meth:`to_bytes` (validated like any stream)."""
        return cls(_core.Table.from_bytes(memoryview(data).cast("B")))

    def to_bytes(self) -> bytes:
        """Canonical serialization (docs/format.md, "Table serialization")."""
        return self._t.to_bytes()

    # ------------------------------------------------------------------ properties
    @property
    def fingerprint(self) -> int:
        """64-bit FNV-1a hash of the integer tables (:meth:`to_bytes`)."""
        return int(self._t.fingerprint)

    @property
    def precision(self) -> int:
        return int(self._t.precision)

    @property
    def num_rows(self) -> int:
        return int(self._t.num_rows)

    @property
    def offsets(self) -> np.ndarray:
        return self._t.offsets

    @property
    def lengths(self) -> np.ndarray:
        """In-range symbols per row (the escape not counted)."""
        return self._t.lengths

    @property
    def freqs(self) -> np.ndarray:
        """``[C, max(lengths) + 1]`` uint32; row r: lengths[r] bins, its escape, then zeros."""
        return self._t.freqs

    def probabilities(self) -> np.ndarray:
        """The coded probabilities, ``freqs / 2**precision`` (escape column included)."""
        return self.freqs.astype(np.float64) / float(1 << self.precision)

    def cost_bits(self, symbols: Any, index: Any = None, *, channel_axis: int = 1) -> float:
        """Information content of ``symbols`` under these integer tables, in bits.

        In-range values cost ``-log2(freq / 2**precision)``; escaped values cost the
        escape symbol plus their raw bits (docs/format.md). A frame's payload is within
        a few bytes per chunk of this number.
        """
        s = np.asarray(symbols).astype(np.int64)
        rows = rows_for(s, self.num_rows, index, channel_axis)
        off = self.offsets.astype(np.int64)[rows]
        k = self.lengths.astype(np.int64)[rows]
        local = s - off
        inside = (local >= 0) & (local < k)
        col = np.where(inside, local, k)
        f = self.freqs.astype(np.float64)
        logp = np.log2(np.where(f > 0, f, 1.0)) - self.precision  # zeros are padding
        bits = -logp[rows, col]
        dist = np.where(local < 0, -local - 1, local - k)
        nbits = np.where(dist > 0, np.floor(np.log2(np.maximum(dist, 1))) + 1, 0)
        esc_bits = 7 + np.maximum(nbits - 1, 0)
        return float(bits.sum() + np.where(inside, 0, esc_bits).sum())

    # ------------------------------------------------------------------ dunder
    def __eq__(self, other: object) -> bool:
        return isinstance(other, CdfTable) and self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __reduce__(self) -> Any:
        return (CdfTable.from_bytes, (self.to_bytes(),))

    def __repr__(self) -> str:
        return (
            f"CdfTable(rows={self.num_rows}, max_length={int(self._t.max_length)}, "
            f"precision={self.precision}, fingerprint=0x{self.fingerprint:016x})"
        )


def _check_precision(precision: int) -> None:
    if not isinstance(precision, (int, np.integer)) or not 1 <= int(precision) <= 16:
        raise TaskcodecError(f"precision must be an int in 1..16, got {precision!r}")


def _int_vector(values: Any, rows: int, name: str, dtype: Any) -> np.ndarray:
    a = np.asarray(values)
    if a.ndim == 0:
        a = np.full(rows, a)
    if a.shape != (rows,):
        raise TaskcodecError(f"{name} must have one entry per row ({rows}), got shape {a.shape}")
    if not np.issubdtype(a.dtype, np.integer):
        raise TaskcodecError(f"{name} must be integers, got {a.dtype}")
    info = np.iinfo(dtype)
    if a.size and (a.min() < info.min or a.max() > info.max):
        raise TaskcodecError(f"{name} must fit in {np.dtype(dtype).name}")
    return np.ascontiguousarray(a, dtype=dtype)


def fit_table(
    symbols: Any,
    *,
    channel_axis: Optional[int] = 1,
    precision: int = DEFAULT_PRECISION,
    smoothing: float = DEFAULT_SMOOTHING,
    margin: float = DEFAULT_MARGIN,
) -> CdfTable:
    """One table row per channel from the histograms of sample symbols (e.g. calibration data).

    Each row covers the channel's observed range widened on either side by ``margin`` times its
    span (rounded up), every bin gets the pseudo-count ``smoothing``
    (:meth:`CdfTable.from_counts`); values outside a row are escaped and still coded exactly.
    ``channel_axis=None`` fits a single row for all symbols.
    """
    q = np.asarray(symbols)
    if q.dtype == np.bool_ or not np.issubdtype(q.dtype, np.integer):
        raise ArgumentTypeError(f"symbols must be an integer array, got dtype {q.dtype}")
    if q.size == 0:
        raise TaskcodecError("no symbols to fit a table on")
    if not (isinstance(margin, (int, float, np.floating)) and margin >= 0):
        raise TaskcodecError(f"margin must be a number >= 0, got {margin!r}")
    if channel_axis is None:
        per_c = q.reshape(1, -1).astype(np.int64)
    else:
        axis = channel_axis + q.ndim if channel_axis < 0 else channel_axis
        if not 0 <= axis < q.ndim:
            raise TaskcodecError(f"channel_axis {channel_axis} is out of range for shape {q.shape}")
        per_c = np.moveaxis(q, axis, 0).reshape(q.shape[axis], -1).astype(np.int64)
        if per_c.shape[1] == 0:
            raise TaskcodecError("no symbols to fit a table on")
    lo, hi = per_c.min(axis=1), per_c.max(axis=1)
    pad = np.ceil(margin * (hi - lo + 1)).astype(np.int64)
    lo, hi = lo - pad, hi + pad
    lengths = hi - lo + 1
    width = int(lengths.max())
    rows = per_c.shape[0]
    idx = (per_c - lo[:, None]) + np.arange(rows, dtype=np.int64)[:, None] * width
    counts = np.bincount(idx.ravel(), minlength=rows * width).reshape(rows, width)
    return CdfTable.from_counts(counts, lo, precision, lengths=lengths, smoothing=smoothing)
