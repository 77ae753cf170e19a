"""tc.split: exact head/tail equivalence per model family, profiling and the split choice."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import taskcodec as tc  # noqa: E402

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "arch, at",
    [
        ("mobilenet_v2", "features.3"),
        ("mobilenet_v2", "features.13"),
        ("resnet18", "layer2"),
        ("resnet18", "layer3.0"),
        ("efficientnet_b0", "features.4"),
    ],
)
def test_cnn_head_tail_exact(arch, at):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(num_classes=10).eval()
    head, tail = tc.split.partition(model, at)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        feat = head(x)
        assert isinstance(feat, torch.Tensor) and feat.shape[0] == 2
        assert torch.equal(tail(feat), model(x))


def test_cnn_cut_by_fx_node_name_and_sequential_index():
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    head, tail = tc.split.partition(model, "flatten")  # an fx node, not a module
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        assert head(x).shape == (1, 512)
        assert torch.equal(tail(head(x)), model(x))
    seq = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2)).eval()
    h, t = tc.split.partition(seq, 1)
    v = torch.randn(3, 4)
    assert torch.equal(t(h(v)), seq(v))


def test_cnn_bad_cuts_raise():
    model = torchvision.models.resnet18(num_classes=10).eval()
    with pytest.raises(tc.split.SplitError, match="also used after it"):
        tc.split.partition(model, "layer2.0.conv1")  # the skip connection crosses this cut
    with pytest.raises(tc.split.SplitError, match="neither a module"):
        tc.split.partition(model, "no_such_layer")
    with pytest.raises(tc.split.SplitError, match="index"):
        tc.split.partition(model, 3)
    assert "layer2" not in tc.split.cut_points(model)  # a stage, not a block
    assert {"layer2.0", "layer3.1", "avgpool"} <= set(tc.split.cut_points(model))


def _vit_config():
    from transformers import ViTConfig

    return ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, image_size=32, patch_size=8, num_labels=5)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_vit_head_tail_exact(k):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    model = transformers.ViTModel(_vit_config()).eval()
    head, tail = tc.split.partition(model, k)
    with torch.inference_mode():
        feat = head(x)
        assert feat.shape == (2, 1 + 16, 32)  # CLS token + 4x4 patches
        a, b = tail(feat), model(x)
        assert torch.equal(a.last_hidden_state, b.last_hidden_state)
        assert torch.equal(a.pooler_output, b.pooler_output)
    cls = transformers.ViTForImageClassification(_vit_config()).eval()
    head, tail = tc.split.partition(cls, k)
    with torch.inference_mode():
        assert torch.equal(tail(head(x)).logits, cls(x).logits)
    with pytest.raises(tc.split.SplitError, match="0..3"):
        tc.split.partition(cls, 4)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_blip_vision_head_tail_exact(k):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BlipVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                        intermediate_size=64, image_size=32, patch_size=8)
    model = transformers.BlipVisionModel(cfg).eval()
    head, tail = tc.split.partition(model, k)
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        a, b = tail(head(x)), model(x)
        assert torch.equal(a.last_hidden_state, b.last_hidden_state)
        assert torch.equal(a.pooler_output, b.pooler_output)


def test_profile_and_choose():
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(num_classes=10).eval()
    prof = tc.split.profile(model, torch.randn(1, 3, 64, 64), ["features.3", "features.13"], runs=2)
    records = list(prof)
    assert [r.at for r in records] == ["features.3", "features.13"]
    r = records[0]
    assert r.shape == (1, 24, 16, 16)
    assert (r.bytes_f32, r.bytes_f16) == (24 * 16 * 16 * 4, 24 * 16 * 16 * 2)
    assert r.head_ms > 0 and r.tail_ms > 0 and r.flops == r.head_flops + r.tail_flops > 0
    assert prof.input_bytes == 3 * 64 * 64 and prof.output_bytes == 10 * 4
    assert "features.13" in prof.table()

    # A very slow link and a fast edge: the smallest upload should win among the splits, and
    # the total is exactly the sum of its parts.
    link = tc.split.Link(up_kbps=1.0, down_kbps=1.0, latency_ms=5.0)
    choice = tc.split.choose(prof, link, codec_rates={"f16": 16, "tiny": 0.5},
                             edge_speedup=4.0, include_device_only=False)
    best = choice.best
    assert (choice.at, choice.rate) == (best.at, best.rate)
    assert choice.rate == "tiny"
    assert choice.expected_ms == pytest.approx(best.device_ms + best.transfer_ms + best.edge_ms)
    expect_up = next(c for c in prof if c.at == choice.at).bytes_f32 / 32 * 0.5
    assert best.bytes_up == pytest.approx(expect_up)
    assert best.transfer_ms == pytest.approx(5.0 + expect_up / 1.0 + 40 / 1.0)
    assert len(choice.options) == 1 + 2 * 2  # edge-only + 2 cuts x 2 rates
    assert "chosen" in choice.reasoning and "edge-only" in choice.reasoning
    # An infinitely fast link makes the fastest compute placement win: edge-only with a
    # 1000x faster edge.
    fast = tc.split.choose(prof, tc.split.Link(1e12, 1e12), edge_speedup=1000.0)
    assert fast.at == tc.split.EDGE_ONLY
    # Per-cut rates: only the listed cut is considered.
    per_cut = tc.split.choose(prof, link, codec_rates={"features.3": {"c": 2.0}},
                              include_device_only=False, include_edge_only=False)
    assert (per_cut.at, per_cut.rate) == ("features.3", "c")
    with pytest.raises(ValueError):
        tc.split.Link(0, 1)
