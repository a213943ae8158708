"""Pure functions for SDF volume rendering (VolSDF, Yariv et al. 2021) and ray sampling."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float
from torch import Tensor


def ray_aabb(
    origins: Float[Tensor, "R 3"], directions: Float[Tensor, "R 3"], aabb: Float[Tensor, "2 3"], near_min: float = 0.0
) -> Tuple[Float[Tensor, " R"], Float[Tensor, " R"], Bool[Tensor, " R"]]:
    """Entry and exit distances of rays through a box; ``hit`` is False for rays that miss it."""
    inv = 1.0 / torch.where(directions.abs() < 1e-9, torch.full_like(directions, 1e-9), directions)
    t0 = (aabb[0] - origins) * inv
    t1 = (aabb[1] - origins) * inv
    near = torch.minimum(t0, t1).amax(-1).clamp(min=near_min)
    far, hit = interval_hit(near, torch.maximum(t0, t1).amin(-1))
    return near, far, hit


def interval_hit(near: Float[Tensor, " R"], far: Float[Tensor, " R"]) -> Tuple[Float[Tensor, " R"], Bool[Tensor, " R"]]:
    """``far`` and ``hit`` of ray intervals: ``hit`` False where the interval is empty, whose ``far`` then becomes
    ``near + 1e-3`` (a short, harmless interval for the samplers)."""
    hit = far > near + 1e-6
    return torch.where(hit, far, near + 1e-3), hit


def laplace_density(sdf: Float[Tensor, " *bs"], beta: Float[Tensor, ""]) -> Float[Tensor, " *bs"]:
    """VolSDF density sigma = (1/beta) * Psi_beta(-sdf), Psi the Laplace CDF with scale beta."""
    s = -sdf
    psi = torch.where(s <= 0, 0.5 * torch.exp(s.clamp(max=0) / beta), 1.0 - 0.5 * torch.exp(-s.clamp(min=0) / beta))
    return psi / beta


def composite_weights(
    density: Float[Tensor, "R S"], deltas: Float[Tensor, "R S"]
) -> Float[Tensor, "R S"]:
    """w_i = T_i (1 - exp(-sigma_i delta_i)), T_i = prod_{j<i} exp(-sigma_j delta_j)."""
    tau = density * deltas
    alpha = 1.0 - torch.exp(-tau)
    transmittance = torch.exp(-torch.cumsum(F.pad(tau[:, :-1], (1, 0)), dim=-1))
    return alpha * transmittance


def sample_pdf(
    edges: Float[Tensor, "R E"],
    weights: Float[Tensor, "R E-1"],
    num_samples: int,
    uniform_floor: float = 0.1,
    deterministic: bool = False,
) -> Float[Tensor, "R num_samples"]:
    """Inverse-CDF samples from a piecewise-constant pdf on ``edges``, sorted along the ray.

    ``uniform_floor`` of the probability mass is spread uniformly over the ray so no interval starves.
    """
    r, b = weights.shape
    pdf = weights.clamp(min=0) + 1e-8
    pdf = pdf / pdf.sum(-1, keepdim=True)
    lengths = edges[:, 1:] - edges[:, :-1]
    uniform = lengths / lengths.sum(-1, keepdim=True).clamp(min=1e-9)
    pdf = (1.0 - uniform_floor) * pdf + uniform_floor * uniform
    cdf = F.pad(torch.cumsum(pdf, -1), (1, 0))
    cdf[:, -1] = 1.0
    if deterministic:
        u = torch.linspace(0.5 / num_samples, 1 - 0.5 / num_samples, num_samples, device=edges.device)
        u = u.expand(r, num_samples).contiguous()
    else:
        u = (torch.arange(num_samples, device=edges.device) + torch.rand(r, num_samples, device=edges.device))
        u = u / num_samples
    i = torch.searchsorted(cdf, u, right=True).clamp(1, b)
    c0, c1 = cdf.gather(1, i - 1), cdf.gather(1, i)
    e0, e1 = edges.gather(1, i - 1), edges.gather(1, i)
    frac = ((u - c0) / (c1 - c0).clamp(min=1e-9)).clamp(0, 1)
    return e0 + frac * (e1 - e0)


def grid_lookup(
    grid: Float[Tensor, "G G G"], x01: Float[Tensor, "N 3"]
) -> Float[Tensor, " N"]:
    """Trilinear lookup in a dense grid stored [z, y, x] over [0, 1]^3 (vertex-aligned)."""
    coords = (x01 * 2.0 - 1.0).view(1, 1, 1, -1, 3)
    out = F.grid_sample(grid[None, None], coords, mode="bilinear", padding_mode="border", align_corners=True)
    return out.view(-1)


def stratified_midpoints(
    near: Float[Tensor, " R"], far: Float[Tensor, " R"], num: int, jitter: bool
) -> Tuple[Float[Tensor, "R E"], Float[Tensor, "R E-1"]]:
    """``num`` equal bins between near and far: their edges and (jittered) sample positions."""
    u = torch.linspace(0.0, 1.0, num + 1, device=near.device)
    edges = near[:, None] + (far - near)[:, None] * u
    if jitter:
        t = edges[:, :-1] + (edges[:, 1:] - edges[:, :-1]) * torch.rand_like(edges[:, :-1])
    else:
        t = 0.5 * (edges[:, 1:] + edges[:, :-1])
    return edges, t


def render_weights_from_edges(
    sdf: Float[Tensor, "R S"], edges: Float[Tensor, "R S+1"], beta: Float[Tensor, ""],
    hit: Optional[Bool[Tensor, " R"]] = None,
) -> Float[Tensor, "R S"]:
    """Compositing weights for samples at the midpoints of ``edges``; rays that miss the box get 0."""
    w = composite_weights(laplace_density(sdf, beta), edges[:, 1:] - edges[:, :-1])
    if hit is not None:
        w = w * hit[:, None].to(w.dtype)
    return w


def distortion_loss(
    weights: Float[Tensor, "R S"], edges: Float[Tensor, "R S+1"]
) -> Float[Tensor, " R"]:
    """mip-NeRF 360's distortion loss of each ray (Barron et al. 2022, eq. 15), in O(S) with cumulative sums:

        sum_ij w_i w_j |m_i - m_j| + 1/3 sum_i w_i^2 (e_{i+1} - e_i),   m_i = (e_i + e_{i+1}) / 2

    over bins sorted along the ray (``edges`` monotonic, either way). It is small when a ray's weight sits in
    one short interval, so it pulls a background's density onto one depth instead of a smear along the ray.
    The pair sum is ``2 sum_i w_i (m_i W_i - M_i)`` with ``W_i``, ``M_i`` the sums of ``w_j`` and ``w_j m_j``
    over the bins before i (``m`` increasing; flipped when the edges decrease).
    """
    if bool((edges[:, -1] < edges[:, 0]).any()):
        edges = -edges
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    before_w = torch.cumsum(weights, -1) - weights
    before_wm = torch.cumsum(weights * mids, -1) - weights * mids
    pairs = 2.0 * (weights * (mids * before_w - before_wm)).sum(-1)
    return pairs + (weights * weights * (edges[:, 1:] - edges[:, :-1])).sum(-1) / 3.0
