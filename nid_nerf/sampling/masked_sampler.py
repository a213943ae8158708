"""Uniform pixel sampling inside training masks, for any number of images: a fix of nerfstudio 1.1.5's mask draw.

nerfstudio's ``PixelSampler.rejection_sample_mask`` indexes ``mask.squeeze()[c, y, x]``: with a single training
image the [1, H, W, 1] mask squeezes to [H, W] and the 3-index lookup raises ``IndexError`` (so a 1-view run
with masks, or one image of a per-image list batch, crashes). When rejection gives up it falls back to
``random.sample`` over the visible pixels, without replacement, which raises ``ValueError`` as soon as the
batch asks for more rays than the mask leaves visible (a 64 x 64 view with 3 % visible pixels has 122 of them,
and a batch asks for 1024). :func:`draw_visible_pixels` keeps the image axis and falls back to draws with
replacement. ``tests/test_nerfstudio_patches.py`` checks that nerfstudio still has both bugs: when it fails,
nerfstudio fixed them and :class:`MaskedPixelSampler` can go.

This lives here, not in ``nid_nerf.engine.nerfstudio_patches``, because the residual sampler (this layer)
subclasses it and must not import the engine layer; nerfstudio_patches lists it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type, Union

import torch
from jaxtyping import Int, Shaped
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from torch import Tensor

from nid_nerf.errors import NIDInputError


def draw_visible_pixels(
    mask: Shaped[Tensor, "num_images height width *channels"],
    num_samples: int,
    max_num_iterations: int,
    device: Union[torch.device, str],
) -> Int[Tensor, "num_samples 3"]:
    """``num_samples`` uniform (image, y, x) indices of pixels where ``mask`` (channel 0) is nonzero.

    Rejection sampling first: draw uniformly over all images, redraw the rejected ones, at most
    ``max_num_iterations`` rounds (the same generator calls, in the same order, as nerfstudio's draw, so a
    run whose masks nerfstudio handles draws the same pixels). If pixels are still rejected after that
    (a mostly empty mask), the batch is drawn from the visible pixels with replacement.
    """
    num_images, height, width = mask.shape[:3]
    visible = mask.reshape(num_images, height, width, -1)[..., 0].bool().to(device)
    extent = torch.tensor([num_images, height, width], device=device)
    indices = (torch.rand((num_samples, 3), device=device) * extent).long()
    for _ in range(max_num_iterations):
        rejected = ~visible[indices[:, 0], indices[:, 1], indices[:, 2]]
        count = int(rejected.sum())
        if count == 0:
            return indices
        indices[rejected] = (torch.rand((count, 3), device=device) * extent).long()
    candidates = torch.nonzero(visible)
    if candidates.shape[0] == 0:
        raise NIDInputError(
            "every training pixel is masked out; check the masks (nonzero = train on the pixel) or --occlusion"
        )
    return candidates[torch.randint(candidates.shape[0], (num_samples,), device=device)]


class MaskedPixelSampler(PixelSampler):
    """nerfstudio's PixelSampler whose mask-rejection draw works for one image too (:func:`draw_visible_pixels`)."""

    def rejection_sample_mask(
        self,
        mask: Tensor,
        num_samples: int,
        num_images: int,
        image_height: int,
        image_width: int,
        device: Union[torch.device, str],
    ) -> Int[Tensor, "batch_size 3"]:
        mask = mask.reshape(num_images, image_height, image_width, -1)
        return draw_visible_pixels(mask, num_samples, self.config.max_num_iterations, device)


@dataclass
class MaskedPixelSamplerConfig(PixelSamplerConfig):
    """Config of :class:`MaskedPixelSampler` (uniform sampling, mask aware for one or many images)."""

    _target: Type = field(default_factory=lambda: MaskedPixelSampler)
