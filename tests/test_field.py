"""The hash-grid experts, the mixed-table lookup, the gate and the analytic SDF gradient."""

import itertools
import math

import pytest
import torch

from nid_nerf.fields.encoding import ExpertTables, HashGridSpec, corner_lookup, interpolate
from nid_nerf.fields.gate import CodeGate, load_balance_loss, top_k_gate
from nid_nerf.fields.nid_field import NIDField
from nid_nerf.model_components.rendering import composite_weights, laplace_density, ray_aabb, sample_pdf

SPEC = HashGridSpec(num_levels=4, log2_table_size=10, features_per_level=2, base_resolution=4, max_resolution=32)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_mixed_table_lookup_equals_weighted_sum_of_expert_lookups():
    experts = ExpertTables(num_experts=8, spec=SPEC, init_scale=1.0)
    x = torch.rand(500, 3)
    idx, weights = corner_lookup(x, SPEC, with_grad=True)
    expert_index = torch.tensor([1, 4, 6])
    gate = torch.tensor([0.7, -0.2, 1.3])
    mixed_z, mixed_dz = interpolate(experts.mix(expert_index, gate), idx, weights)
    per_expert = [interpolate(experts.expert(int(i)), idx, weights) for i in expert_index]
    sum_z = sum(g * z for g, (z, _) in zip(gate, per_expert))
    sum_dz = sum(g * dz for g, (_, dz) in zip(gate, per_expert))
    assert torch.allclose(mixed_z, sum_z, atol=1e-5)
    assert torch.allclose(mixed_dz, sum_dz, atol=1e-4 * float(sum_dz.abs().max()))


def test_dense_gate_mix_equals_explicit_sum():
    experts = ExpertTables(num_experts=4, spec=SPEC, init_scale=1.0)
    gate = torch.tensor([0.1, 0.2, -0.3, 0.4])
    mixed = experts.mix(torch.arange(4), gate)
    explicit = sum(g * experts.expert(i) for i, g in enumerate(gate))
    assert torch.allclose(mixed, explicit, atol=1e-6)


def _hand_trilinear(table, spec, p):
    """Trilinear interpolation written out corner by corner, with the hash written out per level."""
    out = []
    for level, (res, dense) in enumerate(zip(spec.resolutions(), spec.dense_levels())):
        pos = [min(max(float(c), 0.0), 1.0) * res for c in p]
        base = [min(math.floor(c), res - 1) for c in pos]
        frac = [c - b for c, b in zip(pos, base)]
        acc = torch.zeros(spec.features_per_level)
        for ox, oy, oz in itertools.product((0, 1), repeat=3):
            gx, gy, gz = base[0] + ox, base[1] + oy, base[2] + oz
            if dense:
                index = gx + (res + 1) * gy + (res + 1) ** 2 * gz
            else:
                index = (gx * 1 ^ gy * 2654435761 ^ gz * 805459861) % spec.table_size
            w = (frac[0] if ox else 1 - frac[0]) * (frac[1] if oy else 1 - frac[1]) * (frac[2] if oz else 1 - frac[2])
            acc += w * table[level * spec.table_size + index]
        out.append(acc)
    return torch.cat(out)


@pytest.mark.parametrize("spec", [SPEC, HashGridSpec(8, 15, 2, 16, 256)], ids=["small", "defaults"])
def test_torch_hash_lookup_matches_hand_computed_trilinear(spec):
    # the hash is computed in int32 (products wrap modulo 2^32); the oracle uses Python's unbounded ints
    assert any(spec.dense_levels()) and not all(spec.dense_levels()), "test needs dense and hashed levels"
    table = torch.randn(spec.num_levels * spec.table_size, spec.features_per_level)
    points = torch.rand(20, 3)
    points[0] = torch.tensor([0.0, 0.0, 0.0])
    points[1] = torch.tensor([1.0, 1.0, 1.0])
    idx, weights = corner_lookup(points, spec)
    z, _ = interpolate(table, idx, weights)
    for i, p in enumerate(points):
        # float32 fractions at resolution 256 differ from the oracle's float64 ones by ~1e-5 of a cell
        assert torch.allclose(z[i], _hand_trilinear(table, spec, p.tolist()), atol=2e-4)


def test_lookup_jacobian_matches_finite_differences():
    table = torch.randn(SPEC.num_levels * SPEC.table_size, SPEC.features_per_level, dtype=torch.float64)
    x = torch.rand(50, 3, dtype=torch.float64) * 0.9 + 0.05
    idx, weights = corner_lookup(x, SPEC, with_grad=True)
    _, dz = interpolate(table, idx, weights)
    eps = 1e-7
    for d in range(3):
        shift = torch.zeros(3, dtype=torch.float64)
        shift[d] = eps
        zp, _ = interpolate(table, *corner_lookup(x + shift, SPEC))
        zm, _ = interpolate(table, *corner_lookup(x - shift, SPEC))
        assert torch.allclose(dz[d], (zp - zm) / (2 * eps), atol=1e-4)


def test_field_sdf_gradient_matches_autograd():
    field = NIDField(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), SPEC, num_experts=2, top_k=2, num_scenes=1)
    torch.nn.init.uniform_(field.experts.tables, -0.5, 0.5)
    x = (torch.rand(64, 3) * 1.6 - 0.8).requires_grad_()
    sdf, _, grad = field.geometry_forward(x, with_grad=True)
    (autograd,) = torch.autograd.grad(sdf.sum(), x, retain_graph=True)
    assert torch.allclose(grad, autograd, atol=1e-4, rtol=1e-3)
    # and the analytic gradient is differentiable w.r.t. the tables (for the eikonal loss)
    (grad.norm(dim=-1) - 1).pow(2).mean().backward()
    assert field.experts.tables.grad is not None and field.experts.tables.grad.abs().sum() > 0


def test_top_k_gate_keeps_largest_magnitudes():
    code = torch.tensor([0.1, -2.0, 0.5, 1.5, -0.01])
    index, values = top_k_gate(code, 2)
    assert index.tolist() == [1, 3]
    assert values.tolist() == [-2.0, 1.5]


def test_code_gate_dense_then_sparse_and_balance():
    gate = CodeGate(num_scenes=3, num_experts=6, top_k=2, learnable=True)
    assert not bool(gate.sparse)
    assert len(gate(0)[0]) == 6
    gate.sparse.fill_(True)
    assert len(gate(0)[0]) == 2
    balanced = torch.ones(4, 6)
    skewed = torch.zeros(4, 6)
    skewed[:, 0] = 1.0
    assert load_balance_loss(balanced, 6) < 1e-6 < load_balance_loss(skewed, 6)
    assert torch.isclose(gate.usage().sum(), torch.tensor(1.0))


def test_k1_fixed_code_is_a_plain_hash_grid():
    field = NIDField(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), SPEC, num_experts=1, top_k=1, learn_codes=False)
    assert not any(p is field.gate.codes for p in field.parameters())
    assert torch.equal(field.mixed_tables([0])[0], field.experts.expert(0))


def test_volsdf_rendering_of_a_plane():
    """A ray through an SDF plane: weights sum to ~1 and peak at the crossing."""
    t = torch.linspace(0, 2, 201)
    edges = t[None]
    mids = 0.5 * (t[1:] + t[:-1])[None]
    sdf = 1.0 - mids  # surface at t = 1
    w = composite_weights(laplace_density(sdf, torch.tensor(0.01)), edges[:, 1:] - edges[:, :-1])
    assert abs(float(w.sum()) - 1.0) < 1e-3
    assert abs(float(mids[0, w.argmax()]) - 1.0) < 0.02


def test_ray_aabb_and_pdf_sampling():
    origins = torch.tensor([[0.0, 0, -3], [5.0, 5, -3]])
    dirs = torch.tensor([[0.0, 0, 1], [0.0, 0, 1]])
    near, far, hit = ray_aabb(origins, dirs, torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    assert hit.tolist() == [True, False]
    assert torch.allclose(near[0], torch.tensor(2.0)) and torch.allclose(far[0], torch.tensor(4.0))
    edges = torch.linspace(0, 1, 11)[None]
    weights = torch.zeros(1, 10)
    weights[0, 7] = 1.0
    samples = sample_pdf(edges, weights, 100, uniform_floor=0.1, deterministic=True)
    inside = ((samples >= 0.7) & (samples <= 0.8)).float().mean()
    assert 0.85 < float(inside) < 0.95  # 90% of the mass is in that bin, 10% spread uniformly
    assert torch.all(samples[:, 1:] >= samples[:, :-1])


def test_coarse_grid_refreshed_by_slabs_equals_full_refresh():
    from nerfstudio.data.scene_box import SceneBox

    from nid_nerf.models.nid_model import NIDModelConfig

    config = NIDModelConfig(grid_resolution=12, log2_table_size=10, num_levels=4, max_resolution=32)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1)
    torch.nn.init.uniform_(model.field.experts.tables, -0.5, 0.5)
    for part in range(5):
        model.update_coarse_grid(0, part, 5)
    by_slabs = model.coarse_sdf[0].clone()
    model.coarse_sdf.zero_()
    model.update_coarse_grid(0)
    assert torch.allclose(by_slabs, model.coarse_sdf[0])
    g = torch.linspace(-1, 1, 12)
    corner = torch.tensor([[g[3], g[5], g[7]]])  # x, y, z -> grid[z, y, x]
    assert torch.allclose(model.coarse_sdf[0, 7, 5, 3], model.field.sdf(corner)[0, 0], atol=1e-5)


def test_coarse_grid_preview_matches_the_field_on_its_own_vertices_and_interpolates_between():
    from nerfstudio.data.scene_box import SceneBox

    from nid_nerf.models.nid_model import NIDModelConfig

    config = NIDModelConfig(grid_resolution=13, log2_table_size=10, num_levels=4, max_resolution=32)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1)
    torch.nn.init.uniform_(model.field.experts.tables, -0.5, 0.5)
    model.update_coarse_grid(0)
    full = model.coarse_sdf[0].clone()
    model.preview_coarse_grid(0, 7)  # 7 vertices per axis: every second vertex of the 13
    preview = model.coarse_sdf[0].clone()
    assert torch.allclose(preview[::2, ::2, ::2], full[::2, ::2, ::2], atol=1e-5), "exact on the coarse vertices"
    # halfway between two coarse vertices along x: their mean
    assert torch.allclose(preview[4, 6, 1], (full[4, 6, 0] + full[4, 6, 2]) / 2, atol=1e-5)
    model.start_code(model.field.gate.codes[0], grid_resolution=13)  # not coarser: the full refresh
    assert torch.allclose(model.coarse_sdf[0], full)


def test_implementation_choice_without_tinycudann(monkeypatch):
    from nid_nerf.errors import NIDInputError
    from nid_nerf.fields import tcnn_backend

    monkeypatch.setattr(tcnn_backend, "tcnn_available", lambda: False)
    assert tcnn_backend.resolve_implementation("auto") == "torch"
    assert tcnn_backend.resolve_implementation("torch") == "torch"
    with pytest.raises(NIDInputError, match="needs tinycudann"):
        tcnn_backend.resolve_implementation("tcnn")
    monkeypatch.setattr(tcnn_backend, "tcnn_available", lambda: True)
    assert tcnn_backend.resolve_implementation("auto") == "tcnn"
    assert tcnn_backend.resolve_implementation("torch") == "torch"


def test_keep_freed_memory_is_on_by_default_and_can_be_turned_off(monkeypatch):
    import ctypes.util

    from nid_nerf.engine.allocator import keep_freed_memory

    monkeypatch.setenv("NID_KEEP_FREED_MEMORY", "0")
    assert keep_freed_memory() is False
    monkeypatch.delenv("NID_KEEP_FREED_MEMORY")
    if ctypes.util.find_library("c") and "libc.so.6" in (ctypes.util.find_library("c") or ""):
        assert keep_freed_memory() is True


def test_level_weights_hold_back_the_fine_levels_and_keep_the_gradient_exact():
    from nid_nerf.fields.encoding import level_window

    field = NIDField(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), SPEC, num_experts=1, top_k=1, num_scenes=1)
    torch.nn.init.uniform_(field.experts.tables, -0.5, 0.5)
    field.level_weights = level_window(SPEC.num_levels, 0.0, 2)  # levels 2 and 3 off
    x = (torch.rand(64, 3) * 1.6 - 0.8).requires_grad_()
    sdf, _, grad = field.geometry_forward(x, with_grad=True)
    (autograd,) = torch.autograd.grad(sdf.sum(), x, retain_graph=True)
    assert torch.allclose(grad, autograd, atol=1e-4, rtol=1e-3)
    # the switched-off levels get no gradient, the others do
    (sdf.sum() + grad.norm(dim=-1).sum()).backward()
    per_level = field.experts.tables.grad.abs().sum(dim=(0, 2, 3))
    assert per_level[2] == 0 and per_level[3] == 0 and per_level[0] > 0 and per_level[1] > 0
    # all levels on is the plain field
    field.level_weights = level_window(SPEC.num_levels, 1.0, 2)
    full = field.geometry_forward(x.detach(), with_grad=False)[0]
    field.level_weights = None
    assert torch.equal(full, field.geometry_forward(x.detach(), with_grad=False)[0])
