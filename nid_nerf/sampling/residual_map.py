"""The residual map: a float16 photometric residual per training pixel, or per ``stride x stride`` cell.

Images may differ in size; cells of all images sit in one flat float16 tensor (2 bytes a cell: the default
budget of 50 M cells is 100 MB). Never-visited cells hold ``+inf``, so they rank above every observed residual.
Updates are a running average per cell (``update_weight``); NaN or infinite residuals never reach the map.
"""

from __future__ import annotations

import math
from typing import Sequence, Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nid_nerf.errors import NIDInputError

UNVISITED = float("inf")
"""Map value of a pixel no ray has visited yet (ranks above every observed residual)."""
FLOAT16_MAX = 65504.0
"""Largest finite float16: observed residuals are clamped to it before they are stored."""


def map_stride(image_sizes: Sequence[Tuple[int, int]], max_map_pixels: int) -> int:
    """Smallest integer stride whose reduced-resolution map holds at most ``max_map_pixels`` cells.

    E.g. 50 images of 800 x 800 (32 M pixels) fit the default 50 M budget at stride 1; 500 of them (320 M
    pixels) need stride 3 (35.6 M cells).
    """
    if max_map_pixels <= 0:
        raise NIDInputError(f"max_map_pixels must be positive (got {max_map_pixels}); raise it, e.g. 50000000")

    def cells(s: int) -> int:
        return sum(math.ceil(h / s) * math.ceil(w / s) for h, w in image_sizes)

    # cells(s) >= P / s^2, so floor(sqrt(P / budget)) never overshoots the smallest valid stride
    stride = max(1, int(math.sqrt(cells(1) / max_map_pixels)))
    while cells(stride) > max_map_pixels:
        stride += 1
    return stride


class ResidualMap:
    """float16 residual per training pixel, or per ``stride x stride`` cell, for images of any sizes.

    Cells of image ``i`` are the flat range ``offsets[i] : offsets[i + 1]``, row-major over
    ``(ceil(h_i / stride), ceil(w_i / stride))``.
    """

    def __init__(
        self,
        image_sizes: Sequence[Tuple[int, int]],
        max_map_pixels: int = 50_000_000,
        min_stride: int = 1,
        update_weight: float = 1.0,
    ):
        if len(image_sizes) == 0:
            raise NIDInputError("the residual sampler got no training images; check the dataset's train split")
        if not 0.0 < update_weight <= 1.0:
            raise NIDInputError(f"pixel-sampler.update-weight is {update_weight}; use a value in (0, 1], e.g. 1.0")
        self.stride = max(map_stride(image_sizes, max_map_pixels), int(min_stride), 1)
        self.update_weight = float(update_weight)
        s = self.stride
        self.heights = torch.tensor([h for h, _ in image_sizes], dtype=torch.long)
        self.widths = torch.tensor([w for _, w in image_sizes], dtype=torch.long)
        self.cell_h = (self.heights + s - 1) // s
        self.cell_w = (self.widths + s - 1) // s
        counts = self.cell_h * self.cell_w
        self.offsets = torch.zeros(len(image_sizes) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(counts, 0)
        self.values = torch.full((int(self.offsets[-1]),), UNVISITED, dtype=torch.float16)

    @property
    def num_images(self) -> int:
        """Number of training images the map covers."""
        return len(self.heights)

    def cells(self, indices: Int[Tensor, "n 3"]) -> Int[Tensor, " n"]:
        """Flat cell index of absolute (image, y, x) pixel indices."""
        img, y, x = indices[:, 0], indices[:, 1], indices[:, 2]
        s = self.stride
        return self.offsets[img] + torch.div(y, s, rounding_mode="floor") * self.cell_w[img] + torch.div(
            x, s, rounding_mode="floor"
        )

    def valid(self, indices: Int[Tensor, "n 3"]) -> Bool[Tensor, " n"]:
        """Which absolute indices fall inside the training images."""
        img, y, x = indices[:, 0], indices[:, 1], indices[:, 2]
        ok = (img >= 0) & (img < self.num_images)
        img = img.clamp(0, self.num_images - 1)
        return ok & (y >= 0) & (x >= 0) & (y < self.heights[img]) & (x < self.widths[img])

    def lookup(self, indices: Int[Tensor, "n 3"]) -> Float[Tensor, " n"]:
        """Residuals (float32, +inf where never visited) at absolute pixel indices."""
        return self.values[self.cells(indices)].float()

    def update(self, indices: Int[Tensor, "n 3"], residuals: Float[Tensor, " n"]) -> int:
        """Write the batch's residuals (mean per cell, blended into the old value with ``update_weight``).

        Non-finite values and stray indices are dropped; a never-visited cell takes the new value.

        Returns how many rays were written.
        """
        indices = indices.detach().to("cpu", torch.long).reshape(-1, 3)
        residuals = residuals.detach().to("cpu", torch.float32).reshape(-1)
        if indices.shape[0] != residuals.shape[0]:
            raise ValueError(f"observe: {indices.shape[0]} indices but {residuals.shape[0]} residuals")
        keep = torch.isfinite(residuals) & self.valid(indices)
        if not bool(keep.any()):
            return 0
        cells = self.cells(indices[keep])
        vals = residuals[keep].clamp(0.0, FLOAT16_MAX)
        uniq, inverse = torch.unique(cells, return_inverse=True)
        sums = torch.zeros(uniq.shape[0], dtype=torch.float32).index_add_(0, inverse, vals)
        counts = torch.bincount(inverse, minlength=uniq.shape[0]).to(torch.float32)
        new = sums / counts
        if self.update_weight < 1.0:
            old = self.values[uniq].float()
            new = torch.where(torch.isfinite(old), old + self.update_weight * (new - old), new)
        self.values[uniq] = new.to(torch.float16)
        return int(keep.sum())

    def image(self, image_index: int) -> Float[Tensor, "h w"]:
        """The map of one image at map resolution (float32, +inf where never visited)."""
        a, b = int(self.offsets[image_index]), int(self.offsets[image_index + 1])
        return self.values[a:b].float().view(int(self.cell_h[image_index]), int(self.cell_w[image_index]))

    def visited_fraction(self) -> float:
        """Share of the map's cells that some ray has visited."""
        return float(torch.isfinite(self.values).float().mean())
