"""Datamanager with a switch between uniform and residual (INT) ray sampling, sharded across processes.

It runs in the main process on purpose: nerfstudio's parallel datamanager samples rays in worker
processes that would never see the residual updates.

Multi-process training (``--machine.num-devices N``): each process (rank) owns a disjoint shard of the
training images, dealt like cards scene by scene (``nid_nerf.engine.distributed.shard_images``): every rank
still sees every scene of a collection, but different views of it, so the N ranks together train on
N different ray batches per step. Only the image loader is sharded: it caches and serves this rank's
images only; the cameras, the ray generator and the residual map keep the global image indices, so
``batch["indices"]`` means the same thing in every process. Each rank's residual sampler keeps its
own residual map, in which only the images it owns are ever visited. The ranks draw different pixels
because they own different images and because nerfstudio's ``train_loop`` seeds torch / numpy /
random with ``machine.seed + rank``, which are the generators the pixel samplers and the image cache
draw from. With one process nothing is sharded: behaviour is exactly the single-process one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type

import torch
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager, VanillaDataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.utils import writer
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor
from torch.utils.data import Dataset

from nid_nerf.dataparsers.training_masks import OBJECT_MASKS
from nid_nerf.engine.distributed import rank_and_world_size, scenes_of, shard_images
from nid_nerf.engine.nerfstudio_patches import pixel_sampler_kwargs, train_dataset_swapped
from nid_nerf.errors import NIDInputError
from nid_nerf.sampling.masked_sampler import MaskedPixelSamplerConfig
from nid_nerf.sampling.residual_sampler import ResidualPixelSampler, ResidualPixelSamplerConfig


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
    scenes_per_step: int = 0
    """nid-collection only: draw each step's rays from this many randomly chosen scenes (0: from every scene).
    Fewer scenes per step give each scene's code more rays per step, and the gate mixes one table per scene
    in the batch, so a step over a large collection also gets cheaper."""


def image_sizes(dataset: Dataset) -> List[Tuple[int, int]]:
    """(height, width) of every image of a dataset, in dataset order (cameras already rescaled).

    For an ImageShard: of all images of its dataset (the residual map indexes images globally).
    """
    cams = dataset.cameras
    heights = cams.height.reshape(-1).tolist()
    widths = cams.width.reshape(-1).tolist()
    return [(int(h), int(w)) for h, w in zip(heights, widths)]


def scene_indices(dataset: InputDataset) -> Optional[List[int]]:
    """Scene of every image (``cameras.metadata["scene_index"]`` of a nid-collection), None for a single scene."""
    metadata = dataset.cameras.metadata or {}
    tags = metadata.get("scene_index")
    return None if tags is None else [int(t) for t in tags.reshape(-1).tolist()]


def has_object_masks(dataset: Dataset) -> bool:
    """Whether the dataset's masks are object masks (``training_masks.OBJECT_MASKS``; an ImageShard asks its
    dataset), which the pixel samplers must not restrict the rays to."""
    metadata = getattr(getattr(dataset, "dataset", dataset), "metadata", None) or {}
    return bool(metadata.get(OBJECT_MASKS, False))


def restrict_to_scenes(image_batch: Dict, image_scenes: Tensor, num_scenes: int) -> Dict:
    """The images of ``image_batch`` that belong to ``num_scenes`` of its scenes, picked at random (torch's RNG).

    ``image_scenes[i]`` is the scene of global image ``i``; every per-image entry of the batch (tensors
    and lists over its images, ``image_idx`` included) is subset alike.
    """
    image_idx = image_batch["image_idx"].to("cpu", torch.long)
    scenes = image_scenes[image_idx]
    present = torch.unique(scenes)
    if present.numel() <= num_scenes:
        return image_batch
    chosen = present[torch.randperm(present.numel())[:num_scenes]]
    keep = torch.isin(scenes, chosen).nonzero().reshape(-1)
    n = image_idx.shape[0]
    out: Dict = {}
    for key, value in image_batch.items():
        if isinstance(value, Tensor) and value.dim() > 0 and value.shape[0] == n:
            out[key] = value[keep.to(value.device)]
        elif isinstance(value, list) and len(value) == n:
            out[key] = [value[i] for i in keep.tolist()]
        else:
            out[key] = value
    return out


class ImageShard(Dataset):
    """The images ``indices`` of ``dataset``: item k is ``dataset[indices[k]]``, whose ``image_idx`` stays global.

    Its ``cameras`` are all of the dataset's cameras, so rays and residual maps built from it index
    images globally.
    """

    def __init__(self, dataset: InputDataset, indices: Sequence[int]) -> None:
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> Dict:
        return self.dataset[self.indices[k]]

    @property
    def cameras(self):
        return self.dataset.cameras


class NIDDataManager(VanillaDataManager):
    """VanillaDataManager whose training pixel sampler can be the residual sampler.

    The pipeline calls ``observe_residuals(batch, per_ray_residual)`` after each training step;
    ``residual_images()`` returns the tensorboard previews (also logged by a training callback).
    """

    config: NIDDataManagerConfig
    train_shard: Optional[List[int]] = None
    """Training images this process owns (None: one process, all images)."""

    def setup_train(self):
        if self.config.scenes_per_step < 0:
            raise NIDInputError(
                f"datamanager.scenes-per-step is {self.config.scenes_per_step}; use 0 (rays from every scene) or a "
                "positive number of scenes per step"
            )
        rank, world_size = rank_and_world_size(self.world_size, self.local_rank)
        self.rank = rank
        if world_size == 1:
            self.train_shard = None
            super().setup_train()
        else:
            full = self.train_dataset
            scenes = scene_indices(full)
            self.train_shard = shard_images(scenes, len(full), rank, world_size)
            counts = scenes_of(scenes, self.train_shard)
            CONSOLE.print(
                f"Process {rank} of {world_size}: {len(self.train_shard)} of {len(full)} training images "
                f"({len(counts)} scene(s))"
            )
            # the image loader caches and serves only this rank's images; cameras stay global
            with train_dataset_swapped(self, ImageShard(full, self.train_shard)):
                super().setup_train()
            self._restrict_previews_to_shard()
        self.rays_per_image = torch.zeros(len(self.train_dataset), dtype=torch.long)
        scenes = scene_indices(self.train_dataset) if self.config.scenes_per_step > 0 else None
        if scenes is not None:
            # every image batch nerfstudio's next_train draws keeps the images of scenes_per_step scenes only
            image_scenes, batches = torch.tensor(scenes, dtype=torch.long), self.iter_train_image_dataloader
            self.iter_train_image_dataloader = (restrict_to_scenes(batch, image_scenes, self.config.scenes_per_step)
                                                for batch in batches)

    def _restrict_previews_to_shard(self) -> None:
        """Residual previews show images this rank trains on (the others stay unvisited in its map)."""
        sampler = self.residual_sampler
        if sampler is None or self.train_shard is None:
            return
        sampler.preview_indices = list(self.train_shard)

    def shard_report(self) -> Dict:
        """This rank's share of the training data: owned images, their scenes, rays drawn per image so far."""
        owned = self.train_shard if self.train_shard is not None else list(range(len(self.train_dataset)))
        drawn = torch.nonzero(self.rays_per_image).reshape(-1).tolist()
        return {
            "rank": getattr(self, "rank", 0),
            "images": owned,
            "scene_image_counts": {str(k): v for k, v in scenes_of(scene_indices(self.train_dataset), owned).items()},
            "rays_drawn": int(self.rays_per_image.sum()),
            "rays_per_image": {str(i): int(self.rays_per_image[i]) for i in drawn},
        }

    def _get_pixel_sampler(self, dataset: Dataset, num_rays_per_batch: int) -> PixelSampler:
        """The training sampler of ``config.sampler``; evaluation always samples uniformly.

        Both are built from nid-nerf's configs with the arguments nerfstudio's own ``_get_pixel_sampler``
        passes (``nerfstudio_patches.pixel_sampler_kwargs``). nerfstudio's patch sampler is never used: its
        switch (``patch_size > 1``) applies only to a plain ``PixelSamplerConfig``.
        """
        sampler = self._pick_pixel_sampler(dataset, num_rays_per_batch)
        if has_object_masks(dataset):
            # object masks feed the mask loss: rays outside them are drawn too (the image batch keeps "mask")
            sampler.config = dataclasses.replace(sampler.config, ignore_mask=True)
        return sampler

    def _pick_pixel_sampler(self, dataset: Dataset, num_rays_per_batch: int) -> PixelSampler:
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
        sampler = self.config.pixel_sampler.setup(**pixel_sampler_kwargs(dataset, num_rays_per_batch))
        assert isinstance(sampler, ResidualPixelSampler)
        sampler.build_map(image_sizes(dataset))  # all images (global indices), also for a shard
        return sampler

    def _uniform_sampler(self, dataset: Dataset, num_rays_per_batch: int) -> PixelSampler:
        """nerfstudio's uniform sampler (with the one-image mask fix), from the base fields of ``pixel_sampler``."""
        base_fields = {f.name for f in dataclasses.fields(PixelSamplerConfig) if f.name != "_target"}
        residual_config = self.config.pixel_sampler
        uniform_config = MaskedPixelSamplerConfig(**{k: getattr(residual_config, k) for k in base_fields})
        return uniform_config.setup(**pixel_sampler_kwargs(dataset, num_rays_per_batch))

    @property
    def residual_sampler(self) -> ResidualPixelSampler | None:
        sampler = self.train_pixel_sampler
        return sampler if isinstance(sampler, ResidualPixelSampler) else None

    def next_train(self, step: int) -> Tuple[RayBundle, Dict]:
        if self.residual_sampler is not None:
            self.residual_sampler.set_step(step)
        ray_bundle, batch = super().next_train(step)
        images = batch["indices"][:, 0].to("cpu", torch.long)
        self.rays_per_image += torch.bincount(images, minlength=self.rays_per_image.shape[0])
        return ray_bundle, batch

    def observe_residuals(self, batch: Dict, per_ray_residual: Float[Tensor, " num_rays"]) -> None:
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
            writer.put_scalar(name="Sampler/visited_fraction", scalar=self._visited_fraction(), step=step)

    def _visited_fraction(self) -> float:
        """Share of the residual-map cells visited, over the images this rank owns."""
        rmap = self.residual_sampler.residual_map if self.residual_sampler is not None else None
        if rmap is None:
            return 0.0
        if self.train_shard is None:
            return rmap.visited_fraction()
        cells = torch.cat([rmap.image(i).reshape(-1) for i in self.train_shard])
        return float(torch.isfinite(cells).float().mean())

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
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

