"""Datamanager with a switch between uniform and residual (INT) ray sampling.

It runs in the main process on purpose: nerfstudio's parallel datamanager samples rays in worker
processes that would never see the residual updates. Each training process (rank) owns its own
sampler and residual map; nothing here assumes a single process.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Tuple, Type

from jaxtyping import Float
from torch import Tensor

from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils import writer

from nid_nerf.errors import NIDInputError
from nid_nerf.sampler import ResidualPixelSampler, ResidualPixelSamplerConfig


@dataclass
class NIDDataManagerConfig(VanillaDataManagerConfig):
    """VanillaDataManager + ``sampler``: uniform (nerfstudio's PixelSampler) or residual (INT for rays)."""

    _target: Type = field(default_factory=lambda: NIDDataManager)
    sampler: Literal["uniform", "residual"] = "residual"
    """Training ray sampler: uniform = nerfstudio's PixelSampler; residual = pick rays by photometric residual."""
    pixel_sampler: ResidualPixelSamplerConfig = field(default_factory=ResidualPixelSamplerConfig)
    """Options of the residual sampler (the base PixelSampler options also apply to uniform sampling)."""
    residual_image_every: int = 500
    """Log the residual map and the chosen pixels to tensorboard every this many steps (0: never)."""


def image_sizes(dataset: InputDataset) -> List[Tuple[int, int]]:
    """(height, width) of every image of a dataset, in dataset order (cameras already rescaled)."""
    cams = dataset.cameras
    heights = cams.height.reshape(-1).tolist()
    widths = cams.width.reshape(-1).tolist()
    return [(int(h), int(w)) for h, w in zip(heights, widths)]


class NIDDataManager(VanillaDataManager):
    """VanillaDataManager whose training pixel sampler can be the residual sampler.

    The pipeline calls ``observe_residuals(batch, per_ray_residual)`` after each training step;
    ``residual_images()`` returns the tensorboard previews (also logged by a training callback).
    """

    config: NIDDataManagerConfig

    def _get_pixel_sampler(self, dataset: InputDataset, num_rays_per_batch: int) -> PixelSampler:
        is_train = dataset is getattr(self, "train_dataset", None)
        if not is_train or self.config.sampler == "uniform":
            return self._uniform_sampler(dataset, num_rays_per_batch)
        if self.config.sampler != "residual":
            raise NIDInputError(
                f"datamanager.sampler is '{self.config.sampler}'; use --pipeline.datamanager.sampler uniform|residual"
            )
        if self.config.patch_size > 1:
            raise NIDInputError(
                f"the residual sampler picks single rays but datamanager.patch-size is {self.config.patch_size}; "
                "set --pipeline.datamanager.patch-size 1 or --pipeline.datamanager.sampler uniform"
            )
        sampler = super()._get_pixel_sampler(dataset, num_rays_per_batch)  # equirectangular / fisheye kwargs
        assert isinstance(sampler, ResidualPixelSampler)
        sampler.build_map(image_sizes(dataset))
        return sampler

    def _uniform_sampler(self, dataset: InputDataset, num_rays_per_batch: int) -> PixelSampler:
        """nerfstudio's own sampler, configured from the base fields of ``pixel_sampler``."""
        base_fields = {f.name for f in dataclasses.fields(PixelSamplerConfig) if f.name != "_target"}
        residual_config = self.config.pixel_sampler
        uniform_config = PixelSamplerConfig(**{k: getattr(residual_config, k) for k in base_fields})
        self.config.pixel_sampler, saved = uniform_config, residual_config  # type: ignore[assignment]
        try:
            return super()._get_pixel_sampler(dataset, num_rays_per_batch)
        finally:
            self.config.pixel_sampler = saved

    @property
    def residual_sampler(self) -> ResidualPixelSampler | None:
        sampler = self.train_pixel_sampler
        return sampler if isinstance(sampler, ResidualPixelSampler) else None

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        if self.residual_sampler is not None:
            self.residual_sampler.set_step(step)
        return super().next_train(step)

    def observe_residuals(self, batch: Dict, per_ray_residual: Float[Tensor, "num_rays"]) -> None:
        """Feed the per-ray residual of the rays just trained back to the sampler (no-op for uniform)."""
        if self.residual_sampler is not None:
            self.residual_sampler.observe(batch["indices"], per_ray_residual)

    def residual_images(self) -> Dict[str, Float[Tensor, "H W 3"]]:
        """Residual map and chosen pixels of a few training images ({} for uniform sampling)."""
        return self.residual_sampler.residual_images() if self.residual_sampler is not None else {}

    def _log_residual_images(self, step: int) -> None:
        sampler = self.residual_sampler
        if sampler is None:
            return
        for name, image in self.residual_images().items():
            writer.put_image(name=f"Sampler/{name}", image=image, step=step)
        writer.put_scalar(name="Sampler/residual_share", scalar=sampler.share(step), step=step)
        writer.put_scalar(name="Sampler/pool_factor", scalar=sampler.pool_factor(step), step=step)
        if sampler.residual_map is not None:
            writer.put_scalar(name="Sampler/visited_fraction", scalar=sampler.residual_map.visited_fraction(), step=step)

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes) -> List[TrainingCallback]:
        callbacks = list(super().get_training_callbacks(training_callback_attributes))
        sampler = self.residual_sampler
        trainer = training_callback_attributes.trainer
        if sampler is not None and trainer is not None:
            sampler.set_schedule_length(int(trainer.config.max_num_iterations))
        if sampler is not None and self.config.residual_image_every > 0:
            callbacks.append(
                TrainingCallback(
                    where_to_run=[TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    update_every_num_iters=self.config.residual_image_every,
                    func=self._log_residual_images,
                )
            )
        return callbacks

