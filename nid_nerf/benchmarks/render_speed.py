"""Render speed of trained checkpoints: ``get_outputs_for_camera`` rays/s and PSNR, variants interleaved.

Each checkpoint is loaded once (nerfstudio's ``eval_setup``, with its test images); every eval image is
rendered by every variant in turn (variant A, B, A, B, ... image by image, ``repeats`` rounds), so load
on a shared machine hits all variants alike. A variant is a set of ``NIDModelConfig`` attributes set on
the loaded model before its render, e.g. ``{"eval_render": "volume"}`` (the path before the surface
render) against ``{"eval_render": "surface"}``. Rays/s counts every pixel of the image (empty ones too),
as a viewer frame does; PSNR is on a white background, against RGBA ground truth composited on white.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch

from nid_nerf.benchmarks.harness import composite_rgb, psnr


@dataclass
class VariantResult:
    """What one render variant did on one checkpoint."""

    name: str
    settings: Dict[str, object]
    seconds: List[float] = field(default_factory=list)
    """seconds of each ``get_outputs_for_camera`` call (all rounds, all images)"""
    psnrs: List[float] = field(default_factory=list)
    """PSNR of each eval image (first round)"""
    pixels: int = 0
    """pixels of one eval image"""

    @property
    def rays_per_second(self) -> float:
        return self.pixels / statistics.median(self.seconds)

    @property
    def mean_psnr(self) -> float:
        return float(np.mean(self.psnrs))


def load_for_eval(config_path: Path):
    """(config, pipeline) of a trained run, its eval split loaded with images."""
    from nerfstudio.utils.eval_utils import eval_setup

    config, pipeline, _, _ = eval_setup(Path(config_path), test_mode="test")
    pipeline.eval()
    return config, pipeline


def measure_variants(
    pipeline, variants: Mapping[str, Mapping[str, object]], num_images: int = 4, repeats: int = 2
) -> List[VariantResult]:
    """Render ``num_images`` eval images with each variant, interleaved, ``repeats`` rounds."""
    from nerfstudio.model_components.renderers import background_color_override_context

    model = pipeline.model
    dataset = pipeline.datamanager.eval_dataset
    indices = sorted(set(np.linspace(0, len(dataset) - 1, max(1, num_images)).round().astype(int).tolist()))
    cameras = [dataset.cameras[i : i + 1].to(pipeline.device) for i in indices]
    images = [composite_rgb(dataset[i]["image"]).to(pipeline.device) for i in indices]
    results = [VariantResult(name, dict(settings)) for name, settings in variants.items()]
    original = {key: getattr(model.config, key) for v in variants.values() for key in v}
    white = torch.ones(3, device=pipeline.device)
    try:
        with torch.no_grad(), background_color_override_context(white):
            for round_ in range(repeats):
                for camera, image in zip(cameras, images):
                    for result in results:
                        for key, value in result.settings.items():
                            setattr(model.config, key, value)
                        start = time.perf_counter()
                        outputs = model.get_outputs_for_camera(camera)
                        result.seconds.append(time.perf_counter() - start)
                        result.pixels = image.shape[0] * image.shape[1]
                        if round_ == 0:
                            result.psnrs.append(psnr(outputs["rgb"], image))
    finally:
        for key, value in original.items():
            setattr(model.config, key, value)
    return results


def markdown_rows(scene: str, results: Sequence[VariantResult], baseline: str) -> List[str]:
    """Table rows: variant, rays/s, speed-up over ``baseline``, PSNR and its difference."""
    base = next(r for r in results if r.name == baseline)
    rows = []
    for r in results:
        rows.append(
            f"| {scene} | {r.name} | {r.rays_per_second:,.0f} | {r.rays_per_second / base.rays_per_second:.2f}x | "
            f"{r.mean_psnr:.2f} | {r.mean_psnr - base.mean_psnr:+.2f} |"
        )
    return rows
