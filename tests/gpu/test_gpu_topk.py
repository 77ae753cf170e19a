"""GPU top-k with error feedback follows the sparse-update selection contract exactly:
k entries of largest |acc|, ties to the lower index, indices ascending; NaN/Inf raise and
leave the residual as it was; decode-and-accumulate checks indices before adding."""

from __future__ import annotations

import numpy as np
import pytest

import taskcodec as tc
from taskcodec.fl import gpu as tcc

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu
DEV = "cuda"


def reference(acc: np.ndarray, k: int):
    key = np.abs(acc.astype(np.float32))
    order = np.lexsort((np.arange(acc.size), -key))  # magnitude down, index up
    sel = np.sort(order[:k])
    return sel, acc[sel]


def cases(rng):
    yield "normal", rng.standard_normal(100_003).astype(np.float32)
    yield "grid-ties", (rng.integers(-8, 9, size=50_000) * 0.25).astype(np.float32)
    z = np.zeros(40_000, np.float32)
    z[rng.choice(z.size, 300, replace=False)] = rng.standard_normal(300)
    yield "mostly-zero", z
    yield "signed-zero", np.array([0.0, -0.0, 1.0, -1.0, 0.0, -2.0, 2.0] * 10, np.float32)
    yield "tiny", np.array([3.0], np.float32)
    yield "denormal", (rng.standard_normal(5000) * 1e-40).astype(np.float32)


@pytest.mark.parametrize("frac", [0.0001, 0.001, 0.01, 0.3, 1.0])
def test_topk_matches_reference(frac):
    rng = np.random.default_rng(int(frac * 1e6))
    for name, x in cases(rng):
        k = max(1, int(np.ceil(frac * x.size)))
        idx, val = tcc.topk(torch.from_numpy(x).to(DEV), k)
        want_i, want_v = reference(x, k)
        np.testing.assert_array_equal(idx.cpu().numpy(), want_i, err_msg=name)
        np.testing.assert_array_equal(val.cpu().numpy(), want_v, err_msg=name)


def test_topk_with_error_feedback_conserves_the_sum():
    rng = np.random.default_rng(4)
    n, k = 20_000, 200
    res = rng.standard_normal(n).astype(np.float32) * 0.1
    upd = rng.standard_normal(n).astype(np.float32)
    r_dev = torch.from_numpy(res).to(DEV)
    idx, val = tcc.topk(torch.from_numpy(upd).to(DEV), k, residual=r_dev)
    acc = (res + upd).astype(np.float32)
    np.testing.assert_array_equal(r_dev.cpu().numpy(), acc)  # residual holds acc
    want_i, want_v = reference(acc, k)
    np.testing.assert_array_equal(idx.cpu().numpy(), want_i)
    sent = val.half().float()  # e.g. values sent as float16
    tcc.residual_subtract(r_dev, idx, sent)
    after = r_dev.cpu().numpy()
    total = after.copy()
    total[want_i] += sent.cpu().numpy()
    np.testing.assert_allclose(total, acc, rtol=0, atol=1e-6)  # sent + residual == acc
    mask = np.ones(n, bool)
    mask[want_i] = False
    np.testing.assert_array_equal(after[mask], acc[mask])


def test_topk_rejects_non_finite_and_keeps_the_residual():
    x = np.ones(1000, np.float32)
    x[10] = np.nan
    res = torch.full((1000,), 0.5, device=DEV)
    with pytest.raises(tc.TaskcodecError, match="NaN"):
        tcc.topk(torch.from_numpy(x).to(DEV), 5, residual=res)
    assert bool((res == 0.5).all())
    x[10] = np.inf
    with pytest.raises(tc.TaskcodecError):
        tcc.topk(torch.from_numpy(x).to(DEV), 5)
    with pytest.raises(tc.TaskcodecError):
        tcc.topk(torch.zeros(10, device=DEV), 11)


def test_scatter_add_and_bad_indices():
    rng = np.random.default_rng(9)
    dense = torch.zeros(1000, device=DEV)
    idx = torch.tensor(np.sort(rng.choice(1000, 50, replace=False)), dtype=torch.int32, device=DEV)
    val = torch.tensor(rng.standard_normal(50).astype(np.float32), device=DEV)
    tcc.scatter_add(dense, idx, val, 0.5)
    want = np.zeros(1000, np.float32)
    want[idx.cpu().numpy()] += np.float32(0.5) * val.cpu().numpy()
    np.testing.assert_array_equal(dense.cpu().numpy(), want)
    before = dense.clone()
    bad = idx.clone()
    bad[-1] = 1000
    with pytest.raises(tc.TaskcodecError):
        tcc.scatter_add(dense, bad, val)
    assert torch.equal(dense, before)
