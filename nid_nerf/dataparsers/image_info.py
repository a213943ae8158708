"""What an image's header says: mode, stored and displayed size (EXIF orientation), alpha; no pixels decoded.

Shared by the checks (:mod:`nid_nerf.dataparsers.validation`), the training masks and the conversion of odd
images (:mod:`nid_nerf.dataparsers.images`), so all of them see an image at the size it is loaded with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

from PIL import Image

EXIF_ORIENTATION = 0x0112
"""EXIF tag of the orientation (1 = as stored; 5-8 swap width and height)."""

ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image says (no pixels decoded)."""

    mode: str
    stored_size: Tuple[int, int]
    """(width, height) of the stored pixels."""
    size: Tuple[int, int]
    """(width, height) as displayed: with the EXIF orientation applied."""
    orientation: int
    """EXIF orientation, 1 when absent (as stored)."""
    has_alpha: bool


def read_image_info(path: Path) -> ImageInfo:
    """Mode, sizes, EXIF orientation and alpha of an image, from its header."""
    with Image.open(path) as im:
        try:
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1) or 1)
        except Exception:  # noqa: BLE001 - a broken EXIF block is no orientation
            orientation = 1
        if orientation not in range(1, 9):
            orientation = 1
        width, height = im.size
        size = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        has_alpha = im.mode in ALPHA_MODES or (im.mode == "P" and "transparency" in im.info)
        return ImageInfo(im.mode, (width, height), size, orientation, has_alpha)
