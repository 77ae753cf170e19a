"""Offline loaders for the real data the experiments and tests use."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path
from typing import List, Optional, Tuple, Union

import numpy as np

from taskcodec._cache import data_cache_dir
from taskcodec.errors import CorruptStreamError, MissingDataError, TaskcodecError

__all__ = ["FASHION_MNIST_DIRS", "FASHION_MNIST_INSTALL", "data_cache_dir", "fashion_mnist_dirs",
           "find_fashion_mnist", "load_fashion_mnist", "FASHION_MNIST_CLASSES"]

FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",  # Debian/Ubuntu package dataset-fashion-mnist
    "~/.cache/taskcodec/fashion-mnist",  # scripts/setup-data.sh without root
    "~/.cache/taskcodec/FashionMNIST/raw",
    "./data/FashionMNIST/raw",  # torchvision.datasets.FashionMNIST(root="data", download=True)
)
"""Where :func:`load_fashion_mnist` looks when no ``root`` is given (after
``$TASKCODEC_FASHION_MNIST`` and ``<data_cache_dir()>/fashion-mnist``)."""

FASHION_MNIST_INSTALL = (
    "install the Debian package dataset-fashion-mnist (`make data` in a taskcodec checkout "
    "installs it, or unpacks it into ~/.cache/taskcodec without root), or point "
    "TASKCODEC_FASHION_MNIST at a folder holding the IDX files "
    "(torchvision.datasets.FashionMNIST(root, download=True) fetches them)"
)
"""How to get the files, for error messages."""

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
        raise CorruptStreamError(f"{path} is not an IDX file of unsigned bytes")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise CorruptStreamError(f"{path}: header says {dims}, found {body.size} bytes of data")
    return body.reshape(dims)


def _find(root: Path, stem: str) -> Optional[Path]:
    for cand in (root / stem, root / f"{stem}.gz", root / "FashionMNIST" / "raw" / stem,
                 root / "FashionMNIST" / "raw" / f"{stem}.gz"):
        if cand.is_file():
            return cand
    return None


def fashion_mnist_dirs() -> List[Path]:
    """The folders searched for Fashion-MNIST, in order: ``$TASKCODEC_FASHION_MNIST`` (when
    set, the only one), else ``<data_cache_dir()>/fashion-mnist`` and
    :data:`FASHION_MNIST_DIRS`."""
    if os.environ.get("TASKCODEC_FASHION_MNIST"):
        return [Path(os.environ["TASKCODEC_FASHION_MNIST"]).expanduser()]
    roots = [Path(FASHION_MNIST_DIRS[0]), data_cache_dir() / "fashion-mnist"]
    for d in FASHION_MNIST_DIRS[1:]:
        if Path(d).expanduser() not in roots:
            roots.append(Path(d).expanduser())
    return roots


def find_fashion_mnist(root: Union[str, Path, None] = None) -> Path:
    """The folder holding all four Fashion-MNIST IDX files (``root`` or the first of
    :func:`fashion_mnist_dirs` that has them). Raises FileNotFoundError saying how to get them."""
    roots = [Path(root).expanduser()] if root is not None else fashion_mnist_dirs()
    stems = [s for pair in _FILES.values() for s in pair]
    for r in roots:
        found = [_find(r, s) for s in stems]
        first = found[0]
        if first is not None and all(found):
            return first.parent
    raise MissingDataError(
        f"Fashion-MNIST IDX files not found in {[str(r) for r in roots]}: {FASHION_MNIST_INSTALL}"
    )


def load_fashion_mnist(
    split: str = "train", root: Union[str, Path, None] = None
) -> Tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as ``(images uint8 [N, 28, 28], labels int64 [N])``.

    ``split`` is ``"train"`` (60,000) or ``"test"`` (10,000). Reads the IDX files (gzipped or
    not) from ``root`` (a folder holding them, or torchvision's download root with
    ``FashionMNIST/raw`` inside), else from ``$TASKCODEC_FASHION_MNIST`` when it is set, else
    from the first of ``<data_cache_dir()>/fashion-mnist`` and :data:`FASHION_MNIST_DIRS` that
    holds them. Never downloads: on a machine with internet,
    ``torchvision.datasets.FashionMNIST(root, download=True)`` fetches the files this reads.
    """
    if split not in _FILES:
        raise TaskcodecError(f"split must be 'train' or 'test', got {split!r}")
    roots: List[Path] = [Path(root).expanduser()] if root is not None else fashion_mnist_dirs()
    img_stem, lbl_stem = _FILES[split]
    for r in roots:
        img, lbl = _find(r, img_stem), _find(r, lbl_stem)
        if img is not None and lbl is not None:
            images, labels = _read_idx(img), _read_idx(lbl)
            if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
                raise TaskcodecError(
                    f"{img} / {lbl}: shapes {images.shape} and {labels.shape} disagree")
            return images, labels.astype(np.int64)
    raise MissingDataError(
        f"Fashion-MNIST {split} files ({img_stem}[.gz], {lbl_stem}[.gz]) not found in "
        f"{[str(r) for r in roots]}: {FASHION_MNIST_INSTALL}"
    )
