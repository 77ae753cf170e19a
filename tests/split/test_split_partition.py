"""tc.split.partition: exact head/tail equivalence per model family, and the cuts it refuses."""

from __future__ import annotations

import pytest
from ci_support import require

torch = require("torch")
torchvision = require("torchvision")

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
    with pytest.raises(tc.ArgumentTypeError, match="float"):
        tc.split.partition(model, 2.5)
    with pytest.raises(tc.ArgumentTypeError, match="nn.Module"):
        tc.split.partition(lambda x: x, "layer2")
    assert issubclass(tc.split.SplitError, tc.TaskcodecError)
    assert "layer2" not in tc.split.cut_points(model)  # a stage, not a block
    assert {"layer2.0", "layer3.1", "avgpool"} <= set(tc.split.cut_points(model))


def _vit_config():
    from transformers import ViTConfig

    return ViTConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, image_size=32, patch_size=8, num_labels=5)


@pytest.mark.parametrize("k", [0, 1, 3])
def test_vit_head_tail_exact(k):
    transformers = require("transformers")
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
    transformers = require("transformers")
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

