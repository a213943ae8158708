"""Odd but valid images (grayscale, 16-bit, palette, EXIF-rotated, RGB among RGBA) made loadable by nerfstudio.

nerfstudio's ``InputDataset.get_numpy_image`` reads an image with ``np.array(Image.open(f), dtype="uint8")``:
a 16-bit grayscale frame wraps to its low byte, a palette frame gives palette indices, the EXIF orientation is
ignored, and a frame with another channel count than its neighbours (L or RGB among RGBA) makes the image
batch fail with ``stack expects each tensor to be equal size``.

The least invasive correct fix is at the dataparser: each frame that nerfstudio would misread is converted
once into an 8-bit PNG with the scene's channel count (RGBA if any frame has alpha, else RGB) and the EXIF
orientation applied, cached in ``<scene>/.nid_cache/images_<hash>/`` (keyed by the source files' names,
sizes and times, written atomically), and the dataparser outputs point at the copy. Every consumer of the
outputs (our datamanager, nerfstudio's, ns-eval, ns-render, benchmarks) then reads correct pixels without
any change to nerfstudio's loading, frames that need nothing keep their own files, and the user's files
are never modified. 16-bit values are scaled to 8 bits (``v * 255 / 65535``), not truncated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.utils.rich_utils import CONSOLE
from PIL import Image, ImageOps

from nid_nerf.dataparsers.image_info import ImageInfo, read_image_info
from nid_nerf.dataparsers.training_masks import cache_root, cached_folder, file_stamp

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL modes of 16-bit (and 32-bit integer) grayscale images: 16-bit PNGs open as one of these."""

CONVERSION_VERSION = 1
"""Part of the cache key: bump when the conversion changes."""


def scene_channels(infos: Sequence[ImageInfo]) -> int:
    """4 when any frame has an alpha channel (the rest get an opaque one), else 3."""
    return 4 if any(info.has_alpha for info in infos) else 3


def conversion_reason(info: ImageInfo, channels: int) -> Optional[str]:
    """Why nerfstudio would misread this image in a scene of ``channels`` channels (None: it reads it right)."""
    if info.orientation != 1:
        return f"EXIF orientation {info.orientation}"
    if info.mode != ("RGBA" if channels == 4 else "RGB"):
        return f"mode {info.mode}"
    return None


def load_8bit(path: Path, channels: int) -> np.ndarray:
    """The image as uint8 H x W x ``channels``: EXIF orientation applied, 16-bit scaled (not truncated),
    grayscale and palette expanded, an opaque alpha added where the scene has alpha and the image none."""
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        if im.mode in SIXTEEN_BIT_MODES:
            values = np.asarray(im, dtype=np.float64)
            im = Image.fromarray(np.clip(np.round(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8), mode="L")
        elif im.mode == "F":
            values = np.asarray(im, dtype=np.float64)
            im = Image.fromarray(np.clip(np.round(values * 255.0), 0, 255).astype(np.uint8), mode="L")
        return np.asarray(im.convert("RGBA" if channels == 4 else "RGB"), dtype=np.uint8)


def conform_images(
    outputs: DataparserOutputs, scene_root: Path, scene_name: str, channels: int
) -> DataparserOutputs:
    """The outputs with every image nerfstudio would misread replaced by a cached 8-bit copy (see the module).

    ``channels`` is the scene's channel count (from all its frames, so train and eval images agree).
    Unchanged (and nothing written) when every image is already 8-bit RGB(A) as stored.
    """
    images = [Path(f) for f in outputs.image_filenames]
    reasons = [conversion_reason(read_image_info(image), channels) for image in images]
    todo = [k for k, reason in enumerate(reasons) if reason is not None]
    if not todo:
        return outputs
    names = [f"{k:05d}_{images[k].stem}.png" for k in todo]
    recipe = {"version": CONVERSION_VERSION, "channels": channels, "images": [file_stamp(images[k]) for k in todo]}
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:12]

    def write(tmp: Path) -> None:
        (tmp / "images").mkdir()
        for k, name in zip(todo, names):
            Image.fromarray(load_8bit(images[k], channels)).save(tmp / "images" / name)

    folder = cached_folder(cache_root(scene_root) / f"images_{digest}", [f"images/{n}" for n in names], write)
    converted: List[Path] = list(images)
    for k, name in zip(todo, names):
        converted[k] = folder / "images" / name
    kind = "RGBA" if channels == 4 else "RGB"
    CONSOLE.log(
        f"{scene_name}: read {len(todo)} image(s) as 8-bit {kind} (e.g. {images[todo[0]].name}: {reasons[todo[0]]}) "
        f"from converted copies in {folder}; the originals are untouched"
    )
    return replace(outputs, image_filenames=converted)
