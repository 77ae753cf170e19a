"""Pretrained models by name, with the preprocessing they were trained with.

    model, prep = load_model("mobilenet_v2")      # torchvision, real ImageNet weights, offline
    model, prep = load_model("efficientnet_lite0")  # EfficientNet-Lite0 (ImageNet), offline
    x = prep(photo)                               # uint8 [H, W, 3] -> float [1, 3, 224, 224]
    label = prep.categories[int(model(x).argmax())]

:func:`network_input` (resize + centre crop, still ``uint8``) and :func:`normalize` (to the
model's float input) are the two halves of ``prep``, for callers that need the ``uint8``
crop in between (a JPEG of exactly what the model sees, a batch of calibration views).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Tuple

import numpy as np

from taskcodec.errors import BadInputError

__all__ = ["Preprocessing", "MODELS", "load_model", "network_input", "normalize"]


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """How a model wants its input: resize the short side, centre-crop, scale to [0, 1],
    normalize per channel; and the names of its output classes."""

    resize_size: Tuple[int, ...]
    crop_size: Tuple[int, ...]
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    categories: Tuple[str, ...] = ()

    def __call__(self, photo: np.ndarray) -> Any:
        """``uint8 [H, W, 3]`` -> normalized float ``[1, 3, crop, crop]``."""
        import torch

        img = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)
        return normalize(network_input(img, self), self).unsqueeze(0)


def network_input(img_chw: Any, prep: Any) -> Any:
    """``uint8 [3, h, w]`` -> ``uint8 [3, crop, crop]``: torchvision's resize + centre crop.

    ``prep`` is a :class:`Preprocessing` or a torchvision transforms preset (anything with
    ``resize_size`` and ``crop_size``)."""
    from torchvision.transforms.v2 import functional as F

    resized = F.resize(img_chw, list(prep.resize_size), antialias=True)
    return F.center_crop(resized, list(prep.crop_size))


def normalize(u8: Any, prep: Any) -> Any:
    """``uint8`` image tensor(s) -> float, scaled to [0, 1] and normalized with ``prep``'s
    ``mean`` and ``std``."""
    from torchvision.transforms.v2 import functional as F

    return F.normalize(u8.float() / 255.0, list(prep.mean), list(prep.std))


def _mobilenet_v2() -> Tuple[Any, Preprocessing]:
    from torchvision.models import MobileNet_V2_Weights

    from taskcodec.nn.backbones import load_backbone

    weights = MobileNet_V2_Weights.IMAGENET1K_V1
    preset = weights.transforms()
    prep = Preprocessing(tuple(preset.resize_size), tuple(preset.crop_size),
                         tuple(preset.mean), tuple(preset.std),
                         tuple(weights.meta["categories"]))
    return load_backbone("mobilenet_v2"), prep


def _efficientnet_lite0() -> Tuple[Any, Preprocessing]:
    from torchvision.models import MobileNet_V2_Weights

    from taskcodec.nn.backbones import load_backbone

    model = load_backbone("efficientnet_lite0")
    # Trained in TensorFlow on (pixel - 127) / 128 (efficientnet_lite_builder.py MEAN_RGB,
    # STDDEV_RGB), 224 x 224 centre crops (crop_padding 32: resize 256, crop 224). The 1000
    # outputs are the standard ImageNet class order, as torchvision's.
    prep = Preprocessing((256,), (224,), (127 / 255,) * 3, (128 / 255,) * 3,
                         tuple(MobileNet_V2_Weights.IMAGENET1K_V1.meta["categories"]))
    return model, prep


MODELS: Dict[str, Callable[[], Tuple[Any, Preprocessing]]] = {
    "mobilenet_v2": _mobilenet_v2,
    "efficientnet_lite0": _efficientnet_lite0,
}
"""Loaders of the pretrained models, by name."""


def load_model(name: str) -> Tuple[Any, Preprocessing]:
    """``(model, preprocessing)`` of pretrained model ``name``, the model in eval mode.

    Raises :class:`~taskcodec.MissingWeightsError` (saying how to get them) when the weights
    are not on this machine, :class:`~taskcodec.BadInputError` for an unknown name."""
    if name not in MODELS:
        raise BadInputError(f"unknown model {name!r}; known: {sorted(MODELS)}")
    return MODELS[name]()
