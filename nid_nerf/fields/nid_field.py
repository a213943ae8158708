"""The NID field: a signed distance function and radiance decoded from gated hash-grid experts.

    z(x)      = interp(sum_{i in topk(c_s)} g_i T_i, x)            (mixed-table lookup)
    sdf, h    = geometry([z(x), PE(x)]) + (|x - centre| - r0)      (sphere prior, world units)
    n(x)      = d sdf / dx                                        (analytic, forward-mode)
    rgb       = colour([h, SH(d)])

The normal is not a colour input: tangents are then only needed where the gradient is used (the
eikonal loss on a subset of points, and one point per ray for rendered normals), not for every sample.

K = 1 with the constant code 1 is a plain hash-grid SDF field (the from-scratch mode).
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from nerfstudio.utils.math import components_from_spherical_harmonics
from torch import Tensor, nn

from nid_nerf.fields import fused_lookup
from nid_nerf.fields.encoding import ExpertTables, HashGridSpec, corner_lookup, interpolate
from nid_nerf.fields.gate import CodeGate
from nid_nerf.fields.mlp import ColorHead, TangentMLP

SceneIndex = Union[int, Int[Tensor, " N"], None]


def positional_encoding(
    x: Float[Tensor, "N 3"], num_freqs: int
) -> Tuple[Float[Tensor, "N D"], Float[Tensor, "3 N D"]]:
    """[x, sin(2^j pi x), cos(2^j pi x)] for x in [-1, 1]^3 and its Jacobian (direction-major).

    Each feature depends on one coordinate only, so d feature / d x_d is its own derivative where
    the feature's axis is d, and zero elsewhere.
    """
    feats, own = [x], [torch.ones_like(x)]
    for j in range(num_freqs):
        a = (2.0**j) * math.pi
        s, c = torch.sin(a * x), torch.cos(a * x)
        feats += [s, c]
        own += [a * c, -a * s]
    feats_t, own_t = torch.cat(feats, -1), torch.cat(own, -1)
    axis_mask = torch.eye(3, device=x.device, dtype=x.dtype).repeat(1, 1 + 2 * num_freqs)  # [3, D]
    return feats_t, own_t[None] * axis_mask[:, None, :]


class NIDField(nn.Module):
    """SDF + radiance over an axis-aligned box, with K experts and one code per scene."""

    def __init__(
        self,
        aabb: Float[Tensor, "2 3"],
        spec: HashGridSpec,
        num_experts: int = 1,
        top_k: int = 1,
        num_scenes: int = 1,
        learn_codes: bool = False,
        geo_hidden: Sequence[int] = (64,),
        geo_feat_dim: int = 15,
        color_hidden: Sequence[int] = (64, 64),
        pe_freqs: int = 2,
        sh_levels: int = 4,
        sphere_radius: float = 0.5,
        implementation: str = "torch",
        fused_lookup: bool = True,
        fused_softplus: bool = True,
    ) -> None:
        super().__init__()
        self.register_buffer("aabb", aabb.clone().float())
        self.spec = spec
        self.pe_freqs = pe_freqs
        self.sh_levels = sh_levels
        self.sphere_radius = sphere_radius
        self.experts = ExpertTables(num_experts, spec)
        self.gate = CodeGate(num_scenes, num_experts, top_k, learnable=learn_codes)
        pe_dim = 3 * (1 + 2 * pe_freqs)
        self.geometry = TangentMLP(spec.output_dim + pe_dim, geo_hidden, 1 + geo_feat_dim, fused=fused_softplus)
        self._mix_cache: Optional[Dict[int, Tensor]] = None
        self._compiled_core = None
        self._compiled_color_head = None
        self.fused_lookup = fused_lookup
        """Use the fused C++ lookup (``nid_nerf.fields.fused_lookup``) where it serves the call (CPU, float32, no
        position gradient) and builds; otherwise, and when False, the torch lookup."""
        self.level_weights: Optional[Tensor] = None
        """[L] weights of the hash-grid levels' features (a coarse-to-fine schedule, see
        :func:`nid_nerf.fields.encoding.level_window`); None: every level at full weight."""
        # per-scene refine table, added to the mixed table; set when solving a scene (was "residual" before 0.2)
        self.register_parameter("refine_table", None)
        if implementation == "tcnn":
            from nid_nerf.fields.tcnn_backend import TcnnColorHead

            self.color_head: nn.Module = TcnnColorHead(geo_feat_dim, sh_levels**2, color_hidden)
        else:
            self.color_head = ColorHead(geo_feat_dim, sh_levels**2, color_hidden)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the refine table was renamed name it "residual"
        if prefix + "residual" in state_dict:
            state_dict[prefix + "refine_table"] = state_dict.pop(prefix + "residual")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ----------------------------------------------------------------------------------- tables
    def decoder_parameters(self) -> List[nn.Parameter]:
        """The shared decoder (geometry and colour heads): part of the dictionary, frozen while solving."""
        return list(self.geometry.parameters()) + list(self.color_head.parameters())

    def mixed_tables(self, scenes: Sequence[int]) -> Float[Tensor, "U LS F"]:
        """One gated table per requested scene (the gate is applied once per step, not per sample).

        Inside ``with field.mixing_once():`` each scene's table is mixed once and reused by every lookup.
        """
        key = tuple(int(s) for s in scenes)
        cache = self._mix_cache
        if cache is not None and key in cache:
            return cache[key]
        mixed = self.experts.mix_many([self.gate(s) for s in key])
        if self.refine_table is not None:
            mixed = mixed + self.refine_table
        if cache is not None:
            cache[key] = mixed
        return mixed

    @contextmanager
    def mixing_once(self) -> Iterator[None]:
        """Mix each scene's table at most once inside the block (one training step or one render)."""
        self._mix_cache = {}
        try:
            yield
        finally:
            self._mix_cache = None

    def _scene_slots(self, n: int, scene_index: SceneIndex, device) -> Tuple[list, Optional[Tensor]]:
        if scene_index is None:
            scene_index = 0
        if isinstance(scene_index, int):
            return [scene_index], None
        scene_index = scene_index.reshape(-1).long()
        unique, slots = torch.unique(scene_index, return_inverse=True)
        return unique.tolist(), slots

    # ----------------------------------------------------------------------------------- geometry
    def geometry_forward(
        self, positions: Float[Tensor, "N 3"], scene_index: SceneIndex = None, with_grad: bool = True
    ) -> Tuple[Float[Tensor, "N 1"], Float[Tensor, "N G"], Optional[Float[Tensor, "N 3"]]]:
        """SDF (world units), geometry features and, with ``with_grad``, d sdf / dx."""
        scenes, slots = self._scene_slots(positions.shape[0], scene_index, positions.device)
        core = self._compiled_core if self._compiled_core is not None else self._geometry_core
        return core(self.mixed_tables(scenes), slots, positions, with_grad)

    def _geometry_core(
        self, table: Float[Tensor, "U LS F"], slots: Optional[Int[Tensor, " N"]], positions: Float[Tensor, "N 3"],
        with_grad: bool,
    ) -> Tuple[Float[Tensor, "N 1"], Float[Tensor, "N G"], Optional[Float[Tensor, "N 3"]]]:
        """``geometry_forward`` given the mixed tables: elementwise work, gathers and small matmuls only (no
        data-dependent shapes), so that ``torch.compile`` can fuse it (see :meth:`compile_core`)."""
        lo, hi = self.aabb[0], self.aabb[1]
        extent = hi - lo
        x01 = (positions - lo) / extent
        z, dz = self._lookup_table(table, slots, x01, with_grad)
        if self.level_weights is not None:
            w = self.level_weights.to(z).repeat_interleave(self.spec.features_per_level)
            z = z * w
            dz = dz * w if dz is not None else None
        xn = x01 * 2.0 - 1.0
        pe, dpe = positional_encoding(xn, self.pe_freqs)
        feats = torch.cat([z, pe], -1)
        tangents = None
        if with_grad:
            # chain rule to world units: d x01 / d x = 1 / extent, d xn / d x = 2 / extent
            inv = (1.0 / extent)[:, None, None]
            tangents = torch.cat([dz * inv, dpe * (2.0 * inv)], -1)
        out, dout = self.geometry(feats, tangents)
        centre = (lo + hi) / 2
        offset = positions - centre
        radius = offset.norm(dim=-1, keepdim=True)
        prior = radius - self.sphere_radius * extent.min() / 2
        sdf = out[:, :1] + prior
        grad = None
        if with_grad:
            grad = dout[:, :, 0].t() + offset / radius.clamp(min=1e-6)
        return sdf, out[:, 1:], grad

    def radiance(self, geo_feats: Float[Tensor, "R S G"], directions: Float[Tensor, "R 3"]) -> Float[Tensor, "R S 3"]:
        """Colour of samples grouped by ray; the direction encoding is computed once per ray."""
        sh = components_from_spherical_harmonics(self.sh_levels, directions)
        head = self._compiled_color_head if self._compiled_color_head is not None else self.color_head
        return head(geo_feats, sh)

    def forward_rays(
        self, positions: Float[Tensor, "R S 3"], directions: Float[Tensor, "R 3"], scene_index: SceneIndex = None
    ) -> Dict[str, Tensor]:
        """SDF and colour for S samples on each of R rays (``scene_index``: an int or one per ray)."""
        r, s = positions.shape[:2]
        if scene_index is not None and not isinstance(scene_index, int):
            scene_index = scene_index.reshape(-1, 1).expand(r, s).reshape(-1)
        sdf, h, _ = self.geometry_forward(positions.reshape(-1, 3), scene_index, with_grad=False)
        return {"sdf": sdf.view(r, s), "rgb": self.radiance(h.view(r, s, -1), directions)}

    def gradient(self, positions: Float[Tensor, "N 3"], scene_index: SceneIndex = None) -> Float[Tensor, "N 3"]:
        """d sdf / dx (analytic; differentiable for the eikonal loss)."""
        grad = self.geometry_forward(positions, scene_index, with_grad=True)[2]
        assert grad is not None
        return grad

    # ----------------------------------------------------------------------------------- public API
    def sdf(self, positions: Float[Tensor, "N 3"], scene_index: SceneIndex = None) -> Float[Tensor, "N 1"]:
        return self.geometry_forward(positions, scene_index, with_grad=False)[0]

    def color(
        self, positions: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"], scene_index: SceneIndex = None
    ) -> Float[Tensor, "N 3"]:
        """Colour of independent points seen along ``directions`` (one-sample rays)."""
        if scene_index is not None and not isinstance(scene_index, int):
            scene_index = scene_index.reshape(-1)
        return self.forward_rays(positions[:, None], directions, scene_index)["rgb"][:, 0]

    def lookup(
        self,
        positions: Float[Tensor, "N 3"],
        scene_index: SceneIndex = None,
        with_grad: bool = False,
        tables: Optional[Sequence[Float[Tensor, "LS F"]]] = None,
    ) -> Tuple[Float[Tensor, "N LF"], Optional[Float[Tensor, "3 N LF"]]]:
        """The hash-grid features at ``positions`` alone (no decoder), and with ``with_grad`` their d / d x01.

        One trilinear lookup per sample into its scene's mixed table, whatever k and K (what the per-sample
        cost claim is about). ``tables`` (one flat table per scene index) replaces the mixed tables, e.g. with
        leaf copies to time the lookup without the mixing (``nid_nerf.benchmarks.field_cost``).
        """
        lo, hi = self.aabb[0], self.aabb[1]
        scenes, slots = self._scene_slots(positions.shape[0], scene_index, positions.device)
        table = self.mixed_tables(scenes) if tables is None else torch.stack([tables[s] for s in scenes])
        return self._lookup_table(table, slots, (positions - lo) / (hi - lo), with_grad)

    def _lookup_table(
        self, table: Float[Tensor, "U LS F"], slots: Optional[Int[Tensor, " N"]], x01: Float[Tensor, "N 3"],
        with_grad: bool,
    ) -> Tuple[Float[Tensor, "N LF"], Optional[Float[Tensor, "3 N LF"]]]:
        flat = table.reshape(-1, table.shape[-1])
        if self.fused_lookup and fused_lookup.usable(flat, x01):
            return fused_lookup.interpolate(flat, x01, slots, self.spec, with_grad)
        idx, weights = corner_lookup(x01, self.spec, with_grad=with_grad)
        if slots is not None:
            idx = idx + (slots * table.shape[1])[:, None, None]
        return interpolate(flat, idx, weights)

    def compile_core(self, enable: bool = True) -> None:
        """Run :meth:`_geometry_core` and the colour head through ``torch.compile`` (inductor; fused C++ on the CPU).

        The first call of each kind (with / without the gradient, one scene / several) compiles, which
        takes tens of seconds on 2 cores; shapes are dynamic, so later batch sizes reuse the code.
        """
        self._compiled_core = torch.compile(self._geometry_core, dynamic=True) if enable else None
        torch_head = isinstance(self.color_head, ColorHead)  # the tiny-cuda-nn head is fused already
        # a compiled bound method, not a compiled module: a module attribute would enter the state dict twice
        self._compiled_color_head = (torch.compile(self.color_head.forward, dynamic=True) if enable and torch_head
                                     else None)
