"""Image bytes ⇄ ``uint8 [H, W, 3]`` arrays (Pillow), with limits for bytes from a network."""

from __future__ import annotations

import io
from typing import Optional

import numpy as np

from taskcodec.errors import BadInputError

__all__ = ["JPEG_QUALITY", "DEFAULT_MAX_PIXELS", "MAX_SIDE", "MAX_ASPECT", "decode_jpeg",
           "encode_jpeg"]

JPEG_QUALITY = 90
"""Quality of the JPEGs a device sends when the whole photo goes to the edge."""

DEFAULT_MAX_PIXELS = 40_000_000
"""The most pixels an image from the network may declare."""

MAX_SIDE = 16_384
"""The longest side an image from the network may have."""

MAX_ASPECT = 20.0
"""The most elongated image accepted (long side / short side). The models resize the short
side to 256 pixels, so without this a 104-byte 8000×1 PNG would become a 2,048,000×256 image."""


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise BadInputError(f"image of {width}x{height} pixels is empty")
    if width * height > max_pixels:
        raise BadInputError(f"image of {width}x{height} exceeds {max_pixels} pixels")
    if max(width, height) > MAX_SIDE:
        raise BadInputError(f"image of {width}x{height} has a side over {MAX_SIDE} pixels")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise BadInputError(f"image of {width}x{height} is more elongated than "
                            f"{MAX_ASPECT:g}:1")


def decode_jpeg(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *,
                min_side: Optional[int] = None) -> np.ndarray:
    """JPEG (or PNG) bytes -> ``uint8 [H, W, 3]``; :class:`~taskcodec.BadInputError` when the
    bytes are not one, or the image has more than ``max_pixels`` pixels, a side over
    :data:`MAX_SIDE` or an aspect ratio over :data:`MAX_ASPECT` (all checked on the header,
    before any pixel is decoded; Pillow's own decompression-bomb guard stays on).

    With ``min_side``, a larger image is decoded reduced (a JPEG by DCT scaling, which never
    holds the full-size pixels; a PNG by an integer box reduction after decoding) to a short
    side of at least ``min_side``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            if img.format not in ("JPEG", "PNG"):
                raise BadInputError(f"expected a JPEG or PNG image, got {img.format}")
            _check_size(img.width, img.height, max_pixels)
            factor = 1 if min_side is None else min(img.size) // int(min_side)
            if factor >= 2 and img.format == "JPEG":
                img.draft("RGB", (img.width // factor, img.height // factor))
            rgb = img.convert("RGB") if img.mode != "RGB" else img
            factor = 1 if min_side is None else min(rgb.size) // int(min_side)
            if factor >= 2:
                rgb = rgb.reduce(factor)
            return np.array(rgb, dtype=np.uint8)  # writable: torch.from_numpy takes it as is
    except BadInputError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own guard, on the header
        raise BadInputError(f"image refused by the decoder's bomb guard: {exc}") from None
    except UnidentifiedImageError:
        # Pillow's message names the buffer object (a heap address): not for a reply body.
        raise BadInputError("payload is not a readable image (neither JPEG nor PNG)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise BadInputError(f"payload is not a readable image: {exc}") from None


def encode_jpeg(photo: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """``uint8 [H, W, 3]`` -> JPEG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(photo)).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
