"""Residual ray sampler: Implicit Neural Teaching (INT, Zhang et al. 2024) brought to rays.

A share ``ratio(t)`` of every ray batch is picked where the photometric residual is largest; the
rest (at least ``uniform_floor``, 10 %) is drawn uniformly like nerfstudio's ``PixelSampler``, so
no pixel starves. The residuals live in a float16 *residual map*, one value per ``stride x stride``
cell of every training image (``map_stride``, 4 by default: cells are revisited ~16x more often than
pixels, so the map stays fresh; 1 = per pixel; the stride grows further once the dataset exceeds
``max_map_pixels``). The map is updated for free from the per-ray loss of the rays just trained
(``observe``, a running average per cell). Never-visited cells hold ``+inf``, so they rank first.
NaN or infinite residuals are dropped and never reach the map.

Picking rules, both over a uniform *candidate pool* drawn with the base class' own (mask aware)
pixel draws, so the cost per step is O(pool), whatever the dataset size:

- ``topk``: keep the ``1 / pool_factor`` candidates with the largest residual (INT's hard top-k);
- ``power``: resample candidates with probability proportional to ``r ** alpha`` (soft mining).

With ``unbiased=True`` the batch carries ``ray_weights`` = ``(1 / (P q))**weight_alpha`` normalised to
mean 1, where ``q`` is each ray's probability under the mixture of uniform and residual picks.

INT "refreshes" the ranking every step early on and every 10-50 steps later. Here a refresh
ranks one candidate pool for the next ``refresh_every(t)`` steps and queues the picks; the map itself
is updated every step either way.

The parts live beside this file: the schedules (:mod:`nid_nerf.sampling.schedules`), the map
(:mod:`nid_nerf.sampling.residual_map`), the mask-aware uniform draws (:mod:`nid_nerf.sampling.masked_sampler`)
and the tensorboard previews (:mod:`nid_nerf.sampling.previews`). ``timings`` / ``counts`` add up the time
spent in ``sample`` and ``observe`` (the sampler's overhead per step, 0.3-0.6 % in docs/sampler_benchmark.md).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type

import torch
from jaxtyping import Float, Int
from nerfstudio.data.utils.pixel_sampling_utils import divide_rays_per_image
from torch import Tensor

from nid_nerf.errors import NIDInputError
from nid_nerf.sampling.masked_sampler import MaskedPixelSampler, MaskedPixelSamplerConfig
from nid_nerf.sampling.previews import residual_previews
from nid_nerf.sampling.residual_map import UNVISITED, ResidualMap
from nid_nerf.sampling.schedules import ScheduleKind, ratio_schedule, refresh_interval


@dataclass
class ResidualPixelSamplerConfig(MaskedPixelSamplerConfig):
    """Residual (INT) pixel sampler; the base class' fields (masks, rays per batch, ...) keep their meaning."""

    _target: Type = field(default_factory=lambda: ResidualPixelSampler)
    rule: Literal["topk", "power"] = "topk"
    """topk: largest residuals of a uniform candidate pool (INT); power: resample the pool by r**alpha."""
    ratio_schedule: ScheduleKind = "step"
    """Schedule of the ratio (INT's 'step': stairs from ratio_start to ratio_end)."""
    ratio_target: Literal["share", "keep"] = "share"
    """What the ratio sets. share: the residual share of each batch (pool_factor fixed). keep: INT's own
    ratio, the fraction of the candidate pool kept by topk (pool = picks / ratio), with the residual
    share at 1 - uniform_floor; rising towards 1 it fades into uniform sampling, as INT does."""
    ratio_start: float = 0.2
    """Ratio at step 0 (INT: 20 % selected)."""
    ratio_end: float = 0.9
    """Ratio at the end of the schedule (a share is capped at 1 - uniform_floor)."""
    ratio_steps: int = -1
    """Steps over which the share rises; -1 = the trainer's max_num_iterations (2000 without a trainer)."""
    ratio_stages: int = 10
    """Number of stairs of the 'step' schedule."""
    uniform_floor: float = 0.1
    """Share of every batch drawn uniformly, at least 0.1, so that no pixel starves."""
    pool_factor: float = 4.0
    """Candidate pool size per residual pick (ratio_target share); topk keeps the top 1/pool_factor."""
    alpha: float = 1.0
    """Exponent of the power rule: probability ~ r**alpha."""
    unbiased: bool = False
    """Return batch['ray_weights'] = (1/(P q))**weight_alpha, mean 1, to undo the sampling bias."""
    weight_alpha: float = 0.5
    """Exponent of the unbiased weights (0: none, 1: fully unbiased; soft mining's alpha)."""
    refresh_warmup: int = 100
    """Rank a fresh pool every step for this many steps (INT: refresh every step early on)."""
    refresh_every: int = 1
    """After the warm-up, rank one pool every this many steps and queue its picks (INT: 10-50)."""
    unvisited_residual: float = 1.0
    """Residual the power rule and the ray weights assume for never-visited pixels (1 = worst mean |rgb - gt|)."""
    map_stride: int = 4
    """Smallest map stride: one residual per map_stride x map_stride pixels (cells refresh more often)."""
    update_weight: float = 0.5
    """Weight of a new residual in its cell (1: overwrite; < 1: running average)."""
    max_map_pixels: int = 50_000_000
    """Residual-map budget (cells); above it the map drops to an integer stride (float16: 2 bytes a cell)."""
    history_steps: int = 20
    """How many recent batches the 'chosen pixels' image shows."""
    preview_images: int = 4
    """How many training images the tensorboard previews show side by side."""


class ResidualPixelSampler(MaskedPixelSampler):
    """Picks rays where the residual map is largest, with a uniform floor. See the module docstring.

    Extra kwargs (from the datamanager): ``image_sizes`` = [(h, w)] of every training image, in
    dataset order (the map's layout). Without them the map is built from the first image batch,
    which must then hold every training image.
    """

    config: ResidualPixelSamplerConfig

    def __init__(self, config: ResidualPixelSamplerConfig, **kwargs) -> None:
        super().__init__(config, **kwargs)
        if not 0.1 <= config.uniform_floor <= 1.0:
            raise NIDInputError(
                f"pixel-sampler.uniform-floor is {config.uniform_floor}; it must be in [0.1, 1] so no pixel starves"
            )
        if config.pool_factor < 1.0:
            raise NIDInputError(f"pixel-sampler.pool-factor is {config.pool_factor}; use a value >= 1 (e.g. 4)")
        if config.ratio_target == "keep" and config.rule != "topk":
            raise NIDInputError(
                "pixel-sampler.ratio-target keep sets the topk pool; use --pipeline.datamanager.pixel-sampler.rule topk"
            )
        if config.alpha < 0 or config.weight_alpha < 0:
            raise NIDInputError("pixel-sampler.alpha and weight-alpha must be >= 0; e.g. 1.0")
        self.step = 0
        self.schedule_steps = config.ratio_steps if config.ratio_steps > 0 else 2000
        self.residual_map: Optional[ResidualMap] = None
        image_sizes = kwargs.get("image_sizes")
        if image_sizes is not None:
            self.residual_map = self._new_map(image_sizes)
        self._queue: Optional[Tensor] = None  # local (c, y, x) picks still to hand out
        self._queue_key: Optional[Tensor] = None  # image_idx of the image batch the queue refers to
        # (mean pool weight, top-k threshold, pool factor) of the last ranking, for the ray weights
        self._queue_stats: Tuple[float, float, float] = (1.0, UNVISITED, config.pool_factor)
        self._next_refresh = 0
        self.history: List[Tuple[Tensor, Tensor]] = []  # (absolute indices, picked-by-residual flags)
        self.timings: Dict[str, float] = {"sample": 0.0, "observe": 0.0}
        self.counts: Dict[str, int] = {"sample": 0, "observe": 0, "refresh": 0}

    def build_map(self, image_sizes: Sequence[Tuple[int, int]]) -> ResidualMap:
        """(Re)build an all-unvisited residual map for training images of these (height, width)."""
        self.residual_map = self._new_map(image_sizes)
        self._queue = None
        self.history.clear()
        return self.residual_map

    def _new_map(self, image_sizes: Sequence[Tuple[int, int]]) -> ResidualMap:
        c = self.config
        return ResidualMap(image_sizes, c.max_map_pixels, c.map_stride, c.update_weight)

    # -- schedules ------------------------------------------------------------------------------

    def set_step(self, step: int) -> None:
        self.step = int(step)

    def set_schedule_length(self, num_steps: int) -> None:
        """Called by the datamanager with the trainer's max_num_iterations when ratio_steps is -1."""
        if self.config.ratio_steps <= 0 and num_steps > 0:
            self.schedule_steps = int(num_steps)

    def ratio(self, step: Optional[int] = None) -> float:
        """The scheduled ratio at ``step`` (the current step if None)."""
        c = self.config
        step = self.step if step is None else step
        return ratio_schedule(c.ratio_schedule, step, self.schedule_steps, c.ratio_start, c.ratio_end, c.ratio_stages)

    def share(self, step: Optional[int] = None) -> float:
        """Share of the batch picked by residual (capped so the uniform floor holds)."""
        r = self.ratio(step) if self.config.ratio_target == "share" else 1.0
        return min(max(r, 0.0), 1.0 - self.config.uniform_floor)

    def pool_factor(self, step: Optional[int] = None) -> float:
        """Candidates per residual pick; topk keeps the best 1 / pool_factor of them."""
        if self.config.ratio_target == "keep":
            return 1.0 / min(max(self.ratio(step), 1e-3), 1.0)
        return self.config.pool_factor

    def split(self, num_rays: int, step: Optional[int] = None) -> Tuple[int, int]:
        """(residual picks, uniform picks) of a batch; the uniform part is never below the floor."""
        floor = math.ceil(self.config.uniform_floor * num_rays)
        num_uniform = max(floor, num_rays - round(self.share(step) * num_rays))
        num_uniform = min(num_uniform, num_rays)
        return num_rays - num_uniform, num_uniform

    # -- observe --------------------------------------------------------------------------------

    def observe(self, indices: Int[Tensor, "n 3"], residuals: Float[Tensor, " n"]) -> int:
        """Update the map with the per-ray residuals of the rays just trained (absolute indices)."""
        if self.residual_map is None:
            return 0
        t0 = time.perf_counter()
        written = self.residual_map.update(indices, residuals)
        self.timings["observe"] += time.perf_counter() - t0
        self.counts["observe"] += 1
        return written

    # -- uniform draws and gathering, for tensor or list (variable resolution) image batches -------

    def _draw_uniform(self, n: int, image_batch: Dict) -> Int[Tensor, "n 3"]:
        """``n`` uniform local (c, y, x) indices, honouring masks exactly like the base class."""
        images = image_batch["image"]
        masks = image_batch.get("mask")
        if n <= 0:
            device = images[0].device if isinstance(images, list) else images.device
            return torch.zeros((0, 3), dtype=torch.long, device=device)
        if isinstance(images, list):
            out = []
            for i, count in enumerate(divide_rays_per_image(n, len(images))):
                if count <= 0:
                    continue
                h, w, _ = images[i].shape
                mask = masks[i].unsqueeze(0) if masks is not None else None
                if self.config.is_equirectangular:
                    idx = self.sample_method_equirectangular(count, 1, h, w, mask=mask, device=images[i].device)
                else:
                    idx = self.sample_method(count, 1, h, w, mask=mask, device=images[i].device)
                idx[:, 0] = i
                out.append(idx)
            return torch.cat(out, 0)
        num_images, h, w, _ = images.shape
        device = images.device
        if self.config.is_equirectangular:
            return self.sample_method_equirectangular(n, num_images, h, w, mask=masks, device=device)
        if self.config.fisheye_crop_radius is not None:
            return self.sample_method_fisheye(n, num_images, h, w, mask=masks, device=device)
        return self.sample_method(n, num_images, h, w, mask=masks, device=device)

    @staticmethod
    def _gather(image_batch: Dict, indices: Int[Tensor, "n 3"], keep_full_image: bool) -> Dict:
        """Collate per-ray values at local indices, like the base class (absolute camera index in 'indices')."""
        c, y, x = (i.flatten().cpu() for i in torch.split(indices, 1, dim=-1))
        batch: Dict = {}
        for key, value in image_batch.items():
            if key == "image_idx" or value is None:
                continue
            if isinstance(value, list):
                if len(value) == 0 or not isinstance(value[0], Tensor):
                    continue
                out = value[0].new_empty((c.shape[0],) + tuple(value[0].shape[2:]))
                for i in torch.unique(c).tolist():
                    sel = c == i
                    out[sel.to(out.device)] = value[i][y[sel].to(value[i].device), x[sel].to(value[i].device)]
                batch[key] = out
            elif isinstance(value, Tensor) and value.dim() >= 3:
                batch[key] = value[c.to(value.device), y.to(value.device), x.to(value.device)]
        indices = indices.clone()
        indices[:, 0] = image_batch["image_idx"].to(indices.device)[indices[:, 0]]
        batch["indices"] = indices
        if keep_full_image:
            batch["full_image"] = image_batch["image"]
        return batch

    # -- picking --------------------------------------------------------------------------------

    def _ensure_map(self, image_batch: Dict) -> ResidualMap:
        if self.residual_map is None:
            images = image_batch["image"]
            if isinstance(images, list):
                sizes = [tuple(im.shape[:2]) for im in images]
            else:
                sizes = [tuple(images.shape[1:3])] * images.shape[0]
            order = torch.argsort(image_batch["image_idx"].cpu())
            self.residual_map = self._new_map([sizes[int(i)] for i in order])
        return self.residual_map

    def _absolute(self, local: Int[Tensor, "n 3"], image_idx: Tensor) -> Int[Tensor, "n 3"]:
        out = local.detach().to("cpu", torch.long).clone()
        out[:, 0] = image_idx.cpu().long()[out[:, 0]]
        return out

    def _refresh(self, image_batch: Dict, num_picks: int) -> None:
        """Rank one uniform candidate pool and queue ``num_picks`` residual picks (local indices)."""
        rmap = self._ensure_map(image_batch)
        factor = self.pool_factor()
        pool_size = max(math.ceil(factor * num_picks), num_picks)
        pool = self._draw_uniform(pool_size, image_batch)
        r = rmap.lookup(self._absolute(pool, image_batch["image_idx"]))
        if self.config.rule == "topk":
            top = torch.topk(r, num_picks, largest=True, sorted=False)
            picks = top.indices
            threshold = float(top.values.min()) if num_picks > 0 else UNVISITED
            mean_w = 1.0
        else:
            w = self._power_weights(r)
            picks = torch.multinomial(w, num_picks, replacement=True) if float(w.sum()) > 0 else torch.randint(
                0, pool_size, (num_picks,)
            )
            threshold = UNVISITED
            mean_w = float(w.mean())
        picks = picks[torch.randperm(picks.shape[0])]
        self._queue = pool[picks.to(pool.device)]
        self._queue_key = image_batch["image_idx"]
        self._queue_stats = (mean_w, threshold, pool_size / max(num_picks, 1))
        self.counts["refresh"] += 1

    def _power_weights(self, r: Float[Tensor, " n"]) -> Float[Tensor, " n"]:
        """r**alpha; never-visited pixels count as max(unvisited_residual, largest residual of the pool)."""
        finite = torch.isfinite(r)
        top = float(r[finite].max()) if bool(finite.any()) else 0.0
        r = torch.where(finite, r, torch.full_like(r, max(top, self.config.unvisited_residual, 1e-6)))
        return r.clamp_min(0.0).pow(self.config.alpha)

    def _ray_weights(self, r: Float[Tensor, " n"], ratio: float) -> Float[Tensor, " n"]:
        """(1 / (P q))**weight_alpha normalised to mean 1, q = the ray's probability under the mixture."""
        mean_w, threshold, factor = self._queue_stats
        if self.config.rule == "topk":
            in_top = r >= threshold
            rel = torch.where(in_top, torch.full_like(r, factor), torch.zeros_like(r))
        else:
            rel = self._power_weights(r) / max(mean_w, 1e-12)
        pq = (1.0 - ratio) + ratio * rel
        w = pq.clamp_min(1e-6).pow(-self.config.weight_alpha)
        return w / w.mean()

    def _same_images(self, image_idx: Tensor) -> bool:
        key = self._queue_key
        if key is None:
            return False
        return key is image_idx or (key.shape == image_idx.shape and bool(torch.equal(key, image_idx)))

    def sample(self, image_batch: Dict):
        """Sample a pixel batch: residual picks then uniform picks, collated like the base class."""
        t0 = time.perf_counter()
        num_rays = self.num_rays_per_batch
        num_picks, num_uniform = self.split(num_rays)
        if num_picks > 0:
            queue_ok = (
                self._queue is not None
                and self._queue.shape[0] >= num_picks
                and self.step < self._next_refresh
                and self._same_images(image_batch["image_idx"])
            )
            if not queue_ok:
                every = refresh_interval(self.step, self.config.refresh_warmup, self.config.refresh_every)
                self._refresh(image_batch, num_picks * every)
                self._next_refresh = self.step + every
            assert self._queue is not None
            picked, self._queue = self._queue[:num_picks], self._queue[num_picks:]
        else:
            self._ensure_map(image_batch)
            picked = self._draw_uniform(0, image_batch)
        uniform = self._draw_uniform(num_uniform, image_batch)
        local = torch.cat([picked.to(uniform.device), uniform], 0)
        batch = self._gather(image_batch, local, self.config.keep_full_image)
        absolute = self._absolute(local, image_batch["image_idx"])
        flags = torch.zeros(num_rays, dtype=torch.bool)
        flags[:num_picks] = True
        if self.config.unbiased:
            assert self.residual_map is not None
            r = self.residual_map.lookup(absolute)
            batch["ray_weights"] = self._ray_weights(r, num_picks / max(num_rays, 1)).to(batch["indices"].device)
        self.history.append((absolute, flags))
        del self.history[: -max(self.config.history_steps, 1)]
        self.step += 1
        self.timings["sample"] += time.perf_counter() - t0
        self.counts["sample"] += 1
        return batch

    # -- previews -------------------------------------------------------------------------------

    preview_indices: Optional[List[int]] = None
    """Images the tensorboard previews show (e.g. a rank's own shard); None: the first ones."""

    def preview_image_indices(self) -> List[int]:
        """The training images the previews show: ``preview_indices``, else the first ``preview_images``."""
        if self.residual_map is None:
            return []
        if self.preview_indices is not None:
            return list(self.preview_indices)[: self.config.preview_images]
        return list(range(min(self.config.preview_images, self.residual_map.num_images)))

    def residual_images(self, max_side: int = 256) -> Dict[str, Float[Tensor, "H W 3"]]:
        """Tensorboard previews (:func:`~nid_nerf.sampling.previews.residual_previews`): map and last batches."""
        if self.residual_map is None:
            return {}
        return residual_previews(self.residual_map, self.preview_image_indices(), self.history, max_side)
