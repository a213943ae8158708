"""Background radiance field for unmasked captures, on inverted-sphere coordinates (the NeRF++ parametrisation).

The SDF field models what lies inside the scene box. A real photo with its background (a wall, a room) has
pixels whose rays leave the box without meeting the object; without a model for them the SDF has to paint
the background as fog inside the box. This module renders what lies *beyond* the box's bounding sphere:

- the sphere has the box's centre ``c`` and its half-diagonal ``R`` as radius (so it contains the box);
- a point ``p`` outside it, at normalised distance ``r = |p - c| / R > 1``, maps to the 4-D point
  ``(u, s) = ((p - c) / (R r), 1 / r)``: a unit direction and an inverse distance in (0, 1]. Infinity maps to
  ``s = 0``, so the whole unbounded outside fits in a bounded domain;
- each ray gets ``num_samples`` samples evenly spaced in ``s``, from where it leaves the sphere (``s = 1``;
  rays that miss the sphere start at their closest point to ``c``, ``s = R / d_perp``) down to ``s = 0``;
- a small MLP on a positional encoding of ``(u, s)`` gives a density (per unit of ``s``) and a colour; they
  are alpha-composited with the step in ``s`` as the interval length, and what the samples leave
  transparent is filled with a fixed colour.

``NIDModel`` composites it behind the SDF render: ``rgb = rgb_sdf + (1 - acc_sdf) * rgb_background``.
The space between the box and the sphere (at most ``R - half-extent``, the box's corners) belongs to neither.

Cost: with the defaults (16 samples, 8 frequencies -> 68 inputs, two hidden layers of 64), 8.7k
multiply-adds per sample, 139k per ray; rays the surface render shades (accumulation 1) skip it at eval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from nid_nerf.model_components.rendering import composite_weights


@dataclass
class BackgroundFieldConfig:
    """The inverted-sphere background (``NIDModelConfig.background_model``)."""

    num_samples: int = 16
    """Samples per ray, evenly spaced in inverse distance from the bounding sphere to infinity."""
    num_frequencies: int = 8
    """Positional-encoding octaves of the 4-D inverted coordinates (sin and cos of 2^k pi x, k < this)."""
    hidden_dim: int = 64
    """Width of the MLP's hidden layers."""
    num_layers: int = 2
    """Hidden layers of the MLP."""
    density_bias: float = -1.0
    """Initial offset of the density's pre-activation (softplus(-1) = 0.31 per unit of s: a start that is
    about 27% opaque over the whole outside, so early gradients reach the colour)."""


def sphere_of_box(aabb: Float[Tensor, "2 3"]) -> Tuple[Float[Tensor, " 3"], float]:
    """Centre and radius (half-diagonal) of the sphere through the corners of ``aabb``."""
    lo, hi = aabb[0], aabb[1]
    return (lo + hi) / 2, float((hi - lo).norm() / 2)


def inverted_sphere_coordinates(
    points: Float[Tensor, "*bs 3"], centre: Float[Tensor, " 3"], radius: float
) -> Float[Tensor, "*bs 4"]:
    """``(x / r, 1 / r)`` with ``x = (p - c) / radius`` and ``r = |x|``: a point at distance r > 1 (in sphere
    radii) maps to a unit vector and an inverse distance in (0, 1)."""
    x = (points - centre) / radius
    r = x.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.cat([x / r, 1.0 / r], dim=-1)


def background_samples(
    origins: Float[Tensor, "R 3"],
    directions: Float[Tensor, "R 3"],
    centre: Float[Tensor, " 3"],
    radius: float,
    num_samples: int,
    jitter: bool,
) -> Tuple[Float[Tensor, "R S"], Float[Tensor, "R S"], Float[Tensor, "R S+1"]]:
    """Ray depths ``t`` of the samples, their inverse distances ``s`` and the bin edges in ``s`` (decreasing).

    Along a ray ``p(t) = o + t d`` the distance to ``c`` is ``sqrt(d_perp^2 + |d|^2 (t - t_c)^2)`` with ``t_c``
    the depth of the closest point; beyond ``t_c`` (and beyond the sphere) a distance ``rho`` is reached at
    ``t = t_c + sqrt(rho^2 - d_perp^2) / |d|``. The samples start at ``rho_0 = max(R, |p(max(t_c, 0))- c|)``:
    where the ray leaves the sphere, or (rays that miss it, or start outside it going away) where the ray is
    closest to ``c`` in front of the camera.
    """
    oc = origins - centre
    dd = (directions * directions).sum(-1).clamp(min=1e-12)
    t_c = -(oc * directions).sum(-1) / dd
    d_perp2 = ((oc * oc).sum(-1) - t_c * t_c * dd).clamp(min=0)
    start = oc + directions * t_c.clamp(min=0)[:, None]
    rho0 = torch.maximum(start.norm(dim=-1), torch.full_like(t_c, radius))
    s0 = radius / rho0  # inverse distance (in sphere radii) where the samples start, <= 1
    u = torch.linspace(1.0, 0.0, num_samples + 1, device=origins.device)
    edges = s0[:, None] * u  # [R, S+1], from s0 down to 0
    frac = torch.rand_like(edges[:, :-1]) if jitter else torch.full_like(edges[:, :-1], 0.5)
    frac = frac.clamp(1e-3, 1.0 - 1e-3)  # never exactly s = 0 (infinity)
    s = edges[:, :-1] + (edges[:, 1:] - edges[:, :-1]) * frac
    rho = radius / s
    t = t_c[:, None] + torch.sqrt((rho * rho - d_perp2[:, None]).clamp(min=0)) / dd.sqrt()[:, None]
    return t, s, edges


class PositionalEncoding(nn.Module):
    """``x`` and sin / cos of ``2^k pi x`` for ``k < num_frequencies``: ``dim * (1 + 2 * num_frequencies)`` outputs."""

    def __init__(self, dim: int, num_frequencies: int) -> None:
        super().__init__()
        self.register_buffer("scales", math.pi * 2.0 ** torch.arange(num_frequencies, dtype=torch.float32),
                             persistent=False)
        self.out_dim = dim * (1 + 2 * num_frequencies)

    def forward(self, x: Float[Tensor, "N D"]) -> Float[Tensor, "N out"]:
        scaled = (x[..., None] * self.scales).flatten(-2)
        return torch.cat([x, torch.sin(scaled), torch.cos(scaled)], dim=-1)


class InvertedSphereBackground(nn.Module):
    """What lies beyond the bounding sphere of ``aabb``, rendered per ray (see the module docstring)."""

    def __init__(self, aabb: Float[Tensor, "2 3"], config: BackgroundFieldConfig) -> None:
        super().__init__()
        self.config = config
        centre, radius = sphere_of_box(aabb)
        self.register_buffer("centre", centre.clone().float(), persistent=False)
        self.radius = radius
        self.encoding = PositionalEncoding(4, config.num_frequencies)
        dims = [self.encoding.out_dim] + [config.hidden_dim] * config.num_layers
        layers = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        self.mlp = nn.Sequential(*layers, nn.Linear(dims[-1], 4))
        with torch.no_grad():
            self.mlp[-1].bias[0].fill_(config.density_bias)

    def forward(
        self, origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], fill: Float[Tensor, " 3"], jitter: bool
    ) -> Dict[str, Tensor]:
        """``rgb`` [R, 3] (composited on ``fill``), ``accumulation`` [R, 1] and ``depth`` [R, 1] of the background."""
        t, s, edges = background_samples(origins, directions, self.centre, self.radius, self.config.num_samples,
                                         jitter)
        points = origins[:, None] + directions[:, None] * t[..., None]  # [R, S, 3]
        coords = inverted_sphere_coordinates(points, self.centre, self.radius)
        coords = torch.cat([coords[..., :3], s[..., None]], -1)  # the exact s (the points' own 1/r rounds at s ~ 0)
        raw = self.mlp(self.encoding(coords.reshape(-1, 4))).view(*t.shape, 4)
        density = F.softplus(raw[..., 0])
        rgb = torch.sigmoid(raw[..., 1:])
        weights = composite_weights(density, edges[:, :-1] - edges[:, 1:])
        acc = weights.sum(-1, keepdim=True)
        out_rgb = (weights[..., None] * rgb).sum(1) + (1.0 - acc) * fill.to(rgb)
        depth = (weights * t).sum(-1, keepdim=True) / acc.clamp(min=1e-6)
        return {"rgb": out_rgb, "accumulation": acc, "depth": depth}
