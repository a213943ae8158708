"""The fused C++ hash-grid lookup against hand-computed values, a pure-Python oracle and the torch lookup."""

from __future__ import annotations

import logging

import pytest
import torch

from nid_nerf.fields import fused_lookup
from nid_nerf.fields.encoding import HashGridSpec, corner_lookup, interpolate
from nid_nerf.fields.nid_field import NIDField


def test_builds_where_a_compiler_is(fused_extension):
    assert hasattr(torch.ops.nid_fused, "lookup_forward")


def test_dense_level_interpolates_a_linear_table_exactly(fused_extension):
    # one dense level at resolution 2: rows ix + 3 iy + 9 iz of a 3x3x3 vertex grid. A table holding each row's own
    # index is the linear function i(p) = px + 3 py + 9 pz of the grid position p = 2 x, which trilinear
    # interpolation reproduces exactly, with derivative (2, 6, 18) along x.
    spec = HashGridSpec(num_levels=1, log2_table_size=6, features_per_level=1, base_resolution=2, max_resolution=2)
    table = torch.arange(64, dtype=torch.float32)[:, None]
    x = torch.tensor([[0.25, 0.5, 0.75], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.5, -0.2, 0.5]])
    z, dz = fused_lookup.interpolate(table, x, None, spec, with_grad=True)
    clamped = x.clamp(0, 1) * 2
    expected = clamped[:, 0] + 3 * clamped[:, 1] + 9 * clamped[:, 2]
    assert z[:, 0].tolist() == pytest.approx(expected.tolist(), abs=1e-5)
    assert z[0, 0].item() == pytest.approx(0.5 + 3.0 + 13.5)
    for axis, slope in enumerate((2.0, 6.0, 18.0)):
        assert dz[axis, :, 0].tolist() == pytest.approx([slope] * 4, abs=1e-4)


def _python_oracle(table, x, res, size, slot_rows, dense):
    """Trilinear lookup of one point at one level with Python ints (the instant-ngp hash written out)."""
    primes = (1, 2654435761, 805459861)
    p = [min(max(v, 0.0), 1.0) * res for v in x]
    base = [min(int(v // 1), res - 1) for v in p]
    frac = [v - b for v, b in zip(p, base)]
    out = 0.0
    for ix in (0, 1):
        for iy in (0, 1):
            for iz in (0, 1):
                c = (base[0] + ix, base[1] + iy, base[2] + iz)
                if dense:
                    index = c[0] + (res + 1) * c[1] + (res + 1) ** 2 * c[2]
                else:
                    index = ((c[0] * primes[0]) ^ (c[1] * primes[1]) ^ (c[2] * primes[2])) % 2**32 % size
                w = ((frac[0] if ix else 1 - frac[0]) * (frac[1] if iy else 1 - frac[1])
                     * (frac[2] if iz else 1 - frac[2]))
                out += w * float(table[slot_rows + index, 0])
    return out


def test_hashed_levels_match_a_python_oracle(fused_extension):
    spec = HashGridSpec(num_levels=3, log2_table_size=8, features_per_level=1, base_resolution=4, max_resolution=32)
    assert spec.dense_levels() == (True, False, False)  # 5^3 <= 256 < 11^3, 33^3
    torch.manual_seed(0)
    rows = spec.num_levels * spec.table_size
    table = torch.randn(2 * rows, 1)
    x = torch.rand(6, 3)
    slots = torch.tensor([0, 1, 1, 0, 1, 0])
    z, _ = fused_lookup.interpolate(table, x, slots, spec, with_grad=False)
    for i in range(6):
        for level, res in enumerate(spec.resolutions()):
            start = int(slots[i]) * rows + level * spec.table_size
            expected = _python_oracle(table, x[i].tolist(), res, spec.table_size, start, spec.dense_levels()[level])
            assert z[i, level].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("with_grad", [False, True])
def test_matches_the_torch_lookup_values_and_table_gradients(fused_extension, with_grad):
    spec = HashGridSpec()
    rows = spec.num_levels * spec.table_size
    torch.manual_seed(1)
    table = torch.randn(3 * rows, spec.features_per_level, requires_grad=True)
    x = torch.cat([torch.rand(2000, 3) * 1.2 - 0.1, torch.tensor([[0.0, 0.5, 1.0], [1.0, 1.0, 1.0]])])
    slots = torch.randint(0, 3, (x.shape[0],))
    z, dz = fused_lookup.interpolate(table, x, slots, spec, with_grad)
    idx, weights = corner_lookup(x, spec, with_grad=with_grad)
    z_ref, dz_ref = interpolate(table, idx + (slots * rows)[:, None, None], weights)
    torch.testing.assert_close(z, z_ref, rtol=1e-5, atol=1e-5)
    upstream = torch.randn_like(z)
    loss, loss_ref = (z * upstream).sum(), (z_ref * upstream).sum()
    if with_grad:
        torch.testing.assert_close(dz, dz_ref, rtol=1e-5, atol=1e-4)
        loss, loss_ref = loss + dz.square().sum(), loss_ref + dz_ref.square().sum()
    else:
        assert dz is None
    grad = torch.autograd.grad(loss, table)[0]
    grad_ref = torch.autograd.grad(loss_ref, table)[0]
    torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-3)


def test_a_slot_past_the_tables_is_refused(fused_extension):
    spec = HashGridSpec(num_levels=2, log2_table_size=6, features_per_level=1, base_resolution=2, max_resolution=4)
    table = torch.zeros(2 * spec.num_levels * spec.table_size, 1)
    with pytest.raises(RuntimeError, match="slot 2 out of range for a table of 2 scenes"):
        fused_lookup.interpolate(table, torch.rand(3, 3), torch.tensor([0, 2, 1]), spec, with_grad=False)


def test_field_gives_the_same_sdf_normals_and_gradients_either_way(fused_extension):
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    torch.manual_seed(2)
    fields = [NIDField(aabb, HashGridSpec(), num_experts=4, top_k=2, num_scenes=2, fused_lookup=f)
              for f in (True, False)]
    fields[0].experts.tables.data.normal_(0.0, 0.1)
    fields[1].load_state_dict(fields[0].state_dict())
    x = torch.rand(500, 3) * 2 - 1
    scene = torch.randint(0, 2, (500,))
    results = []
    for field in fields:
        sdf, h, normal = field.geometry_forward(x, scene, with_grad=True)
        (sdf.sum() + normal.square().sum() + h.sum()).backward()
        results.append([sdf, normal, field.experts.tables.grad, next(field.geometry.parameters()).grad])
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_positions_with_a_gradient_take_the_torch_path(fused_extension):
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = NIDField(aabb, HashGridSpec(), fused_lookup=True)
    x = (torch.rand(16, 3) * 1.6 - 0.8).requires_grad_()
    z, _ = field.lookup(x)
    assert z.grad_fn is not None and "Fused" not in type(z.grad_fn).__name__
    (grad,) = torch.autograd.grad(z.sum(), x)
    assert torch.isfinite(grad).all()
    z_fused, _ = field.lookup(x.detach())
    assert z_fused.grad_fn is not None and "Fused" in type(z_fused.grad_fn).__name__


def test_a_failed_build_falls_back_with_one_log_line(monkeypatch, caplog):
    from torch.utils import cpp_extension

    def broken(*args, **kwargs):
        raise RuntimeError("Error building extension 'nid_fused_lookup'")

    monkeypatch.setattr(fused_lookup, "_state", {})
    monkeypatch.setattr(fused_lookup, "_build_and_register", lambda verbose: broken())
    monkeypatch.setattr(cpp_extension, "load", broken)
    aabb = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    field = NIDField(aabb, HashGridSpec(), fused_lookup=True)
    x = torch.rand(32, 3) * 2 - 1
    with caplog.at_level(logging.WARNING, logger="nid_nerf.fields.fused_lookup"):
        sdf_a = field.sdf(x)
        sdf_b = field.sdf(x)
    warnings = [r for r in caplog.records if "fused hash-grid lookup and softplus unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "using torch's lookup and softplus" in warnings[0].getMessage()
    torch.testing.assert_close(sdf_a, sdf_b)
    field.fused_lookup = False
    torch.testing.assert_close(field.sdf(x), sdf_a)
