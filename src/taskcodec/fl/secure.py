"""Compressed updates whose sum is all the server needs: the building blocks of secure
aggregation with compression (docs/fl.md, "Secure aggregation").

Secure aggregation (Flower's SecAgg+) masks each client's integer vector so that the server
learns only the sum of the vectors. Per-client top-k does not survive it (every client's
positions differ, and masked values do not compress). Two compressors here produce vectors
that do, because every client's vector has the same length and the same meaning:

* **shared support** (:class:`SupportPlanner` on the server, :class:`SupportClient` on each
  client): the server picks the round's support, the same positions for every client: where
  it estimates the most mass is waiting (from the aggregates it got at each position and the
  rounds since), an exploration share of positions never asked for, and every element of small
  tensors (biases). Each client sends its error-feedback-corrected update on that support (the
  residual it keeps decays, so that a position asked for late does not release many rounds of
  stale updates at once).
* **count sketch** (:class:`CountSketch`, :class:`SketchServer`; FetchSGD, Rothchild et al.,
  ICML 2020): each client sends the sketch of its update, a ``rows x cols`` table; sketches
  are linear, so the sum of the sketches is the sketch of the sum. The server keeps momentum
  and error feedback in sketch space, queries the sketch and applies the top-k of the
  estimate. Clients keep no state.

The server's step is sparse in both cases, so the downlink is a sparse frame (the step and,
for the shared support, the next support), see :func:`step_frame`.

Everything here is numpy and the C++ core; the Flower glue is :mod:`taskcodec.fl.flower_secure`.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence, Tuple

import numpy as np

import taskcodec._core as _core
from taskcodec.errors import CorruptStreamError, TaskcodecError
from taskcodec.fl.coding import VALUE_CODINGS

__all__ = ["CountSketch", "SketchServer", "SupportPlanner", "SupportClient", "support_frame",
           "read_support_frame", "small_tensor_positions"]



class CountSketch:
    """A count sketch of vectors of ``n`` elements: ``rows`` x ``cols`` float32, hashes from
    ``seed`` (the same on every machine). Accumulation and queries run in the C++ core."""

    def __init__(self, n: int, *, cols: int, rows: int = 5, seed: int = 0) -> None:
        if int(n) < 1:
            raise TaskcodecError(f"a sketch needs n >= 1, got {n}")
        if not 1 <= int(rows) <= _core.SKETCH_MAX_ROWS:
            raise TaskcodecError(f"sketch rows must be in 1..{_core.SKETCH_MAX_ROWS}, got {rows}")
        if not 1 <= int(cols) <= 2 ** 31:
            raise TaskcodecError(f"sketch columns must be in 1..2^31, got {cols}")
        self.n, self.rows, self.cols, self.seed = int(n), int(rows), int(cols), int(seed) & (2 ** 63 - 1)

    @property
    def size(self) -> int:
        """Cells of the table (what a client sends)."""
        return self.rows * self.cols

    def zeros(self) -> np.ndarray:
        return np.zeros((self.rows, self.cols), np.float32)

    def _table(self, table: np.ndarray, writeable: bool) -> np.ndarray:
        if not isinstance(table, np.ndarray) or table.dtype != np.float32 or table.size != self.size:
            raise TaskcodecError(f"a sketch table must be float32 with {self.rows} x {self.cols} cells")
        if writeable and not (table.flags.c_contiguous and table.flags.writeable):
            raise TaskcodecError("the sketch table to add to must be C-contiguous and writeable")
        return table if table.flags.c_contiguous else np.ascontiguousarray(table)

    def sketch(self, x: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Adds the sketch of ``x`` (``n`` values, any shape) to ``out`` (a new zero table when
        None) and returns it. A NaN or an infinity in ``x`` raises and leaves ``out`` as it was."""
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)
        if x.size != self.n:
            raise TaskcodecError(f"this sketch takes {self.n} values, got {x.size}")
        table = self.zeros() if out is None else self._table(out, True)
        _core.sketch_accumulate(x, table, self.rows, self.cols, self.seed)
        return table

    def query(self, table: np.ndarray) -> np.ndarray:
        """The estimate of every element of what was sketched (median over the rows)."""
        return _core.sketch_query(self._table(table, False), self.n, self.rows, self.cols, self.seed)

    def heavy(self, table: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` elements with the largest estimated magnitude: ascending indices (uint32)
        and their estimates."""
        est = self.query(table)
        idx = _core.topk_select(est, int(min(max(k, 1), self.n)))
        return idx, est[idx]


class SketchServer:
    """FetchSGD's server: error feedback (and momentum, 0 by default: a FedAvg client's update is
    already a whole local epoch) in sketch space. Each round
    :meth:`step` takes the (weighted mean) sketch of the clients' updates and returns the
    sparse step to apply: the ``k`` largest estimates of the error accumulator. What was
    applied is sketched and taken out of the accumulator; momentum is zeroed where the step
    touched its cells."""

    def __init__(self, sketch: CountSketch, k: int, *, momentum: float = 0.0) -> None:
        if not 1 <= int(k) <= sketch.n:
            raise TaskcodecError(f"k must be in 1..{sketch.n}, got {k}")
        if not 0.0 <= float(momentum) < 1.0:
            raise TaskcodecError(f"momentum must be in [0, 1), got {momentum}")
        self.sketch, self.k, self.momentum = sketch, int(k), float(momentum)
        self.velocity = sketch.zeros()
        self.error = sketch.zeros()

    def step(self, table: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        table = np.asarray(table, np.float32).reshape(self.sketch.rows, self.sketch.cols)
        if not np.isfinite(table).all():
            raise CorruptStreamError("the aggregated sketch holds a NaN or an infinity")
        self.velocity *= self.momentum
        self.velocity += table
        self.error += self.velocity
        idx, val = self.sketch.heavy(self.error, self.k)
        applied = np.zeros(self.sketch.n, np.float32)
        applied[idx] = val
        touched = self.sketch.sketch(applied)
        self.error -= touched
        self.velocity[touched != 0] = 0.0
        return idx, val


def small_tensor_positions(sizes: Sequence[int], dense_below: int) -> np.ndarray:
    """Flat positions (uint32, ascending) of every element of the tensors with fewer than
    ``dense_below`` elements, in a model whose tensors have ``sizes`` elements, in order."""
    out, start = [], 0
    for s in sizes:
        if s < dense_below:
            out.append(np.arange(start, start + s, dtype=np.uint32))
        start += s
    return np.concatenate(out) if out else np.zeros(0, np.uint32)


class SupportPlanner:
    """The server's choice of each round's shared support over a model of ``n`` elements.

    The server never sees a client's residual, but it knows, for every position it has asked
    for, the size of the aggregate it got and how many rounds that value had built up over
    (clients decay their residual by ``decay`` a round). From that it estimates each
    position's rate (aggregate magnitude per round) and, with the rounds since it was last
    asked for, the mass now pending there: ``rate * (1 - decay**age) / (1 - decay)``. The
    support is the top of that estimate, an exploration share of positions never asked for
    (drawn at random; any others once every position has been asked for), and every position
    of ``always``.

    Args:
        n: elements of the model (its tensors flattened and concatenated, in order).
        ratio: the support's size as a share of ``n`` (after the warm-up).
        explore: the share of the support drawn at random each round.
        decay: the clients' residual decay (what :class:`SupportClient` uses).
        always: positions in every support (e.g. :func:`small_tensor_positions`); counted in
            the ratio.
        warmup: rounds whose ratio falls geometrically from 25 % to ``ratio`` (round 1 is
            drawn at random: nothing is known yet).
        seed: the exploration's random stream.
    """

    _MAX_AGE = 64  # ages beyond this add nothing to the pending estimate at decay <= 0.9

    def __init__(self, n: int, ratio: float, *, explore: float = 0.3, decay: float = 0.7,
                 always: Optional[np.ndarray] = None, warmup: int = 4, seed: int = 0) -> None:
        if int(n) < 1:
            raise TaskcodecError(f"n must be >= 1, got {n}")
        if not 0.0 < float(ratio) <= 1.0:
            raise TaskcodecError(f"ratio must be in (0, 1], got {ratio}")
        if not 0.0 <= float(explore) <= 1.0:
            raise TaskcodecError(f"explore must be in [0, 1], got {explore}")
        if not 0.0 <= float(decay) <= 1.0:
            raise TaskcodecError(f"decay must be in [0, 1], got {decay}")
        if int(warmup) < 0:
            raise TaskcodecError(f"warmup must be >= 0, got {warmup}")
        self.n, self.ratio, self.explore, self.decay = int(n), float(ratio), float(explore), float(decay)
        self.always = np.unique(np.asarray(always if always is not None else [], np.int64))
        if self.always.size and (self.always[0] < 0 or self.always[-1] >= self.n):
            raise TaskcodecError("an always-sent position lies outside the model")
        self.warmup, self.seed = int(warmup), int(seed)
        self.rate = np.zeros(self.n, np.float32)
        self.age = np.ones(self.n, np.int32)
        self.known = np.zeros(self.n, bool)

    def size(self, server_round: int) -> int:
        """The support's size in a round (1-based)."""
        r = self.ratio
        if server_round <= self.warmup and r < 0.25:
            r = r * (0.25 / r) ** ((self.warmup - server_round + 1) / self.warmup)
        return int(min(self.n, max(self.always.size + 1, round(r * self.n))))

    def _built_up(self, age: np.ndarray) -> np.ndarray:
        """Rounds' worth of update a residual of this age holds (decayed)."""
        a = np.minimum(age, self._MAX_AGE).astype(np.float64)
        return a if self.decay >= 1.0 else (1.0 - self.decay ** a) / (1.0 - self.decay)

    def pending(self) -> np.ndarray:
        """The estimated mass waiting at every position (0 where nothing is known)."""
        return (self.rate * self._built_up(self.age)).astype(np.float32)

    def support(self, server_round: int) -> np.ndarray:
        """Ascending positions (uint32) of the round's support."""
        k = self.size(server_round)
        rng = np.random.default_rng([self.seed, int(server_round)])
        chosen = np.zeros(self.n, bool)
        chosen[self.always] = True
        free = k - int(chosen.sum())
        n_top = int(round((1.0 - self.explore) * free)) if self.known.any() else 0
        if n_top > 0:
            score = self.pending()
            score[chosen | ~self.known] = -1.0
            top = np.argpartition(-score, n_top - 1)[:n_top]
            chosen[top[score[top] >= 0]] = True
        need = k - int(chosen.sum())
        if need > 0:
            pool = np.flatnonzero(~chosen & ~self.known)
            if pool.size < need:
                pool = np.flatnonzero(~chosen)
            chosen[rng.choice(pool, size=min(need, pool.size), replace=False)] = True
        return np.flatnonzero(chosen).astype(np.uint32)

    def update(self, support: np.ndarray, values: np.ndarray) -> None:
        """Takes the round's aggregate (``values`` on ``support``: the mean of what the
        clients sent) into the estimates."""
        values = np.abs(np.asarray(values, np.float64)).reshape(-1)
        if values.size != np.asarray(support).size:
            raise TaskcodecError(f"{values.size} values for a support of {np.asarray(support).size}")
        self.rate[support] = (values / self._built_up(self.age[support])).astype(np.float32)
        self.known[support] = True
        self.age += 1
        self.age[support] = 1


class SupportClient:
    """A client's side of the shared support: the residual it keeps between rounds (error
    feedback), decayed by ``decay`` each round where it was not sent."""

    def __init__(self, n: int, *, decay: float = 0.7) -> None:
        if not 0.0 <= float(decay) <= 1.0:
            raise TaskcodecError(f"decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.residual = np.zeros(int(n), np.float32)

    def encode(self, delta: np.ndarray, support: np.ndarray) -> np.ndarray:
        """The values to send on ``support`` (the update plus the residual there); the rest
        stays in the residual."""
        delta = np.asarray(delta, np.float32).reshape(-1)
        if delta.size != self.residual.size:
            raise TaskcodecError(f"the update has {delta.size} values, the model {self.residual.size}")
        acc = self.residual + delta
        values = acc[support].copy()
        acc[support] = 0.0
        acc *= self.decay
        self.residual = acc
        return values


def support_frame(n: int, step: Optional[Tuple[np.ndarray, np.ndarray]] = None,
                  support: Optional[np.ndarray] = None) -> bytes:
    """A checksummed sparse frame over a model of ``n`` elements holding the server's step
    (ascending indices and float32 values, exact), the next support (indices; one sign bit a
    value), or both. An empty or missing part is left out."""
    from taskcodec.fl import frames
    from taskcodec.fl.updates import Flat

    records, names = [], []
    if step is not None and len(step[0]):
        rec, _ = _core.sparse_encode_selected(np.asarray(step[0], np.uint32), np.asarray(step[1], np.float32), n,
                                              VALUE_CODINGS["float32"], 8, 16, 0, 0)
        records.append(rec)
        names.append("step")
    if support is not None and len(support):
        pi = np.asarray(support, np.uint32)
        # one sign bit a position (every value is +1)
        rec, _ = _core.sparse_encode_selected(pi, np.ones(pi.size, np.float32), n, VALUE_CODINGS["sign"], 8, 16, 0, 1)
        records.append(rec)
        names.append("support")
    if not records:
        raise TaskcodecError("a support frame needs a step or a support")
    flat = Flat("dict", "numpy", names, [[n]] * len(names), ["float32"] * len(names), [None] * len(names), False)
    return frames.write_frame(records, flat, True)


def read_support_frame(blob: bytes, n: int) -> Tuple[Tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The step ``(indices, values)`` and the support (indices) of a :func:`support_frame`
    for a model of ``n`` elements (empty arrays for a part it does not hold);
    :class:`CorruptStreamError` for anything else."""
    if not isinstance(blob, (bytes, bytearray)):
        raise CorruptStreamError("a support frame must be bytes")
    meta_raw, recs, _ = _core.sparse_read(blob, 2, 2 * n)
    try:
        meta = json.loads(meta_raw)
    except ValueError:
        raise CorruptStreamError("the support frame's metadata is not JSON") from None
    names = meta.get("names") if isinstance(meta, dict) else None
    if names not in (["step"], ["support"], ["step", "support"]) or len(recs) != len(names) \
            or any(int(r["n"]) != n for r in recs):
        raise CorruptStreamError(f"not a support frame for a model of {n} elements")
    parts = dict(zip(names, _core.sparse_decode(blob, 2, 2 * n)))
    si, sv = parts.get("step", (np.zeros(0, np.uint32), np.zeros(0, np.float32)))
    pi = parts.get("support", (np.zeros(0, np.uint32), None))[0]
    if not np.isfinite(sv).all():
        raise CorruptStreamError("the step holds a NaN or an infinity")
    return (si, sv), pi
