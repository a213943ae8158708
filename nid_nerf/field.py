"""The NID field: a signed distance function and radiance decoded from gated hash-grid experts.

    z(x)      = interp(sum_{i in topk(c_s)} g_i T_i, x)            (mixed-table lookup)
    sdf, h    = geometry([z(x), PE(x)]) + (|x - centre| - r0)      (sphere prior, world units)
    n(x)      = d sdf / dx                                        (analytic, forward-mode)
    rgb       = colour([h, n / |n|, SH(d)])

K = 1 with the constant code 1 is a plain hash-grid SDF field (the from-scratch mode).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from jaxtyping import Float, Int
from nerfstudio.utils.math import components_from_spherical_harmonics
from torch import Tensor, nn

from nid_nerf.encoding import ExpertTables, HashGridSpec, corner_lookup, interpolate
from nid_nerf.gate import CodeGate
from nid_nerf.mlp import TangentMLP, plain_mlp

SceneIndex = Union[int, Int[Tensor, "N"], None]


def positional_encoding(
    x: Float[Tensor, "N 3"], num_freqs: int
) -> Tuple[Float[Tensor, "N D"], Float[Tensor, "N D 3"]]:
    """[x, sin(2^j pi x), cos(2^j pi x)] for x in [-1, 1]^3 and its Jacobian wrt x."""
    eye = torch.eye(3, device=x.device, dtype=x.dtype).expand(x.shape[0], 3, 3)
    feats, jac = [x], [eye]
    for j in range(num_freqs):
        a = (2.0**j) * math.pi
        s, c = torch.sin(a * x), torch.cos(a * x)
        feats += [s, c]
        jac += [torch.diag_embed(a * c), torch.diag_embed(-a * s)]
    return torch.cat(feats, -1), torch.cat(jac, 1)


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
        self.geometry = TangentMLP(spec.output_dim + pe_dim, geo_hidden, 1 + geo_feat_dim)
        self.color_head = plain_mlp(geo_feat_dim + 3 + sh_levels**2, color_hidden, 3)

    # ----------------------------------------------------------------------------------- tables
    def mixed_tables(self, scenes: Sequence[int]) -> Float[Tensor, "U LS F"]:
        """One gated table per requested scene (the gate is applied once per step, not per sample)."""
        return torch.stack([self.experts.mix(*self.gate(int(s))) for s in scenes])

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
        lo, hi = self.aabb[0], self.aabb[1]
        extent = hi - lo
        x01 = (positions - lo) / extent
        scenes, slots = self._scene_slots(positions.shape[0], scene_index, positions.device)
        idx, w, dw = corner_lookup(x01, self.spec, with_grad=with_grad)
        table = self.mixed_tables(scenes)
        if slots is not None:
            idx = idx + (slots * table.shape[1])[:, None, None]
        table = table.reshape(-1, table.shape[-1])
        z, dz = interpolate(table, idx, w, dw)
        xn = x01 * 2.0 - 1.0
        pe, dpe = positional_encoding(xn, self.pe_freqs)
        feats = torch.cat([z, pe], -1)
        tangents = None
        if with_grad:
            # chain rule to world units: d x01 / d x = 1 / extent, d xn / d x = 2 / extent
            tangents = torch.cat([dz / extent, dpe * (2.0 / extent)], 1)
        out, dout = self.geometry(feats, tangents)
        centre = (lo + hi) / 2
        offset = positions - centre
        radius = offset.norm(dim=-1, keepdim=True)
        prior = radius - self.sphere_radius * extent.min() / 2
        sdf = out[:, :1] + prior
        grad = None
        if with_grad:
            grad = dout[:, 0, :] + offset / radius.clamp(min=1e-6)
        return sdf, out[:, 1:], grad

    def radiance(
        self, geo_feats: Float[Tensor, "N G"], normals: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"]
    ) -> Float[Tensor, "N 3"]:
        sh = components_from_spherical_harmonics(self.sh_levels, directions)
        return torch.sigmoid(self.color_head(torch.cat([geo_feats, normals, sh], -1)))

    def forward_samples(
        self, positions: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"], scene_index: SceneIndex = None
    ) -> Dict[str, Tensor]:
        sdf, h, grad = self.geometry_forward(positions, scene_index, with_grad=True)
        assert grad is not None
        normals = grad / grad.norm(dim=-1, keepdim=True).clamp(min=1e-6)
        rgb = self.radiance(h, normals, directions)
        return {"sdf": sdf, "gradient": grad, "normals": normals, "rgb": rgb}

    # ----------------------------------------------------------------------------------- public API
    def sdf(self, positions: Float[Tensor, "N 3"], scene_index: SceneIndex = None) -> Float[Tensor, "N 1"]:
        return self.geometry_forward(positions, scene_index, with_grad=False)[0]

    def color(
        self, positions: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"], scene_index: SceneIndex = None
    ) -> Float[Tensor, "N 3"]:
        return self.forward_samples(positions, directions, scene_index)["rgb"]
