"""Image metrics. LPIPS is computed only when its AlexNet weights are already on disk (no downloads)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch
from jaxtyping import Float
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

ALEXNET_WEIGHTS = "alexnet-owt-7be5be79.pth"
_lpips = None
_lpips_state = "unknown"  # "unknown" | "ready" | "missing"


def psnr(pred: Float[Tensor, "*bs 3"], gt: Float[Tensor, "*bs 3"]) -> Float[Tensor, ""]:
    mse = ((pred - gt) ** 2).mean()
    return -10.0 * torch.log10(mse.clamp(min=1e-10))


def alexnet_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_WEIGHTS


def lpips_if_available(pred: Float[Tensor, "1 3 H W"], gt: Float[Tensor, "1 3 H W"]) -> Optional[float]:
    """LPIPS (AlexNet) when torchvision's AlexNet weights are cached locally; otherwise None, logged once."""
    global _lpips, _lpips_state
    if _lpips_state == "unknown":
        if alexnet_weights_path().exists():
            from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

            _lpips = LearnedPerceptualImagePatchSimilarity(net_type="alex", normalize=True)
            _lpips_state = "ready"
        else:
            _lpips_state = "missing"
            CONSOLE.log(f"nid: LPIPS skipped (no AlexNet weights at {alexnet_weights_path()}; nothing is downloaded)")
    if _lpips_state != "ready":
        return None
    assert _lpips is not None
    _lpips.to(pred.device)
    return float(_lpips(pred.clamp(0, 1), gt.clamp(0, 1)))


def masked_psnr(
    pred: Float[Tensor, "*bs 3"], gt: Float[Tensor, "*bs 3"], mask: Float[Tensor, "*bs 1"]
) -> Float[Tensor, ""]:
    """PSNR with the pixels outside ``mask`` set to black in both images, the MSE taken over the whole image.

    The DTU few-view protocol (pixelNeRF / RegNeRF): background pixels count, as zero error, in the mean, so an
    object covering a fraction f of the image with per-pixel MSE m inside scores -10 log10(f m), not -10 log10(m).
    """
    mask = mask.to(pred).clamp(0, 1)
    return psnr(pred * mask, gt * mask)
