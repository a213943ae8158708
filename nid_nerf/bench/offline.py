"""Keep nerfstudio's built-in models offline: LPIPS is replaced by a stub while they are built.

nerfacto (and other built-in models) construct torchmetrics' ``LearnedPerceptualImagePatchSimilarity``
in ``populate_modules``, which downloads AlexNet weights and crashes on a machine without network.
The benchmark never reports LPIPS, so inside the harness the class is swapped for a stub that
returns NaN. Nothing in site-packages is edited: the patch is a context manager on module attributes.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Iterator

import torch
from torch import Tensor, nn

# Every module attribute through which nerfstudio models reach the LPIPS class.
_LPIPS_ATTRIBUTES = (
    ("torchmetrics.image.lpip", "LearnedPerceptualImagePatchSimilarity"),
    ("torchmetrics.image", "LearnedPerceptualImagePatchSimilarity"),
)


class OfflineLPIPS(nn.Module):
    """Stands in for torchmetrics' LPIPS: no weights, no download, returns NaN."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, img1: Tensor, img2: Tensor) -> Tensor:  # noqa: ARG002 - same signature as LPIPS
        return torch.tensor(float("nan"), device=img1.device)


@contextlib.contextmanager
def lpips_patched_out() -> Iterator[None]:
    """Within the block, building an LPIPS metric gives :class:`OfflineLPIPS` instead."""
    saved = []
    for module_name, attribute in _LPIPS_ATTRIBUTES:
        module = importlib.import_module(module_name)
        if hasattr(module, attribute):
            saved.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, OfflineLPIPS)
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)
