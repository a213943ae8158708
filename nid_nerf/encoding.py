"""Multi-resolution hash-grid experts and the mixed-table lookup.

Every expert is a table ``T_i`` of shape [L levels, S entries, F features]. All experts share the
hashing and the resolutions, so a gated mixture of experts is itself a table:

    z(x) = sum_i g_i interp(T_i, x) = interp(sum_i g_i T_i, x)

The functions here are a small functional core (positions in, indices/weights/features out); the
module :class:`ExpertTables` only holds the parameters. Coarse levels whose grid fits in the table
are stored densely (no hash collisions); finer levels are hashed with the instant-ngp primes.

The lookup also returns the analytic spatial derivative of the features (the derivative of the
trilinear weights), so the SDF normal needs no double backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

# corner offsets of a unit cube, [8, 3], bit d of the corner index is the offset along axis d
_CORNERS = torch.tensor([[(c >> 0) & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=torch.long)
_PRIMES = (1, 2654435761, 805459861)


@dataclass
class HashGridSpec:
    """Resolutions and sizes shared by every expert of a dictionary."""

    num_levels: int = 8
    log2_table_size: int = 15
    features_per_level: int = 2
    base_resolution: int = 16
    max_resolution: int = 256

    @property
    def table_size(self) -> int:
        return 2**self.log2_table_size

    @property
    def output_dim(self) -> int:
        return self.num_levels * self.features_per_level

    def resolutions(self) -> Tuple[int, ...]:
        if self.num_levels == 1:
            return (self.base_resolution,)
        growth = math.exp((math.log(self.max_resolution) - math.log(self.base_resolution)) / (self.num_levels - 1))
        return tuple(int(math.floor(self.base_resolution * growth**level)) for level in range(self.num_levels))

    def dense_levels(self) -> Tuple[bool, ...]:
        """A level is dense (unhashed) when its (R+1)^3 vertices fit in the table."""
        return tuple((r + 1) ** 3 <= self.table_size for r in self.resolutions())


def corner_lookup(
    x: Float[Tensor, "N 3"], spec: HashGridSpec, with_grad: bool = False
) -> Tuple[Int[Tensor, "N L 8"], Float[Tensor, "N L 8"], Optional[Float[Tensor, "N L 8 3"]]]:
    """Flat table indices, trilinear weights and (optionally) their d/dx for positions in [0, 1]^3.

    The indices address a table flattened to [L * S, F] (level l occupies rows [l*S, (l+1)*S)).
    Computed once per sample; the result can be reused for any table with the same spec.
    """
    device = x.device
    x = x.clamp(0.0, 1.0)
    S = spec.table_size
    corners = _CORNERS.to(device)
    all_idx, all_w, all_dw = [], [], []
    for level, (res, dense) in enumerate(zip(spec.resolutions(), spec.dense_levels())):
        pos = x * res
        base = pos.floor().clamp(max=res - 1)
        frac = pos - base  # [N, 3]
        grid = base.long()[:, None, :] + corners[None]  # [N, 8, 3]
        if dense:
            stride = res + 1
            idx = grid[..., 0] + stride * (grid[..., 1] + stride * grid[..., 2])
        else:
            idx = (grid[..., 0] * _PRIMES[0]) ^ (grid[..., 1] * _PRIMES[1]) ^ (grid[..., 2] * _PRIMES[2])
            idx = idx % S
        all_idx.append(idx + level * S)
        # per-axis weights: (1 - f) for offset 0, f for offset 1
        per_axis = torch.where(corners[None].bool(), frac[:, None, :], 1.0 - frac[:, None, :])  # [N, 8, 3]
        all_w.append(per_axis.prod(-1))
        if with_grad:
            sign = corners.to(x.dtype) * 2.0 - 1.0  # d(per_axis)/dfrac: +1 or -1
            p0, p1, p2 = per_axis.unbind(-1)
            dw = torch.stack((sign[:, 0] * p1 * p2, p0 * sign[:, 1] * p2, p0 * p1 * sign[:, 2]), dim=-1)
            all_dw.append(dw * res)
    idx = torch.stack(all_idx, dim=1)
    w = torch.stack(all_w, dim=1)
    dw = torch.stack(all_dw, dim=1) if with_grad else None
    return idx, w, dw


def interpolate(
    table: Float[Tensor, "LS F"],
    idx: Int[Tensor, "N L 8"],
    w: Float[Tensor, "N L 8"],
    dw: Optional[Float[Tensor, "N L 8 3"]] = None,
) -> Tuple[Float[Tensor, "N LF"], Optional[Float[Tensor, "N LF 3"]]]:
    """Trilinear interpolation of a flat table; with ``dw``, also the Jacobian dz/dx."""
    n, num_levels, _ = idx.shape
    feats = F.embedding(idx.reshape(n, -1), table).view(n, num_levels, 8, -1)  # [N, L, 8, F]
    z = torch.einsum("nlcf,nlc->nlf", feats, w).reshape(n, -1)
    if dw is None:
        return z, None
    dz = torch.einsum("nlcf,nlcd->nlfd", feats, dw).reshape(n, -1, 3)
    return z, dz


class ExpertTables(nn.Module):
    """K hash-grid experts held as one batched parameter of shape [K, L, S, F]."""

    def __init__(self, num_experts: int, spec: HashGridSpec, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.spec = spec
        self.num_experts = num_experts
        shape = (num_experts, spec.num_levels, spec.table_size, spec.features_per_level)
        self.tables = nn.Parameter(torch.empty(shape).uniform_(-init_scale, init_scale))

    def mix(self, expert_index: Int[Tensor, "k"], gate: Float[Tensor, "k"]) -> Float[Tensor, "LS F"]:
        """sum_i g_i T_i over the selected experts, flattened to [L * S, F]. Cost O(k L S F), not O(N)."""
        chosen = self.tables.index_select(0, expert_index)
        mixed = torch.einsum("k,klsf->lsf", gate.to(chosen.dtype), chosen)
        return mixed.reshape(-1, self.spec.features_per_level)

    def expert(self, i: int) -> Float[Tensor, "LS F"]:
        return self.tables[i].reshape(-1, self.spec.features_per_level)
