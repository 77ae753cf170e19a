"""The compressors for secure aggregation (taskcodec.fl.secure): count sketches (linear,
deterministic, heavy hitters found), the shared-support planner and client, the sketch server,
and the support frames (checked, hostile bytes refused)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from taskcodec.errors import CorruptStreamError, TaskcodecError
from taskcodec.fl.secure import (
    CountSketch,
    SketchServer,
    SupportClient,
    SupportPlanner,
    read_support_frame,
    small_tensor_positions,
    support_frame,
)


def test_sketch_is_linear_and_deterministic():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(5000).astype(np.float32), rng.standard_normal(5000).astype(np.float32)
    sk = CountSketch(5000, rows=5, cols=97, seed=11)
    ta, tb = sk.sketch(a), sk.sketch(b)
    np.testing.assert_allclose(ta + tb, sk.sketch(a + b), atol=1e-4)
    # Adding into a table is the same as summing tables; the same seed gives the same table.
    both = sk.sketch(b, out=sk.sketch(a))
    np.testing.assert_allclose(both, ta + tb, atol=1e-4)
    np.testing.assert_array_equal(CountSketch(5000, rows=5, cols=97, seed=11).sketch(a), ta)
    assert not np.array_equal(CountSketch(5000, rows=5, cols=97, seed=12).sketch(a), ta)
    # Every element lands in one bucket a row with a sign: row sums of |table| of a one-hot.
    one = np.zeros(5000, np.float32)
    one[1234] = 3.0
    t = sk.sketch(one)
    assert (np.count_nonzero(t, axis=1) == 1).all() and np.allclose(np.abs(t).sum(1), 3.0)


def test_sketch_hashes_are_pinned():
    """Buckets and signs come from integer hashes only: this digest is the same on every
    machine (a change here breaks sketches summed across client versions)."""
    x = np.arange(1, 2049, dtype=np.float32)
    t = CountSketch(2048, rows=3, cols=64, seed=2026).sketch(x)
    assert t.sum() != 0
    digest = hashlib.sha256(t.astype("<f4").tobytes()).hexdigest()[:16]
    assert digest == PINNED_SKETCH_DIGEST, digest


PINNED_SKETCH_DIGEST = "6a2dd971c0ef2d2b"


def test_sketch_finds_heavy_hitters_and_refuses_bad_input():
    rng = np.random.default_rng(1)
    x = 0.01 * rng.standard_normal(100_000).astype(np.float32)
    heavy = np.array([7, 4242, 55_555, 99_999])
    x[heavy] = [5.0, -4.0, 3.0, -6.0]
    sk = CountSketch(x.size, rows=5, cols=512, seed=3)
    idx, val = sk.heavy(sk.sketch(x), 4)
    assert sorted(idx.tolist()) == heavy.tolist()
    np.testing.assert_allclose(val, x[idx], atol=0.2)
    table = sk.sketch(x)
    before = table.copy()
    bad = x.copy()
    bad[10] = np.nan
    with pytest.raises(TaskcodecError, match="not finite"):
        sk.sketch(bad, out=table)
    np.testing.assert_array_equal(table, before)  # nothing added
    with pytest.raises(TaskcodecError, match="takes 100000 values"):
        sk.sketch(x[:10])
    with pytest.raises(TaskcodecError, match="float32"):
        sk.query(np.zeros((5, 511), np.float32))
    for kw in ({"rows": 0, "cols": 4}, {"rows": 33, "cols": 4}, {"rows": 3, "cols": 0}):
        with pytest.raises(TaskcodecError):
            CountSketch(10, **kw)


def test_sketch_server_recovers_a_sparse_update_over_rounds():
    """FetchSGD's error feedback in sketch space: a sparse signal repeated each round is
    applied where it is, and what is applied sums to what was sent."""
    n = 20_000
    target = np.zeros(n, np.float32)
    pos = np.array([3, 300, 3000, 19_999])
    target[pos] = [1.0, -2.0, 0.5, 1.5]
    sk = CountSketch(n, rows=5, cols=200, seed=5)
    server = SketchServer(sk, k=4, momentum=0.0)
    applied = np.zeros(n, np.float32)
    for _ in range(5):
        idx, val = server.step(sk.sketch(target))
        applied[idx] += val
    np.testing.assert_allclose(applied[pos], 5 * target[pos], rtol=0.05)
    assert np.abs(np.delete(applied, pos)).max() < 0.05 * np.abs(target).max()
    with pytest.raises(CorruptStreamError):
        server.step(np.full(sk.size, np.nan, np.float32))


def test_support_planner_sizes_always_sent_and_pending_mass():
    n = 10_000
    always = small_tensor_positions([9000, 50, 900, 50], dense_below=100)
    assert always.tolist() == list(range(9000, 9050)) + list(range(9950, 10_000))
    p = SupportPlanner(n, 0.04, explore=0.5, decay=0.5, always=always, warmup=4, seed=7)
    sizes = [p.size(r) for r in range(1, 7)]
    assert sizes[0] == 2500 and sizes[4] == sizes[5] == 400  # 25 % falling to 4 %
    assert all(a > b for a, b in zip(sizes[:4], sizes[1:5]))
    s1 = p.support(1)
    assert s1.dtype == np.uint32 and np.all(np.diff(s1.astype(np.int64)) > 0) and s1.size == 2500
    assert np.isin(always, s1).all()
    np.testing.assert_array_equal(s1, SupportPlanner(n, 0.04, always=always, seed=7).support(1))
    # Round 1's aggregates set each position's rate; positions where the most is pending are
    # asked for again, and exploration draws only positions never asked for.
    values = np.zeros(s1.size, np.float32)
    free = ~np.isin(s1, always)
    values[np.flatnonzero(free)[:150]] = 1.0 + np.arange(150, dtype=np.float32)
    p.update(s1, values)
    s2 = p.support(6)
    assert s2.size == 400 and np.isin(always, s2).all()
    top = s1[np.flatnonzero(free)[:150]][::-1][:150]  # (400 - 100 always) / 2 = 150 top picks
    assert np.isin(top, s2).all()
    explored = np.setdiff1d(s2, np.concatenate([top, always]))
    assert explored.size == 150 and not np.isin(explored, s1).any()
    # The pending estimate grows with the rounds since a position was asked for: rate 2 at
    # decay 0.5 is 2 after one round, 2 * (1 + 0.5) after two.
    q = SupportPlanner(4, 0.5, explore=0.0, decay=0.5, warmup=0)
    q.update(np.array([0, 1], np.uint32), np.array([2.0, -1.0], np.float32))
    np.testing.assert_allclose(q.pending()[:2], [2.0, 1.0])
    q.update(np.array([1], np.uint32), np.array([1.0], np.float32))
    np.testing.assert_allclose(q.pending()[:2], [3.0, 1.0])
    assert q.support(3).tolist() == [0, 1]
    with pytest.raises(TaskcodecError):
        SupportPlanner(n, 0.0)
    with pytest.raises(TaskcodecError):
        SupportPlanner(n, 0.1, always=np.array([n]))
    with pytest.raises(TaskcodecError):
        p.update(s1, values[:3])


def test_support_client_error_feedback_and_decay():
    c = SupportClient(6, decay=0.5)
    delta = np.array([1, 2, 3, 4, 5, 6], np.float32)
    sent = c.encode(delta, np.array([1, 4], np.uint32))
    assert sent.tolist() == [2.0, 5.0]
    assert c.residual.tolist() == [0.5, 0.0, 1.5, 2.0, 0.0, 3.0]
    sent = c.encode(np.zeros(6, np.float32), np.array([0, 5], np.uint32))
    assert sent.tolist() == [0.5, 3.0]
    with pytest.raises(TaskcodecError):
        c.encode(np.zeros(5, np.float32), np.array([0], np.uint32))
    with pytest.raises(TaskcodecError):
        SupportClient(3, decay=1.5)


def test_support_frames_round_trip_and_refuse_hostile_bytes():
    n = 5000
    step = (np.array([1, 10, 4999], np.uint32), np.array([0.5, -1.25, 3.0], np.float32))
    support = np.arange(0, n, 7, dtype=np.uint32)
    blob = support_frame(n, step, support)
    (si, sv), pi = read_support_frame(blob, n)
    np.testing.assert_array_equal(si, step[0])
    np.testing.assert_array_equal(sv, step[1])
    np.testing.assert_array_equal(pi, support)
    assert len(blob) < support.size  # a bit or so an index, not 4 bytes
    (si, sv), pi = read_support_frame(support_frame(n, None, support), n)
    assert si.size == sv.size == 0 and pi.size == support.size
    (si, sv), pi = read_support_frame(support_frame(n, step, None), n)
    assert pi.size == 0 and si.size == 3
    with pytest.raises(TaskcodecError):
        support_frame(n, None, None)
    with pytest.raises(CorruptStreamError):
        read_support_frame(blob, n + 1)  # another model
    rng = np.random.default_rng(0)
    for _ in range(300):  # flipped bytes, truncations: refused with the project's errors
        b = bytearray(blob)
        if rng.random() < 0.5:
            b[rng.integers(len(b))] ^= 1 << int(rng.integers(8))
        else:
            b = b[: int(rng.integers(len(b)))]
        with pytest.raises(TaskcodecError):
            read_support_frame(bytes(b), n)
    with pytest.raises(CorruptStreamError):
        read_support_frame("not bytes", n)
