"""TopKCompressor on CUDA tensors writes the frames the CPU path writes, round after round,
with error feedback (and DGC momentum) state kept on the device."""

from __future__ import annotations

import numpy as np
import pytest

import taskcodec as tc

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("values", ["float32", "float16", "int8", "sign", "qsgd"])
@pytest.mark.parametrize("momentum", [None, 0.9])
def test_gpu_compressor_frames_equal_cpu_frames(values, momentum):
    rng = np.random.default_rng(len(values) + (7 if momentum else 0))
    shapes = {"conv.w": (16, 8, 3, 3), "fc.w": (300, 64), "fc.b": (64,)}
    cpu = tc.fl.TopKCompressor(ratio=0.02, values=values, momentum=momentum, seed=3,
                               warmup_ratios=(0.1,))
    gpu = tc.fl.TopKCompressor(ratio=0.02, values=values, momentum=momentum, seed=3,
                               warmup_ratios=(0.1,))
    for rnd in range(3):
        upd = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
        blob_cpu = cpu.compress({k: torch.from_numpy(v) for k, v in upd.items()})  # torch on the CPU
        blob_gpu = gpu.compress({k: torch.from_numpy(v).cuda() for k, v in upd.items()})
        assert blob_gpu == blob_cpu, f"round {rnd}"
        assert all(r.device.type == "cuda" for r in gpu.residuals.values())
    state_cpu, state_gpu = cpu.state_dict(), gpu.state_dict()
    for k in shapes:
        np.testing.assert_array_equal(state_gpu["residuals"][k], state_cpu["residuals"][k])
        if momentum:
            np.testing.assert_array_equal(state_gpu["velocities"][k], state_cpu["velocities"][k])
    dense = tc.fl.decompress(blob_gpu)  # torch in, torch (on the CPU) out
    assert set(dense) == set(shapes) and all(isinstance(v, torch.Tensor) for v in dense.values())


def test_gpu_compressor_single_tensor_and_state_moves_between_devices():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((50, 40)).astype(np.float32)
    comp = tc.fl.TopKCompressor(ratio=0.05, values="int8")
    ref = tc.fl.TopKCompressor(ratio=0.05, values="int8")
    assert comp.compress(torch.from_numpy(x).cuda()) == ref.compress(torch.from_numpy(x))
    # next round on the CPU with the residual that lived on the GPU
    y = rng.standard_normal((50, 40)).astype(np.float32)
    assert comp.compress(y) == ref.compress(y)
    z = rng.standard_normal((50, 40)).astype(np.float32)
    assert comp.compress(torch.from_numpy(z).cuda()) == ref.compress(torch.from_numpy(z))


def test_gpu_compressor_rejects_non_finite_and_keeps_state():
    comp = tc.fl.TopKCompressor(ratio=0.1)
    good = torch.randn(1000, device="cuda")
    comp.compress(good)
    before = comp.residuals[""].clone()
    bad = torch.randn(1000, device="cuda")
    bad[5] = float("inf")
    with pytest.raises(tc.TaskcodecError):
        comp.compress(bad)
    assert torch.equal(comp.residuals[""], before)
