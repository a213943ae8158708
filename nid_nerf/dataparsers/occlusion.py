"""Synthetic occlusion: hide a fraction of each training image's object pixels behind a random occluder.

The hidden pixels are left out of the photometric loss (the dataparser writes them as ``mask = 0``, and
nerfstudio's pixel samplers only draw pixels where the mask is nonzero); the field, and the dictionary's
prior behind it, must then *inpaint* them. NID uses this as its inpainting experiment.

An occluder is one random rectangle (``rectangle``) or the union of a few random ellipses (``blobs``). Each
shape is grown about its random centre until it covers ``round(fraction * N)`` of the image's ``N`` object
pixels (the object region: the object mask, else the image's alpha, else the whole image). The growth is
exact: every pixel gets the scale at which the shape first covers it, and the ``k``-th smallest scale over
the object pixels is the answer (ties can add a few pixels). Pixels of the background under the occluder are
hidden as well, as behind a real occluder.

Everything is deterministic per image and seed: the random draws come from ``sha256(seed, image key)``,
where the key is ``"<scene name>/<image path relative to the scene>"``. So an image gets the same occluder
whichever other views are kept (``--num-train-views``) and on every machine.

``nid_nerf.dataparsers.hidden_regions.train_occlusion_mask`` gives a benchmark the hidden region of training
image ``i``, e.g. to score PSNR inside it (inpainting quality).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from jaxtyping import Bool
from PIL import Image

from nid_nerf.errors import NIDInputError

OcclusionShape = Literal["rectangle", "blobs"]
MAX_FRACTION = 0.9
"""Largest fraction of the object pixels that may be hidden (at least 10 % must stay visible)."""
ALGORITHM_VERSION = 1
"""Bump when the generated masks change, so cached masks of older versions are not reused."""
OCCLUSION_FILENAMES = "occlusion_filenames"
"""``DataparserOutputs.metadata`` key: per training image, the PNG of its hidden region (255 = hidden)."""
OCCLUSION = "occlusion"
"""``DataparserOutputs.metadata`` key: the settings, {"fraction", "seed", "shape"}."""


def check_fraction(fraction: Any, option: str = "--occlusion") -> float:
    """The fraction as a float in [0, MAX_FRACTION], or a one-line NIDInputError."""
    ok = isinstance(fraction, (int, float)) and not isinstance(fraction, bool) and math.isfinite(fraction)
    if not ok or not 0.0 <= float(fraction) <= MAX_FRACTION:
        raise NIDInputError(
            f"{option} {fraction} is outside [0, {MAX_FRACTION}]; pass the fraction of each training image's "
            "object pixels to hide, e.g. 0.25 (0 = off)"
        )
    return float(fraction)


def image_rng(key: str, seed: int) -> np.random.Generator:
    """A random generator that depends only on ``(seed, key)`` (stable across runs, processes and machines)."""
    digest = hashlib.sha256(f"nid-occlusion:{int(seed)}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


# ----------------------------------------------------------------------------------------------
# occluder shapes (pure functions on pixel grids)
# ----------------------------------------------------------------------------------------------


def _pixel_centres(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.meshgrid(np.arange(height) + 0.5, np.arange(width) + 0.5, indexing="ij")
    return ys, xs


def _random_centre(region: Bool[np.ndarray, "H W"], rng: np.random.Generator) -> tuple[float, float]:
    """A point inside a random region pixel (continuous, so centres are not stuck on the pixel grid)."""
    ys, xs = np.nonzero(region)
    k = int(rng.integers(len(ys)))
    jitter = rng.random(2)
    return float(ys[k] + jitter[0]), float(xs[k] + jitter[1])


def rectangle_scale(region: Bool[np.ndarray, "H W"], rng: np.random.Generator) -> np.ndarray:
    """Per pixel, the scale at which a random axis-aligned rectangle (centre in the region, aspect 1:2..2:1)
    first covers it: the rectangle at scale ``s`` is ``{p : scale(p) <= s}``."""
    h, w = region.shape
    cy, cx = _random_centre(region, rng)
    aspect = math.exp(rng.uniform(-math.log(2.0), math.log(2.0)))  # width / height
    ys, xs = _pixel_centres(h, w)
    return np.maximum(np.abs(ys - cy) * math.sqrt(aspect), np.abs(xs - cx) / math.sqrt(aspect))


def blobs_scale(region: Bool[np.ndarray, "H W"], rng: np.random.Generator) -> np.ndarray:
    """Per pixel, the scale at which the union of 2-4 random ellipses (centres in the region, random size
    ratios, aspects and angles, all grown together) first covers it."""
    h, w = region.shape
    ys, xs = _pixel_centres(h, w)
    count = int(rng.integers(2, 5))
    scale = np.full((h, w), np.inf)
    for _ in range(count):
        cy, cx = _random_centre(region, rng)
        size = rng.uniform(0.5, 1.0)  # relative radius of this blob
        aspect = math.exp(rng.uniform(-math.log(2.0), math.log(2.0)))
        angle = rng.uniform(0.0, math.pi)
        u = (xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)
        v = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
        radius = np.sqrt((u * math.sqrt(aspect)) ** 2 + (v / math.sqrt(aspect)) ** 2)
        scale = np.minimum(scale, radius / size)
    return scale


SHAPES = {"rectangle": rectangle_scale, "blobs": blobs_scale}


def occluder_mask(
    region: Bool[np.ndarray, "H W"],
    fraction: float,
    rng: np.random.Generator,
    shape: OcclusionShape = "rectangle",
) -> Bool[np.ndarray, "H W"]:
    """The occluder (True = hidden) that covers ``round(fraction * region.sum())`` region pixels.

    An empty region counts as the whole image. Pixels outside the region may be hidden too.
    """
    fraction = check_fraction(fraction)
    region = np.asarray(region, dtype=bool)
    if not region.any():
        region = np.ones_like(region)
    if shape not in SHAPES:
        raise NIDInputError(f"--occlusion-shape {shape!r} is unknown; use one of {', '.join(SHAPES)}")
    scale = SHAPES[shape](region, rng)  # draw even when fraction == 0, so the stream does not depend on it
    target = int(round(fraction * int(region.sum())))
    if target <= 0:
        return np.zeros_like(region)
    threshold = np.partition(scale[region], target - 1)[target - 1]
    return scale <= threshold


# ----------------------------------------------------------------------------------------------
# image files
# ----------------------------------------------------------------------------------------------


def read_mask(path: Path, expected_size: Optional[tuple[int, int]] = None, image: Optional[Path] = None) -> np.ndarray:
    """A single-channel mask file as bool (nonzero = True), or a one-line NIDInputError naming the file.

    Args:
        expected_size: (width, height) the mask must have (that of ``image``).
    """
    path = Path(path)
    if not path.is_file():
        raise NIDInputError(f"mask {path} is missing; add it (nonzero = train on the pixel) or drop the mask option")
    try:
        with Image.open(path) as im:
            im.load()
            size, mode = im.size, im.mode
            array = np.asarray(im)
    except (OSError, SyntaxError, ValueError) as err:
        raise NIDInputError(f"mask {path} is corrupt or not an image ({type(err).__name__}); re-export it") from None
    if array.ndim != 2:
        raise NIDInputError(
            f"mask {path} has {array.shape[-1]} channels ({mode}); save it as a single-channel (L) PNG, "
            "nonzero = train on the pixel"
        )
    if expected_size is not None and tuple(size) != tuple(expected_size):
        of = f" of image {image}" if image is not None else ""
        raise NIDInputError(
            f"mask {path} is {size[0]}x{size[1]} but the size{of} is {expected_size[0]}x{expected_size[1]}; "
            "resize the mask to the image (nearest neighbour) or point to the right mask"
        )
    return array != 0


def object_region(image: Path, object_mask: Optional[Path] = None) -> np.ndarray:
    """Object pixels of an image: its object mask if given, else alpha > 0.5 for RGBA images, else all."""
    with Image.open(image) as im:
        size = im.size
        alpha = np.asarray(im.getchannel("A")) if "A" in im.getbands() else None
    if object_mask is not None:
        return read_mask(object_mask, size, image)
    if alpha is not None:
        return alpha > 127
    return np.ones((size[1], size[0]), dtype=bool)


def write_mask_png(mask: Bool[np.ndarray, "H W"], path: Path) -> None:
    """Write a bool mask as an 8-bit single-channel PNG (0 / 255)."""
    Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(path)


# ----------------------------------------------------------------------------------------------
# for benchmarks
# ----------------------------------------------------------------------------------------------
