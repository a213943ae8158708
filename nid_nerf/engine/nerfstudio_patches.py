"""Every place nid-nerf reaches into nerfstudio's internals, in one module. Targets nerfstudio 1.1.5.

Where nerfstudio offers a hook (a config ``_target``, a subclass method) nid-nerf uses it and it is not
listed here. What is here touches module state or private names that nerfstudio does not promise to
keep; each entry is one small function, and ``tests/test_nerfstudio_patches.py`` fails when the
nerfstudio internals it relies on change (re-check the patch against the new version, then update
:data:`NERFSTUDIO_VERSION`).
"""

from __future__ import annotations

import contextlib
import importlib
from typing import Iterator

import torch
from torch import Tensor, nn

NERFSTUDIO_VERSION = "1.1.5"
"""The nerfstudio release these patches were written and tested against."""


# ----------------------------------------------------------------------------------------------
# event writers (benchmarks train several models in one process)
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def isolated_event_writers() -> Iterator[None]:
    """Within the block, writers that a trainer's setup adds to nerfstudio's global writer list stay local.

    nerfstudio keeps its event writers (tensorboard, wandb, ...) and buffered events in module globals
    (``nerfstudio.utils.writer.EVENT_WRITERS`` and ``EVENT_STORAGE``) that every ``Trainer.setup`` appends
    to. A benchmark that builds many trainers in one process would otherwise log each run into every
    earlier run's writers. On exit the writers added inside the block are dropped and the buffered
    events cleared.
    """
    from nerfstudio.utils import writer

    writers_before = len(writer.EVENT_WRITERS)
    try:
        yield
    finally:
        del writer.EVENT_WRITERS[writers_before:]
        writer.EVENT_STORAGE.clear()


# ----------------------------------------------------------------------------------------------
# LPIPS without a download (benchmarks of nerfstudio's built-in models)
# ----------------------------------------------------------------------------------------------

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
    """Within the block, building an LPIPS metric gives :class:`OfflineLPIPS` instead.

    nerfacto (and other built-in models) construct torchmetrics' ``LearnedPerceptualImagePatchSimilarity``
    in ``populate_modules``, which downloads AlexNet weights and crashes on a machine without network.
    Benchmarks never report LPIPS for them, so inside the harness the class is swapped for a stub.
    Nothing in site-packages is edited: the patch is a context manager on module attributes.
    """
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
