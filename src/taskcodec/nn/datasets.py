"""Offline loaders for the real data the experiments and tests use."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

__all__ = ["FASHION_MNIST_DIRS", "load_fashion_mnist", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",  # Debian/Ubuntu package dataset-fashion-mnist
    "~/.cache/taskcodec/FashionMNIST/raw",
    "./data/FashionMNIST/raw",  # torchvision.datasets.FashionMNIST(root="data", download=True)
)
"""Where :func:`load_fashion_mnist` looks when no ``root`` is given (after
``$TASKCODEC_FASHION_MNIST``)."""

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{path}: header says {dims}, found {body.size} bytes of data")
    return body.reshape(dims)


def _find(root: Path, stem: str) -> Optional[Path]:
    for cand in (root / stem, root / f"{stem}.gz", root / "FashionMNIST" / "raw" / stem,
                 root / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def load_fashion_mnist(
    split: str = "train", root: Union[str, Path, None] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``split`` is ``"train"`` (60,000) or ``"test"`` (10,000). Reads the IDX files (gzipped or
    not) from ``root`` (a folder holding them, or torchvision's download root with
    ``FashionMNIST/raw`` inside), else ``$TASKCODEC_FASHION_MNIST``, else the folders in
    :data:`FASHION_MNIST_DIRS`. Never downloads: on a machine with internet,
    ``torchvision.datasets.FashionMNIST(root, download=True)`` fetches the files this reads.
    """
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    roots: List[Path] = []
    if root is not None:
        roots.append(Path(root).expanduser())
    else:
        if os.environ.get("TASKCODEC_FASHION_MNIST"):
            roots.append(Path(os.environ["TASKCODEC_FASHION_MNIST"]).expanduser())
        roots += [Path(d).expanduser() for d in FASHION_MNIST_DIRS]
    img_stem, lbl_stem = _FILES[split]
    for r in roots:
        img, lbl = _find(r, img_stem), _find(r, lbl_stem)
        if img is not None and lbl is not None:
            images, labels = _read_idx(img), _read_idx(lbl)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise ValueError(f"{img} / {lbl}: shapes {images.shape} and {labels.shape} disagree")
            return images, labels.astype(np.int64)
    raise FileNotFoundError(
        f"Fashion-MNIST {split} files ({img_stem}[.gz], {lbl_stem}[.gz]) not found in "
        f"{[str(r) for r in roots]}. Install the Debian package dataset-fashion-mnist, or run "
        f"torchvision.datasets.FashionMNIST(root, download=True) and pass root="
    )
