"""Background radiance fields behind the SDF, on inverted-sphere coordinates (the NeRF++ parametrisation).

The SDF field models what lies inside the scene box. A real photo with its background (a wall, a room) has
pixels whose rays leave the box without meeting the object; without a model for them the SDF has to paint
the background as fog inside the box. This module renders what lies *beyond* the box's bounding sphere:

- the sphere has the box's centre ``c`` and its half-diagonal ``R`` as radius (so it contains the box);
- a point ``p`` outside it, at normalised distance ``r = |p - c| / R > 1``, maps to the 4-D point
  ``(u, s) = ((p - c) / (R r), 1 / r)``: a unit direction and an inverse distance in (0, 1]. Infinity maps to
  ``s = 0``, so the whole unbounded outside fits in a bounded domain;
- each ray gets ``num_samples`` samples evenly spaced in ``s``, from where it leaves the sphere (``s = 1``;
  rays that miss the sphere start at their closest point to ``c``, ``s = R / d_perp``) down to ``s = 0``;
- a density (per unit of ``s``) and a colour at each sample are alpha-composited with the step in ``s`` as the
  interval length, and what the samples leave transparent is filled with a fixed colour.

Two encodings give the density and colour (``BackgroundFieldConfig.encoding``):

- ``frequencies`` (:class:`InvertedSphereBackground`): a small MLP on a positional encoding of ``(u, s)``. It
  learns a smooth, low-frequency outside: a wallpaper or a ruler come out as radial smears;
- ``hash-grid`` (:class:`HashGridBackground`): a multi-resolution hash grid on the contracted point
  ``y = (2 - s) u`` (mip-NeRF 360's contraction: the outside maps to the shell 1 <= |y| < 2), read by a one-layer
  MLP. Its finest cells (1024 over the contracted cube of side 4) are 0.004 sphere radii near the sphere, about
  a pixel of fox's 270x480 photos on the wall behind the fox.

``NIDModel`` composites it behind the SDF render: ``rgb = rgb_sdf + (1 - acc_sdf) * rgb_background``.
The space between the box and the sphere (at most ``R - half-extent``, the box's corners) belongs to neither.

Cost of ``frequencies`` (16 samples, 8 frequencies -> 68 inputs, two hidden layers of 64): 8.7k multiply-adds
per sample, 139k per ray; ``hash-grid`` (16 samples, 12 levels of 2 features, one hidden layer of 64): 12 trilinear
lookups and 1.8k multiply-adds per sample. Rays the surface render shades (accumulation 1) skip either at eval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Dict, Literal, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from nid_nerf.fields import fused_lookup
from nid_nerf.fields.encoding import HashGridSpec, corner_lookup, interpolate
from nid_nerf.model_components.rendering import composite_weights


@dataclass
class BackgroundFieldConfig:
    """The inverted-sphere background (``NIDModelConfig.background_model``)."""

    encoding: Literal["auto", "frequencies", "hash-grid"] = "auto"
    """frequencies: an MLP on a positional encoding of the inverted coordinates; hash-grid: a hash grid on the
    contracted coordinates (see the module docstring). auto: hash-grid for photos without object masks, where the
    background is most of every image (fox: 18.46 against 17.97 dB after 150 s, docs/real_captures_hash_background.md),
    frequencies for masked photos."""
    sphere: Literal["auto", "corners", "inscribed"] = "auto"
    """Where the background starts: the sphere through the box's corners (sqrt 3 box half-sizes from the centre),
    or the sphere inscribed in the box (one half-size), which also bounds the SDF render. inscribed hands the
    background what lies 1 to 1.7 half-sizes away (a wall close behind an unmasked object) instead of the SDF:
    on fox the mesh becomes a blob where the head is instead of a slab of wall. auto: inscribed for photos without
    object masks, corners for masked photos (their mask keeps the SDF on the object)."""
    num_samples: int = 16
    """Samples per ray, evenly spaced in inverse distance from the bounding sphere to infinity."""
    num_frequencies: int = 8
    """Positional-encoding octaves of the 4-D inverted coordinates (sin and cos of 2^k pi x, k < this)."""
    hidden_dim: int = 64
    """Width of the MLP's hidden layers."""
    num_layers: int = 2
    """Hidden layers of the MLP."""
    inside_samples: int = 0
    """hash-grid: samples inside the sphere too, evenly spaced in depth from where the ray enters it (or the camera)
    to where it leaves, in front of the outside samples (0: the outside only). For masked photos, whose turntable,
    table or floor passes through the box under the object: the mask keeps the SDF off them, and the outside
    alone can only paint them onto the sphere. Unmasked photos leave this at 0: inside the sphere the SDF is the
    scene."""
    grid_levels: int = 12
    """hash-grid: resolution levels (base 16 up to ``grid_max_resolution`` over the contracted cube)."""
    grid_max_resolution: int = 1024
    """hash-grid: finest resolution over the contracted cube [-2, 2]^3."""
    grid_log2_table_size: int = 17
    """hash-grid: log2 of the entries per level (2 features each)."""
    density_bias: float = -1.0
    """Initial offset of the density's pre-activation (softplus(-1) = 0.31 per unit of s: a start that is
    about 27% opaque over the whole outside, so early gradients reach the colour)."""


def sphere_of_box(aabb: Float[Tensor, "2 3"], inscribed: bool = False) -> Tuple[Float[Tensor, " 3"], float]:
    """Centre and radius of the sphere through the corners of ``aabb`` (its half-diagonal) or, ``inscribed``, of
    the sphere touching its nearest faces (the smallest half-size)."""
    lo, hi = aabb[0], aabb[1]
    radius = (hi - lo).min() / 2 if inscribed else (hi - lo).norm() / 2
    return (lo + hi) / 2, float(radius)


def inverted_sphere_coordinates(
    points: Float[Tensor, "*bs 3"], centre: Float[Tensor, " 3"], radius: float
) -> Float[Tensor, "*bs 4"]:
    """``(x / r, 1 / r)`` with ``x = (p - c) / radius`` and ``r = |x|``: a point at distance r > 1 (in sphere
    radii) maps to a unit vector and an inverse distance in (0, 1)."""
    x = (points - centre) / radius
    r = x.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    return torch.cat([x / r, 1.0 / r], dim=-1)


def closest_approach(
    origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], centre: Float[Tensor, " 3"]
) -> Tuple[Float[Tensor, "R 3"], Float[Tensor, " R"], Float[Tensor, " R"], Float[Tensor, " R"]]:
    """``o - c``, ``|d|^2``, the depth ``t_c`` of each ray's point closest to ``c`` and that point's squared
    distance ``d_perp^2`` from ``c``."""
    oc = origins - centre
    dd = (directions * directions).sum(-1).clamp(min=1e-12)
    t_c = -(oc * directions).sum(-1) / dd
    return oc, dd, t_c, ((oc * oc).sum(-1) - t_c * t_c * dd).clamp(min=0)


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
    oc, dd, t_c, d_perp2 = closest_approach(origins, directions, centre)
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


def sphere_chord(
    origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], centre: Float[Tensor, " 3"], radius: float
) -> Tuple[Float[Tensor, " R"], Float[Tensor, " R"]]:
    """Depths where each ray enters and leaves the sphere, ``t_c -+ sqrt(R^2 - d_perp^2) / |d|`` (``t_c`` the depth
    closest to ``c``), from depth 0 at most; equal (an empty chord) for rays that miss it or leave it behind."""
    oc, dd, t_c, d_perp2 = closest_approach(origins, directions, centre)
    half = torch.sqrt((radius * radius - d_perp2).clamp(min=0)) / dd.sqrt()
    t_far = (t_c + half).clamp(min=0)
    return (t_c - half).clamp(min=0).minimum(t_far), t_far


def inside_samples(
    origins: Float[Tensor, "R 3"],
    directions: Float[Tensor, "R 3"],
    centre: Float[Tensor, " 3"],
    radius: float,
    num_samples: int,
    jitter: bool,
) -> Tuple[Float[Tensor, "R S"], Float[Tensor, "R S 3"], Float[Tensor, "R S"]]:
    """Depths, positions (in sphere radii from ``c``) and interval lengths (in sphere radii) of ``num_samples``
    samples evenly spaced along the chord of the sphere in front of the camera; rays that miss the sphere get
    intervals of length 0 (no density); the chord is :func:`sphere_chord`'s.
    """
    oc, dd, _, _ = closest_approach(origins, directions, centre)
    t_near, t_far = sphere_chord(origins, directions, centre, radius)
    u = torch.linspace(0.0, 1.0, num_samples + 1, device=origins.device)
    edges = t_near[:, None] + (t_far - t_near)[:, None] * u  # [R, S+1]
    frac = torch.rand_like(edges[:, :-1]) if jitter else torch.full_like(edges[:, :-1], 0.5)
    t = edges[:, :-1] + (edges[:, 1:] - edges[:, :-1]) * frac
    x = (oc[:, None] + directions[:, None] * t[..., None]) / radius
    deltas = (edges[:, 1:] - edges[:, :-1]) * dd.sqrt()[:, None] / radius
    return t, x, deltas


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


class _SphereBackground(nn.Module):
    """Samples beyond the bounding sphere of ``aabb`` and their compositing; subclasses give ``raw`` (see the module
    docstring)."""

    def __init__(self, aabb: Float[Tensor, "2 3"], config: BackgroundFieldConfig) -> None:
        super().__init__()
        self.config = config
        self.inscribed = config.sphere == "inscribed"
        """The background starts at the inscribed sphere, which then also bounds the SDF render."""
        centre, radius = sphere_of_box(aabb, inscribed=self.inscribed)
        self.register_buffer("centre", centre.clone().float(), persistent=False)
        self.radius = radius

    def raw(self, u: Float[Tensor, "N 3"], s: Float[Tensor, " N"]) -> Float[Tensor, "N 4"]:
        """Pre-activation density and colour at unit direction ``u`` and inverse distance ``s``."""
        raise NotImplementedError

    def raw_inside(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 4"]:
        """Pre-activation density and colour at ``x`` inside the sphere, in sphere radii from its centre."""
        raise NotImplementedError(f"{type(self).__name__} has no inside samples; use the hash-grid encoding")

    def forward(
        self, origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], fill: Float[Tensor, " 3"], jitter: bool
    ) -> Dict[str, Tensor]:
        """``rgb`` [R, 3] (composited on ``fill``), ``accumulation`` [R, 1] and ``depth`` [R, 1] of the background."""
        t, s, edges = background_samples(origins, directions, self.centre, self.radius, self.config.num_samples,
                                         jitter)
        points = origins[:, None] + directions[:, None] * t[..., None]  # [R, S, 3]
        u = inverted_sphere_coordinates(points, self.centre, self.radius)[..., :3]
        # the exact s, not the points' own 1/r (which rounds at s ~ 0)
        raw = self.raw(u.reshape(-1, 3), s.reshape(-1)).view(*t.shape, 4)
        deltas = edges[:, :-1] - edges[:, 1:]
        if self.config.inside_samples > 0:
            t_in, x_in, d_in = inside_samples(origins, directions, self.centre, self.radius,
                                              self.config.inside_samples, jitter)
            raw = torch.cat([self.raw_inside(x_in.reshape(-1, 3)).view(*t_in.shape, 4), raw], 1)
            t, deltas = torch.cat([t_in, t], 1), torch.cat([d_in, deltas], 1)
        density = F.softplus(raw[..., 0])
        rgb = torch.sigmoid(raw[..., 1:])
        weights = composite_weights(density, deltas)
        acc = weights.sum(-1, keepdim=True)
        out_rgb = (weights[..., None] * rgb).sum(1) + (1.0 - acc) * fill.to(rgb)
        depth = (weights * t).sum(-1, keepdim=True) / acc.clamp(min=1e-6)
        out = {"rgb": out_rgb, "accumulation": acc, "depth": depth}
        if self.training:
            # the outside samples' weights and their bins in inverse distance (the inside ones have another axis),
            # for a distortion loss (nid_nerf.model_components.rendering.distortion_loss) where one is wanted
            out["outside_weights"], out["outside_edges"] = weights[:, -self.config.num_samples:], edges
        return out


def mlp(dims, out_dim: int, density_bias: float) -> nn.Sequential:
    """Linear + ReLU layers through ``dims``, then a linear layer to ``out_dim`` whose first output starts at
    ``density_bias``."""
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    net = nn.Sequential(*layers, nn.Linear(dims[-1], out_dim))
    with torch.no_grad():
        net[-1].bias[0].fill_(density_bias)
    return net


class InvertedSphereBackground(_SphereBackground):
    """``frequencies``: an MLP on the positional encoding of ``(u, s)``."""

    def __init__(self, aabb: Float[Tensor, "2 3"], config: BackgroundFieldConfig) -> None:
        super().__init__(aabb, config)
        self.encoding = PositionalEncoding(4, config.num_frequencies)
        self.mlp = mlp([self.encoding.out_dim] + [config.hidden_dim] * config.num_layers, 4, config.density_bias)

    def raw(self, u: Float[Tensor, "N 3"], s: Float[Tensor, " N"]) -> Float[Tensor, "N 4"]:
        return self.mlp(self.encoding(torch.cat([u, s[:, None]], -1)))


def contract(u: Float[Tensor, "N 3"], s: Float[Tensor, " N"]) -> Float[Tensor, "N 3"]:
    """mip-NeRF 360's contraction of a point beyond the unit sphere, ``(2 - 1 / r) x / r``, from its unit direction
    ``u`` and inverse distance ``s = 1 / r``: the outside maps into the shell ``1 <= |y| < 2``.

    >>> contract(torch.tensor([[0.0, 0.0, 1.0]]), torch.tensor([0.5])).tolist()
    [[0.0, 0.0, 1.5]]
    """
    return u * (2.0 - s)[:, None]


class HashGridBackground(_SphereBackground):
    """``hash-grid``: a hash grid on the contracted coordinates, one hidden layer to density and colour."""

    def __init__(self, aabb: Float[Tensor, "2 3"], config: BackgroundFieldConfig, use_fused: bool = True) -> None:
        super().__init__(aabb, config)
        self.spec = HashGridSpec(num_levels=config.grid_levels, log2_table_size=config.grid_log2_table_size,
                                 features_per_level=2, base_resolution=16, max_resolution=config.grid_max_resolution)
        rows = self.spec.num_levels * self.spec.table_size
        self.table = nn.Parameter(torch.empty(rows, self.spec.features_per_level).uniform_(-1e-4, 1e-4))
        self.mlp = mlp([self.spec.output_dim, config.hidden_dim], 4, config.density_bias)
        self.use_fused = use_fused

    def features(self, x01: Float[Tensor, "N 3"]) -> Float[Tensor, "N LF"]:
        """The grid's features at positions in [0, 1]^3 (the fused kernel where it serves, else torch's lookup)."""
        if self.use_fused and fused_lookup.usable(self.table, x01):
            return fused_lookup.interpolate(self.table, x01, None, self.spec, with_grad=False)[0]
        return interpolate(self.table, *corner_lookup(x01, self.spec))[0]

    def raw(self, u: Float[Tensor, "N 3"], s: Float[Tensor, " N"]) -> Float[Tensor, "N 4"]:
        return self._decode(contract(u, s))

    def raw_inside(self, x: Float[Tensor, "N 3"]) -> Float[Tensor, "N 4"]:
        return self._decode(x)  # the contraction leaves the inside of the unit sphere as it is

    def _decode(self, y: Float[Tensor, "N 3"]) -> Float[Tensor, "N 4"]:
        x01 = (y * 0.25 + 0.5).clamp(0.0, 1.0)  # the cube [-2, 2]^3 onto [0, 1]^3
        return self.mlp(self.features(x01.detach().contiguous()))


def background_field(
    aabb: Float[Tensor, "2 3"], config: BackgroundFieldConfig, object_masks: bool = False
) -> _SphereBackground:
    """The background of ``config``, its ``auto`` choices made for a capture with or without ``object_masks``."""
    config = replace(
        config,
        encoding=("frequencies" if object_masks else "hash-grid") if config.encoding == "auto" else config.encoding,
        sphere=("corners" if object_masks else "inscribed") if config.sphere == "auto" else config.sphere,
    )
    if config.sphere not in ("corners", "inscribed"):
        raise ValueError(f"background sphere {config.sphere!r}: use auto, corners or inscribed")
    if config.encoding == "hash-grid":
        return HashGridBackground(aabb, config)
    if config.encoding == "frequencies":
        return InvertedSphereBackground(aabb, config)
    raise ValueError(f"background encoding {config.encoding!r}: use auto, frequencies or hash-grid")
