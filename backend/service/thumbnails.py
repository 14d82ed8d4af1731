"""Thumbnails of uploaded images (Pillow), made once at upload, in a worker thread."""

from __future__ import annotations

import io
import logging
from typing import BinaryIO

from PIL import Image, UnidentifiedImageError

log = logging.getLogger("confab.uploads")

THUMBNAIL_TYPE = "image/webp"
#: Larger images are not decoded at all (a few bytes of PNG can claim billions of pixels).
MAX_PIXELS = 40_000_000


def thumbnail(source: BinaryIO, longest_side: int) -> bytes | None:
    """A WebP of the image in ``source`` whose longest side is at most ``longest_side``;
    None when the bytes are not an image Pillow can read (the upload is kept, without one).
    Blocking: run it in a thread."""
    source.seek(0)
    try:
        with Image.open(source) as image:
            width, height = image.size
            if width * height > MAX_PIXELS:
                return None
            image.draft("RGB", (longest_side, longest_side))  # JPEG: decode at a smaller scale
            small: Image.Image = image
            if small.mode not in ("RGB", "RGBA"):
                small = small.convert("RGBA" if "A" in small.getbands() or
                                      "transparency" in small.info else "RGB")
            small.thumbnail((longest_side, longest_side))
            out = io.BytesIO()
            small.save(out, format="WEBP", quality=80)
            return out.getvalue()
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        log.info("no thumbnail: %s: %s", type(exc).__name__, exc)
        return None
    finally:
        source.seek(0)
