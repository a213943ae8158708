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
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Dict, List, Literal, Optional, Sequence, Tuple, Type, Union

import torch
from jaxtyping import Float, Int
from torch import Tensor

from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from nerfstudio.data.utils.pixel_sampling_utils import divide_rays_per_image

from nid_nerf.errors import NIDInputError

UNVISITED = float("inf")
"""Map value of a pixel no ray has visited yet (ranks above every observed residual)."""
FLOAT16_MAX = 65504.0

ScheduleKind = Literal["constant", "linear", "step", "cosine"]


# ----------------------------------------------------------------------------------------------
# schedules (pure functions)
# ----------------------------------------------------------------------------------------------


def ratio_schedule(
    kind: ScheduleKind, step: int, num_steps: int, start: float, end: float, num_stages: int = 10
) -> float:
    """Share of the batch picked by residual at ``step`` (INT's mt_ratio schedules, ending at ``end``).

    ``step`` rises in ``num_stages`` equal stairs from ``start`` to ``end`` over ``num_steps`` (INT's
    default); ``linear`` and ``cosine`` rise smoothly; after ``num_steps`` the value stays ``end``.
    """
    if kind == "constant" or num_steps <= 0:
        return start if kind == "constant" else end
    t = min(max(step, 0) / num_steps, 1.0)
    if kind == "linear":
        return start + t * (end - start)
    if kind == "cosine":
        return end - 0.5 * (end - start) * (1.0 + math.cos(math.pi * t))
    if kind == "step":
        stages = max(num_stages, 1)
        stage = min(math.floor(t * stages), stages)
        return start + (end - start) * stage / stages
    raise NIDInputError(f"unknown ratio schedule '{kind}'; use one of constant, linear, step, cosine")


def refresh_interval(step: int, warmup_steps: int, every: int) -> int:
    """Steps between two rankings: every step during ``warmup_steps``, then every ``every`` steps."""
    return 1 if step < warmup_steps else max(int(every), 1)


def map_stride(image_sizes: Sequence[Tuple[int, int]], max_map_pixels: int) -> int:
    """Smallest integer stride whose reduced-resolution map holds at most ``max_map_pixels`` cells."""
    if max_map_pixels <= 0:
        raise NIDInputError(f"max_map_pixels must be positive (got {max_map_pixels}); raise it, e.g. 50000000")

    def cells(s: int) -> int:
        return sum(math.ceil(h / s) * math.ceil(w / s) for h, w in image_sizes)

    # cells(s) >= P / s^2, so floor(sqrt(P / budget)) never overshoots the smallest valid stride
    stride = max(1, int(math.sqrt(cells(1) / max_map_pixels)))
    while cells(stride) > max_map_pixels:
        stride += 1
    return stride


# ----------------------------------------------------------------------------------------------
# the residual map
# ----------------------------------------------------------------------------------------------


class ResidualMap:
    """float16 residual per training pixel, or per ``stride x stride`` cell, for images of any sizes.

    Cells of image ``i`` are the flat range ``offsets[i] : offsets[i + 1]``, row-major over
    ``(ceil(h_i / stride), ceil(w_i / stride))``.
    """

    def __init__(
        self,
        image_sizes: Sequence[Tuple[int, int]],
        max_map_pixels: int = 50_000_000,
        min_stride: int = 1,
        update_weight: float = 1.0,
    ):
        if len(image_sizes) == 0:
            raise NIDInputError("the residual sampler got no training images; check the dataset's train split")
        if not 0.0 < update_weight <= 1.0:
            raise NIDInputError(f"pixel-sampler.update-weight is {update_weight}; use a value in (0, 1], e.g. 1.0")
        self.stride = max(map_stride(image_sizes, max_map_pixels), int(min_stride), 1)
        self.update_weight = float(update_weight)
        s = self.stride
        self.heights = torch.tensor([h for h, _ in image_sizes], dtype=torch.long)
        self.widths = torch.tensor([w for _, w in image_sizes], dtype=torch.long)
        self.cell_h = (self.heights + s - 1) // s
        self.cell_w = (self.widths + s - 1) // s
        counts = self.cell_h * self.cell_w
        self.offsets = torch.zeros(len(image_sizes) + 1, dtype=torch.long)
        self.offsets[1:] = torch.cumsum(counts, 0)
        self.values = torch.full((int(self.offsets[-1]),), UNVISITED, dtype=torch.float16)

    @property
    def num_images(self) -> int:
        return len(self.heights)

    def cells(self, indices: Int[Tensor, "n 3"]) -> Int[Tensor, "n"]:
        """Flat cell index of absolute (image, y, x) pixel indices."""
        img, y, x = indices[:, 0], indices[:, 1], indices[:, 2]
        s = self.stride
        return self.offsets[img] + torch.div(y, s, rounding_mode="floor") * self.cell_w[img] + torch.div(
            x, s, rounding_mode="floor"
        )

    def valid(self, indices: Int[Tensor, "n 3"]) -> Tensor:
        """Which absolute indices fall inside the training images."""
        img, y, x = indices[:, 0], indices[:, 1], indices[:, 2]
        ok = (img >= 0) & (img < self.num_images)
        img = img.clamp(0, self.num_images - 1)
        return ok & (y >= 0) & (x >= 0) & (y < self.heights[img]) & (x < self.widths[img])

    def lookup(self, indices: Int[Tensor, "n 3"]) -> Float[Tensor, "n"]:
        """Residuals (float32, +inf where never visited) at absolute pixel indices."""
        return self.values[self.cells(indices)].float()

    def update(self, indices: Int[Tensor, "n 3"], residuals: Float[Tensor, "n"]) -> int:
        """Write the batch's residuals (mean per cell, blended into the old value with ``update_weight``).

        Non-finite values and stray indices are dropped; a never-visited cell takes the new value.

        Returns how many rays were written.
        """
        indices = indices.detach().to("cpu", torch.long).reshape(-1, 3)
        residuals = residuals.detach().to("cpu", torch.float32).reshape(-1)
        if indices.shape[0] != residuals.shape[0]:
            raise ValueError(f"observe: {indices.shape[0]} indices but {residuals.shape[0]} residuals")
        keep = torch.isfinite(residuals) & self.valid(indices)
        if not bool(keep.any()):
            return 0
        cells = self.cells(indices[keep])
        vals = residuals[keep].clamp(0.0, FLOAT16_MAX)
        uniq, inverse = torch.unique(cells, return_inverse=True)
        sums = torch.zeros(uniq.shape[0], dtype=torch.float32).index_add_(0, inverse, vals)
        counts = torch.bincount(inverse, minlength=uniq.shape[0]).to(torch.float32)
        new = sums / counts
        if self.update_weight < 1.0:
            old = self.values[uniq].float()
            new = torch.where(torch.isfinite(old), old + self.update_weight * (new - old), new)
        self.values[uniq] = new.to(torch.float16)
        return int(keep.sum())

    def image(self, image_index: int) -> Float[Tensor, "h w"]:
        """The map of one image at map resolution (float32, +inf where never visited)."""
        a, b = int(self.offsets[image_index]), int(self.offsets[image_index + 1])
        return self.values[a:b].float().view(int(self.cell_h[image_index]), int(self.cell_w[image_index]))

    def visited_fraction(self) -> float:
        return float(torch.isfinite(self.values).float().mean())


# ----------------------------------------------------------------------------------------------
# the sampler
# ----------------------------------------------------------------------------------------------


class MaskedPixelSampler(PixelSampler):
    """nerfstudio's PixelSampler with a mask-rejection draw that works for any number of images.

    nerfstudio 1.1.5 squeezes the [N, H, W, 1] mask before indexing it, which breaks with a single
    training image (or per-image list batches); it also falls back to draws without replacement,
    which fail when more rays are asked for than the mask leaves. Here the mask keeps its image
    axis, and the fallback draws visible pixels with replacement.
    """

    def rejection_sample_mask(
        self,
        mask: Tensor,
        num_samples: int,
        num_images: int,
        image_height: int,
        image_width: int,
        device: Union[torch.device, str],
    ) -> Int[Tensor, "batch_size 3"]:
        visible = mask.reshape(num_images, image_height, image_width, -1)[..., 0].bool().to(device)
        extent = torch.tensor([num_images, image_height, image_width], device=device)
        indices = (torch.rand((num_samples, 3), device=device) * extent).long()
        for _ in range(self.config.max_num_iterations):
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


@dataclass
class MaskedPixelSamplerConfig(PixelSamplerConfig):
    """Config of :class:`MaskedPixelSampler` (uniform sampling, mask aware for one or many images)."""

    _target: Type = field(default_factory=lambda: MaskedPixelSampler)


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
            raise NIDInputError("pixel-sampler.ratio-target keep sets the topk pool; use --pipeline.datamanager.pixel-sampler.rule topk")
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
        num_uniform = max(math.ceil(self.config.uniform_floor * num_rays), num_rays - round(self.share(step) * num_rays))
        num_uniform = min(num_uniform, num_rays)
        return num_rays - num_uniform, num_uniform

    # -- observe --------------------------------------------------------------------------------

    def observe(self, indices: Int[Tensor, "n 3"], residuals: Float[Tensor, "n"]) -> int:
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
            sizes = [tuple(im.shape[:2]) for im in images] if isinstance(images, list) else [tuple(images.shape[1:3])] * images.shape[0]
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

    def _power_weights(self, r: Float[Tensor, "n"]) -> Float[Tensor, "n"]:
        """r**alpha; never-visited pixels count as max(unvisited_residual, largest residual of the pool)."""
        finite = torch.isfinite(r)
        top = float(r[finite].max()) if bool(finite.any()) else 0.0
        r = torch.where(finite, r, torch.full_like(r, max(top, self.config.unvisited_residual, 1e-6)))
        return r.clamp_min(0.0).pow(self.config.alpha)

    def _ray_weights(self, r: Float[Tensor, "n"], ratio: float) -> Float[Tensor, "n"]:
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
        return key is not None and (key is image_idx or (key.shape == image_idx.shape and bool(torch.equal(key, image_idx))))

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
        if self.residual_map is None:
            return []
        if self.preview_indices is not None:
            return list(self.preview_indices)[: self.config.preview_images]
        return list(range(min(self.config.preview_images, self.residual_map.num_images)))

    def residual_images(self, max_side: int = 256) -> Dict[str, Float[Tensor, "H W 3"]]:
        """Tensorboard previews of the first ``preview_images`` training images, side by side.

        Each tile is the image at (about) pixel resolution, at most ``max_side`` pixels a side.
        ``residual_map``: turbo colour map scaled to the largest visited residual; magenta = never visited.
        ``chosen_pixels``: the last ``history_steps`` batches; white = picked by residual, blue = uniform floor.
        """
        rmap = self.residual_map
        if rmap is None:
            return {}
        ids = self.preview_image_indices()
        maps = [rmap.image(i) for i in ids]
        finite = torch.cat([m[torch.isfinite(m)] for m in maps])
        vmax = float(finite.max()) if finite.numel() > 0 and float(finite.max()) > 0 else 1.0
        residual_tiles, chosen_tiles = [], []
        for i, m in zip(ids, maps):
            h, w = int(rmap.heights[i]), int(rmap.widths[i])
            d = max(1, math.ceil(max(h, w) / max_side))  # display pixel = d x d image pixels
            ys = torch.div(torch.arange(0, h, d), rmap.stride, rounding_mode="floor")
            xs = torch.div(torch.arange(0, w, d), rmap.stride, rounding_mode="floor")
            residual_tiles.append(residual_to_rgb(m[ys][:, xs], vmax))
            chosen = torch.zeros(ys.shape[0], xs.shape[0], 3)
            for residual_first in (False, True):  # residual picks drawn last, on top
                for absolute, flags in self.history:
                    sel = (absolute[:, 0] == i) & (flags == residual_first)
                    y = torch.div(absolute[sel, 1], d, rounding_mode="floor")
                    x = torch.div(absolute[sel, 2], d, rounding_mode="floor")
                    colour = torch.tensor([1.0, 1.0, 1.0]) if residual_first else torch.tensor([0.2, 0.4, 1.0])
                    chosen[y, x] = colour
            chosen_tiles.append(chosen)
        return {"residual_map": tile_images(residual_tiles), "chosen_pixels": tile_images(chosen_tiles)}


def residual_to_rgb(residual: Float[Tensor, "h w"], vmax: float) -> Float[Tensor, "h w 3"]:
    """Turbo colour map of a residual image in [0, vmax]; never-visited (+inf) pixels are magenta."""
    from nerfstudio.utils.colormaps import apply_float_colormap

    visited = torch.isfinite(residual)
    norm = torch.where(visited, residual / max(vmax, 1e-12), torch.zeros_like(residual)).clamp(0.0, 1.0)
    rgb = apply_float_colormap(norm[..., None], colormap="turbo").float()
    rgb[~visited] = torch.tensor([1.0, 0.0, 1.0])
    return rgb


def tile_images(tiles: Sequence[Float[Tensor, "h w 3"]], gap: int = 2) -> Float[Tensor, "H W 3"]:
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
