"""The physical limit of a training step and of a render on this CPU: work per sample on paper, peaks measured.

Four parts, each usable alone (``scripts/benchmark_cpu_limits.py`` runs them all and writes docs/cpu_limits.md):

- :func:`gemm_peak` and :func:`memory_bandwidth`: what the machine does at best. float32 ``torch.mm`` on square
  matrices (512, 1024, 2048: 2 n^3 FLOPs each, best of several runs) and on the decoder's own shape
  ([32768, 64] x [64, 64], what one hidden layer of a step's 32768 samples is); streaming copies and adds (a
  256 MiB tensor, out of cache, and an 8 MiB one, the size of one [32768, 64] activation) and the random row
  gathers / scatter-adds of the hash lookup (``index_select`` / ``index_add_`` of 2-float rows from a
  32768 x 2 table, one level, and from 8 x 32768 x 2, all levels, as the lookup reads them).
- :func:`work_per_sample`: FLOPs and bytes per sample of the lookup (``corner_lookup`` + ``interpolate``), the
  geometry MLP (``TangentMLP``, with and without the 3 tangent passes of the analytic normal) and the colour
  head, forward and backward, counted from the code op by op. Two byte counts: ``bytes_min`` (what a fused
  kernel must move: inputs, gathered rows, outputs) and ``bytes_torch`` (every intermediate tensor the torch
  code materialises, written once and read once).
- :func:`step_work` / :func:`render_work`: those costs times the sample counts of one training step (1024 rays
  x 32 fine samples with colour, 8192 + 256 eikonal points with the gradient path, 65536 coarse-grid lookups,
  a 6912-point grid slab, Adam over 533,780 parameters) or of a measured render, and the roofline lower bound
  max(compute time at the GEMM peak, memory time at the measured bandwidths).
- :func:`measured_step` / :func:`measured_render`: the same step timed on a model built from ``NIDModelConfig``
  defaults, and the render path of a trained checkpoint, each with a ``torch.profiler`` breakdown grouped into
  lookup index math, gathers, interpolation, MLP matmuls, activations, elementwise, optimizer and other.

All counts are per sample (one field evaluation); a per-ray cost (the view-direction half of the colour head's
first layer) is divided over the ray's samples.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import json
import math
import os
import statistics
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch

from nid_nerf.fields.encoding import HashGridSpec

F32, I64 = 4, 8
"""bytes of a float32 and of an int64 (the lookup's indices are int64)"""
CORNERS = 8


# ----------------------------------------------------------------------------------------------
# measured peaks
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` inside the block (restored after)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def best_seconds(fn: Callable[[], object], repeats: int, min_seconds: float = 0.0) -> float:
    """Fastest of ``repeats`` timed calls after one warm-up (the best is the least disturbed by other jobs)."""
    fn()
    best = math.inf
    start = time.perf_counter()
    done = 0
    while done < repeats or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        done += 1
    return best


def gemm_peak(threads: int, sizes: Sequence[int] = (512, 1024, 2048), repeats: int = 5,
              mlp_rows: int = 32768, mlp_width: int = 64, min_seconds: float = 0.0) -> Dict[str, float]:
    """GFLOP/s of float32 ``torch.mm``: n x n times n x n (2 n^3 FLOPs) per size, and the decoder's shape.

    ``mlp`` is [mlp_rows, w] x [w, w] (2 rows w^2 FLOPs): a hidden layer of the geometry / colour MLP over
    one step's 32768 samples; it is what the decoder's matmuls can reach, ``peak`` (the best square size)
    what the cores can.
    """
    out: Dict[str, float] = {}
    gen = torch.Generator().manual_seed(0)
    with torch_threads(threads), torch.no_grad():
        for n in sizes:
            a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
            c = torch.empty(n, n)
            seconds = best_seconds(functools.partial(torch.mm, a, b, out=c), repeats, min_seconds)
            out[f"mm{n}"] = 2.0 * n**3 / seconds / 1e9
        x, w = torch.randn(mlp_rows, mlp_width, generator=gen), torch.randn(mlp_width, mlp_width, generator=gen)
        y = torch.empty(mlp_rows, mlp_width)
        seconds = best_seconds(functools.partial(torch.mm, x, w, out=y), repeats * 4, min_seconds)
        out["mlp"] = 2.0 * mlp_rows * mlp_width**2 / seconds / 1e9
    out["peak"] = max(v for k, v in out.items() if k.startswith("mm"))
    return out


def memory_bandwidth(threads: int, stream_mib: int = 256, cached_mib: int = 8, table_rows: int = 32768,
                     levels: int = 8, features: int = 2, num_indices: int = 1 << 21,
                     repeats: int = 5, min_seconds: float = 0.0) -> Dict[str, float]:
    """GB/s of streaming and of random row traffic, as the step's tensors and the hash lookup move data.

    - ``copy_dram`` / ``add_dram``: ``b.copy_(a)`` (2 x size bytes) and ``torch.add(a, b, out=c)`` (3 x size)
      on ``stream_mib`` MiB tensors, far larger than the caches: the DRAM stream rate;
    - ``copy_cache`` / ``add_cache``: the same on ``cached_mib`` MiB (one [32768, 64] float32 activation), which
      stays in L2/L3 between runs: the rate the step's intermediates can be streamed at;
    - ``gather_level`` / ``gather_all``: ``table.index_select(0, idx)`` of 2-float rows from a table_rows x 2 table
      (one hash level, 256 KiB) and a levels x table_rows x 2 one (all levels, 2 MiB), random indices: GB/s of
      gathered payload (8 bytes a row), what ``interpolate`` does; ``rows_*`` the same in rows/s (1e9);
    - ``scatter_all``: ``grad.index_add_(0, idx, rows)`` into the 2 MiB table, GB/s of payload added: the
      lookup's backward.
    """
    out: Dict[str, float] = {}
    gen = torch.Generator().manual_seed(0)
    with torch_threads(threads), torch.no_grad():
        for tag, mib in (("dram", stream_mib), ("cache", cached_mib)):
            n = mib * (1 << 20) // F32
            a, b, c = torch.rand(n, generator=gen), torch.rand(n, generator=gen), torch.empty(n)
            reps = repeats if tag == "dram" else repeats * 20
            out[f"copy_{tag}"] = 2 * n * F32 / best_seconds(functools.partial(c.copy_, a), reps, min_seconds) / 1e9
            add = functools.partial(torch.add, a, b, out=c)
            out[f"add_{tag}"] = 3 * n * F32 / best_seconds(add, reps, min_seconds) / 1e9
        for tag, rows in (("level", table_rows), ("all", levels * table_rows)):
            table = torch.rand(rows, features, generator=gen)
            idx = torch.randint(0, rows, (num_indices,), generator=gen)
            dst = torch.empty(num_indices, features)
            seconds = best_seconds(functools.partial(torch.index_select, table, 0, idx, out=dst), repeats, min_seconds)
            out[f"gather_{tag}"] = num_indices * features * F32 / seconds / 1e9
            out[f"rows_{tag}"] = num_indices / seconds / 1e9
            if tag == "all":
                grad = torch.zeros_like(table)
                seconds = best_seconds(functools.partial(grad.index_add_, 0, idx, dst), repeats, min_seconds)
                out["scatter_all"] = num_indices * features * F32 / seconds / 1e9
    return out


# ----------------------------------------------------------------------------------------------
# work on paper
# ----------------------------------------------------------------------------------------------
@dataclass
class Work:
    """Operations and bytes of some work (per sample, or summed over a step).

    ``flops`` counts every float operation (a multiply-add is 2, a transcendental 1, also counted in
    ``transcendentals``), ``matmul_flops`` the part in matrix products; ``int_ops`` the integer index math.
    ``bytes_min`` is what a fused kernel must move, ``bytes_torch`` what the torch code moves (each intermediate
    tensor written once and read once); ``gather_bytes`` (part of both) is the randomly addressed traffic of
    table rows (gathered rows, and the read + write of scatter-added ones), which runs at the measured gather /
    scatter rates, not the stream rate; ``scatter_bytes`` is the payload the scatter-adds add (half their traffic).
    """

    flops: float = 0.0
    matmul_flops: float = 0.0
    transcendentals: float = 0.0
    int_ops: float = 0.0
    bytes_min: float = 0.0
    bytes_torch: float = 0.0
    gather_bytes: float = 0.0
    scatter_bytes: float = 0.0

    def __add__(self, other: Work) -> Work:
        return Work(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, k: float) -> Work:
        return Work(*(getattr(self, f.name) * k for f in fields(self)))

    __rmul__ = __mul__


def _mm(rows: float, a: int, b: int, bias: bool = True) -> Work:
    """Per-sample cost of ``rows`` vectors times an a x b matrix (+ bias): 2ab FLOPs a row, in a, out b floats."""
    flops = rows * (2 * a * b + (b if bias else 0))
    return Work(flops=flops, matmul_flops=rows * 2 * a * b, bytes_min=0.0, bytes_torch=rows * (a + b) * F32 * 2)


def _ew(elements: float, flops_each: float = 1.0, transc_each: float = 0.0, inputs: int = 1) -> Work:
    """An elementwise op on ``elements`` floats (``inputs`` operands read, one output written, each once)."""
    return Work(flops=elements * (flops_each + transc_each), transcendentals=elements * transc_each,
                bytes_torch=elements * F32 * (inputs + 1))


def lookup_work(spec: HashGridSpec, with_grad: bool, backward: bool = False) -> Work:
    """Per-sample cost of ``corner_lookup`` + ``interpolate`` (``backward``: of their backward instead).

    Forward, per level, from the code: 12 FLOPs for pos = x res, floor, min, frac; 15 for the weights (1 - f,
    y z products, x yz products); int64 index math 3 (long) + 3 (cell + 1) + 6 (x coef) + 12 (dense: two adds
    over 4 then 8 corners) or 20 (hashed: two xors and an and) + 8 (level offset); 8 gathered rows of F floats;
    the einsum 2 K 8 F FLOPs (K = 1 weight row, 4 with the derivative rows: 32 FLOPs more per level for them).
    Backward (the positions carry no gradient): einsum backward 2 K 8 F FLOPs per level and ``index_add`` of
    8 rows (8 F adds, a random read-modify-write of 2 x 8 F x 4 bytes) into the table gradient.
    """
    L, Fd = spec.num_levels, spec.features_per_level
    dense = sum(spec.dense_levels())
    hashed = L - dense
    K = 4 if with_grad else 1
    rows = CORNERS * Fd * F32  # gathered bytes per level
    if backward:
        return Work(
            flops=L * (2 * K * CORNERS * Fd + CORNERS * Fd),
            matmul_flops=L * 2 * K * CORNERS * Fd,
            bytes_min=L * (K * Fd * F32 + 2 * rows),
            # grad_out read, grad_feats written + read by index_add, idx read, table rows read + written
            bytes_torch=L * (K * Fd * F32 + 2 * rows + CORNERS * I64 + 2 * rows),
            gather_bytes=L * 2 * rows, scatter_bytes=L * rows,
        )
    flops = 6 + L * (12 + 15) + L * 2 * K * CORNERS * Fd + (L * 32 if with_grad else 0)
    int_ops = L * (3 + 3 + 6 + 8) + dense * 12 + hashed * 20
    # materialised tensors per sample, bytes (each written once, read once): clamp 12; per level pos, floor,
    # min, frac 4 x 12; long, cell + 1 2 x 24; stack, x coef 2 x 48; dense 32 + 64 or hashed 32 + 64 + 64;
    # cat, + offset 2 x 64; 1 - f 12, stack 24, yz 16, xyz 32; gathered feats 8 F 4; einsum out K F 4
    per_level = 4 * 12 + 2 * 24 + 2 * 48 + 2 * 64 + 12 + 24 + 16 + 32 + rows + K * Fd * F32
    written = 12 + L * per_level + dense * 96 + hashed * 160
    if with_grad:
        written += L * (32 + 16 + 32 + 16 + 32 + 4 * 32)  # derivative weight products and their stack
    # index_select also reads the int64 indices (8 per level) and the einsum the K x 8 weights
    bytes_torch = 2 * written + L * (CORNERS * I64 + K * CORNERS * F32)
    return Work(flops=flops, matmul_flops=L * 2 * K * CORNERS * Fd, int_ops=int_ops,
                bytes_min=3 * F32 + L * rows + K * L * Fd * F32, bytes_torch=bytes_torch, gather_bytes=L * rows)


def geometry_work(din_grid: int, pe_freqs: int, hidden: Sequence[int], out_dim: int, tangents: bool,
                  backward: bool = False) -> Work:
    """Per-sample cost of the positional encoding, ``TangentMLP`` and the SDF prior (``backward``: its backward).

    Forward: per layer a x b, 2ab + b FLOPs; softplus(beta) on each hidden unit (beta x, exp, log1p, / beta:
    3 FLOPs + 2 transcendentals); PE 3 (1 + 2 p) features (per frequency 3 scalings + 3 sin + 3 cos); the sphere
    prior about 10 FLOPs + a sqrt. With tangents (the analytic normal): the 3 tangent rows go through every
    layer (3 x 2ab), each hidden layer also takes sigmoid(beta pre) (1 FLOP + 1 transcendental) and multiplies
    the 3 tangent rows by it (3 FLOPs); the PE Jacobian (2 per feature per frequency, 3 x D mask product) and
    the chain rule to world units (3 x din) add the tangent inputs.
    Backward = 2 x forward (grad input + grad weight for the products; the derivative of every elementwise op
    once, its transcendental recomputed), and twice the forward's materialised bytes (saved tensors read,
    gradients written).
    """
    pe_dim = 3 * (1 + 2 * pe_freqs)
    dims = [din_grid + pe_dim, *hidden, out_dim]
    w = Work()
    w = w + Work(flops=pe_freqs * 3 * 3 + 10 + 1, transcendentals=pe_freqs * 6 + 1,
                 bytes_torch=(pe_dim + 6) * F32 * 2 + din_grid * F32 * 2)  # PE, cat with the grid features
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        w = w + _mm(1, a, b)
        if tangents:
            w = w + _mm(3, a, b, bias=False)
        if i < len(dims) - 2:
            w = w + _ew(b, 3, 2)
            if tangents:
                w = w + _ew(b, 1, 1) + _ew(3 * b, 1, inputs=2)
    if tangents:
        w = w + _ew(3 * pe_dim, 2) + _ew(3 * dims[0], 1, inputs=2) + _ew(3, 4, 1)  # PE Jacobian, chain rule, normal
    # a fused kernel reads the grid features (+ 3 position floats, + 3 rows of their derivatives) and writes out
    w.bytes_min = (din_grid + 3) * F32 * (4 if tangents else 1) + out_dim * F32 * (4 if tangents else 1)
    if backward:
        return Work(flops=2 * w.flops, matmul_flops=2 * w.matmul_flops, transcendentals=w.transcendentals,
                    bytes_min=w.bytes_min + sum(dims[1:-1]) * F32 * (4 if tangents else 1),
                    bytes_torch=2 * w.bytes_torch)
    return w


def colour_work(geo_feat_dim: int, sh_dim: int, hidden: Sequence[int], samples_per_ray: float,
                backward: bool = False) -> Work:
    """Per-sample cost of ``ColorHead`` (and the SH encoding), with the per-ray parts divided over ``samples_per_ray``.

    Forward: the sample half of the first layer (geo_feat_dim x h0), the ray half (sh_dim x h0, once per ray),
    their broadcast add, ReLU after every hidden layer, hidden products, the last layer to 3 and a sigmoid;
    the SH of the direction about 3 FLOPs per component, once per ray. Backward = 2 x forward, as for the MLP
    (the per-ray half included: its weight gradient sums over the ray's samples).
    """
    h = list(hidden)
    w = _mm(1, geo_feat_dim, h[0]) + _mm(1.0 / samples_per_ray, sh_dim, h[0], bias=False)
    w = w + Work(flops=3 * sh_dim / samples_per_ray, bytes_torch=sh_dim * F32 * 2 / samples_per_ray)
    w = w + _ew(h[0], 1, inputs=2)
    for a, b in zip(h[:-1], h[1:]):
        w = w + _ew(a) + _mm(1, a, b)
    w = w + _ew(h[-1]) + _mm(1, h[-1], 3) + _ew(3, 1, 1)
    w.bytes_min = (geo_feat_dim + 3) * F32
    if backward:
        return Work(flops=2 * w.flops, matmul_flops=2 * w.matmul_flops, transcendentals=w.transcendentals,
                    bytes_min=w.bytes_min + sum(h) * F32, bytes_torch=2 * w.bytes_torch)
    return w


def coarse_work(grid_resolution: int) -> Work:
    """Per coarse sample: the point (12 FLOPs), ``grid_sample``'s trilinear lookup in the cached G^3 grid (about 15
    FLOPs of coordinates and fractions, 8 corner weights of 2 products, 15 FLOPs to interpolate, 8 one-float
    gathers, about 20 int ops of corner addresses) and the VolSDF weight (about 12 FLOPs and an exp)."""
    del grid_resolution  # the cost does not depend on it while the grid fits in cache (48^3 x 4 B = 442 KB)
    return Work(flops=12 + 15 + 16 + 15 + 13, transcendentals=1, int_ops=20, bytes_min=3 * F32 + CORNERS * F32 + F32,
                bytes_torch=(3 * 4 + 3 + 1 + 6) * F32 * 2 + CORNERS * F32, gather_bytes=CORNERS * F32)


def composite_work(backward: bool = False) -> Work:
    """Per fine sample: importance sampling from the coarse pdf (a 6-step search in 65 edges, ~10 FLOPs to
    interpolate), the VolSDF weight (Laplace CDF: ~12 FLOPs + exp), transmittance and the weighted sums (~10
    FLOPs); backward 2 x (no sampling)."""
    if backward:
        return Work(flops=2 * 23, transcendentals=1, bytes_torch=2 * 10 * F32 * 2)
    return Work(flops=10 + 13 + 10, transcendentals=1, int_ops=6, bytes_min=3 * F32, bytes_torch=14 * F32 * 2)


@dataclass
class Arch:
    """The sizes the per-sample costs depend on (``NIDModelConfig`` fields of the same names; build it with
    :meth:`of` so the defaults live in one place)."""

    num_levels: int
    log2_table_size: int
    features_per_level: int
    base_resolution: int
    max_resolution: int
    geo_hidden_dim: int
    geo_num_layers: int
    geo_feat_dim: int
    color_hidden_dim: int
    color_num_layers: int
    grid_resolution: int
    pe_freqs: int = 2
    sh_levels: int = 4

    @classmethod
    def of(cls, model_config=None, **changes) -> Arch:
        """From a NIDModelConfig (default: its defaults), with ``changes`` applied (pe_freqs and sh_levels are
        NIDField's defaults, not config fields)."""
        if model_config is None:
            from nid_nerf.models.nid_model import NIDModelConfig

            model_config = NIDModelConfig()
        values = {f.name: getattr(model_config, f.name) for f in fields(cls) if hasattr(model_config, f.name)}
        return cls(**{**values, **changes})

    @property
    def spec(self) -> HashGridSpec:
        return HashGridSpec(self.num_levels, self.log2_table_size, self.features_per_level, self.base_resolution,
                            self.max_resolution)


def work_per_sample(spec: HashGridSpec, model_config, samples_per_ray: float = 32.0) -> Dict[str, Work]:
    """Per-sample Work of every part, forward (``*_fwd``) and backward (``*_bwd``).

    ``lookup`` / ``lookup_grad``: the hash-grid lookup without / with the 3 derivative rows; ``geometry`` /
    ``geometry_tangent``: the geometry MLP without / with the 3 tangent passes; ``colour``: the colour head
    (per-ray parts over ``samples_per_ray``); ``coarse``: one cached-grid sample; ``composite``: sampling
    and compositing of one fine sample. ``model_config`` supplies the decoder sizes (a NIDModelConfig or
    :class:`Arch`); ``spec`` the grid.
    """
    arch = model_config if isinstance(model_config, Arch) else Arch.of(model_config)
    din = spec.output_dim
    geo_hidden = (arch.geo_hidden_dim,) * arch.geo_num_layers
    col_hidden = (arch.color_hidden_dim,) * arch.color_num_layers
    out = {}
    for bwd, tag in ((False, "fwd"), (True, "bwd")):
        out[f"lookup_{tag}"] = lookup_work(spec, False, bwd)
        out[f"lookup_grad_{tag}"] = lookup_work(spec, True, bwd)
        out[f"geometry_{tag}"] = geometry_work(din, arch.pe_freqs, geo_hidden, 1 + arch.geo_feat_dim, False, bwd)
        out[f"geometry_tangent_{tag}"] = geometry_work(din, arch.pe_freqs, geo_hidden, 1 + arch.geo_feat_dim,
                                                       True, bwd)
        out[f"colour_{tag}"] = colour_work(arch.geo_feat_dim, arch.sh_levels**2, col_hidden, samples_per_ray, bwd)
        out[f"composite_{tag}"] = composite_work(bwd)
    out["coarse_fwd"] = coarse_work(arch.grid_resolution)
    return out


@dataclass
class StepCounts:
    """How many of each evaluation one training step makes (``NIDModel.get_outputs`` and its callbacks)."""

    rays: int = 1024
    fine: int = 32
    coarse: int = 64
    eikonal_fraction: float = 0.25
    eikonal_points: int = 256
    grid_resolution: int = 48
    grid_update_interval: int = 16

    @property
    def fine_samples(self) -> int:
        return self.rays * self.fine

    @property
    def eikonal(self) -> int:
        return int(self.eikonal_fraction * self.fine_samples) + self.eikonal_points

    @property
    def grid_slab(self) -> int:
        g = self.grid_resolution
        return g * g * (g // self.grid_update_interval)


def param_counts(arch: Arch) -> Dict[str, int]:
    """Trainable parameters: the table (L S F) and the decoder (geometry + colour weights and biases)."""
    table = arch.num_levels * 2**arch.log2_table_size * arch.features_per_level
    dims = [arch.num_levels * arch.features_per_level + 3 * (1 + 2 * arch.pe_freqs),
            *(arch.geo_hidden_dim,) * arch.geo_num_layers, 1 + arch.geo_feat_dim]
    geo = sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    h = [arch.color_hidden_dim] * arch.color_num_layers
    col = arch.geo_feat_dim * h[0] + h[0] + arch.sh_levels**2 * h[0]
    col += sum(a * b + b for a, b in zip(h[:-1], h[1:])) + h[-1] * 3 + 3
    return {"table": table, "decoder": geo + col}


def step_work(arch: Arch, counts: StepCounts) -> Dict[str, Work]:
    """One training step's Work by part: the per-sample costs times the step's counts, plus per-step work.

    Per step besides the samples: the mixed table (K = 1: a [1, 1] x [1, L S F] product, forward and backward,
    2 x 3 x 2 MiB), the table gradient's zero fill (2 MiB written, ``zero_grad`` sets it to None) and Adam
    (per parameter ~12 FLOPs + a sqrt; p, g, m, v read and p, m, v written: 28 bytes).
    """
    w = work_per_sample(arch.spec, arch, counts.fine)
    n, e = counts.fine_samples, counts.eikonal
    params = param_counts(arch)
    p = params["table"] + params["decoder"]
    table_bytes = params["table"] * F32
    return {
        "lookup": n * (w["lookup_fwd"] + w["lookup_bwd"]) + e * (w["lookup_grad_fwd"] + w["lookup_grad_bwd"])
        + counts.grid_slab * w["lookup_fwd"],
        "geometry MLP": n * (w["geometry_fwd"] + w["geometry_bwd"])
        + e * (w["geometry_tangent_fwd"] + w["geometry_tangent_bwd"]) + counts.grid_slab * w["geometry_fwd"],
        "colour head": n * (w["colour_fwd"] + w["colour_bwd"]),
        "coarse grid + compositing": counts.rays * counts.coarse * w["coarse_fwd"]
        + n * (w["composite_fwd"] + w["composite_bwd"]),
        "table mix, grad fill, Adam": Work(flops=2 * params["table"] * 2 + 13 * p, transcendentals=p,
                                           bytes_min=p * 28 + table_bytes, bytes_torch=6 * table_bytes
                                           + table_bytes + p * 28),
    }


def render_work(arch: Arch, calls: Dict[str, float]) -> Dict[str, Work]:
    """A render's Work from its counted evaluations (see :func:`count_evaluations`)."""
    spr = calls["colour_samples"] / max(calls["colour_rays"], 1.0)
    w = work_per_sample(arch.spec, arch, spr)
    return {
        "lookup": calls["sdf"] * w["lookup_fwd"] + calls["grad"] * w["lookup_grad_fwd"],
        "geometry MLP": calls["sdf"] * w["geometry_fwd"] + calls["grad"] * w["geometry_tangent_fwd"],
        "colour head": calls["colour_samples"] * w["colour_fwd"],
        "coarse grid + compositing": calls["coarse"] * w["coarse_fwd"] + calls["fine"] * w["composite_fwd"],
    }


def total(parts: Dict[str, Work]) -> Work:
    return functools.reduce(lambda a, b: a + b, parts.values(), Work())


@dataclass
class Peaks:
    """The rates a lower bound divides by (GFLOP/s, GB/s)."""

    gflops: float
    stream_gbs: float
    gather_gbs: float
    scatter_gbs: float

    def bound(self, work: Work, fused: bool) -> Dict[str, float]:
        """Roofline seconds: compute (all FLOPs and int ops at the GEMM peak) and memory (streamed bytes at the
        stream rate, gathered rows at the gather rate, scatter-added payload at the scatter rate); ``bound`` is
        their max."""
        compute = (work.flops + work.int_ops) / (self.gflops * 1e9)
        streamed = (work.bytes_min if fused else work.bytes_torch) - work.gather_bytes
        gathered = work.gather_bytes - 2 * work.scatter_bytes
        memory = (max(streamed, 0.0) / (self.stream_gbs * 1e9) + gathered / (self.gather_gbs * 1e9)
                  + work.scatter_bytes / (self.scatter_gbs * 1e9))
        return {"compute": compute, "memory": memory, "bound": max(compute, memory)}


# ----------------------------------------------------------------------------------------------
# measured: a training step and a render, with profiles
# ----------------------------------------------------------------------------------------------
CATEGORIES = ("fused lookup (C++ kernel)", "lookup index math", "gathers / scatter-adds",
              "lookup interpolation (einsum)", "MLP matmuls", "activations (softplus, sigmoid, relu)", "elementwise",
              "coarse grid (grid_sample)", "optimizer", "other")
_SCOPES = {"nid::corner_lookup": "lookup index math", "nid::interpolate": "lookup interpolation (einsum)",
           "nid::mlp": "elementwise", "nid::coarse": "coarse grid (grid_sample)", "nid::optimizer": "optimizer"}
_GATHER_OPS = ("index_select", "index_add", "embedding", "gather", "scatter", "aten::index", "index_put", "take")
_MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear", "aten::baddbmm")
_ACT_OPS = ("softplus", "sigmoid", "relu", "threshold")
_ELEMENTWISE = ("add", "sub", "mul", "div", "exp", "log", "neg", "pow", "sqrt", "sin", "cos", "where", "clamp",
                "minimum", "maximum", "abs", "sum", "mean", "norm", "cumsum", "cumprod", "copy_", "fill_", "zero_",
                "cat", "stack", "to", "_to_copy", "floor", "bitwise", "ones_like", "zeros", "empty", "rsub", "lerp",
                "addcmul", "addcdiv", "searchsorted", "sort", "max", "min", "eq", "gt", "lt", "ge", "le", "ne",
                "reciprocal", "square", "linalg_vector_norm", "expand", "contiguous", "clone", "randint", "rand")


def _ancestors(event) -> Iterator[str]:
    parent = getattr(event, "cpu_parent", None)
    while parent is not None:
        yield parent.name
        parent = getattr(parent, "cpu_parent", None)


def categorize(name: str, ancestors: Sequence[str]) -> str:
    """The profile group of an op: by backward node or by the ``nid::*`` scope it ran in, then by op name."""
    backward = next((a.split(":")[-1].strip() for a in ancestors if a.startswith("autograd::engine::evaluate")), None)
    scope = next((a for a in ancestors if a in _SCOPES), None)
    if name.startswith("nid_fused::softplus"):
        return "activations (softplus, sigmoid, relu)"
    if name.startswith("nid_fused::"):
        return "fused lookup (C++ kernel)"
    if any(g in name for g in _GATHER_OPS) or (backward and "IndexSelect" in backward):
        return "gathers / scatter-adds"
    if "grid_sampler" in name or scope == "nid::coarse":
        return "coarse grid (grid_sample)"
    if scope == "nid::optimizer" or "_foreach" in name or "adam" in name.lower():
        return "optimizer"
    if scope == "nid::corner_lookup":
        return "lookup index math"
    if scope == "nid::interpolate" or (backward and backward.startswith("Bmm")) or name in ("aten::bmm",):
        return "lookup interpolation (einsum)"
    if any(name == m for m in _MATMUL_OPS):
        return "MLP matmuls"
    if any(a in name for a in _ACT_OPS) or (backward and any(a in backward.lower() for a in _ACT_OPS)):
        return "activations (softplus, sigmoid, relu)"
    short = name.split("::")[-1]
    if any(short == e or short.startswith(e + "_") or short.startswith(e) for e in _ELEMENTWISE):
        return "elementwise"
    return "other"


def profile_groups(prof) -> Tuple[Dict[str, float], List[Tuple[str, float, int]]]:
    """Self CPU seconds by group and the top ops (name, self seconds, calls) of a ``torch.profiler`` run."""
    groups: Dict[str, float] = defaultdict(float)
    ops: Dict[str, List[float]] = defaultdict(lambda: [0.0, 0])
    for event in prof.events():
        self_us = event.self_cpu_time_total
        if self_us <= 0:
            continue
        name = event.name
        groups[categorize(name, list(_ancestors(event)))] += self_us * 1e-6
        ops[name][0] += self_us * 1e-6
        ops[name][1] += 1
    top = sorted(((k, v[0], int(v[1])) for k, v in ops.items()), key=lambda r: -r[1])
    return dict(groups), top


@contextlib.contextmanager
def nid_scopes() -> Iterator[None]:
    """``record_function`` scopes around the lookup's two halves, the MLPs and the cached-grid lookup.

    They let the profile split ``aten::mul`` and friends between index math and decoder (forward only: the
    backward is grouped by its autograd node). The functions are wrapped in their importing modules' globals
    for the duration of the block; nothing on disk changes.
    """
    import nid_nerf.fields.nid_field as nf
    import nid_nerf.models.nid_model as nm
    from nid_nerf.fields.mlp import ColorHead, TangentMLP

    def scoped(fn, name):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with torch.autograd.profiler.record_function(name):
                return fn(*args, **kwargs)
        return wrapper

    saved = [(nf, "corner_lookup"), (nf, "interpolate"), (nm, "grid_lookup"), (TangentMLP, "forward"),
             (ColorHead, "forward")]
    originals = [getattr(o, n) for o, n in saved]
    names = ["nid::corner_lookup", "nid::interpolate", "nid::coarse", "nid::mlp", "nid::mlp"]
    for (owner, attr), fn, name in zip(saved, originals, names):
        setattr(owner, attr, scoped(fn, name))
    try:
        yield
    finally:
        for (owner, attr), fn in zip(saved, originals):
            setattr(owner, attr, fn)


def synthetic_step(rays: int = 1024, seed: int = 0, **config) -> Tuple[Callable[[int], float], object]:
    """(step(i) -> loss, model): a full training step of a NIDModel built from NIDModelConfig defaults.

    The step is what ``NIDPipeline`` + ``Trainer`` do per iteration minus data loading: the grid-slab refresh
    callback, ``model.get_outputs`` on ``rays`` rays (origins on a sphere of radius 3, aimed at the box's
    central half, so every ray hits the [-1, 1]^3 box), ``get_training_terms`` on a random RGBA batch, backward
    of the summed losses, the method's Adam groups and ``zero_grad``. The counts do not depend on what the
    field has learned (fixed 64 coarse + 32 fine samples a ray), so an untrained model times the same work.
    """
    from nerfstudio.cameras.rays import RayBundle

    from nid_nerf.benchmarks.field_cost import build_model, make_optimizers

    torch.manual_seed(seed)
    model = build_model(1, {}, implementation="torch", **config)
    model.train()
    opt = make_optimizers(model)
    gen = torch.Generator().manual_seed(seed)
    origins = torch.nn.functional.normalize(torch.randn(rays, 3, generator=gen), dim=-1) * 3.0
    directions = torch.nn.functional.normalize(torch.rand(rays, 3, generator=gen) - 0.5 - origins, dim=-1)
    bundle = RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(rays, 1),
                       camera_indices=torch.zeros(rays, 1, dtype=torch.long))
    batch = {"image": torch.rand(rays, 4, generator=gen)}
    parts = max(1, model.config.grid_update_interval)

    def step(i: int) -> float:
        model.update_coarse_grid(0, i % parts, parts)
        outputs = model.get_outputs(bundle)
        terms = model.get_training_terms(outputs, batch)
        loss = functools.reduce(torch.add, terms.losses.values())
        loss.backward()
        with torch.autograd.profiler.record_function("nid::optimizer"):
            opt.optimizer_step_all()
            opt.zero_grad_all()
        return float(loss.detach())

    return step, model


def measured_step(threads: int, steps: int = 10, warmup: int = 3, profile_steps: int = 3,
                  rays: int = 1024) -> Dict[str, object]:
    """Median seconds of a synthetic training step (:func:`synthetic_step`) and its profile by group."""
    with torch_threads(threads):
        step, model = synthetic_step(rays)
        for i in range(warmup):
            step(i)
        seconds = []
        for i in range(steps):
            t0 = time.perf_counter()
            step(warmup + i)
            seconds.append(time.perf_counter() - t0)
        groups, top = {}, []
        if profile_steps > 0:
            with nid_scopes(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for i in range(profile_steps):
                    step(i)
            groups, top = profile_groups(prof)
    arch = Arch.of(model.config)
    return {"seconds": statistics.median(seconds), "all_seconds": seconds, "profile_steps": profile_steps,
            "groups": {k: v / max(profile_steps, 1) for k, v in groups.items()},
            "top": [(n, s / profile_steps, c // profile_steps) for n, s, c in top[:15]], "arch": asdict(arch),
            "counts": asdict(StepCounts(rays=rays, fine=model.config.num_fine_samples,
                                        coarse=model.config.num_coarse_samples,
                                        eikonal_fraction=model.config.eikonal_sample_fraction,
                                        eikonal_points=model.config.eikonal_points,
                                        grid_resolution=model.config.grid_resolution,
                                        grid_update_interval=model.config.grid_update_interval))}


@contextlib.contextmanager
def count_evaluations(model) -> Iterator[Dict[str, float]]:
    """Counts of the field's evaluations inside the block: SDF-only and gradient lookups, coloured samples, coarse
    and fine samples (instance attributes wrapped for the block, restored after)."""
    import nid_nerf.models.nid_model as nm

    calls: Dict[str, float] = defaultdict(float)
    field_ = model.field
    geometry_forward, radiance, grid_lookup = field_.geometry_forward, field_.radiance, nm.grid_lookup
    render = model._render

    def counted_geometry(positions, scene_index=None, with_grad=True):
        calls["grad" if with_grad else "sdf"] += positions.shape[0]
        return geometry_forward(positions, scene_index, with_grad)

    def counted_radiance(geo_feats, directions):
        calls["colour_samples"] += geo_feats.shape[0] * geo_feats.shape[1]
        calls["colour_rays"] += geo_feats.shape[0]
        return radiance(geo_feats, directions)

    def counted_grid(grid, x01):
        calls["coarse"] += x01.shape[0]
        return grid_lookup(grid, x01)

    def counted_render(origins, *args, **kwargs):
        num_fine = model.config.num_fine_samples if model.training else model.config.eval_num_fine_samples
        calls["fine"] += origins.shape[0] * num_fine
        return render(origins, *args, **kwargs)

    field_.geometry_forward, field_.radiance, nm.grid_lookup = counted_geometry, counted_radiance, counted_grid
    model._render = counted_render
    try:
        yield calls
    finally:
        del field_.geometry_forward, field_.radiance, model._render
        nm.grid_lookup = grid_lookup


def measured_render(config_path: Path, threads: int, modes: Sequence[str] = ("surface", "volume"),
                    repeats: int = 3, profile: bool = True) -> Dict[str, object]:
    """Seconds of ``get_outputs_for_camera`` on the first eval image of a checkpoint per ``eval_render`` mode, its
    evaluation counts and its profile (median of ``repeats`` after a warm-up)."""
    from nid_nerf.benchmarks.render_speed import load_for_eval

    with torch_threads(threads):
        _, pipeline = load_for_eval(config_path)
        model = pipeline.model
        camera = pipeline.datamanager.eval_dataset.cameras[0:1].to(pipeline.device)
        rays = int(camera.width[0, 0]) * int(camera.height[0, 0])
        original = model.config.eval_render
        out: Dict[str, object] = {"config": str(config_path), "rays": rays, "arch": asdict(Arch.of(model.config)),
                                  "modes": {}}
        try:
            for mode in modes:
                model.config.eval_render = mode
                with torch.no_grad():
                    with count_evaluations(model) as calls:
                        model.get_outputs_for_camera(camera)
                    seconds = []
                    for _ in range(repeats):
                        t0 = time.perf_counter()
                        model.get_outputs_for_camera(camera)
                        seconds.append(time.perf_counter() - t0)
                    groups, top = {}, []
                    if profile:
                        cpu = [torch.profiler.ProfilerActivity.CPU]
                        with nid_scopes(), torch.profiler.profile(activities=cpu) as p:
                            model.get_outputs_for_camera(camera)
                        groups, top = profile_groups(p)
                out["modes"][mode] = {"seconds": statistics.median(seconds), "all_seconds": seconds,
                                      "calls": dict(calls), "groups": groups, "top": top[:12]}
        finally:
            model.config.eval_render = original
    return out


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------
def _g(x: float) -> str:
    """Compact number: 1.23e+06-style only for very large or small values."""
    if x == 0:
        return "0"
    if abs(x) >= 1e6 or abs(x) < 1e-2:
        return f"{x:.3g}"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.2f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def best_peaks(data: Dict) -> Tuple[Peaks, Dict[str, str]]:
    """The best rate measured at any thread count, per resource, and the thread count that gave it.

    The bound is of the machine, so it takes the fastest GEMM (square sizes), the faster of the cache / DRAM
    copies (a step's intermediates, 4-8 MiB each, fit this machine's L2 / L3), and the gather / scatter rates
    of the 8-level table (the lookup's access pattern); on a shared machine the 2-thread runs can come out
    below the 1-thread ones, in which case the 1-thread rate is the best this run saw.
    """
    def best(fn) -> Tuple[float, str]:
        return max((fn(t), t) for t in data["gemm"])

    picks = {
        "gflops": best(lambda t: data["gemm"][t]["peak"]),
        "stream_gbs": best(lambda t: max(data["memory"][t]["copy_cache"], data["memory"][t]["copy_dram"])),
        "gather_gbs": best(lambda t: data["memory"][t]["gather_all"]),
        "scatter_gbs": best(lambda t: data["memory"][t]["scatter_all"]),
    }
    return Peaks(**{k: v[0] for k, v in picks.items()}), {k: v[1] for k, v in picks.items()}


def markdown(data: Dict) -> str:
    """docs/cpu_limits.md from the results of :func:`run` (fills ``data["summary"]`` for :func:`conclusion`)."""
    lines: List[str] = []
    add = lines.append
    load, load_end = data["loadavg"], data["loadavg_end"]
    threads = sorted(data["gemm"], key=int)
    add("# CPU limits: work per sample on paper, this machine's peaks, and how far the step and the render are")
    add("")
    add(f"Reproduce: `{data['command']}` (about {data['elapsed'] / 60:.1f} minutes; `OMP_NUM_THREADS` "
        f"{'unset' if data['omp_num_threads'] is None else '= ' + data['omp_num_threads']}, torch threads set per "
        f"measurement). Written {data['date']} on {data['machine']}. `os.getloadavg()`: {load[0]:.2f}, "
        f"{load[1]:.2f}, {load[2]:.2f} (1, 5, 15 min) at the start, {load_end[0]:.2f}, {load_end[1]:.2f}, "
        f"{load_end[2]:.2f} at the end.")
    if max(load[0], load_end[0]) > 1.0:
        add("")
        add(f"**The machine was shared while this ran** (load average above 1 on {os.cpu_count()} cores). The peaks "
            "are best-of-several runs (each repeated for at least a second), so they are close to what the cores "
            "give when the other jobs pause; the step and render times are medians and carry the other jobs' "
            "load, the 2-thread ones most (with the other cores busy, one of the two OpenMP threads keeps waiting "
            "for the other). The ratios to the limit are therefore upper estimates.")
    add("")
    add("Sources: every peak and time is measured by `nid_nerf/benchmarks/cpu_limits.py` in this run; the work per "
        "sample is counted on paper from the code (`corner_lookup` and `interpolate` in "
        "`nid_nerf/fields/encoding.py`, `TangentMLP` and `ColorHead` in `nid_nerf/fields/mlp.py`, `grid_lookup` and "
        "the VolSDF compositing) at the `NIDModelConfig` defaults; the training step is a model built from those "
        "defaults on synthetic rays (`synthetic_step`: the step's work does not depend on what the field learned); "
        f"the render is the trained checkpoint `{data.get('render_config') or 'n/a'}`.")
    # -------- peaks
    add("")
    add("## 1. Measured peaks")
    add("")
    add("float32 `torch.mm` in GFLOP/s (2 n^3 FLOPs; `mlp` is [32768, 64] x [64, 64], one hidden layer over a step's "
        "samples) and memory rates in GB/s (copies count read + write, a + b two reads and a write; the gathers "
        "count the 8-byte rows gathered or added, `index_select` / `index_add_` with 2^21 random indices):")
    add("")
    add("| measure | " + " | ".join(f"{t} thread{'s' if t != '1' else ''}" for t in threads) + " |")
    add("|---|" + "---|" * len(threads))
    for key in [k for k in data["gemm"][threads[0]] if k.startswith("mm")] + ["mlp"]:
        add(f"| GEMM {key} (GFLOP/s) | " + " | ".join(f"{data['gemm'][t][key]:.1f}" for t in threads) + " |")
    labels = {"copy_dram": "copy 256 MiB, DRAM", "add_dram": "a + b 256 MiB, DRAM",
              "copy_cache": "copy 8 MiB, cache", "add_cache": "a + b 8 MiB, cache",
              "gather_level": "gather, 32768 x 2 table (one level)", "gather_all": "gather, 8 x 32768 x 2 table",
              "scatter_all": "index_add, 8 x 32768 x 2 table"}
    for key, label in labels.items():
        add(f"| {label} (GB/s) | " + " | ".join(f"{data['memory'][t][key]:.2f}" for t in threads) + " |")
    add("| gathered rows, 8 x 32768 x 2 (1e9 rows/s) | "
        + " | ".join(f"{data['memory'][t]['rows_all']:.3f}" for t in threads) + " |")
    pk, at = best_peaks(data)
    add("")
    add(f"The bound below uses the best rate of each kind: **{pk.gflops:.0f} GFLOP/s** (square GEMM, {at['gflops']} "
        f"thread(s)), **{pk.stream_gbs:.1f} GB/s** streamed ({at['stream_gbs']} thread(s); the faster of the cache "
        f"and DRAM copies, since a step's intermediates of 4-8 MiB stay in this machine's L2 / L3), "
        f"**{pk.gather_gbs:.2f} GB/s** gathered and **{pk.scatter_gbs:.2f} GB/s** scatter-added (random 8-byte rows "
        "over the 2 MiB of all levels, what the lookup and its backward do). A random 8-byte row costs about "
        f"{pk.stream_gbs / pk.gather_gbs:.0f}x the time of streaming 8 bytes: the gather rate, not the DRAM rate, is "
        "the lookup's memory limit (it is torch's `index_select` rate, so it already includes that kernel's "
        "per-row overhead; hand-written gathers could do better). The decoder-shaped GEMM reaches "
        f"{max(data['gemm'][t]['mlp'] for t in threads) / pk.gflops:.0%} of the square peak.")
    # -------- work per sample
    arch = Arch(**data["arch"])
    w = work_per_sample(arch.spec, arch)
    add("")
    add("## 2. Work per sample, on paper")
    add("")
    add(f"Defaults: {arch.num_levels} levels x 2^{arch.log2_table_size} entries x {arch.features_per_level} "
        f"features ({sum(arch.spec.dense_levels())} dense; resolutions "
        f"{', '.join(map(str, arch.spec.resolutions()))}); geometry MLP "
        f"{arch.num_levels * arch.features_per_level + 3 * (1 + 2 * arch.pe_freqs)} -> {arch.geo_hidden_dim} x "
        f"{arch.geo_num_layers} -> {1 + arch.geo_feat_dim} (softplus, beta 100); colour head "
        f"[{arch.geo_feat_dim} + SH {arch.sh_levels**2}] -> {arch.color_hidden_dim} x {arch.color_num_layers} -> 3 "
        "(its per-ray SH half divided over 32 samples). FLOPs include the transcendentals (1 each, also listed); "
        "int ops are the hash index math; `bytes min` is what a fused kernel must move, `bytes torch` what the "
        "torch code materialises (each intermediate written and read once); `random` is the gathered / "
        "scatter-added traffic (part of both). Backward is 2x the forward's FLOPs (grad input + grad weight) and "
        "2x its materialised bytes; the lookup's backward is the einsum's and the `index_add` into the table "
        "gradient (the positions carry no gradient).")
    add("")
    add("| part | FLOPs | of which matmul | transc. | int ops | bytes min | bytes torch | random bytes |")
    add("|---|---|---|---|---|---|---|---|")
    names = {"lookup": "lookup", "lookup_grad": "lookup + 3 derivative rows", "geometry": "geometry MLP",
             "geometry_tangent": "geometry MLP + 3 tangent passes", "colour": "colour head",
             "composite": "sampling + compositing (fine sample)", "coarse": "coarse-grid sample"}
    for key, label in names.items():
        for tag in ("fwd", "bwd"):
            if f"{key}_{tag}" in w:
                x = w[f"{key}_{tag}"]
                add(f"| {label}, {'forward' if tag == 'fwd' else 'backward'} | {_g(x.flops)} | {_g(x.matmul_flops)} "
                    f"| {_g(x.transcendentals)} | {_g(x.int_ops)} | {_g(x.bytes_min)} | {_g(x.bytes_torch)} | "
                    f"{_g(x.gather_bytes)} |")
    dec, look = w["geometry_fwd"] + w["colour_fwd"], w["lookup_fwd"]
    add("")
    add(f"A coloured sample's forward is {_g(look.flops + look.int_ops)} ops of lookup against {_g(dec.flops)} FLOPs "
        f"of decoder, but {_g(look.gather_bytes)} random bytes ({arch.num_levels * CORNERS} rows) against none. "
        f"Arithmetic intensity, as torch materialises it: decoder {dec.flops / dec.bytes_torch:.1f} FLOP/byte, "
        f"lookup {(look.flops + look.int_ops) / look.bytes_torch:.2f} op/byte; at {pk.gflops:.0f} GFLOP/s and "
        f"{pk.stream_gbs:.0f} GB/s the ridge is at {pk.gflops / pk.stream_gbs:.1f} FLOP/byte, so torch's lookup is "
        "memory-bound and even the decoder sits below the ridge once every activation is a tensor of its own.")
    # -------- step
    step = data["step"]
    first = step[threads[0]]
    counts = StepCounts(**first["counts"])
    parts = step_work(arch, counts)
    add("")
    add("## 3. Training step: lower bound against measured")
    add("")
    add(f"One step: {counts.rays} rays x {counts.fine} fine samples = {counts.fine_samples:,} field evaluations with "
        f"colour (forward + backward); {counts.eikonal:,} eikonal points ({counts.eikonal_fraction:g} of the "
        f"samples + {counts.eikonal_points}) with the gradient path (forward + backward); "
        f"{counts.rays * counts.coarse:,} coarse-grid samples ({counts.coarse} a ray, `grid_sample`, no gradient); "
        f"a {counts.grid_slab:,}-point SDF slab of the cached grid (forward only); Adam over "
        f"{sum(param_counts(arch).values()):,} parameters. The bound of a part is max(compute, memory) at the rates "
        "of section 1; the parts run one after another, so the step's bound is their sum.")
    add("")
    add("| part | GFLOP (+ int ops) | MB torch | MB random | bound, fused | bound, as torch moves it |")
    add("|---|---|---|---|---|---|")
    tot_f = tot_t = 0.0
    for name, x in parts.items():
        bf, bt = pk.bound(x, True), pk.bound(x, False)
        tot_f, tot_t = tot_f + bf["bound"], tot_t + bt["bound"]
        add(f"| {name} | {(x.flops + x.int_ops) / 1e9:.3f} | {x.bytes_torch / 1e6:.1f} | {x.gather_bytes / 1e6:.1f} | "
            f"{_ms(bf['bound'])} ({'compute' if bf['compute'] >= bf['memory'] else 'memory'}) | "
            f"{_ms(bt['bound'])} ({'compute' if bt['compute'] >= bt['memory'] else 'memory'}) |")
    add(f"| **total** | {sum(x.flops + x.int_ops for x in parts.values()) / 1e9:.3f} | "
        f"{sum(x.bytes_torch for x in parts.values()) / 1e6:.1f} | "
        f"{sum(x.gather_bytes for x in parts.values()) / 1e6:.1f} | **{_ms(tot_f)}** | **{_ms(tot_t)}** |")
    add("")
    add("| threads | measured step (median) | fastest step | x fused bound | x torch bound |")
    add("|---|---|---|---|---|")
    summary: Dict = {"step_bound_fused": tot_f, "step_bound_torch": tot_t, "step": {}, "render": {},
                     "matmul_flops": sum(x.matmul_flops for x in parts.values())
                     - parts["lookup"].matmul_flops}
    for t in threads:
        m = step[t]
        add(f"| {t} | **{_ms(m['seconds'])}** | {_ms(min(m['all_seconds']))} | {m['seconds'] / tot_f:.0f}x | "
            f"{m['seconds'] / tot_t:.1f}x |")
        summary["step"][t] = m["seconds"]
    add("")
    add(f"Medians of {len(first['all_seconds'])} steps after 3 warm-ups. The matmuls alone, at the decoder-shaped "
        f"GEMM rate ({max(data['gemm'][t]['mlp'] for t in threads):.0f} GFLOP/s), would take "
        f"{_ms(sum(x.matmul_flops for x in parts.values()) / (max(data['gemm'][t]['mlp'] for t in threads) * 1e9))}.")
    prof_t = data["profile_threads"]
    _profile_table(lines, step[prof_t]["groups"], step[prof_t]["top"], step[prof_t]["seconds"],
                   f"training step at {prof_t} thread(s), mean of {step[prof_t]['profile_steps']} steps")
    # -------- render
    render = data.get("render")
    if render:
        rfirst = render[threads[0]]
        rarch = Arch(**rfirst["arch"])
        add("")
        add("## 4. Render path: lower bound against measured")
        add("")
        add(f"`get_outputs_for_camera` on the first eval image of `{data['render_config']}` ({rfirst['rays']:,} rays; "
            "every pixel counts, as in a viewer frame), under `torch.no_grad`. The evaluations were counted by "
            "wrapping the field's `geometry_forward` / `radiance` and `grid_lookup` for one render: all pixels get "
            "64 coarse-grid samples; `surface` gives the rays the cached grid brackets 2 + 2 SDF evaluations and one "
            "gradient + colour, the rest (silhouettes) 12 volume samples + one gradient, like every active ray of "
            "`volume`. Times and bounds are per million rays.")
        add("")
        add("| eval_render | coarse samples | SDF-only evals | gradient evals | coloured samples | bound, fused | "
            "bound, torch | threads | measured | x fused | x torch | rays/s |")
        add("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for mode in rfirst["modes"]:
            c = rfirst["modes"][mode]["calls"]
            rparts = render_work(rarch, {k: c.get(k, 0.0) for k in ("sdf", "grad", "colour_samples", "colour_rays",
                                                                    "coarse", "fine")})
            scale = 1e6 / rfirst["rays"]
            bf = sum(pk.bound(x, True)["bound"] for x in rparts.values()) * scale
            bt = sum(pk.bound(x, False)["bound"] for x in rparts.values()) * scale
            summary["render"][mode] = {"bound_fused": bf, "bound_torch": bt, "per_mray": {}}
            for t in threads:
                r = render[t]["modes"][mode]
                ms = r["seconds"] * scale
                summary["render"][mode]["per_mray"][t] = ms
                add(f"| {mode} | {c.get('coarse', 0):,.0f} | {c.get('sdf', 0):,.0f} | {c.get('grad', 0):,.0f} | "
                    f"{c.get('colour_samples', 0):,.0f} | {_ms(bf)} | {_ms(bt)} | {t} | **{_ms(ms)}** | "
                    f"{ms / bf:.0f}x | {ms / bt:.1f}x | {rfirst['rays'] / r['seconds']:,.0f} |")
        for mode, r in render[prof_t]["modes"].items():
            _profile_table(lines, r["groups"], r["top"], r["seconds"], f"render, {mode}, at {prof_t} thread(s)")
    data["summary"] = summary
    add("")
    add("## 5. How far from the limit, and where the rest goes")
    add("")
    add(data.get("conclusion", ""))
    return "\n".join(lines) + "\n"


def _profile_table(lines: List[str], groups: Dict[str, float], top, seconds: float, what: str) -> None:
    add = lines.append
    total_self = sum(groups.values())
    add("")
    add(f"Profile of the {what} (`torch.profiler`, self CPU time by group; {_ms(total_self)} profiled against "
        f"{_ms(seconds)} unprofiled, the difference being the profiler's overhead and the load of the moment). "
        "Forward ops are grouped by the `nid::*` scope they ran in (`nid_scopes`), backward ops by their autograd "
        "node, the rest by op name:")
    add("")
    add("| group | self CPU | share |")
    add("|---|---|---|")
    for name in sorted(groups, key=lambda k: -groups[k]):
        add(f"| {name} | {_ms(groups[name])} | {groups[name] / total_self:.0%} |")
    add("")
    add("Top ops: " + "; ".join(f"`{n}` {_ms(s)} ({c} calls)" for n, s, c in top[:10]) + ".")


def conclusion(data: Dict) -> str:
    """A few sentences on the gap, from the numbers (bounds, measured times, the largest profile groups)."""
    s = data["summary"]
    pt = data["profile_threads"]
    g = data["step"][pt]["groups"]
    tot = sum(g.values()) or 1.0
    big = sorted(g, key=lambda k: -g[k])
    share = {k: g[k] / tot for k in g}
    best_t = min(s["step"], key=lambda t: s["step"][t])
    step_s = s["step"][best_t]
    fused_share = share.get("fused lookup (C++ kernel)", 0.0)
    lookup_share = fused_share + sum(share.get(k, 0.0) for k in ("lookup index math", "gathers / scatter-adds",
                                                                 "lookup interpolation (einsum)"))
    text = [
        f"**Training step.** The fastest measured step ({best_t} thread(s)) takes {_ms(step_s)}; the work on paper "
        f"needs {_ms(s['step_bound_fused'])} if every part were one fused kernel at this machine's peaks, and "
        f"{_ms(s['step_bound_torch'])} with the intermediates the torch code materialises: the step is "
        f"{step_s / s['step_bound_fused']:.0f}x from the physical limit and {step_s / s['step_bound_torch']:.1f}x "
        "from the limit of its own memory traffic.",
        f"The profile ({pt} thread(s)) puts {share.get('MLP matmuls', 0.0):.0%} in the MLP matmuls (they run at "
        f"{s['matmul_flops'] / max(g.get('MLP matmuls', 0.0), 1e-12) / 1e9:.0f} GFLOP/s there, against "
        f"{data['gemm'][pt]['peak']:.0f} for a square GEMM at {pt} thread(s)), and {lookup_share:.0%} in the "
        f"lookup (the fused C++ kernel {fused_share:.0%}, index math "
        f"{share.get('lookup index math', 0.0):.0%}, gathers and scatter-adds "
        f"{share.get('gathers / scatter-adds', 0.0):.0%}, the einsum "
        f"{share.get('lookup interpolation (einsum)', 0.0):.0%}); elementwise glue "
        f"{share.get('elementwise', 0.0):.0%}, activations "
        f"{share.get('activations (softplus, sigmoid, relu)', 0.0):.0%}, optimizer {share.get('optimizer', 0.0):.0%}, "
        f"other {share.get('other', 0.0):.0%} (largest groups: {', '.join(big[:3])}).",
        ("The lookup and its backward run as one C++ pass each (`nid_nerf/fields/fused_lookup.cpp`, the default on "
         "the CPU): the index math, weights and gathered corners stay in registers, so the lookup's row of the "
         "'as torch moves it' bound no longer applies to it. The geometry MLP's softplus and its slope are one "
         "vectorised C++ pass too (`nid_nerf/fields/fused_softplus.cpp`). The rest of the gap is the decoder's "
         "glue: the activations and their backward are still separate passes over [N, 64] tensors, the tangent "
         "rows and the compositing are elementwise ops of their own, and every op pays a dispatch and allocation "
         "(`compile_field` fuses part of that)."
         if fused_share > 0 else
         "The rest of the gap is what the fused bound leaves out: each of the 25-35 index and weight ops of "
         "`corner_lookup` writes and reads an [N, L, 8]- or [N, L, 3]-sized int64 / float tensor where a fused "
         "kernel would keep them in registers, the einsum runs as a batched matmul of 8 x 2 matrices (far from any "
         "GEMM peak), the activations and their backward are separate passes over [N, 64] tensors, and every op "
         "pays a dispatch and allocation. Closing it needs fused kernels (the lookup as one gather-interpolate "
         "pass, the activations inside the matmuls), not a different torch formulation."),
    ]
    for mode, r in s["render"].items():
        t = min(r["per_mray"], key=lambda k: r["per_mray"][k])
        text.append(f"**Render ({mode}).** {_ms(r['per_mray'][t])} per million rays ({t} thread(s)) against "
                    f"{_ms(r['bound_fused'])} fused and {_ms(r['bound_torch'])} as torch moves it: "
                    f"{r['per_mray'][t] / r['bound_fused']:.0f}x and {r['per_mray'][t] / r['bound_torch']:.1f}x.")
    return " ".join(text[:1]) + "\n\n" + " ".join(text[1:3]) + "\n\n" + " ".join(text[3:])


def run(args) -> Dict:
    """Measure everything the report needs: peaks, the step and the render at each of ``args.threads``."""
    from nid_nerf.benchmarks.report import machine_summary

    start = time.perf_counter()
    threads = [str(t) for t in args.threads]
    data: Dict = {"command": args.command, "date": datetime.datetime.now().isoformat(timespec="minutes"),
                  "loadavg": os.getloadavg(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                  "machine": machine_summary(), "profile_threads": str(args.profile_threads),
                  "gemm": {}, "memory": {}, "step": {}, "render": {}}
    quick = args.quick
    min_s = 0.0 if quick else args.min_seconds
    for t in threads:
        print(f"peaks at {t} thread(s) ...", flush=True)
        data["gemm"][t] = gemm_peak(int(t), sizes=(128, 256) if quick else (512, 1024, 2048),
                                    repeats=2 if quick else 5, mlp_rows=2048 if quick else 32768, min_seconds=min_s)
        data["memory"][t] = memory_bandwidth(int(t), stream_mib=8 if quick else 256, cached_mib=1 if quick else 8,
                                             num_indices=1 << 16 if quick else 1 << 21, repeats=2 if quick else 5,
                                             min_seconds=min_s)
    for t in threads:
        print(f"training step at {t} thread(s) ...", flush=True)
        profile = 0 if t != data["profile_threads"] else (1 if quick else 3)
        data["step"][t] = measured_step(int(t), steps=2 if quick else args.steps, warmup=1 if quick else 3,
                                        profile_steps=profile, rays=128 if quick else 1024)
    data["arch"] = data["step"][threads[0]]["arch"]
    if args.render_config is not None and Path(args.render_config).is_file():
        data["render_config"] = str(args.render_config)
        for t in threads:
            print(f"render at {t} thread(s) ...", flush=True)
            data["render"][t] = measured_render(Path(args.render_config), int(t), repeats=1 if quick else 3,
                                                profile=t == data["profile_threads"])
    else:
        data["render"] = None
    data["loadavg_end"] = os.getloadavg()
    data["elapsed"] = time.perf_counter() - start
    return data


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("docs/cpu_limits.md"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="torch thread counts of the peaks, the step and the render")
    parser.add_argument("--profile-threads", type=int, default=1,
                        help="thread count the profiles are taken at (1: the least disturbed on a shared machine)")
    parser.add_argument("--steps", type=int, default=10, help="timed training steps (median reported)")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="each peak measurement repeats for at least this long (its best run is kept)")
    parser.add_argument("--render-config", type=Path, default=Path("outputs/speed/spot200/nid-field/base/config.yml"),
                        help="trained checkpoint whose render path is measured (skipped when missing)")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw numbers here")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run (under a minute)")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    from nid_nerf.benchmarks.report import command_line
    from nid_nerf.errors import NIDInputError, install_excepthook
    from nid_nerf.io import write_text

    install_excepthook()
    args = build_parser().parse_args(argv)
    if args.profile_threads not in args.threads:
        raise NIDInputError(f"--profile-threads {args.profile_threads} is not one of --threads {args.threads}")
    args.command = command_line("benchmark_cpu_limits.py", argv)
    data = run(args)
    markdown(data)  # fills data["summary"], which the conclusion reads
    data["conclusion"] = conclusion(data)
    write_text(args.output, markdown(data))
    if args.json is not None:
        write_text(args.json, json.dumps(data, indent=1, default=str) + "\n")
    print(data["conclusion"])
    print(f"wrote {args.output}")
