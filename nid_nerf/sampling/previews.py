"""Tensorboard previews of the residual sampler: the residual map and the pixels picked, a few images side by side."""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from nid_nerf.sampling.residual_map import ResidualMap

PICKED_BY_RESIDUAL = (1.0, 1.0, 1.0)
"""Colour of a pixel picked by residual in the ``chosen_pixels`` preview (white)."""
PICKED_UNIFORMLY = (0.2, 0.4, 1.0)
"""Colour of a pixel picked by the uniform floor (blue)."""
NEVER_VISITED = (1.0, 0.0, 1.0)
"""Colour of a never-visited residual-map cell (magenta)."""

History = Sequence[Tuple[Int[Tensor, "n 3"], Bool[Tensor, " n"]]]
"""Recent batches, oldest first: (absolute (image, y, x) indices, picked-by-residual flag) per ray."""


def residual_to_rgb(residual: Float[Tensor, "h w"], vmax: float) -> Float[Tensor, "h w 3"]:
    """Turbo colour map of a residual image in [0, vmax]; never-visited (+inf) pixels are magenta."""
    from nerfstudio.utils.colormaps import apply_float_colormap

    visited = torch.isfinite(residual)
    norm = torch.where(visited, residual / max(vmax, 1e-12), torch.zeros_like(residual)).clamp(0.0, 1.0)
    rgb = apply_float_colormap(norm[..., None], colormap="turbo").float()
    rgb[~visited] = torch.tensor(NEVER_VISITED)
    return rgb


def tile_images(tiles: Sequence[Float[Tensor, "_ _ 3"]], gap: int = 2) -> Float[Tensor, "H W 3"]:
    """Put images side by side on a grey background (heights may differ)."""
    if not tiles:
        return torch.zeros((1, 1, 3))
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = torch.full((height, width, 3), 0.5)
    x = 0
    for t in tiles:
        out[: t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out


def residual_previews(
    rmap: ResidualMap, image_ids: Sequence[int], history: History, max_side: int = 256
) -> Dict[str, Float[Tensor, "H W 3"]]:
    """``residual_map`` and ``chosen_pixels`` previews of training images ``image_ids``, side by side.

    Each tile is the image at (about) pixel resolution, at most ``max_side`` pixels a side (a 800 x 800
    image shows as 267 x 267: one display pixel per 3 x 3 image pixels).
    ``residual_map``: turbo colour map scaled to the largest visited residual; magenta = never visited.
    ``chosen_pixels``: the batches of ``history``; white = picked by residual, blue = uniform floor.
    """
    maps = [rmap.image(i) for i in image_ids]
    finite = torch.cat([m[torch.isfinite(m)] for m in maps])
    vmax = float(finite.max()) if finite.numel() > 0 and float(finite.max()) > 0 else 1.0
    residual_tiles: List[Tensor] = []
    chosen_tiles: List[Tensor] = []
    for i, m in zip(image_ids, maps):
        h, w = int(rmap.heights[i]), int(rmap.widths[i])
        d = max(1, math.ceil(max(h, w) / max_side))  # display pixel = d x d image pixels
        ys = torch.div(torch.arange(0, h, d), rmap.stride, rounding_mode="floor")
        xs = torch.div(torch.arange(0, w, d), rmap.stride, rounding_mode="floor")
        residual_tiles.append(residual_to_rgb(m[ys][:, xs], vmax))
        chosen = torch.zeros(ys.shape[0], xs.shape[0], 3)
        for residual_first in (False, True):  # residual picks drawn last, on top
            for absolute, flags in history:
                sel = (absolute[:, 0] == i) & (flags == residual_first)
                y = torch.div(absolute[sel, 1], d, rounding_mode="floor")
                x = torch.div(absolute[sel, 2], d, rounding_mode="floor")
                chosen[y, x] = torch.tensor(PICKED_BY_RESIDUAL if residual_first else PICKED_UNIFORMLY)
        chosen_tiles.append(chosen)
    return {"residual_map": tile_images(residual_tiles), "chosen_pixels": tile_images(chosen_tiles)}
