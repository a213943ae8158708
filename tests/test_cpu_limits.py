"""The on-paper work counts of nid_nerf/benchmarks/cpu_limits.py against hand counts, and its micro-benchmarks.

The tiny architecture: 1 hashed level (resolution 4, 2^6 entries: 5^3 = 125 vertices do not fit, so it is
hashed), 2 features, no PE frequencies (PE = x, 3 features), geometry 5 -> 4 -> 2, colour [1 + SH 1] -> 4 -> 3,
one sample a ray. Everything here runs in a couple of seconds.
"""

from __future__ import annotations

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from nid_nerf.benchmarks import cpu_limits as cl
from nid_nerf.fields.mlp import ColorHead, TangentMLP

TINY = cl.Arch(num_levels=1, log2_table_size=6, features_per_level=2, base_resolution=4, max_resolution=4,
               geo_hidden_dim=4, geo_num_layers=1, geo_feat_dim=1, color_hidden_dim=4, color_num_layers=1,
               grid_resolution=48, pe_freqs=0, sh_levels=1)


def test_tiny_spec_is_one_hashed_level():
    spec = TINY.spec
    assert spec.resolutions() == (4,) and spec.dense_levels() == (False,)


def test_lookup_counts_by_hand():
    w = cl.work_per_sample(TINY.spec, TINY, samples_per_ray=1)
    fwd = w["lookup_fwd"]
    # 6 (clamp) + 12 (pos, floor, min, frac) + 15 (weights) + 2 x 1 row x 8 corners x 2 features (einsum)
    assert fwd.flops == 6 + 12 + 15 + 32
    assert fwd.matmul_flops == 32
    # long 3, cell + 1 3, x coef 6, hashed xor / xor / and 4 + 8 + 8, level offset 8
    assert fwd.int_ops == 3 + 3 + 6 + 20 + 8
    assert fwd.gather_bytes == 8 * 2 * 4  # 8 corner rows of 2 float32
    assert fwd.bytes_min == 12 + 64 + 8  # position in, rows gathered, 2 features out
    grad = w["lookup_grad_fwd"]
    # 4 weight rows in the einsum (2 x 4 x 8 x 2 = 128) and 32 FLOPs of derivative weight products
    assert grad.flops == 6 + 12 + 15 + 128 + 32
    assert grad.bytes_min == 12 + 64 + 4 * 2 * 4
    bwd = w["lookup_bwd"]
    assert bwd.flops == 32 + 16  # einsum backward + 16 adds of index_add
    assert bwd.scatter_bytes == 64 and bwd.gather_bytes == 128  # read + write of the 8 rows


def test_geometry_counts_by_hand():
    w = cl.work_per_sample(TINY.spec, TINY, samples_per_ray=1)
    fwd = w["geometry_fwd"]
    # layers 5 -> 4 -> 2: 2 (20 + 8) = 56 matmul, 6 bias, softplus 4 x (3 + 2), PE and prior 11
    assert fwd.matmul_flops == 56
    assert fwd.flops == 56 + 6 + 20 + 11
    tan = w["geometry_tangent_fwd"]
    # + 3 tangent passes (168), sigmoid 4 x 2, tangent product 12, PE Jacobian 9 x 2, chain rule 15, normal 5 x 3
    assert tan.matmul_flops == 56 + 168
    assert tan.flops == 93 + 168 + 8 + 12 + 18 + 15 + 15
    assert w["geometry_bwd"].flops == 2 * fwd.flops and w["geometry_tangent_bwd"].matmul_flops == 2 * 224


def test_colour_counts_by_hand():
    w = cl.work_per_sample(TINY.spec, TINY, samples_per_ray=1)
    fwd = w["colour_fwd"]
    # sample half 1 -> 4 (8 + 4 bias), ray half 1 -> 4 (8), SH 3, add 4, relu 4, 4 -> 3 (24 + 3), sigmoid 3 x 2
    assert fwd.matmul_flops == 8 + 8 + 24
    assert fwd.flops == 12 + 8 + 3 + 4 + 4 + 27 + 6
    assert w["colour_bwd"].matmul_flops == 80


def test_matmul_flops_match_torch_flop_counter():
    """The MLP matmul counts agree with torch's own FLOP counter on the real modules (default sizes)."""
    arch = cl.Arch.of()
    w = cl.work_per_sample(arch.spec, arch, samples_per_ray=8)
    n, rays = 64, 8
    din = arch.spec.output_dim + 3 * (1 + 2 * arch.pe_freqs)
    geo = TangentMLP(din, (arch.geo_hidden_dim,) * arch.geo_num_layers, 1 + arch.geo_feat_dim)
    col = ColorHead(arch.geo_feat_dim, arch.sh_levels**2, (arch.color_hidden_dim,) * arch.color_num_layers)
    with torch.no_grad():
        for tangents, key in ((None, "geometry_fwd"), (torch.randn(3, n, din), "geometry_tangent_fwd")):
            with FlopCounterMode(display=False) as counter:
                geo(torch.randn(n, din), tangents)
            assert counter.get_total_flops() == n * w[key].matmul_flops
        with FlopCounterMode(display=False) as counter:
            col(torch.randn(rays, n // rays, arch.geo_feat_dim), torch.randn(rays, arch.sh_levels**2))
        assert counter.get_total_flops() == n * w["colour_fwd"].matmul_flops


def test_param_counts_match_the_field():
    from nid_nerf.fields.nid_field import NIDField

    arch = cl.Arch.of()
    field = NIDField(torch.tensor([[-1.0] * 3, [1.0] * 3]), arch.spec)
    counts = cl.param_counts(arch)
    assert counts["table"] == field.experts.tables.numel()
    assert counts["decoder"] == sum(p.numel() for p in field.decoder_parameters())


def test_step_counts_and_bound():
    counts = cl.StepCounts()
    assert (counts.fine_samples, counts.eikonal, counts.grid_slab) == (32768, 8448, 48 * 48 * 3)
    parts = cl.step_work(cl.Arch.of(), counts)
    assert all(x.flops > 0 and x.bytes_torch >= x.bytes_min > 0 for x in parts.values())
    peaks = cl.Peaks(gflops=1.0, stream_gbs=1.0, gather_gbs=0.5, scatter_gbs=0.25)
    b = peaks.bound(cl.Work(flops=2e9, bytes_min=3e9, bytes_torch=5e9, gather_bytes=2e9, scatter_bytes=0.5e9), True)
    # compute 2 s; memory: 1 GB streamed at 1 + 1 GB gathered at 0.5 + 0.5 GB scattered at 0.25
    assert math.isclose(b["compute"], 2.0) and math.isclose(b["memory"], 1 + 2 + 2) and b["bound"] == b["memory"]


def test_categorize():
    assert cl.categorize("aten::bitwise_xor", ["nid::corner_lookup"]) == "lookup index math"
    assert cl.categorize("nid_fused::lookup_backward",
                         ["autograd::engine::evaluate_function: _FusedLookupBackward"]) == "fused lookup (C++ kernel)"
    assert cl.categorize("aten::index_select", ["nid::interpolate"]) == "gathers / scatter-adds"
    assert cl.categorize("aten::mm", ["autograd::engine::evaluate_function: MmBackward0"]) == "MLP matmuls"
    assert cl.categorize("aten::bmm", ["aten::einsum", "nid::interpolate"]) == "lookup interpolation (einsum)"
    assert cl.categorize("aten::softplus", ["nid::mlp"]) == "activations (softplus, sigmoid, relu)"
    assert cl.categorize("nid_fused::softplus_forward", ["nid::mlp"]) == "activations (softplus, sigmoid, relu)"
    assert cl.categorize("aten::mul", ["autograd::engine::evaluate_function: _FusedSoftplusBackward"]) == (
        "activations (softplus, sigmoid, relu)")
    assert cl.categorize("aten::sqrt", ["Optimizer.step#Adam.step", "nid::optimizer"]) == "optimizer"


def test_micro_benchmarks_are_positive_and_finite():
    gemm = cl.gemm_peak(1, sizes=(32,), repeats=1, mlp_rows=64, mlp_width=8)
    mem = cl.memory_bandwidth(1, stream_mib=1, cached_mib=1, table_rows=64, levels=2, num_indices=1024, repeats=1)
    for value in list(gemm.values()) + list(mem.values()):
        assert math.isfinite(value) and value > 0
    assert set(mem) >= {"copy_dram", "gather_level", "gather_all", "scatter_all"}
