"""Image bytes ⇄ ``uint8 [H, W, 3]`` arrays (Pillow), with limits for bytes from a network."""

from __future__ import annotations

import io

import numpy as np

from taskcodec.errors import BadInputError

__all__ = ["JPEG_QUALITY", "DEFAULT_MAX_PIXELS", "decode_jpeg", "encode_jpeg"]

JPEG_QUALITY = 90
"""Quality of the JPEGs a device sends when the whole photo goes to the edge."""

DEFAULT_MAX_PIXELS = 40_000_000


def decode_jpeg(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """JPEG (or PNG) bytes -> ``uint8 [H, W, 3]``; :class:`~taskcodec.BadInputError` when the
    bytes are not one, or the image has more than ``max_pixels`` pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("JPEG", "PNG"):
                raise BadInputError(f"expected a JPEG or PNG image, got {img.format}")
            if img.width * img.height > max_pixels:
                raise BadInputError(f"image of {img.width}x{img.height} exceeds {max_pixels} px")
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, BadInputError):
            raise
        raise BadInputError(f"payload is not a readable image: {exc}") from None


def encode_jpeg(photo: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``uint8 [H, W, 3]`` -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(photo)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
