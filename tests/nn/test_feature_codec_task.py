"""tc.nn.FeatureCodec(transform="task"): the tail-weighted decorrelating transform, its saved
form and frames, and the default path left bit for bit as it was."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest
from ci_support import require

torch = require("torch")

import taskcodec as tc
from taskcodec.errors import TaskcodecError
from taskcodec.nn import transforms

torch.set_num_threads(1)
C = 8


class SensitiveTail(torch.nn.Module):
    """1x1 conv -> ReLU -> global mean -> 10 classes; channel 0 weighs 200x the others."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(C, 16, 1)
        self.fc = torch.nn.Linear(16, 10)
        with torch.no_grad():
            self.conv.weight.mul_(0.05)
            self.conv.weight[:, 0] *= 200

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def _features(n: int, seed: int) -> torch.Tensor:
    """Correlated channels of equal variance: every channel looks alike to per-channel steps."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, C, 4, 4, generator=g)
    mix = torch.eye(C) + 0.5 * torch.ones(C, C) / C
    return torch.einsum("dc,nchw->ndhw", mix, z)


@pytest.fixture(scope="module")
def setup():
    tail = SensitiveTail().eval()
    return tail, _features(400, 1), _features(400, 2)


def test_default_path_is_bit_identical_to_before():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((6, 8, 5, 5)) * np.linspace(0.2, 3, 8)[None, :, None, None]).astype(np.float32)
    # sha256 prefixes and sizes of the frames the codec made before the transform existed
    golden = [({"step_per_std": 0.5}, "dbfe1d65948d513e", 312),
              ({"bits": 2.0, "params_in_frame": False}, "ed0e8aa03cae4e42", 206),
              ({"snr_db": 20.0, "center": "mean"}, "069222c0efbf2c98", 340)]
    for kw, digest, size in golden:
        codec = tc.nn.FeatureCodec.calibrate(x, **kw)
        blob = codec.compress(x[:2])
        assert (hashlib.sha256(blob).hexdigest()[:16], len(blob)) == (digest, size), kw
        assert codec.transform is None and "transform" not in codec.info
        with np.load(io.BytesIO(codec.to_bytes())) as z:
            assert sorted(z.files) == ["header", "steps", "table", "zeros"]
        assert tc.nn.FeatureCodec.calibrate(x, transform=None, **kw).compress(x[:2]) == blob


def test_task_round_trip_saved_form_and_frames(setup, tmp_path):
    tail, cal, ev = setup
    codec = tc.nn.FeatureCodec.calibrate(cal, bits=1.5, transform="task", tail=tail)
    assert codec.info["transform"] == "task" and codec.transform is not None
    t, t_inv, mean = codec.transform
    assert t.shape == (C, C) and mean.shape == (C,)
    np.testing.assert_allclose(t @ t_inv, np.eye(C), atol=1e-4)
    blob = codec.compress(ev)
    out = codec.decompress(blob)
    assert out.shape == ev.shape and out.dtype == torch.float32
    assert torch.equal(out, codec.dequantize(codec.quantize(ev)))
    # a standard frame: the symbols are the quantized components, one row per component
    header = tc.read_header(blob)
    assert header.channel_axis == 1 and header.fingerprint == codec.fingerprint
    assert np.array_equal(tc.decode(blob, codec.table), codec.quantize(ev))
    # the transform travels with the codec
    data = codec.to_bytes()
    again = tc.nn.FeatureCodec.from_bytes(data)
    assert again.to_bytes() == data and again.compress(ev) == blob
    assert torch.equal(again.decompress(blob), out)
    for a, b in zip(again.transform, codec.transform):
        assert np.array_equal(a, b)
    codec.save(tmp_path / "task.npz")
    assert tc.nn.FeatureCodec.load(tmp_path / "task.npz").compress(ev) == blob
    # a codec without the transform cannot pass for it, nor the reverse
    plain = tc.nn.FeatureCodec(codec.table, codec.steps, codec.zeros)
    with pytest.raises(TaskcodecError, match="expected taskcodec.FeatureCodec v1, found"):
        tc.nn.FeatureCodec.from_bytes(_with_version(plain.to_bytes(), 2))  # v2 without a transform
    with pytest.raises(TaskcodecError, match="expected taskcodec.FeatureCodec v2, found"):
        tc.nn.FeatureCodec.from_bytes(_with_version(data, 1))  # a transform under a v1 header


def _with_version(data: bytes, version: int) -> bytes:
    """A valid archive of ``data``'s arrays whose header claims ``version``."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    arrays["header"] = np.frombuffer(json.dumps({**header, "version": version}).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def test_task_beats_per_channel_steps_at_equal_bytes(setup):
    tail, cal, ev = setup
    with torch.inference_mode():
        ref = tail(ev).argmax(1)
    results = {}
    for tf in (None, "task"):
        codec = tc.nn.FeatureCodec.calibrate(cal, bits=1.5, transform=tf, tail=tail,
                                             params_in_frame=False)
        blob = codec.compress(ev)
        with torch.inference_mode():
            agree = float((tail(codec.decompress(blob)).argmax(1) == ref).float().mean())
        results[tf] = (len(blob), agree)
    (plain_bytes, plain_agree), (task_bytes, task_agree) = results[None], results["task"]
    # measured: 9,774 B / 86 % agreement per channel, 9,784 B / 99.5 % with the task transform
    assert task_bytes <= 1.03 * plain_bytes
    assert task_agree >= plain_agree + 0.08 and task_agree >= 0.97


def test_fisher_finds_the_sensitive_channel_and_channel_last(setup):
    tail, cal, _ = setup
    fisher = transforms.tail_fisher(cal[:64], tail)
    assert fisher.shape == (C, C) and np.allclose(fisher, fisher.T)
    assert int(np.argmax(np.diag(fisher))) == 0
    assert fisher[0, 0] > 100 * np.median(np.diag(fisher)[1:])
    # token maps [N, tokens, hidden] with channel_axis=-1
    lin = torch.nn.Linear(C, 5)
    tokens = torch.randn(32, 6, C, generator=torch.Generator().manual_seed(3))
    def tok_tail(f):  # log-probabilities: a shift of all logits is no error
        return torch.log_softmax(lin(f.mean(1)), -1)

    codec = tc.nn.FeatureCodec.calibrate(tokens, channel_axis=-1, step_per_std=0.3,
                                         transform="task", tail=tok_tail)
    out = codec.decompress(codec.compress(tokens))
    assert out.shape == tokens.shape
    with torch.inference_mode():  # coarse where the tail does not look, fine where it does
        err = float((tok_tail(out) - tok_tail(tokens)).std() / tok_tail(tokens).std())
    assert err < 0.06, err  # measured 0.040 (per-channel steps at this setting: 0.062, 1.6x the bytes)


def test_task_arguments_are_checked(setup):
    tail, cal, _ = setup
    with pytest.raises(TaskcodecError):
        tc.nn.FeatureCodec.calibrate(cal, transform="task")  # no tail
    with pytest.raises(TaskcodecError):
        tc.nn.FeatureCodec.calibrate(cal, transform="pca", tail=tail)
    with pytest.raises(TaskcodecError):
        transforms.task_transform(cal.movedim(1, 0).reshape(C, -1).numpy(), np.zeros((C, C)))
    with pytest.raises(TaskcodecError):
        transforms.check_transform((np.eye(C), np.eye(C), np.zeros(C + 1)), C)
