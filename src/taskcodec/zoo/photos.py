"""Real photos by name or path, and the calibration views cut from them.

A photo is named either by a file path (JPEG or PNG) or by the name of one of scikit-image's
bundled photographs (``"chelsea"``, ``"coffee"``, ``"astronaut"``, …). The codecs are
calibrated on :data:`CALIBRATION_PHOTOS` and the demos evaluate on :data:`EVALUATION_PHOTOS`;
the two sets are disjoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Tuple, Union

import numpy as np

from taskcodec.errors import BadInputError, MissingDataError

__all__ = ["CALIBRATION_PHOTOS", "EVALUATION_PHOTOS", "IMAGE_SUFFIXES", "resolve_photo",
           "load_photo", "calibration_views", "random_view"]

CALIBRATION_PHOTOS: Tuple[str, ...] = (
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "motorcycle_left",
    "motorcycle_right",
    "camera",
    "coins",
    "clock",
)
"""scikit-image photos the codecs are fitted on (never evaluated on)."""

EVALUATION_PHOTOS: Tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")
"""scikit-image photos the demos code (disjoint from :data:`CALIBRATION_PHOTOS`)."""

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
"""File endings that make a photo spec a path even when no such file exists."""

_STEREO = ("motorcycle_left", "motorcycle_right")


def _looks_like_path(spec: str) -> bool:
    seps = [s for s in (os.sep, os.altsep) if s]
    return any(s in spec for s in seps) or Path(spec).suffix.lower() in IMAGE_SUFFIXES


def resolve_photo(spec: Union[str, os.PathLike]) -> Union[Path, str]:
    """Say what ``spec`` names, without reading it: an existing file (a :class:`~pathlib.Path`)
    or a scikit-image photo name (the ``str``).

    Cheap (no torch): callers check a user's argument with it before loading models. Raises
    :class:`~taskcodec.MissingDataError` naming the path for a path that is not a file, and
    for a name that is neither a file nor a scikit-image photo.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if isinstance(spec, os.PathLike) or _looks_like_path(text):
        what = "is a directory, not an image file" if path.is_dir() else "does not exist"
        raise MissingDataError(f"image file {str(path)!r} {what}")
    if text in _STEREO:
        return text
    try:
        import skimage.data
    except ImportError:
        raise MissingDataError(f"no image file {text!r}, and scikit-image (for its bundled "
                               "photos) is not installed") from None
    if text.startswith("_") or not callable(getattr(skimage.data, text, None)):
        raise MissingDataError(f"no image file {text!r} and no scikit-image photo of that name "
                               f"(photos: {', '.join(EVALUATION_PHOTOS + CALIBRATION_PHOTOS)})")
    return text


def load_photo(name_or_path: Union[str, os.PathLike]) -> np.ndarray:
    """A photo as ``uint8 [H, W, 3]`` RGB (grey is replicated): a JPEG / PNG file, or a
    scikit-image photo name (see :func:`resolve_photo` for the errors)."""
    what = resolve_photo(name_or_path)
    if isinstance(what, Path):
        from taskcodec.zoo.images import decode_jpeg

        return decode_jpeg(what.read_bytes())
    import skimage.data

    if what in _STEREO:
        left, right, _ = skimage.data.stereo_motorcycle()
        img = left if what == "motorcycle_left" else right
    else:
        img = getattr(skimage.data, what)()
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3:
        raise BadInputError(f"photo {what!r} has shape {img.shape}, expected [H, W, 3]")
    return np.ascontiguousarray(img[:, :, :3].astype(np.uint8))


def random_view(img: Any, rng: np.random.Generator, scale: Tuple[float, float] = (0.08, 1.0),
                size: int = 224) -> Any:
    """A random resized crop of ``uint8 [3, H, W]`` ``img`` to ``size`` px: area fraction drawn
    from ``scale``, aspect ratio 3/4..4/3 (log-uniform; the whole short side after ten misses),
    mirrored half of the time; every draw from ``rng``."""
    from torchvision.transforms.v2 import functional as TF

    h, w = img.shape[1:]
    ch = cw = min(h, w)
    for _ in range(10):
        area = h * w * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
        a, b = int(round((area * aspect) ** 0.5)), int(round((area / aspect) ** 0.5))
        if 0 < a <= w and 0 < b <= h:
            cw, ch = a, b
            break
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = TF.resized_crop(img, y, x, ch, cw, [size, size], antialias=True)
    return out.flip(-1) if rng.random() < 0.5 else out


def calibration_views(photo: np.ndarray, rng: np.random.Generator) -> List[Any]:
    """Four ``uint8 [3, h, w]`` torch views of ``photo``: the photo, its mirror image, and two
    random crops of 50–85 % of each side (one mirrored), drawn from ``rng``."""
    import torch

    img = torch.from_numpy(np.ascontiguousarray(photo)).permute(2, 0, 1)
    h, w = img.shape[1:]
    views = [img, img.flip(-1)]
    for flip in (False, True):
        frac = rng.uniform(0.5, 0.85)
        ch, cw = int(h * frac), int(w * frac)
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[:, y : y + ch, x : x + cw]
        views.append(crop.flip(-1) if flip else crop)
    return views
