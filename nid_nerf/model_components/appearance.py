"""Per-image appearance: a colour affine transform for each training image, identity at evaluation.

Photos of one object differ in exposure and white balance (auto-exposure, a lamp switched on, clouds). A field
with one colour per point must average those differences into its colours, or paint them into the geometry. With
``appearance affine`` each training image i gets 12 numbers, a 3x3 matrix and an offset, and the rendered object
colour of a ray from image i is

    c' = (I + D_i) c + b_i a          (c premultiplied by the accumulation a, so empty rays stay empty)

before it is composited and compared with the photo. D_i and b_i start at zero and are kept small by an L2
penalty; test views have no transform of their own and are rendered with the identity, the field's canonical
appearance. (A 12-number embedding with a fixed linear decoder; NeRF-W's embeddings feed an MLP instead.)
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


def affine_colour(
    rgb: Float[Tensor, "R 3"], accumulation: Float[Tensor, "R 1"], delta: Float[Tensor, "R 3 4"]
) -> Float[Tensor, "R 3"]:
    """(I + D) rgb + b * accumulation for each ray, with D = delta[:, :, :3] and b = delta[:, :, 3]."""
    return rgb + torch.einsum("rij,rj->ri", delta[:, :, :3], rgb) + delta[:, :, 3] * accumulation


class ImageAppearance(nn.Module):
    """The per-image transforms (D_i, b_i) as one [num_images, 3, 4] parameter, zero (identity) at the start."""

    def __init__(self, num_images: int) -> None:
        super().__init__()
        self.delta = nn.Parameter(torch.zeros(num_images, 3, 4))

    def forward(
        self, rgb: Float[Tensor, "R 3"], accumulation: Float[Tensor, "R 1"], image_index: Int[Tensor, " R"]
    ) -> Float[Tensor, "R 3"]:
        return affine_colour(rgb, accumulation, self.delta[image_index.long()])

    def penalty(self) -> Tensor:
        """Mean squared entry of the transforms: 0 at the identity."""
        return self.delta.pow(2).mean()
