"""tc.nn.SplitCodec on a tiny conv model split in two: step 0 is FeatureCodec, a short
distillation improves on it, frames round-trip exactly, saved codecs reload bit for bit."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
from ci_support import require

torch = require("torch")
require("compressai")
require("tqdm")

from torch import nn  # noqa: E402

import taskcodec as tc  # noqa: E402
from taskcodec.nn.distill import agreement  # noqa: E402

torch.set_num_threads(1)


def _images(n: int, seed: int) -> torch.Tensor:
    """Smooth random images (low-frequency noise upsampled), [n, 3, 32, 32]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.randn(n, 3, 4, 4, generator=g)
    fine = torch.randn(n, 3, 32, 32, generator=g) * 0.1
    return nn.functional.interpolate(coarse, size=32, mode="bilinear", align_corners=False) + fine


HEAD_STATE: dict = {}  # the halves' weights as the model fixture made them
TAIL_STATE: dict = {}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.ReLU()).eval()
    tail = nn.Sequential(nn.Conv2d(12, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(16, 10)).eval()
    with torch.no_grad():
        tail[4].weight.mul_(40.0)  # a teacher whose logits are not all alike
    HEAD_STATE.update({k: v.clone() for k, v in head.state_dict().items()})
    TAIL_STATE.update({k: v.clone() for k, v in tail.state_dict().items()})
    return head, tail, _images(96, 1)


@pytest.fixture(scope="module")
def step0(model):
    head, tail, x = model
    return tc.nn.SplitCodec.fit(head, tail, x, steps=0, at="1", progress=False)


@pytest.fixture(scope="module")
def coarse0(model):
    head, tail, x = model
    return tc.nn.SplitCodec.fit(head, tail, x, steps=0, step_per_std=2.0, lam=0.001, progress=False)


@pytest.fixture(scope="module")
def trained(model):
    head, tail, x = model
    return tc.nn.SplitCodec.fit(head, tail, x, lam=0.001, steps=40, warmup=10, batch_size=32,
                                lr=1e-3, step_per_std=2.0, progress=False, device="cpu")


def _teacher(model):
    head, tail, x = model
    with torch.no_grad():
        return tail(head(x))


def test_step0_is_the_feature_codec(model, step0):
    head, tail, x = model
    with torch.no_grad():
        acts = head(x)
        fc = tc.nn.FeatureCodec.calibrate(acts, step_per_std=0.5)
        ref = tail(fc.decompress(fc.compress(acts)))
        out = step0.decode(step0.encode(x))
    assert step0.fingerprint == fc.fingerprint  # same symbols -> same fitted tables
    np.testing.assert_array_equal(step0.bottleneck.step.numpy(), fc.steps)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    a_sc, a_fc = agreement(_teacher(model), out), agreement(_teacher(model), ref)
    assert abs(a_sc["agreement"] - a_fc["agreement"]) <= 1 / x.shape[0]
    assert abs(a_sc["expected_loss_pt"] - a_fc["expected_loss_pt"]) < 0.05
    assert step0.at == "1" and step0.head is head and step0.tail is tail


def test_short_fit_reduces_kl_and_keeps_agreement(model, coarse0, trained):
    head, tail, x = model
    teacher = _teacher(model)
    with torch.no_grad():
        a0 = agreement(teacher, coarse0(x))
        a1 = agreement(teacher, trained(x))
    assert not trained.info["kept_start"]
    assert a1["kl"] < 0.8 * a0["kl"]
    assert trained.info["objective"] < coarse0.info["objective"]
    assert a1["agreement"] >= a0["agreement"] - 1 / x.shape[0]
    assert len(trained.history) == 40 and [h["phase"] for h in trained.history[9:11]] == [0.0, 1.0]
    # the frozen halves are unchanged and still trainable by their owner
    assert all(p.requires_grad for p in tail.parameters())
    for half, before in ((head, HEAD_STATE), (tail, TAIL_STATE)):
        after = half.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("which", ["step0", "trained"])
def test_round_trip_is_exact(model, which, request):
    sc = request.getfixturevalue(which)
    _, _, x = model
    xs = x[:5]
    blob = sc.encode(xs)
    assert isinstance(blob, bytes) and tc.read_header(blob).fingerprint == sc.fingerprint
    with torch.no_grad():
        assert torch.equal(sc.decode(blob), sc(xs))
        assert torch.equal(sc.decode_features(blob), sc.bottleneck(sc.head(xs))[0])


def test_save_load_gives_identical_frames(model, trained, tmp_path):
    head, tail, x = model
    path = tmp_path / "codec.npz"
    trained.save(path)
    sc2 = tc.nn.SplitCodec.load(path, head=head, tail=tail)
    assert sc2.fingerprint == trained.fingerprint and sc2.at == trained.at
    assert sc2.encode(x[:7]) == trained.encode(x[:7])
    blob = trained.encode(x[:3])
    assert torch.equal(sc2.decode(blob), trained.decode(blob))


def test_damaged_and_foreign_files_raise(model, trained, tmp_path):
    head, tail, x = model
    data = bytearray(trained.to_bytes())
    for i in (len(data) // 3, len(data) // 2, len(data) - 30):
        bad = bytearray(data)
        bad[i] ^= 0x5A
        with pytest.raises(tc.TaskcodecError):
            tc.nn.SplitCodec.from_bytes(bytes(bad), head=head, tail=tail)
    with pytest.raises(tc.TaskcodecError):
        tc.nn.SplitCodec.from_bytes(bytes(data[: len(data) // 2]), head=head, tail=tail)
    fc = tc.nn.FeatureCodec.calibrate(torch.randn(4, 12, 8, 8))
    for foreign in (fc.to_bytes(), b"not a codec", b""):
        p = tmp_path / "foreign.npz"
        p.write_bytes(foreign)
        with pytest.raises(tc.TaskcodecError):
            tc.nn.SplitCodec.load(p, head=head, tail=tail)
    with pytest.raises(tc.TaskcodecError):
        tc.nn.SplitCodec.load(tmp_path / "missing.npz", head=head, tail=tail)
    # a well-formed archive whose weights differ from their digest (the byte flips above are
    # caught by the zip layer already)
    with np.load(io.BytesIO(bytes(data)), allow_pickle=False) as z:
        arrays = {k: np.array(z[k]) for k in z.files}
    arrays["w:dec_res.2.bias"] = arrays["w:dec_res.2.bias"] + np.float32(1.0)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with pytest.raises(tc.CorruptStreamError, match="do not match their fingerprint"):
        tc.nn.SplitCodec.from_bytes(buf.getvalue(), head=head, tail=tail)
    other_tail = copy.deepcopy(tail)
    with torch.no_grad():
        other_tail[4].bias.add_(1.0)
    with pytest.raises(tc.ModelMismatch):
        tc.nn.SplitCodec.from_bytes(bytes(data), head=head, tail=other_tail)
    sc = tc.nn.SplitCodec.from_bytes(bytes(data), head=head, tail=other_tail, check_model=False)
    assert sc.fingerprint == trained.fingerprint


def test_frame_of_another_codec_raises(model, step0, trained):
    head, tail, x = model
    other = tc.nn.SplitCodec.fit(head, tail, x, steps=0, step_per_std=0.3, progress=False)
    with pytest.raises(tc.TableMismatchError):
        step0.decode(other.encode(x[:2]))
    with pytest.raises(tc.TableMismatchError):
        trained.decode(step0.encode(x[:2]))
    bad = bytearray(trained.encode(x[:2]))
    bad[len(bad) // 2] ^= 0xFF
    with pytest.raises(tc.CorruptStreamError):
        trained.decode(bytes(bad))


def test_checkpoint_resume_continues_from_the_saved_step(model, tmp_path):
    head, tail, x = model
    ckpt = tmp_path / "run.pt"
    kw = dict(lam=0.001, warmup=4, batch_size=16, progress=False, device="cpu",
              checkpoint=ckpt, checkpoint_every=4)
    first = tc.nn.SplitCodec.fit(head, tail, x, steps=8, **kw)
    assert ckpt.is_file() and [h["step"] for h in first.history] == list(range(1, 9))
    resumed = tc.nn.SplitCodec.fit(head, tail, x, steps=12, **kw)
    assert [h["step"] for h in resumed.history] == list(range(1, 13))
    assert resumed.history[:8] == first.history  # the first 8 came from the checkpoint
    state = torch.load(ckpt, weights_only=True)
    assert state["step"] == 12
    again = tc.nn.SplitCodec.fit(head, tail, x, steps=12, **kw)  # nothing left to train
    assert again.history == resumed.history and again.fingerprint == resumed.fingerprint
    ckpt.write_bytes(b"garbage")
    with pytest.raises(tc.TaskcodecError):
        tc.nn.SplitCodec.fit(head, tail, x, steps=12, **kw)


def test_never_worse_than_the_start(model, step0):
    """Near-lossless steps leave little to gain: a rough run must not end worse than step 0
    (same lam as the step0 fixture's default)."""
    head, tail, x = model
    sc = tc.nn.SplitCodec.fit(head, tail, x, lam=0.01, steps=12, warmup=2, lr=2e-2,
                              progress=False, device="cpu")
    assert sc.info["objective"] <= step0.info["objective"] + 1e-9
    if sc.info["kept_start"]:
        assert sc.fingerprint == step0.fingerprint
        blob = step0.encode(x[:4])
        assert sc.encode(x[:4]) == blob and torch.equal(sc.decode(blob), step0.decode(blob))


def test_selection_on_held_out_views(model):
    head, tail, x = model
    val = _images(24, 7)
    kw = dict(lam=0.001, step_per_std=2.0, progress=False, device="cpu", val_images=val)
    s0 = tc.nn.SplitCodec.fit(head, tail, x, steps=0, **kw)
    sc = tc.nn.SplitCodec.fit(head, tail, x, steps=8, warmup=2, **kw)
    assert s0.info["scored_on"] == sc.info["scored_on"] == "val"
    assert sc.info["objective"] <= s0.info["objective"] + 1e-9
    with torch.no_grad():
        kl = agreement(tail(head(val)), sc(val))["kl"]
    assert kl == pytest.approx(sc.info["kl"], rel=1e-4, abs=1e-7)


def test_iterable_images_and_bad_input(model):
    head, tail, x = model
    sc = tc.nn.SplitCodec.fit(head, tail, [(x[:40], None), x[40:]], steps=0, progress=False)
    assert sc.info["training_views"] == x.shape[0]
    with pytest.raises(tc.TaskcodecError):
        tc.nn.SplitCodec.fit(head, tail, [], steps=0, progress=False)
    with pytest.raises(tc.TaskcodecError):
        tc.nn.SplitCodec.fit(head, tail, x[0], steps=0, progress=False)
    with pytest.raises(tc.TaskcodecError):
        sc.encode_features(torch.zeros(1, 5, 8, 8))


def test_fit_a_whole_model_at_a_cut_and_load_around_it(model, tmp_path):
    head, tail, x = model
    whole = nn.Sequential(*head, *tail).eval()
    sc = tc.nn.SplitCodec.fit(whole, at="3", images=x, steps=0, progress=False)
    assert sc.at == "3"
    ref = tc.nn.SplitCodec.fit(head, tail, x, steps=0, progress=False)
    blob = sc.encode(x[:3])
    assert blob == ref.encode(x[:3]) and torch.equal(sc.decode(blob), ref.decode(blob))
    path = tmp_path / "whole.npz"
    sc.save(path)
    again = tc.nn.SplitCodec.load(path, model=whole)  # cut where it was trained
    assert torch.equal(again.decode(blob), sc.decode(blob))
    with pytest.raises(tc.TaskcodecError, match="name the cut"):
        tc.nn.SplitCodec.fit(whole, images=x, steps=0, progress=False)
    with pytest.raises(tc.TaskcodecError, match="not both"):
        tc.nn.SplitCodec.load(path, model=whole, head=head, tail=tail)
    with pytest.raises(tc.TaskcodecError, match="the model"):
        tc.nn.SplitCodec.load(path)


def test_cached_float16_activations_and_density_warmup(model):
    """fit on activations cached in float16 (as the training script stores them): the rate
    model alone trains during the density warm-up, so the transforms stay at their start."""
    head, tail, x = model
    with torch.no_grad():
        acts = head(x)
        cached = (acts.half(), tail(acts).half())
    sc = tc.nn.SplitCodec.fit(head, tail, cached=cached, steps=6, density_warmup=6, warmup=0,
                              lam=0.01, lr=1e-2, progress=False, device="cpu")
    start = tc.nn.SplitCodec.fit(head, tail, cached=cached, steps=0, progress=False)
    for k, v in start.bottleneck.state_dict().items():
        if not k.startswith("entropy"):
            assert torch.equal(v, sc.bottleneck.state_dict()[k]), k
    bits = [h["bits"] for h in sc.history]
    assert bits[-1] < bits[0]  # the rate model fitted the start's latents
    assert all(np.isnan(h["task"]) for h in sc.history)  # the tail did not run
    with pytest.raises(tc.TaskcodecError, match="cached"):
        tc.nn.SplitCodec.fit(head, tail, cached=(acts, tail(acts)[:3]), steps=0, progress=False)


def test_task_init_starts_at_the_task_transform(model):
    """init="task": at step 0 the codec is FeatureCodec(transform="task")'s: same one step,
    the 1x1 convolutions its transform, so the tail's input matches its dequantized output."""
    head, tail, x = model
    sc = tc.nn.SplitCodec.fit(head, tail, x, steps=0, init="task", bits=2.0, progress=False)
    with torch.no_grad():
        feats = head(x)
    fc = tc.nn.FeatureCodec.calibrate(feats, bits=2.0, transform="task", tail=tail)
    assert np.allclose(sc.bottleneck.step.numpy(), fc.steps)
    q_sc = sc.bottleneck.symbols(feats)
    with torch.no_grad():
        ref = fc.decompress(fc.compress(feats))
        got = sc.bottleneck.reconstruct(q_sc)
    # float32 conv vs numpy matmul: a few symbols may round the other way
    assert float((got - ref).abs().gt(1e-3).float().mean()) < 0.01
    assert sc.info["init"] == "task"
    with pytest.raises(tc.TaskcodecError, match="init"):
        tc.nn.SplitCodec.fit(head, tail, x, steps=0, init="pca", progress=False)
