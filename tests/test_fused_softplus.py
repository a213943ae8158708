"""The fused C++ softplus(beta) and its slope against hand-computed values and torch's softplus and sigmoid."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from nid_nerf.fields import fused_softplus
from nid_nerf.fields.mlp import TangentMLP

BETA = 100.0


def _fused(x, beta=BETA):
    return torch.ops.nid_fused.softplus_forward(x, beta)


def test_hand_computed_values(fused_extension):
    # softplus(0) = ln 2 / beta, slope 1/2; softplus(x) = x + log1p(e^(-beta x)) / beta for x > 0 and
    # log1p(e^(beta x)) / beta for x < 0; slope 1 / (1 + e^(-beta x))
    x = torch.tensor([0.0, 1.0, -0.05, 0.05])
    y, s = _fused(x)
    assert y.tolist() == pytest.approx(
        [math.log(2) / BETA, 1.0 + math.log1p(math.exp(-100)) / BETA, math.log1p(math.exp(-5)) / BETA,
         0.05 + math.log1p(math.exp(-5)) / BETA], rel=1e-6)
    assert s.tolist() == pytest.approx([0.5, 1.0, 1 / (1 + math.exp(5)), 1 / (1 + math.exp(-5))], rel=1e-6)


@pytest.mark.parametrize("n", [1, 3, 7, 8, 9, 17, 4099])
def test_matches_torch_for_every_tail_length(fused_extension, n):
    # the kernel runs 4 or 8 lanes at a time: lengths that are not a multiple take the scalar tail
    x = torch.randn(n, generator=torch.Generator().manual_seed(n)) * 0.1
    y, s = _fused(x)
    torch.testing.assert_close(y, F.softplus(x, beta=BETA), rtol=2e-6, atol=1e-9)
    torch.testing.assert_close(s, torch.sigmoid(BETA * x), rtol=2e-6, atol=1e-9)


def test_edge_values(fused_extension):
    x = torch.tensor([0.0, -0.0, 1e-9, -1e-9, 100.0, -100.0, 1e30, -1e30, math.inf, -math.inf])
    y, s = _fused(x)
    torch.testing.assert_close(y, F.softplus(x, beta=BETA), rtol=2e-6, atol=1e-30)
    torch.testing.assert_close(s, torch.sigmoid(BETA * x), rtol=2e-6, atol=1e-30)
    assert (y >= 0).all() and (s >= 0).all() and (s <= 1).all()
    nan_y, nan_s = _fused(torch.tensor([math.nan] * 9))
    assert nan_y.isnan().all() and nan_s.isnan().all()


def test_non_contiguous_and_shaped_inputs(fused_extension):
    x = torch.randn(64, 33).t()[:, :40] * 0.05
    y, s = _fused(x)
    assert y.shape == x.shape and s.shape == x.shape
    torch.testing.assert_close(y, F.softplus(x, beta=BETA), rtol=2e-6, atol=1e-9)


def test_gradients_match_torch_including_the_slope_and_a_double_backward(fused_extension):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(300, generator=g) * 0.03
    wy, ws = torch.randn(300, generator=g), torch.randn(300, generator=g)

    def loss(fused):
        x = x0.clone().requires_grad_(True)
        y, s = fused_softplus.softplus(x, BETA, need_slope=True, fused=fused)
        (gx,) = torch.autograd.grad((wy * y + ws * s).sum(), x, create_graph=True)
        (ggx,) = torch.autograd.grad((gx ** 2).sum(), x)
        return gx.detach(), ggx

    gx_f, ggx_f = loss(True)
    gx_t, ggx_t = loss(False)
    torch.testing.assert_close(gx_f, gx_t, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(ggx_f, ggx_t, rtol=1e-4, atol=1e-3)


def test_unused_slope_and_unused_value(fused_extension):
    x = (torch.randn(50) * 0.02).requires_grad_(True)
    y, _ = fused_softplus.softplus(x, BETA, fused=True)
    (gy,) = torch.autograd.grad(y.sum(), x)
    torch.testing.assert_close(gy, torch.sigmoid(BETA * x.detach()), rtol=1e-6, atol=1e-7)
    _, s = fused_softplus.softplus(x, BETA, need_slope=True, fused=True)
    (gs,) = torch.autograd.grad(s.sum(), x)
    sig = torch.sigmoid(BETA * x.detach())
    torch.testing.assert_close(gs, BETA * sig * (1 - sig), rtol=1e-5, atol=1e-5)


def test_torch_path_when_not_fused_or_not_float32():
    x = torch.randn(10, dtype=torch.float64)
    y, s = fused_softplus.softplus(x, BETA, need_slope=False, fused=True)
    assert y.dtype == torch.float64 and s is None
    y, s = fused_softplus.softplus(x.float(), BETA, need_slope=True, fused=False)
    torch.testing.assert_close(s, torch.sigmoid(BETA * x.float()))


def test_tangent_mlp_outputs_and_gradients_are_the_same_fused_or_not(fused_extension):
    torch.manual_seed(0)
    mlp = TangentMLP(8, [16, 16], 4, beta=BETA, fused=True)
    x = torch.randn(40, 8) * 0.05
    tangents = torch.randn(3, 40, 8)
    outs = []
    for fused in (True, False):
        mlp.fused = fused
        mlp.zero_grad()
        pre, tan = mlp(x, tangents)
        ((pre ** 2).sum() + (tan ** 2).sum()).backward()
        outs.append((pre.detach(), tan.detach(), [p.grad.clone() for p in mlp.parameters()]))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=1e-5, atol=1e-6)
    for a, b in zip(outs[0][2], outs[1][2]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
