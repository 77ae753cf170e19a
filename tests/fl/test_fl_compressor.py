"""tc.fl.TopKCompressor: round trips, error feedback, DGC options, state, hostile frames."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from ci_support import require

import taskcodec as tc
from taskcodec import fl
from taskcodec.fl.frames import decompress


def _update(rng, shapes=((64, 32), (32,), (10, 64))):
    return {f"t{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}


def _reference_topk(x, k):
    order = sorted(range(x.size), key=lambda i: (-abs(float(x[i])), i))
    return np.sort(np.array(order[:k], dtype=np.uint32))


def test_import_is_lazy():
    code = "import sys, taskcodec as tc; tc.fl.TopKCompressor; print('torch' in sys.modules, 'flwr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("n,ratio", [(1, 0.5), (1000, 0.001), (1001, 0.001), (10, 1.0), (0, 0.3), (999, 0.0101)])
def test_topk_count(n, ratio):
    expect = 0 if n == 0 else min(n, max(1, int(np.ceil(ratio * n))))
    assert fl.topk_count(n, ratio) == expect


def test_topk_select_matches_reference_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = (rng.integers(-3, 4, size=rng.integers(1, 400)) * 0.5).astype(np.float32)
        k = int(rng.integers(1, x.size + 1))
        np.testing.assert_array_equal(fl.topk_select(x, k), _reference_topk(x, k))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_updates_are_refused(bad):
    c = fl.TopKCompressor(0.1)
    x = np.ones(100, np.float32)
    x[17] = bad
    with pytest.raises(tc.TaskcodecError, match=r"\[17\]"):
        c.compress(x)
    assert c.round == 0
    np.testing.assert_array_equal(c.residuals.get("", np.zeros(100, np.float32)), 0.0)


@pytest.mark.parametrize("values", sorted(fl.VALUE_CODINGS))
def test_round_trip_indices_exact_values_within_coding_error(values):
    rng = np.random.default_rng(1)
    upd = _update(rng)
    c = fl.TopKCompressor(0.05, values=values, error_feedback=False, block_size=64, levels=8)
    out = c.decompress(c.compress(upd))
    assert list(out) == list(upd)
    for name, x in upd.items():
        y = out[name]
        assert y.shape == x.shape and y.dtype == np.float32
        flat = x.reshape(-1)
        k = fl.topk_count(flat.size, 0.05)
        sel = _reference_topk(flat, k)
        nz = np.flatnonzero(y.reshape(-1))
        assert set(nz) <= set(sel.tolist())  # never a value outside the top-k
        got, want = y.reshape(-1)[sel], flat[sel]
        blocks = [want[i:i + 64] for i in range(0, k, 64)]
        amax = np.concatenate([np.full(b.size, np.abs(b).max()) for b in blocks])
        if values == "float32":
            np.testing.assert_array_equal(got, want)
        elif values == "float16":
            np.testing.assert_array_equal(got, want.astype(np.float16).astype(np.float32))
        elif values == "int8":
            assert np.all(np.abs(got - want) <= amax / 127 * 0.5001)
        elif values == "qsgd":
            assert np.all(np.abs(got - want) <= amax / 8 * 1.0001)
        else:  # sign: sign kept, magnitude the block's mean |v|
            np.testing.assert_array_equal(np.sign(got), np.sign(want))


@pytest.mark.parametrize("values", ["float32", "float16", "int8", "qsgd"])
def test_error_feedback_conserves_the_sum(values):
    rng = np.random.default_rng(2)
    c = fl.TopKCompressor(0.02, values=values)
    total = {k: np.zeros(v.size, np.float64) for k, v in _update(rng).items()}
    sent = {k: np.zeros(v.size, np.float64) for k in total for v in [np.zeros(total[k].size)]}
    for _ in range(6):
        upd = _update(rng)
        acc = {k: c.residuals.get(k, np.zeros(v.size, np.float32)) + v.reshape(-1) for k, v in upd.items()}
        out = c.decompress(c.compress(upd))
        for k in upd:
            s = out[k].reshape(-1)
            if values in ("float32", "float16"):
                # exact: sent + residual == residual + update, in float32
                np.testing.assert_array_equal(s + c.residuals[k], acc[k])
            total[k] += upd[k].reshape(-1)
            sent[k] += s
    for k in total:
        # Over rounds, up to float32 rounding of the running sums (measured max 4e-7).
        np.testing.assert_allclose(sent[k] + c.residuals[k], total[k], atol=1e-5)


def test_tensor_and_torch_inputs():
    torch = require("torch")
    c = fl.TopKCompressor(0.1, values="float32", error_feedback=False)
    t = torch.arange(-50, 50, dtype=torch.float32).reshape(10, 10)
    out = c.decompress(c.compress(t))  # torch in, torch out
    assert isinstance(out, torch.Tensor) and out.shape == (10, 10) and out.dtype == torch.float32
    assert int(torch.count_nonzero(out)) == 10 and out[0, 0] == -50.0
    out = c.decompress(c.compress({"w": t, "steps": torch.tensor([3], dtype=torch.int64)}))
    assert out["steps"].dtype == torch.int64 and out["steps"][0] == 3


def test_array_record_round_trip():
    require("flwr")
    from flwr.app import Array, ArrayRecord

    rng = np.random.default_rng(3)
    rec = ArrayRecord({"a": Array(rng.standard_normal((20, 5)).astype(np.float32)),
                       "b": Array(np.zeros(3, np.float32))})
    c = fl.TopKCompressor(0.2, values="float32", error_feedback=False)
    out = c.decompress(c.compress(rec))
    assert isinstance(out, ArrayRecord) and list(out.keys()) == ["a", "b"]
    assert out["a"].numpy().shape == (20, 5)


def test_warmup_momentum_clipping_and_state(tmp_path):
    rng = np.random.default_rng(4)
    c = fl.TopKCompressor(0.01, momentum=0.9, warmup_ratios=(0.5, 0.1), clip_norm=1.0)
    x = rng.standard_normal(1000).astype(np.float32) * 10
    ks = []
    for _ in range(3):
        info = fl.read_update(c.compress(x))
        ks.append(info[0]["k"])
    assert ks == [500, 100, 10]
    # momentum factor masking: sent coordinates of the velocity are zero
    blob = c.compress(x)
    sent = np.flatnonzero(decompress(blob))
    assert np.all(c.velocities[""][sent] == 0.0)
    # clipping: the velocity holds at most the clipped update's norm plus momentum * previous
    assert np.linalg.norm(c.velocities[""]) < 1.0 / (1 - 0.9) + 1e-3
    path = tmp_path / "state.npz"
    c.save(str(path))
    d = fl.TopKCompressor(0.01, momentum=0.9, clip_norm=1.0)
    d.load(str(path))
    assert d.round == c.round == 4
    e = fl.TopKCompressor(0.01, momentum=0.9, clip_norm=1.0)
    e.load_state_dict(c.state_dict())
    assert c.compress(x) == d.compress(x) == e.compress(x)  # same state -> same bytes


def test_bad_arguments():
    for kw in [dict(ratio=0.0), dict(ratio=1.5), dict(values="int4"), dict(block_size=100),
               dict(levels=0), dict(momentum=1.0), dict(clip_norm=0.0)]:
        with pytest.raises(tc.TaskcodecError):
            fl.TopKCompressor(**kw)
    with pytest.raises(tc.TaskcodecError):
        fl.TopKCompressor().compress(["not", "an", "update"])


def test_corrupt_and_truncated_frames_raise_core_errors():
    rng = np.random.default_rng(5)
    c = fl.TopKCompressor(0.05)
    blob = c.compress(_update(rng))
    for cut in [0, 10, 47, 60, len(blob) // 2, len(blob) - 1]:
        with pytest.raises(tc.CorruptStreamError):
            decompress(blob[:cut])
    for pos in range(0, len(blob), max(1, len(blob) // 50)):
        bad = bytearray(blob)
        bad[pos] ^= 0x41
        with pytest.raises(tc.CorruptStreamError):  # ChecksumError or UnsupportedVersionError
            decompress(bytes(bad))
    sym = tc.encode(np.zeros(4, np.int32), tc.CdfTable.from_pmf([[1.0, 1.0]], [0]))
    with pytest.raises(tc.TaskcodecError, match="symbols, not a sparse update"):
        decompress(sym)
    with pytest.raises(tc.TaskcodecError, match="sparse update"):
        tc.decode(blob, tc.CdfTable.from_pmf([[1.0, 1.0]], [0]))
    with pytest.raises(tc.LimitExceededError, match="max_elements = 100 dense values"):
        decompress(blob, max_elements=100)
    with pytest.raises(tc.LimitExceededError, match="more tensors than max_tensors = 2"):
        decompress(blob, max_tensors=2)


def test_accumulate_skips_bad_frames_with_a_reason():
    rng = np.random.default_rng(6)
    blobs = [fl.TopKCompressor(0.1, values="float32").compress(_update(rng)) for _ in range(3)]
    dense, used, errors = fl.accumulate([blobs[0], blobs[1][:-3], blobs[2]], [0.5, 0.25, 0.25])
    assert used == [0, 2] and len(errors) == 1 and errors[0].startswith("frame 1: ")
    a, b = decompress(blobs[0]), decompress(blobs[2])
    for k in dense:
        np.testing.assert_allclose(dense[k], 0.5 * a[k] + 0.25 * b[k], rtol=1e-6)
    other = fl.TopKCompressor(0.1).compress({"x": np.ones(3, np.float32)})
    _, used, errors = fl.accumulate([blobs[0], other])
    assert used == [0] and "differ" in errors[0]
    with pytest.raises(tc.TaskcodecError, match="no update"):
        fl.accumulate([b"junk"])


def test_compression_ratio_at_one_percent():
    # 1 M float32 parameters at 1 %: int8 values + gap-coded indices. Measured 20.2 kB
    # (about 8.2 bits a position + 8.1 bits a value) against 4 MB dense: about 198x.
    rng = np.random.default_rng(7)
    x = rng.standard_normal(1_000_000).astype(np.float32)
    blob = fl.TopKCompressor(0.01).compress(x)
    assert x.nbytes / len(blob) > 150
