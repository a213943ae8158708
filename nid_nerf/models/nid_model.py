"""NIDModel: renders the NID SDF field with VolSDF, sampled by a cached coarse SDF grid.

Per ray: ``num_coarse_samples`` uniform samples are looked up in a cached dense SDF grid (refreshed
every ``grid_update_interval`` steps, so they cost a trilinear lookup each), their VolSDF weights
define a pdf, and ``num_fine_samples`` importance samples (with a uniform floor) are evaluated by
the real field. Analytic SDF gradients are taken only where used: the eikonal loss (a share of
the samples plus random points) and one surface point per ray for rendered normals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Literal, NamedTuple, Optional, Tuple, Type

import torch
import torch.nn.functional as F
from jaxtyping import Float
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model, ModelConfig
from nerfstudio.utils import colors
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor, nn
from torch.nn import Parameter
from torchmetrics.functional import structural_similarity_index_measure

from nid_nerf.dataparsers.training_masks import IMAGE_CHANNELS, OBJECT_MASKS
from nid_nerf.errors import NIDInputError
from nid_nerf.fields.background import BackgroundFieldConfig, background_field, sphere_chord
from nid_nerf.fields.dictionary import load_dictionary, resolve_architecture
from nid_nerf.fields.encoding import HashGridSpec, level_window
from nid_nerf.fields.nid_field import NIDField
from nid_nerf.fields.tcnn_backend import resolve_implementation
from nid_nerf.model_components.appearance import ImageAppearance
from nid_nerf.model_components.image_metrics import lpips_if_available, masked_psnr, psnr
from nid_nerf.model_components.rendering import (
    distortion_loss,
    grid_lookup,
    interval_hit,
    ray_aabb,
    render_weights_from_edges,
    sample_pdf,
    stratified_midpoints,
)
from nid_nerf.model_components.surface import first_crossing, refine_crossing
from nid_nerf.threads import AdaptiveThreads


def mask_bce(accumulation: Float[Tensor, "num_rays 1"], mask: Tensor) -> Float[Tensor, ""]:
    """Mean binary cross-entropy of the accumulation against an object mask (1 = object).

    ``log(acc + eps)`` and ``log(1 - acc + eps)`` (eps 1e-4) rather than clamping ``acc``: a clamp has zero
    gradient beyond its bounds, so a background ray that reached accumulation 1 would never be pulled back.
    """
    eps = 1e-4
    m = mask.to(accumulation).reshape(accumulation.shape)
    acc = accumulation.clamp(0, 1)
    return -(m * torch.log(acc + eps) + (1.0 - m) * torch.log(1.0 - acc + eps)).mean()


class TrainingTerms(NamedTuple):
    """What a training step takes from the model's outputs and batch (see ``NIDModel.get_training_terms``)."""

    metrics: Dict[str, Tensor]
    """nerfstudio's metrics dict (logged)."""
    losses: Dict[str, Tensor]
    """nerfstudio's loss dict (summed and back-propagated by the trainer)."""
    per_ray_residual: Float[Tensor, " num_rays"]
    """Mean absolute RGB error of each ray, detached: what the residual ray sampler learns from."""


def anneal_steps(base: Optional[int], views: int, reference_views: Optional[int]) -> Optional[int]:
    """The refine anneal length for a scene of ``views`` training views: ``base`` up to ``reference_views``, then
    ``base * reference_views / views`` (rounded, at least 1).

    >>> anneal_steps(500, 3, 3), anneal_steps(500, 5, 3), anneal_steps(500, 15, 3), anneal_steps(500, 15, None)
    (500, 300, 100, 500)
    """
    if base is None or reference_views is None or views <= reference_views:
        return base
    return max(1, round(base * reference_views / views))


@dataclass
class NIDModelConfig(ModelConfig):
    """The NID field model. K = 1 with a fixed code is a plain hash-grid SDF field."""

    _target: Type = field(default_factory=lambda: NIDModel)
    enable_collider: bool = False
    """Rays are clipped to the scene box by the model itself."""
    eval_num_rays_per_chunk: int = 16384
    """Rays per forward pass when rendering whole images (eval, viewer); 4x nerfstudio's default, since rays the
    cached grid sees as empty cost no field query."""
    # --- dictionary
    num_experts: int = 1
    """K, the number of hash-grid experts."""
    top_k: int = 1
    """k, experts kept by the gate of each scene."""
    learn_codes: bool = False
    """Learn a code per scene (True for nid-dict and the solve stage)."""
    dense_warmup_steps: int = 0
    """Steps with a dense gate and an L1 code penalty before switching to top-k."""
    code_l1_mult: float = 1e-3
    """nid-dict: weight of the L1 norm of the codes during the dense warm-up (pushes each scene toward few experts
    before the gate switches to top-k)."""
    load_balance_mult: float = 1e-2
    """nid-dict: weight of the squared coefficient of variation (CV^2) of expert usage over the scenes, so that no
    expert goes unused (0 when every expert gets the same gate mass)."""
    usage_log_interval: int = 250
    """Steps between expert-usage histograms in tensorboard (K > 1)."""
    dictionary_path: Optional[Path] = None
    """A dictionary.pt from nid-dict: solve this scene's code against it, then refine."""
    solve_steps: int = 300
    """With a dictionary: steps during which only the code (and beta) are optimised (for scenes of at most
    solve_views training views; see solve_views)."""
    solve_views: Optional[int] = 3
    """solve_steps holds for scenes of at most this many training views; a scene with more views solves for
    many_view_solve_steps and refines for the rest: with many views the refine can use them sooner, and a code the
    dictionary spans badly costs less. None: solve_steps for every view count."""
    many_view_solve_steps: int = 20
    """Solve steps (at most solve_steps) for scenes of more than solve_views views. On 5 held-out ShapeNet chairs at
    400 steps, 20 instead of 100 gave +0.90 dB at 5 views and +1.48 dB at 15 (NID - scratch from +0.26 to +1.16 and
    from -0.90 to +0.58); a proportional 60 at 5 views gave -0.23 (docs/categories_chair_12k.md)."""
    solve_gate: Literal["dense", "top-k"] = "dense"
    """With a dictionary: which experts the new scene's code may use. dense: all K (the tables are mixed once per
    step, so the per-sample cost does not depend on it); top-k: the dictionary's own k, picked by the mean code.
    A top-k solve cannot change its experts (unpicked entries get no photometric gradient): on a held-out vase from
    10 views it reached 15.5 dB after 100 steps where the dense solve reached 18.1 dB after 25
    (docs/fewview_benchmark.md)."""
    solve_beta_init: Optional[float] = 0.03
    """With a dictionary: VolSDF beta at the start of the solve (then learned as usual); None keeps the dictionary's
    own beta. A pretrained beta is very sharp (about 1e-3), which leaves almost no gradient to move the surface
    toward a new shape."""
    refine: bool = True
    """With a dictionary: after the solve, learn a per-scene refine table on top of the gated experts."""
    refine_decoder: bool = True
    """With a dictionary: the refine stage also fine-tunes the decoder (the experts stay frozen)."""
    refine_penalty_mult: float = 1.0
    """Weight of the mean squared refine table (keeps the refined field near the solved one) when the refine
    starts; see refine_anneal_steps."""
    refine_anneal_steps: Optional[int] = 500
    """With a dictionary: the refine penalty and the code prior fall linearly to 0 over this many refine steps, so
    a well-observed scene reaches the full capacity of a from-scratch field (the residual table is as large as a
    from-scratch table and has its learning rate). None: both stay at full weight (the behaviour before; with all
    views it ended 1.1 dB below scratch, docs/fewview_long_budget.md). Scaled down for scenes with more than
    refine_anneal_views training views."""
    refine_anneal_views: Optional[int] = 3
    """refine_anneal_steps holds for scenes of at most this many training views; a scene with more views anneals in
    proportionally fewer steps, refine_anneal_steps * refine_anneal_views / views (100 at 15 views, 300 at 5): the
    more views constrain the scene, the less the prior protects and the more its penalty costs. On ShapeNet at 400
    steps a 100-step anneal gained 0.6 / 3.2 dB at 15 views and lost 0.1 / 0.8 dB at 3 (docs/categories.md). None:
    the same schedule for every view count."""
    code_init: Literal["search", "encoder", "mean"] = "search"
    """With a dictionary: where the solve starts. encoder: the code the dictionary's encoder predicts from this
    scene's training views (the mean code, with one log line, for a dictionary without an encoder); mean: the
    collection's mean code; search: whichever of the mean code, the encoder's code and the codes of the scenes the
    dictionary was pretrained on renders code_search_rays training rays best (no gradients; see
    nid_nerf.model_components.code_search). Its cost grows with the pretraining scenes: 102 candidates took 7-12 s
    at 1 thread on ShapeNet chairs, where the pick rendered the held-out test views 0.9 dB above the encoder's code
    from 3 views (docs/categories_code_search.md)."""
    code_search_rays: int = 1024
    """code_init search: training rays each candidate code renders (a fixed uniform sample of the training views)."""
    code_search_grid: Optional[int] = 24
    """code_init search: the cached SDF grid of each candidate is evaluated at this resolution and interpolated up
    to grid_resolution (None: at grid_resolution; see NIDModel.start_code)."""
    encoder_steps: int = 1500
    """nid-dict: steps of fitting the code encoder to the learned codes after pretraining (0: no encoder)."""
    code_prior_mult: float = 1e-3
    """Weight of the Mahalanobis distance of the code to the dictionary's code distribution."""
    # --- hash grid (shared by all experts)
    num_levels: int = 8
    """Hash-grid levels; resolutions grow geometrically from base_resolution to max_resolution
    (defaults: 16, 23, 35, 52, 78, 115, 172, 256)."""
    log2_table_size: int = 15
    """log2 of the entries per level and expert (15: 32768; the defaults give 2 MB of float32 per expert). Levels
    whose (R + 1)^3 vertices fit are stored dense, unhashed (the first two at the defaults)."""
    features_per_level: int = 2
    """Features per hash-grid entry; the grid feature of a point is num_levels x features_per_level long."""
    base_resolution: int = 16
    """Resolution of the coarsest hash-grid level (cells per side of the scene box)."""
    max_resolution: int = 256
    """Resolution of the finest hash-grid level."""
    # --- decoder
    geo_hidden_dim: int = 64
    """Width of the hidden layers of the geometry MLP (grid features + positional encoding -> SDF + features)."""
    geo_num_layers: int = 1
    """Hidden layers of the geometry MLP."""
    geo_feat_dim: int = 15
    """Geometry features the geometry MLP passes to the colour MLP, besides the SDF."""
    color_hidden_dim: int = 64
    """Width of the hidden layers of the colour MLP (geometry features + spherical harmonics of the view -> RGB)."""
    color_num_layers: int = 2
    """Hidden layers of the colour MLP."""
    compile_field: bool = False
    """Run the field's lookup and geometry MLP through torch.compile (inductor: fused C++ on the CPU). The first
    step of each kind compiles (about 30 s on 2 cores; later runs reuse inductor's on-disk cache). Measured in
    docs/cpu_speed.md."""
    fused_lookup: bool = True
    """Hash-grid lookup and its backward as one C++ kernel on the CPU (nid_nerf/fields/fused_lookup.cpp; built once
    per machine by scripts/setup.sh, or at the first step; falls back to the torch lookup, with one log line, when it
    cannot be built). Same values as the torch lookup; measured in docs/cpu_speed.md."""
    fused_softplus: bool = True
    """The geometry MLP's softplus and its slope from one vectorised C++ pass on the CPU (in the same extension as
    the fused lookup; nid_nerf/fields/fused_softplus.py): torch's CPU softplus is a scalar loop, 16% of a training
    step. The same values within a few float32 ulp; measured in docs/cpu_speed.md."""
    thread_policy: Literal["adaptive", "fixed"] = "adaptive"
    """adaptive: every thread_check_steps training steps, use the cores other processes left free since the last
    check (at least 1, at most OMP_NUM_THREADS when set); fixed: torch's own setting. Measured in docs/cpu_speed.md
    (threads section)."""
    thread_check_steps: int = 10
    """adaptive: training steps between two looks at the other processes' CPU use."""
    implementation: Literal["auto", "torch", "tcnn"] = "auto"
    """auto: tiny-cuda-nn for the colour MLP when it imports and CUDA is present, else pure torch."""
    sphere_radius: float = 0.5
    """Initial SDF is a sphere of this radius, as a fraction of the half-extent of the scene box."""
    level_warmup_steps: int = 0
    """Coarse-to-fine hash grid: over this many training steps the levels above level_warmup_start come in one after
    another (nid_nerf.fields.encoding.level_window); 0 = every level from the start."""
    level_warmup_start: int = 2
    """Levels on from the first step when level_warmup_steps > 0."""
    # --- rendering
    num_coarse_samples: int = 64
    """Uniform samples per ray looked up in the cached SDF grid (cheap)."""
    num_fine_samples: int = 16
    """Importance samples per ray evaluated by the field during training."""
    eval_num_fine_samples: int = 12
    """Importance samples per ray at eval / viewer time."""
    eval_skip_threshold: float = 1e-3
    """At eval, rays whose coarse-grid opacity is below this are background without field queries."""
    eval_render: Literal["auto", "surface", "volume"] = "auto"
    """Eval / viewer render. surface: rays whose first zero crossing the cached grid brackets (and the field
    confirms) get a few SDF evaluations to find it and one shading there; the rest (silhouettes, rays the grid
    misses) are volume-rendered as with volume, which renders every active ray with eval_num_fine_samples
    samples of SDF and colour. Training always volume-renders. Measured in docs/render_speed.md. auto: volume for
    RGB photos, surface otherwise (synthetic RGBA scenes, collections). On photos after a few minutes of training
    the surface is still soft, and shading it alone loses what training fitted: on all 16 held-out views of fox
    (200 s) and maryrose (60 views, 200 s) volume scored higher, 19.49 against 18.77 dB and 16.94 against 16.57 dB,
    for a render 24-41% slower (docs/real_captures.md)."""
    surface_refine_steps: int = 2
    """surface: regula-falsi steps (one SDF evaluation per ray each) after the bracket check (two more)."""
    uniform_floor: float = 0.1
    """Share of the importance-sampling pdf spread uniformly along the ray."""
    grid_resolution: int = 48
    """Resolution of the cached SDF grid that guides sampling."""
    grid_update_interval: int = 16
    """Steps over which each scene's cached grid is refreshed, one z-slab per step."""
    beta_init: float = 0.1
    """Initial VolSDF beta (scale of the Laplace CDF that turns -sdf into density; learned, in scene units)."""
    beta_min: float = 1e-3
    """Lower bound of beta (beta = exp(log_beta) + beta_min): keeps the density finite as the surface sharpens."""
    background_color: Literal["random", "white", "black"] = "random"
    """Training background for RGBA data (random makes alpha learnable). RGB data uses eval_background_color."""
    eval_background_color: Literal["white", "black"] = "white"
    """Background of rendered images at eval and in the viewer (and of RGBA targets there); RGB training data is
    compared against predictions on this background too."""
    # --- losses
    rgb_loss: Literal["l1", "huber"] = "l1"
    """Photometric loss per ray: l1 = mean |rgb - gt| over the channels; huber = Huber with delta 0.1."""
    eikonal_loss_mult: float = 0.1
    """Weight of the eikonal loss, mean (|grad sdf| - 1)^2 over the eikonal points (keeps the field a distance)."""
    eikonal_points: int = 256
    """Extra uniformly random points per step for the eikonal loss."""
    eikonal_sample_fraction: float = 0.05
    """Share of the ray samples whose SDF gradient enters the eikonal loss."""
    alpha_loss_mult: float = 0.05
    """L1 between accumulation and the image alpha (RGBA data only)."""
    mask_loss_mult: float = 0.1
    """Object masks (frames' mask_path, nid-scene --masks auto): weight of the binary cross-entropy between the
    accumulation and the mask (rays are drawn inside and outside it; 0 = off). The RGB target outside the mask is
    the eval background, unless a background model renders it."""
    # --- lighting differences between photos
    appearance: Literal["none", "affine"] = "none"
    """affine: a colour transform per training image (3x3 matrix + offset, nid_nerf/model_components/appearance.py)
    applied to the rendered object colour in training, so exposure and white-balance differences between photos are
    not averaged into the field; test views render with the identity. Measured in docs/real_captures_appearance.md."""
    appearance_penalty_mult: float = 0.1
    """Weight of the mean squared entry of the per-image transforms (keeps them near the identity)."""
    # --- background
    background_model: Literal["none", "inverted-sphere", "auto"] = "auto"
    """What renders behind the SDF. inverted-sphere: a small radiance field beyond the scene box's bounding sphere
    (nid_nerf.fields.background), composited with the SDF's transmittance; none: the fixed background colours.
    auto: inverted-sphere for RGB scenes (photos with their background, with or without object masks), none for
    RGBA scenes, collections and anything whose channels the dataparser did not record. On masked photos the mask
    loss keeps the SDF on the object and the field renders the rest: full-image PSNR +2.6 dB on DTU scan24 from 3
    views (12.64 against 10.05, masked 15.60 against 14.81) and +1.2 dB on maryrose from 60 (16.38 against 15.23,
    masked 22.59 against 22.50), for a step about 20% slower (docs/real_captures_background.md)."""
    background_distortion_mult: float = 0.0
    """Weight of mip-NeRF 360's distortion loss on the background's samples (in inverse distance), weighted by the
    SDF's transmittance: it gathers each ray's background density at one depth (0 = off)."""
    background: BackgroundFieldConfig = field(default_factory=BackgroundFieldConfig)
    """The inverted-sphere background's encoding, samples and network."""


class NIDModel(Model):
    """SDF + radiance from gated hash-grid experts, rendered with VolSDF."""

    config: NIDModelConfig
    is_sdf_model = True

    def populate_modules(self):
        super().populate_modules()
        cfg = self.config
        metadata = self.kwargs.get("metadata") or {}
        self.num_scenes = int(metadata.get("num_scenes", 1))
        dictionary = None
        if cfg.dictionary_path is not None:
            from nid_nerf.fields.dictionary import building_for_checkpoint

            if building_for_checkpoint() and not Path(cfg.dictionary_path).is_file():
                # the checkpoint about to be loaded holds all the dictionary gave this run; config.yml holds its
                # layout (the trainer re-saves it after adopting the dictionary's architecture)
                CONSOLE.log(f"dictionary {cfg.dictionary_path} is not there; the checkpoint provides its weights")
            else:
                dictionary = load_dictionary(cfg.dictionary_path)
                resolve_architecture(cfg, dictionary, cfg.dictionary_path)
            cfg.learn_codes = True
        spec = HashGridSpec(cfg.num_levels, cfg.log2_table_size, cfg.features_per_level, cfg.base_resolution,
                            cfg.max_resolution)
        self.field = NIDField(
            aabb=self.scene_box.aabb,
            spec=spec,
            num_experts=cfg.num_experts,
            top_k=cfg.top_k,
            num_scenes=self.num_scenes,
            learn_codes=cfg.learn_codes,
            geo_hidden=(cfg.geo_hidden_dim,) * cfg.geo_num_layers,
            geo_feat_dim=cfg.geo_feat_dim,
            color_hidden=(cfg.color_hidden_dim,) * cfg.color_num_layers,
            sphere_radius=cfg.sphere_radius,
            implementation=resolve_implementation(cfg.implementation),
            fused_lookup=cfg.fused_lookup,
            fused_softplus=cfg.fused_softplus,
        )
        if cfg.compile_field:
            self.field.compile_core()
        self.log_beta = nn.Parameter(torch.tensor(math.log(cfg.beta_init)))
        if cfg.dictionary_path is not None:
            self._adopt_dictionary(dictionary)
        g = cfg.grid_resolution
        self.register_buffer("coarse_sdf", self._sphere_grid(g).expand(self.num_scenes, g, g, g).clone())
        self._lpips_logged = False
        self._setup_background(metadata)
        if cfg.appearance not in ("none", "affine"):
            raise NIDInputError(f"model.appearance is {cfg.appearance!r}; use none or affine")
        self.appearance: Optional[ImageAppearance] = (
            ImageAppearance(int(self.num_train_data)) if cfg.appearance == "affine" else None)
        self.last_render: Dict[str, Tensor] = {}
        """eval_render=surface: which rays of the latest eval chunk were rendered as a surface, which by volume."""

    # ------------------------------------------------------------------ dictionary
    @property
    def exports_dictionary(self) -> bool:
        """nid-dict runs (learned codes, no dictionary loaded) write dictionary.pt with each checkpoint."""
        return self.config.learn_codes and self.config.dictionary_path is None

    def _adopt_dictionary(self, dictionary: Optional[Dict]) -> None:
        """Frozen experts and decoder from the dictionary; the code starts at the dictionary's mean code.

        ``None`` (loading a checkpoint whose dictionary file is gone): the same modules, parameters and buffers
        with placeholder values (mean code 0, identity precision), which ``load_state_dict`` then overwrites (a
        checkpoint of another shape fails there, see ``NIDPipeline.load_pipeline``).
        """
        field = self.field
        if dictionary is None:
            k = field.gate.num_experts
            dictionary = {"code_mean": torch.zeros(k), "code_cov": torch.eye(k)}
        else:
            with torch.no_grad():
                field.experts.tables.copy_(dictionary["tables"])
                field.geometry.load_state_dict(dictionary["geometry"])
                field.color_head.load_state_dict(dictionary["color_head"])
                self.log_beta.copy_(dictionary["log_beta"])
                if self.config.solve_beta_init is not None:
                    self.log_beta.fill_(math.log(max(self.config.solve_beta_init - self.config.beta_min, 1e-6)))
                field.gate.codes.copy_(dictionary["code_mean"][None].expand_as(field.gate.codes))
                field.gate.sparse.fill_(self.config.solve_gate == "top-k")
        self.register_buffer("code_mean", dictionary["code_mean"].clone())
        self.register_buffer("code_precision", torch.linalg.inv(dictionary["code_cov"]))
        for p in list(field.experts.parameters()) + field.decoder_parameters():
            p.requires_grad_(False)
        field.refine_table = nn.Parameter(torch.zeros_like(field.experts.expert(0)), requires_grad=False)
        self.dictionary_encoder: Optional[Dict] = dictionary.get("encoder")
        """The dictionary's code encoder payload (None: older dictionary, or loading a checkpoint)."""
        self.dictionary_codes: Optional[Tensor] = dictionary.get("codes")
        """The codes of the scenes the dictionary was pretrained on, [S, K] (None: loading a checkpoint)."""
        self.refine_start_step: Optional[int] = None
        self._step = 0

    def refine_weight(self, step: Optional[int] = None) -> float:
        """Weight (0..1) of the refine penalty and the code prior: 1 until the refine starts, then falling linearly
        to 0 over ``refine_anneal_steps`` refine steps (see the config)."""
        anneal = self.refine_anneal_steps()
        if anneal is None or not self.refining or self.refine_start_step is None:
            return 1.0
        step = self._step if step is None else step
        return max(0.0, 1.0 - (step - self.refine_start_step) / max(1, anneal))

    def scene_solve_steps(self) -> int:
        """Solve steps for this scene's training views (see ``solve_views``)."""
        views, limit = int(self.num_train_data), self.config.solve_views
        if limit is None or views <= limit:
            return self.config.solve_steps
        return min(self.config.solve_steps, self.config.many_view_solve_steps)

    def refine_anneal_steps(self) -> Optional[int]:
        """Refine steps over which the penalty and the code prior fall to 0, for this scene's training views."""
        return anneal_steps(self.config.refine_anneal_steps, int(self.num_train_data), self.config.refine_anneal_views)

    @torch.no_grad()
    def start_code(self, code: Tensor, grid_resolution: Optional[int] = None) -> None:
        """Start the solve at ``code`` [K] and bring the cached SDF grid to the field it gives.

        ``grid_resolution``: evaluate the grid at this coarser resolution and interpolate it up (a preview for the
        code search: 24^3 points are an eighth of the default 48^3, whose refresh is most of a candidate's cost).
        """
        self.field.gate.codes.copy_(code.to(self.field.gate.codes)[None].expand_as(self.field.gate.codes))
        for scene in range(self.num_scenes):
            if grid_resolution is None or grid_resolution >= self.config.grid_resolution:
                self.update_coarse_grid(scene)
            else:
                self.preview_coarse_grid(scene, grid_resolution)

    @torch.no_grad()
    def preview_coarse_grid(self, scene: int, resolution: int, chunk: int = 65536) -> None:
        """The cached SDF grid of one scene from the field at ``resolution``^3 vertices, trilinearly interpolated up
        to the grid's own resolution (both vertex-aligned over the box, as :func:`grid_lookup` reads them)."""
        lo, hi = self.field.aabb
        pts = lo + self._grid_points01(resolution) * (hi - lo)
        values = torch.cat([self.field.sdf(p, scene).view(-1) for p in pts.split(chunk)])
        coarse = values.view(1, 1, resolution, resolution, resolution)
        g = self.config.grid_resolution
        self.coarse_sdf[scene] = F.interpolate(coarse, size=(g, g, g), mode="trilinear", align_corners=True)[0, 0]

    @property
    def refining(self) -> bool:
        return self.field.refine_table is not None and self.field.refine_table.requires_grad

    def _setup_background(self, metadata: Dict) -> None:
        """``object_masks`` (the dataparser's ``OBJECT_MASKS``) and ``background`` (None or the inverted-sphere
        field) from the config and the training data's metadata; see ``background_model``."""
        cfg = self.config
        self.object_masks = bool(metadata.get(OBJECT_MASKS, False))
        channels = metadata.get(IMAGE_CHANNELS)
        if cfg.eval_render == "auto":
            cfg.eval_render = "volume" if channels == 3 else "surface"
        kind = cfg.background_model
        if kind == "auto":
            kind = "inverted-sphere" if channels == 3 else "none"
        if kind not in ("none", "inverted-sphere"):
            raise NIDInputError(f"model.background-model is {kind!r}; use none, inverted-sphere or auto")
        if kind == "inverted-sphere" and channels == 4:
            raise NIDInputError("model.background-model inverted-sphere needs RGB images, but this scene is RGBA "
                                "(its alpha already separates the background); use none or auto")
        self.background: Optional[nn.Module] = (
            background_field(self.scene_box.aabb, cfg.background, self.object_masks) if kind == "inverted-sphere"
            else None
        )

    def _with_background(self, outputs: Dict[str, Tensor], origins: Tensor, directions: Tensor) -> Dict[str, Tensor]:
        """``rgb`` = SDF render + its transmittance x the background field's colour (no-op without a background).

        Training: every ray, with gradients. Eval: only rays the SDF leaves partly transparent (the surface
        render's rays have accumulation exactly 1 and keep their colour; ``rgb`` is clamped as before).
        """
        if self.background is None:
            return outputs
        acc = outputs["accumulation"]
        fill = colors.COLORS_DICT[self.config.eval_background_color].to(origins)
        if self.training:
            bg = self.background(origins, directions, fill, jitter=True)
            outputs["rgb"] = outputs["rgb_raw"] + (1.0 - acc) * bg["rgb"]
            if self.config.background_distortion_mult > 0:
                # weighted by what the SDF leaves visible: behind the object the background's depth is free
                distortion = distortion_loss(bg["outside_weights"], bg["outside_edges"])
                outputs["background_distortion"] = ((1.0 - acc[:, 0].detach()) * distortion).mean()
            return outputs
        rays = torch.nonzero(acc[:, 0] < 1.0)[:, 0]
        if rays.numel() > 0:
            bg = self.background(origins[rays], directions[rays], fill, jitter=False)
            outputs["rgb"][rays] = (outputs["rgb_raw"][rays] + (1.0 - acc[rays]) * bg["rgb"]).clamp(0, 1)
        return outputs

    # ------------------------------------------------------------------ helpers
    @property
    def beta(self) -> Tensor:
        return self.log_beta.exp() + self.config.beta_min

    def _grid_points01(self, g: int) -> Tensor:
        lin = torch.linspace(0.0, 1.0, g, device=self.field.aabb.device)
        zz, yy, xx = torch.meshgrid(lin, lin, lin, indexing="ij")
        return torch.stack([xx, yy, zz], -1).view(-1, 3)

    def _sphere_grid(self, g: int) -> Tensor:
        lo, hi = self.field.aabb
        pts = lo + self._grid_points01(g) * (hi - lo)
        radius = (pts - (lo + hi) / 2).norm(dim=-1)
        return (radius - self.config.sphere_radius * (hi - lo).min() / 2).view(g, g, g)

    @torch.no_grad()
    def update_coarse_grid(self, scene: int, part: int = 0, num_parts: int = 1, chunk: int = 65536) -> None:
        """Re-evaluate z-slab ``part`` of ``num_parts`` of one scene's cached SDF grid from the current field."""
        g = self.config.grid_resolution
        z0, z1 = part * g // num_parts, (part + 1) * g // num_parts
        if z1 <= z0:
            return
        lo, hi = self.field.aabb
        pts = lo + self._grid_points01(g).view(g, g * g, 3)[z0:z1].reshape(-1, 3) * (hi - lo)
        values = torch.cat([self.field.sdf(p, scene).view(-1) for p in pts.split(chunk)])
        self.coarse_sdf[scene, z0:z1] = values.view(z1 - z0, g, g)

    def _scene_of_rays(self, ray_bundle: RayBundle) -> Optional[Tensor]:
        meta = ray_bundle.metadata or {}
        if self.num_scenes > 1 and "scene_index" in meta:
            return meta["scene_index"].reshape(-1).long()
        return None

    # ------------------------------------------------------------------ nerfstudio API
    def get_param_groups(self) -> Dict[str, List[Parameter]]:
        groups = {
            "experts": [self.field.experts.tables]
            + ([self.field.refine_table] if self.field.refine_table is not None else []),
            "decoder": self.field.decoder_parameters(),
            "beta": [self.log_beta],
        }
        if isinstance(self.field.gate.codes, Parameter):
            groups["codes"] = [self.field.gate.codes]
        if self.background is not None:
            groups["background"] = list(self.background.parameters())
        if self.appearance is not None:
            groups["appearance"] = list(self.appearance.parameters())
        return groups

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        def refresh_grid(step: int) -> None:
            # one z-slab per step: each scene's grid is fully refreshed every grid_update_interval * num_scenes
            # steps, at an even cost per step instead of a spike
            parts = max(1, self.config.grid_update_interval)
            tick = step % (parts * self.num_scenes)
            self.update_coarse_grid(tick // parts, tick % parts, parts)

        callbacks = [TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], refresh_grid)]
        if self.config.level_warmup_steps > 0:
            def widen_levels(step: int) -> None:
                progress = step / self.config.level_warmup_steps
                self.field.level_weights = (None if progress >= 1.0 else level_window(
                    self.field.spec.num_levels, progress, self.config.level_warmup_start).to(self.device))

            callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], widen_levels))
        if self.config.thread_policy == "adaptive" and self.device.type == "cpu":
            policy = AdaptiveThreads(log=CONSOLE.log)
            callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], policy.check,
                                              update_every_num_iters=max(1, self.config.thread_check_steps)))
        if self.exports_dictionary and not bool(self.field.gate.sparse):
            def make_sparse(step: int) -> None:
                if step >= self.config.dense_warmup_steps and not bool(self.field.gate.sparse):
                    self.field.gate.sparse.fill_(True)
                    CONSOLE.log(f"nid: gate switched to top-{self.field.gate.top_k} at step {step}")

            callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], make_sparse))
        if self.field.refine_table is not None and self.config.refine:
            def start_refine(step: int) -> None:
                self._step = step
                solve_steps = self.scene_solve_steps()
                if step >= solve_steps and not self.refining:
                    # the solve's end, also when a run resumed past it (the anneal continues where it was)
                    self.refine_start_step = solve_steps
                    self.field.refine_table.requires_grad_(True)
                    if self.config.refine_decoder:
                        for p in self.field.decoder_parameters():
                            p.requires_grad_(True)
                    anneal = self.refine_anneal_steps()
                    CONSOLE.log(f"nid: code solved; refining with a refine table from step {step}"
                                + (f" (its penalty and the code prior fall to 0 in {anneal} steps)" if anneal else ""))

            callbacks.append(TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], start_refine))
        if self.field.experts.num_experts > 1 and self.config.usage_log_interval > 0:
            callbacks.append(TrainingCallback([TrainingCallbackLocation.AFTER_TRAIN_ITERATION], self._log_usage,
                                              update_every_num_iters=self.config.usage_log_interval))
        return callbacks

    def _log_usage(self, step: int) -> None:
        from nerfstudio.utils import writer

        from nid_nerf.model_components.figures import usage_histogram

        usage = self.field.gate.usage().cpu()
        writer.put_image("expert_usage", usage_histogram(usage), step)
        entropy = -(usage.clamp(min=1e-12) * usage.clamp(min=1e-12).log()).sum()
        writer.put_scalar("expert_usage_perplexity", float(entropy.exp()), step)

    def get_outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        with self.field.mixing_once():
            return self._outputs(ray_bundle)

    def _outputs(self, ray_bundle: RayBundle) -> Dict[str, Tensor]:
        origins = ray_bundle.origins.reshape(-1, 3)
        directions = ray_bundle.directions.reshape(-1, 3)
        scene = self._scene_of_rays(ray_bundle)
        near, far, hit = ray_aabb(origins, directions, self.field.aabb)
        if self.background is not None and self.background.inscribed:
            # the background owns what lies beyond its sphere; the SDF renders the box inside it
            t_in, t_out = sphere_chord(origins, directions, self.background.centre, self.background.radius)
            near = torch.maximum(near, t_in)
            far, inside = interval_hit(near, torch.minimum(far, t_out))
            hit = hit & inside
        edges_c, w_c, sdf_c = self._coarse_pass(origins, directions, scene, near, far)
        if self.training:
            outputs = self._with_background(self._render(origins, directions, scene, edges_c, w_c, hit, far), origins,
                                            directions)
            if self.appearance is not None and ray_bundle.camera_indices is not None:
                outputs["camera_indices"] = ray_bundle.camera_indices.reshape(-1)
            return outputs
        # at eval, rays the cached grid sees as empty are background: no field evaluation at all
        active = hit & (w_c.sum(-1) > self.config.eval_skip_threshold)
        bg = colors.COLORS_DICT[self.config.eval_background_color].to(origins)
        num_rays = origins.shape[0]
        outputs = {
            "rgb": bg.expand(num_rays, 3).clone(),
            "rgb_raw": origins.new_zeros(num_rays, 3),
            "accumulation": origins.new_zeros(num_rays, 1),
            "depth": far[:, None].clone(),
            "sdf_min": sdf_c.min(-1, keepdim=True).values,  # from the cached grid where the field is not queried
            "normals": origins.new_zeros(num_rays, 3),
        }
        if self.config.eval_render == "surface" and bool(active.any()):
            t_c = 0.5 * (edges_c[:, 1:] + edges_c[:, :-1])
            found, t_a, t_b = first_crossing(sdf_c, t_c, pad=1)
            surf = torch.nonzero(active & found)[:, 0]
            sub, ok = {}, torch.zeros_like(surf, dtype=torch.bool)
            if surf.numel() > 0:
                sub, ok = self._render_surface(origins[surf], directions[surf], None if scene is None else scene[surf],
                                               t_a[surf], t_b[surf])
            done = surf[ok]
            for key, value in sub.items():
                outputs[key][done] = value
            surface_rays = torch.zeros_like(active)
            surface_rays[done] = True
            self.last_render = {"surface_rays": surface_rays, "volume_rays": active & ~surface_rays}
            active = active & ~surface_rays
        if bool(active.any()):
            sub = self._render(origins[active], directions[active], None if scene is None else scene[active],
                               edges_c[active], w_c[active], hit[active], far[active])
            for key, value in sub.items():
                outputs[key][active] = value
        return self._with_background(outputs, origins, directions)

    def _render_surface(
        self, origins: Tensor, directions: Tensor, scene: Optional[Tensor], t_a: Tensor, t_b: Tensor
    ) -> Tuple[Dict[str, Tensor], Tensor]:
        """Rays rendered at their first zero crossing in [t_a, t_b]: outputs of the rays in ``ok`` (and ``ok``).

        ``ok`` is False where the field's SDF does not change sign over the cached grid's bracket; the caller
        volume-renders those rays. See ``nid_nerf.model_components.surface``.
        """
        n = origins.shape[0]

        def sdf_at(o: Tensor, d: Tensor, s: Optional[Tensor], t: Tensor) -> Tensor:
            return self.field.sdf(o + d * t[:, None], s)[:, 0]

        both = sdf_at(origins.repeat(2, 1), directions.repeat(2, 1), None if scene is None else scene.repeat(2),
                      torch.cat([t_a, t_b]))
        f_a, f_b = both[:n], both[n:]
        ok = (f_a > 0) & (f_b <= 0)
        if not bool(ok.any()):
            return {}, ok
        o, d, s = origins[ok], directions[ok], None if scene is None else scene[ok]
        t = refine_crossing(lambda tt: sdf_at(o, d, s, tt), t_a[ok], t_b[ok], f_a[ok], f_b[ok],
                            self.config.surface_refine_steps)
        sdf, feats, grad = self.field.geometry_forward(o + d * t[:, None], s, with_grad=True)
        assert grad is not None
        rgb = self.field.radiance(feats[:, None], d)[:, 0].clamp(0, 1)
        ones = rgb.new_ones(rgb.shape[0], 1)
        outputs = {
            "rgb": rgb,
            "rgb_raw": rgb,
            "accumulation": ones,
            "depth": t[:, None],
            "sdf_min": torch.minimum(f_b[ok], sdf[:, 0])[:, None],
            "normals": (F.normalize(grad, dim=-1) + 1.0) / 2.0,
        }
        return outputs, ok

    @torch.no_grad()
    def _coarse_pass(
        self, origins: Tensor, directions: Tensor, scene: Optional[Tensor], near: Tensor, far: Tensor
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Uniform samples looked up in the cached SDF grid: bin edges, VolSDF weights and SDF values per ray."""
        cfg = self.config
        lo, hi = self.field.aabb
        edges_c, t_c = stratified_midpoints(near, far, cfg.num_coarse_samples, jitter=self.training)
        pts_c = ((origins[:, None] + directions[:, None] * t_c[..., None]) - lo) / (hi - lo)
        sdf_c = self._lookup_grid(pts_c.view(-1, 3), scene, t_c.shape[1]).view_as(t_c)
        cell = float((hi - lo).max()) / (cfg.grid_resolution - 1)
        w_c = render_weights_from_edges(sdf_c, edges_c, torch.clamp(self.beta.detach(), min=0.5 * cell))
        return edges_c, w_c, sdf_c

    def _render(
        self, origins: Tensor, directions: Tensor, scene: Optional[Tensor], edges_c: Tensor, w_c: Tensor,
        hit: Tensor, far: Tensor,
    ) -> Dict[str, Tensor]:
        """Importance samples from the coarse weights, evaluated by the field and composited."""
        cfg = self.config
        num_fine = cfg.num_fine_samples if self.training else cfg.eval_num_fine_samples
        with torch.no_grad():
            edges = sample_pdf(edges_c, w_c, num_fine + 1, cfg.uniform_floor, deterministic=not self.training)
        t = 0.5 * (edges[:, 1:] + edges[:, :-1])
        positions = origins[:, None] + directions[:, None] * t[..., None]
        out = self.field.forward_rays(positions, directions, scene)
        weights = render_weights_from_edges(out["sdf"], edges, self.beta, hit)
        acc = weights.sum(-1, keepdim=True)
        rgb_raw = (weights[..., None] * out["rgb"]).sum(1)
        depth = (weights * t).sum(-1, keepdim=True) / acc.clamp(min=1e-6)
        depth = torch.where(acc > 1e-3, depth, far[:, None])
        bg = colors.COLORS_DICT[cfg.eval_background_color].to(rgb_raw)
        rgb = rgb_raw + bg * (1.0 - acc)
        outputs = {
            "rgb": rgb if self.training else rgb.clamp(0, 1),
            "rgb_raw": rgb_raw,
            "accumulation": acc,
            "depth": depth,
            "sdf_min": out["sdf"].min(-1, keepdim=True).values,
        }
        if self.training:
            outputs["eikonal_gradients"] = self._eikonal_gradients(positions.detach(), scene)
        else:
            # one gradient per ray, at the expected surface point, instead of one per sample
            with torch.enable_grad():
                surface = origins + directions * depth
                normals = F.normalize(self.field.gradient(surface, scene), dim=-1)
            outputs["normals"] = (normals + 1.0) / 2.0 * (acc > 1e-3)
        return outputs

    def _eikonal_gradients(self, positions: Tensor, scene: Optional[Tensor]) -> Tensor:
        """Gradients at a random share of the ray samples plus uniformly random points in the box."""
        cfg = self.config
        lo, hi = self.field.aabb
        num_rays, per_ray = positions.shape[:2]
        pts, pts_scene = [], []
        n_samples = int(cfg.eikonal_sample_fraction * num_rays * per_ray)
        if n_samples > 0:
            pick = torch.randint(0, num_rays * per_ray, (n_samples,), device=positions.device)
            pts.append(positions.reshape(-1, 3)[pick])
            if scene is not None:
                pts_scene.append(scene[pick // per_ray])
        if cfg.eikonal_points > 0:
            pts.append(lo + torch.rand(cfg.eikonal_points, 3, device=lo.device) * (hi - lo))
            if scene is not None:
                pts_scene.append(scene[torch.randint(0, num_rays, (cfg.eikonal_points,), device=lo.device)])
        return self.field.gradient(torch.cat(pts), torch.cat(pts_scene) if pts_scene else None)

    def _lookup_grid(self, x01: Tensor, scene: Optional[Tensor], per_ray: int) -> Tensor:
        if scene is None:
            return grid_lookup(self.coarse_sdf[0], x01)
        out = torch.empty(x01.shape[0], device=x01.device)
        sample_scene = scene[:, None].expand(-1, per_ray).reshape(-1)
        for s in torch.unique(sample_scene).tolist():
            sel = sample_scene == s
            out[sel] = grid_lookup(self.coarse_sdf[s], x01[sel])
        return out

    def _targets(
        self, outputs: Dict[str, Tensor], image: Float[Tensor, "num_rays channels"],
        mask: Optional[Tensor] = None,
    ) -> Tuple[Float[Tensor, "num_rays 3"], Float[Tensor, "num_rays 3"]]:
        """Prediction and ground truth composited on the same background.

        RGBA data in training with ``background_color`` random: a fresh uniform background per ray, drawn
        here (one ``torch.rand_like`` per call), so that alpha is learnable; else a fixed colour.
        RGB data with object masks (``mask`` [num_rays, 1], 1 = object) and no background model: the target is
        the photo inside the mask and the eval background outside it, which the prediction (SDF render on that
        background) reaches with accumulation 0 there, so those pixels are trained empty instead of left as fog.
        """
        image = image.to(outputs["rgb_raw"])
        if self.training and self.appearance is not None and "camera_indices" in outputs:
            # the object's colour as this photo saw it; the background (fixed colour or field) is left as it is
            raw = self.appearance(outputs["rgb_raw"], outputs["accumulation"], outputs["camera_indices"])
            outputs = {**outputs, "rgb_raw": raw, "rgb": outputs["rgb"] + (raw - outputs["rgb_raw"])}
        if image.shape[-1] == 4:
            rgb, alpha = image[..., :3], image[..., 3:]
            if self.training and self.config.background_color == "random":
                bg = torch.rand_like(rgb)
            else:
                name = self.config.background_color if self.config.background_color != "random" else None
                bg = colors.COLORS_DICT[name or self.config.eval_background_color].to(rgb).expand_as(rgb)
            pred = outputs["rgb_raw"] + bg * (1.0 - outputs["accumulation"])
            return pred, rgb * alpha + bg * (1.0 - alpha)
        if mask is not None and self.object_masks and self.background is None:
            m = mask.to(image).reshape(-1, 1)
            bg = colors.COLORS_DICT[self.config.eval_background_color].to(image)
            image = image * m + bg * (1.0 - m)
        return outputs["rgb"], image

    def get_training_terms(self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor]) -> TrainingTerms:
        """Metrics, losses and per-ray residual of a training step, from ONE compositing of prediction and target.

        ``NIDPipeline`` calls this instead of nerfstudio's ``get_metrics_dict`` + ``get_loss_dict``: those
        composite separately, and in training each compositing of RGBA data draws its own random
        background, so the loss and the residual fed to the ray sampler would see different backgrounds
        (and the random stream would advance twice per step).
        """
        pred, gt = self._targets(outputs, batch["image"], batch.get("mask"))
        per_ray_residual = (pred - gt).abs().mean(-1).detach()
        return TrainingTerms(self._metrics(pred, gt), self._losses(outputs, batch, pred, gt), per_ray_residual)

    def get_metrics_dict(self, outputs, batch) -> Dict[str, Tensor]:
        """nerfstudio's metrics hook (evaluation batches); training steps use :meth:`get_training_terms`."""
        pred, gt = self._targets(outputs, batch["image"], batch.get("mask"))
        return self._metrics(pred, gt)

    def get_loss_dict(self, outputs, batch, metrics_dict=None) -> Dict[str, Tensor]:
        """nerfstudio's loss hook (evaluation batches); training steps use :meth:`get_training_terms`.

        At evaluation the background is a fixed colour, so this and ``get_metrics_dict`` composite alike.
        """
        pred, gt = self._targets(outputs, batch["image"], batch.get("mask"))
        return self._losses(outputs, batch, pred, gt)

    def _metrics(self, pred: Float[Tensor, "num_rays 3"], gt: Float[Tensor, "num_rays 3"]) -> Dict[str, Tensor]:
        return {"psnr": psnr(pred.detach().clamp(0, 1), gt), "beta": self.beta.detach()}

    def _losses(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Tensor], pred: Float[Tensor, "num_rays 3"],
        gt: Float[Tensor, "num_rays 3"],
    ) -> Dict[str, Tensor]:
        """All losses of a batch, given its composited prediction and target (the order of the dict is the sum's)."""
        cfg = self.config
        if cfg.rgb_loss == "huber":
            per_ray = F.huber_loss(pred, gt, reduction="none", delta=0.1).mean(-1)
        else:
            per_ray = (pred - gt).abs().mean(-1)
        if "ray_weights" in batch:
            per_ray = per_ray * batch["ray_weights"].to(per_ray)
        losses = {"rgb_loss": per_ray.mean()}
        if self.training and "eikonal_gradients" in outputs:
            grad_norm = outputs["eikonal_gradients"].norm(dim=-1)
            losses["eikonal_loss"] = cfg.eikonal_loss_mult * ((grad_norm - 1.0) ** 2).mean()
        image = batch["image"]
        if cfg.alpha_loss_mult > 0 and image.shape[-1] == 4:
            alpha = image[..., 3:].to(outputs["accumulation"])
            losses["alpha_loss"] = cfg.alpha_loss_mult * (outputs["accumulation"] - alpha).abs().mean()
        if self.training and "background_distortion" in outputs:
            losses["background_distortion"] = cfg.background_distortion_mult * outputs["background_distortion"]
        if self.training and self.appearance is not None:
            losses["appearance_penalty"] = cfg.appearance_penalty_mult * self.appearance.penalty()
        if cfg.mask_loss_mult > 0 and self.object_masks and "mask" in batch:
            losses["mask_loss"] = cfg.mask_loss_mult * mask_bce(outputs["accumulation"], batch["mask"])
        if self.training and self.field.refine_table is not None:
            delta = self.field.gate.codes - self.code_mean
            weight = self.refine_weight()
            losses["code_prior_loss"] = weight * cfg.code_prior_mult * torch.einsum(
                "sk,kj,sj->s", delta, self.code_precision, delta).mean() / delta.shape[1]
            if self.refining:
                losses["refine_penalty"] = weight * cfg.refine_penalty_mult * self.field.refine_table.pow(2).mean()
        if cfg.learn_codes and self.training and self.field.refine_table is None:
            if not bool(self.field.gate.sparse) and cfg.code_l1_mult > 0:
                losses["code_l1_loss"] = cfg.code_l1_mult * self.field.gate.l1()
            if cfg.load_balance_mult > 0 and self.field.gate.num_experts > 1:
                losses["load_balance_loss"] = cfg.load_balance_mult * self.field.gate.balance()
        return losses

    def get_rgba_image(self, outputs: Dict[str, Tensor], output_name: str = "rgb") -> Tensor:
        """Colour without the background, alpha = accumulation: for ``ns-render --rendered-output-names rgba``
        and ``ns-export`` (point cloud, TSDF, Poisson and their textures).

        nerfstudio's version reads ``self.renderer_rgb``, which this model has not; here the colour is the
        premultiplied ``rgb_raw`` divided by the accumulation. Inference only: training never calls it.
        """
        if output_name not in ("rgb", "rgb_raw"):
            raise NotImplementedError(f"get_rgba_image is only defined for rgb / rgb_raw, not {output_name!r}")
        acc = outputs["accumulation"]
        rgb = (outputs["rgb_raw"] / acc.clamp(min=1e-10)).clamp(0, 1)
        return torch.cat((rgb, acc.clamp(0, 1)), dim=-1)

    def get_image_metrics_and_images(
        self, outputs: Dict[str, Tensor], batch: Dict[str, Any]
    ) -> Tuple[Dict[str, float], Dict[str, Tensor]]:
        """Full-image psnr / ssim (/ lpips); with a mask in the batch also psnr_masked / ssim_masked (DTU protocol).

        ``batch`` is nerfstudio's image batch: ``image`` [H, W, C], ``mask`` [H, W, 1] when the split has masks, and
        the integer ``image_idx``.
        """
        image = batch["image"].to(outputs["rgb"])
        if image.shape[-1] == 4:
            bg = colors.COLORS_DICT[self.config.eval_background_color].to(image)
            image = image[..., :3] * image[..., 3:] + bg * (1.0 - image[..., 3:])
        pred = outputs["rgb"].clamp(0, 1)
        gt_chw, pred_chw = image.permute(2, 0, 1)[None], pred.permute(2, 0, 1)[None]
        metrics = {
            "psnr": float(psnr(pred, image)),
            "ssim": float(structural_similarity_index_measure(pred_chw, gt_chw, data_range=1.0)),
        }
        if batch.get("mask") is not None:
            # DTU / RegNeRF protocol: outside the mask both images are black, the mean is over the whole image
            mask = batch["mask"].to(pred).reshape(*pred.shape[:2], 1)
            metrics["psnr_masked"] = float(masked_psnr(pred, image, mask))
            mask_chw = mask.permute(2, 0, 1)[None]
            metrics["ssim_masked"] = float(structural_similarity_index_measure(pred_chw * mask_chw, gt_chw * mask_chw,
                                                                               data_range=1.0))
        lpips = lpips_if_available(pred_chw, gt_chw)
        if lpips is not None:
            metrics["lpips"] = lpips
        depth = outputs["depth"]
        depth_vis = (depth - depth.min()) / (depth.max() - depth.min()).clamp(min=1e-6)
        images = {
            "img": torch.cat([image, pred], dim=1),
            "accumulation": outputs["accumulation"].expand(*pred.shape[:2], 3),
            "depth": depth_vis.expand(*pred.shape[:2], 3),
            "normals": outputs["normals"],
        }
        return metrics, images
