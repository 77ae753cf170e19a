"""What goes into TopKCompressor.compress comes out of tc.fl.decompress (kind and dtypes), state
that no longer fits the model raises, and the DDP hook shares the compressor's defaults."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from ci_support import require

import taskcodec as tc
from taskcodec import fl

GOLDEN_SPARSE = Path(__file__).resolve().parents[1] / "golden" / "sparse_v1"


def test_numpy_in_numpy_out_with_dtypes():
    rng = np.random.default_rng(0)
    upd = {"a": rng.standard_normal((8, 5)).astype(np.float16), "b": rng.standard_normal(7),
           "n": np.array([4, -2, 9], np.int32)}
    c = fl.TopKCompressor(1.0, values="float32", error_feedback=False)
    out = fl.decompress(c.compress(upd))
    assert list(out) == ["a", "b", "n"]
    assert all(isinstance(v, np.ndarray) for v in out.values())
    assert [out[k].dtype for k in out] == [np.float16, np.float64, np.int32]
    np.testing.assert_array_equal(out["n"], upd["n"])
    single = fl.decompress(c.compress(upd["a"]))
    assert isinstance(single, np.ndarray) and single.dtype == np.float16 and single.shape == (8, 5)


def test_torch_in_torch_out_with_dtypes():
    torch = require("torch")
    upd = {"w": torch.randn(6, 4, dtype=torch.bfloat16), "h": torch.randn(5, dtype=torch.float16),
           "d": torch.randn(3, dtype=torch.float64), "i": torch.tensor([1, -7], dtype=torch.int16)}
    c = fl.TopKCompressor(1.0, values="float32", error_feedback=False)
    blob = c.compress(upd)
    for out in (fl.decompress(blob), c.decompress(blob), fl.accumulate([blob])[0]):
        assert isinstance(out, dict) and list(out) == list(upd)
        for k, v in upd.items():
            assert isinstance(out[k], torch.Tensor) and out[k].dtype == v.dtype and out[k].shape == v.shape
        assert torch.equal(out["w"], upd["w"]) and torch.equal(out["i"], upd["i"])
    single = fl.decompress(c.compress(torch.ones(3, 3)))
    assert isinstance(single, torch.Tensor) and single.dtype == torch.float32
    assert [r["dtype"] for r in fl.read_update(blob)] == ["bfloat16", "float16", "float64", "int16"]


def test_old_frames_without_the_library_key_still_decode_to_numpy():
    manifest = json.loads((GOLDEN_SPARSE / "manifest.json").read_text())
    for name in manifest:
        frame = (GOLDEN_SPARSE / f"{name}.frame").read_bytes()
        out = fl.decompress(frame)
        values = out.values() if isinstance(out, dict) else [out]
        assert all(isinstance(v, np.ndarray) for v in values)
    # numpy updates still write frames without the key, byte for byte as before
    blob = fl.TopKCompressor(0.5).compress(np.ones(10, np.float32))
    assert b'"lib"' not in blob


def test_a_residual_whose_tensor_changed_shape_raises():
    rng = np.random.default_rng(1)
    c = fl.TopKCompressor(0.1)
    c.compress({"w": rng.standard_normal((20, 10)).astype(np.float32)})
    before = c.residuals["w"].copy()
    for changed in ((10, 20), (30, 10)):  # same size reshaped, and another size
        with pytest.raises(tc.TaskcodecError, match="shape"):
            c.compress({"w": rng.standard_normal(changed).astype(np.float32)})
        np.testing.assert_array_equal(c.residuals["w"], before)  # state untouched
        assert c.round == 1
    # the shapes travel with the state
    d = fl.TopKCompressor(0.1)
    d.load_state_dict(c.state_dict())
    with pytest.raises(tc.TaskcodecError, match="shape"):
        d.compress({"w": rng.standard_normal((10, 20)).astype(np.float32)})
    # a state of older versions (no shapes): the size is still checked
    old = {k: v for k, v in c.state_dict().items() if k != "shapes"}
    e = fl.TopKCompressor(0.1)
    e.load_state_dict(old)
    with pytest.raises(tc.TaskcodecError, match="shape"):
        e.compress({"w": rng.standard_normal((30, 10)).astype(np.float32)})
    c.reset()  # starting over is explicit
    c.compress({"w": rng.standard_normal((30, 10)).astype(np.float32)})
    # without error feedback there is no state to mismatch
    f = fl.TopKCompressor(0.1, error_feedback=False)
    f.compress(np.ones((4, 4), np.float32))
    f.compress(np.ones((2, 3), np.float32))


def test_ddp_state_shares_the_compressor_defaults():
    require("torch")
    from taskcodec.fl.ddp import TopKState

    comp = inspect.signature(fl.TopKCompressor).parameters
    ddp = inspect.signature(TopKState).parameters
    assert ddp["values"].default == comp["values"].default == fl.DEFAULT_VALUES == "int8"
    assert ddp["ratio"].default == comp["ratio"].default == fl.DEFAULT_RATIO
    state = TopKState()
    assert state.compressor(0).values == fl.TopKCompressor().values
    # a bucket that changed size after DDP rebuilt its buckets gets a fresh compressor
    c0 = state.compressor(0, 100)
    c0.compress(np.ones(100, np.float32))
    assert state.compressor(0, 100) is c0
    assert state.compressor(0, 50) is not c0
