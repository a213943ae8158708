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
from typing import Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn

_PRIMES = (1, 2654435761, 805459861)
_PRIMES_INT32 = tuple(p - 2**32 if p >= 2**31 else p for p in _PRIMES)
"""The hash primes as the int32 values with the same low 32 bits (2654435761 does not fit int32)."""
INDEX_DTYPE = torch.int32
"""dtype of the hash index math in :func:`corner_lookup`. int64 gives the same indices, slower; it is kept as the
"before" variant of ``nid_nerf.benchmarks.cpu_speed``."""


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
) -> Tuple[Int[Tensor, "N L 8"], Float[Tensor, "N L K 8"]]:
    """Flat table indices and trilinear weights for positions in [0, 1]^3.

    The weights have K = 1 row (the corner weights) or, with ``with_grad``, K = 4 rows: the corner
    weights and their derivatives along x, y and z.

    The indices address a table flattened to [L * S, F] (level l occupies rows [l*S, (l+1)*S)).
    All levels are handled at once; the result can be reused for any table with the same spec
    (so the cost of gating K experts is paid once per step, not per sample).
    """
    n = x.shape[0]
    device, dtype = x.device, x.dtype
    S = spec.table_size
    resolutions = spec.resolutions()
    num_dense = sum(spec.dense_levels())
    res = torch.tensor(resolutions, device=device, dtype=dtype)
    pos = x.clamp(0.0, 1.0)[:, None, :] * res[None, :, None]  # [N, L, 3]
    base = torch.minimum(pos.floor(), (res - 1)[None, :, None])
    frac = pos - base
    # int32 index math: half the memory traffic of int64 and about 2x faster (index math was 32% of a training
    # step, docs/cpu_limits.md). Exact: products wrap modulo 2^32 and only the low log2(S) <= 24 bits of a hashed
    # index are kept, which the wrap leaves alone; dense indices and level offsets stay below L * S < 2^31.
    cell = base.to(INDEX_DTYPE)
    # per-axis index terms for the two corner offsets: dense levels add x + s*y + s^2*z, hashed levels xor primes
    coef = torch.tensor(
        [[1, r + 1, (r + 1) ** 2] if level < num_dense else list(_PRIMES_INT32 if INDEX_DTYPE == torch.int32
                                                                  else _PRIMES) for level, r in enumerate(resolutions)],
        device=device, dtype=INDEX_DTYPE,
    )
    terms = torch.stack((cell, cell + 1), -1) * coef[None, :, :, None]  # [N, L, 3, 2]
    tx, ty, tz = terms[:, :, 0, :, None, None], terms[:, :, 1, None, :, None], terms[:, :, 2, None, None, :]
    dense = (tx[:, :num_dense] + ty[:, :num_dense] + tz[:, :num_dense])
    hashed = (tx[:, num_dense:] ^ ty[:, num_dense:] ^ tz[:, num_dense:]) & (S - 1)
    idx = torch.cat((dense, hashed), 1).reshape(n, -1, 8)
    idx = idx + (torch.arange(len(resolutions), device=device, dtype=INDEX_DTYPE) * S)[None, :, None]
    # per-axis weights (1 - f, f); corner weight is their product
    wa = torch.stack((1.0 - frac, frac), -1)  # [N, L, 3, 2]
    wx, wy, wz = wa[:, :, 0, :, None, None], wa[:, :, 1, None, :, None], wa[:, :, 2, None, None, :]
    wyz = wy * wz
    if not with_grad:
        return idx, (wx * wyz).reshape(n, -1, 1, 8)
    step = torch.stack((-res, res), -1)  # d(1 - f)/dx and df/dx, per level
    sx = step[None, :, :, None, None]
    sy = step[None, :, None, :, None]
    sz = step[None, :, None, None, :]
    weights = torch.stack((wx * wyz, sx * wyz, wx * sy * wz, wx * wy * sz), 2)  # [N, L, 4, 2, 2, 2]
    return idx, weights.reshape(n, -1, 4, 8)


def interpolate(
    table: Float[Tensor, "LS F"], idx: Int[Tensor, "N L 8"], weights: Float[Tensor, "N L K 8"]
) -> Tuple[Float[Tensor, "N LF"], Optional[Float[Tensor, "3 N LF"]]]:
    """Trilinear interpolation of a flat table; with derivative weights (K = 4), also dz/dx (direction-major)."""
    n, num_levels, _ = idx.shape
    # index_select: its backward (index_add) is several times faster on CPU than embedding's
    feats = table.index_select(0, idx.reshape(-1)).view(n, num_levels, 8, -1)  # [N, L, 8, F]
    out = torch.einsum("nlkc,nlcf->knlf", weights, feats)  # [K, N, L, F]
    z = out[0].reshape(n, -1)
    if weights.shape[2] == 1:
        return z, None
    return z, out[1:].reshape(3, n, -1)


def level_window(num_levels: int, progress: float, start_levels: float) -> Float[Tensor, " L"]:
    """Weights of the hash-grid levels for a coarse-to-fine schedule: levels below ``start_levels`` are on from the
    start, the rest come in one after another, each ramping linearly from 0 to 1, until all are on at ``progress``
    1 (as in BARF's frequency window and Neuralangelo's level schedule).

    With few views the fine levels can fit each photo's pixels with a wrong surface before the coarse levels have
    found the right one; holding them back lets the coarse levels settle first.

    >>> level_window(4, 0.0, 1).tolist(), level_window(4, 0.5, 1).tolist(), level_window(4, 1.0, 1).tolist()
    ([1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.5, 0.0], [1.0, 1.0, 1.0, 1.0])
    """
    alpha = start_levels + (num_levels - start_levels) * min(max(progress, 0.0), 1.0)
    return (alpha - torch.arange(num_levels, dtype=torch.float32)).clamp(0.0, 1.0)


class ExpertTables(nn.Module):
    """K hash-grid experts held as one batched parameter of shape [K, L, S, F]."""

    def __init__(self, num_experts: int, spec: HashGridSpec, init_scale: float = 1e-4) -> None:
        super().__init__()
        self.spec = spec
        self.num_experts = num_experts
        shape = (num_experts, spec.num_levels, spec.table_size, spec.features_per_level)
        self.tables = nn.Parameter(torch.empty(shape).uniform_(-init_scale, init_scale))

    def mix(self, expert_index: Int[Tensor, " k"], gate: Float[Tensor, " k"]) -> Float[Tensor, "LS F"]:
        """sum_i g_i T_i over the selected experts, flattened to [L * S, F]. Cost O(k L S F), not O(N)."""
        return self.mix_many([(expert_index, gate)])[0]

    def mix_many(self, gates: Sequence[Tuple[Int[Tensor, " k"], Float[Tensor, " k"]]]) -> Float[Tensor, "B LS F"]:
        """One mixed table per (expert_index, gate) pair, as a single gather and one matrix product.

        The experts any pair uses are gathered once (one index_select, so its backward fills one
        table-sized gradient, however many scenes a step draws) and the B mixes are one
        [B, U] x [U, L*S*F] product over those U experts. Cost O(B U L S F) with U <= K.
        """
        index = torch.cat([i for i, _ in gates])
        values = torch.cat([g for _, g in gates])
        used, column = torch.unique(index, return_inverse=True)
        rows = torch.repeat_interleave(
            torch.arange(len(gates), device=index.device),
            torch.tensor([i.numel() for i, _ in gates], device=index.device),
        )
        dtype = self.tables.dtype
        mixing = values.new_zeros((len(gates), used.numel()), dtype=dtype).index_put(
            (rows, column), values.to(dtype), accumulate=True
        )
        chosen = self.tables if used.numel() == self.num_experts else self.tables.index_select(0, used)
        mixed = mixing @ chosen.reshape(used.numel(), -1)
        return mixed.view(len(gates), -1, self.spec.features_per_level)

    def expert(self, i: int) -> Float[Tensor, "LS F"]:
        return self.tables[i].reshape(-1, self.spec.features_per_level)
