"""The surface render (eval / viewer path): crossing bracket, root finding, and agreement with the volume render."""

from __future__ import annotations

import pytest
import torch
from cli_helpers import plane_rays
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox

from nid_nerf.model_components.surface import first_crossing, refine_crossing


def test_first_crossing_picks_the_first_entering_bin():
    t = torch.arange(6.0).expand(4, 6)
    sdf = torch.tensor([
        [3.0, 2.0, 1.0, -1.0, 1.0, -1.0],  # enters between t=2 and t=3 (and again later)
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0],    # never
        [-1.0, 1.0, -1.0, -1.0, 1.0, 1.0],  # starts inside: not rendered as a surface
        [2.0, 0.0, -1.0, -2.0, -3.0, -4.0],  # exactly 0 counts as inside
    ])
    found, t_a, t_b = first_crossing(sdf, t)
    assert found.tolist() == [True, False, False, True]
    assert (t_a[found].tolist(), t_b[found].tolist()) == ([2.0, 0.0], [3.0, 1.0])


def test_refine_crossing_is_exact_on_a_linear_sdf_and_converges_on_a_sphere():
    # f(t) = 2 - t: regula falsi's first estimate is the root, whatever the bracket
    t_a, t_b = torch.tensor([0.0, 1.5]), torch.tensor([5.0, 2.5])
    root = refine_crossing(lambda t: 2.0 - t, t_a, t_b, 2.0 - t_a, 2.0 - t_b, steps=0)
    assert torch.allclose(root, torch.tensor([2.0, 2.0]))
    # a ray from z = -3 along +z into the unit sphere: |(0, 0.6, t - 3)| - 1 = 0 at t = 3 - 0.8 = 2.2
    def f(t):
        return torch.sqrt(0.36 + (t - 3.0) ** 2) - 1.0
    t_a, t_b = torch.tensor([1.0]), torch.tensor([2.9])
    errors = [abs(float(refine_crossing(f, t_a, t_b, f(t_a), f(t_b), steps)) - 2.2) for steps in (0, 3, 5)]
    assert errors[0] > 1e-1 and errors[1] < 1e-3 and errors[2] < 1e-5


def _sphere_model(**overrides):
    """An untrained model: its SDF is the sphere prior plus the geometry MLP's small initial output."""
    from nid_nerf.models.nid_model import NIDModelConfig

    config = NIDModelConfig(grid_resolution=32, log2_table_size=10, num_levels=4, max_resolution=32, **overrides)
    torch.manual_seed(0)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1)
    model.update_coarse_grid(0)
    model.eval()
    return model


def _rays(n: int = 400) -> RayBundle:
    """Rays from a camera on the -z side, aimed at a grid of points on the z = 0 plane."""
    torch.manual_seed(1)
    return plane_rays(n, 0.8, (0.1, -0.2, -3.0))


@torch.no_grad()
def test_surface_render_matches_the_volume_render_and_the_analytic_sphere():
    model = _sphere_model(beta_init=0.002, beta_min=1e-4)
    rays = _rays()
    model.config.eval_render = "volume"
    volume = model.get_outputs(rays)
    model.config.eval_render = "surface"
    surface = model.get_outputs(rays)
    hit = volume["accumulation"][:, 0] > 0.99
    assert hit.float().mean() > 0.3
    # nearly all opaque rays take the surface path; the rest (the cached grid's crossing off the field's) volume
    surface_rays = model.last_render["surface_rays"]
    assert (surface_rays & hit).sum() >= 0.9 * hit.sum() and not (surface_rays & ~hit).any()
    hit = hit & surface_rays
    # where the volume render is opaque, both renders agree closely: the colour is shaded at the crossing
    assert (surface["rgb"][hit] - volume["rgb"][hit]).abs().max() < 0.02
    # depths agree on almost every ray; the volume depth (a weighted mean over 12 samples) is itself off by up to
    # a sample spacing on a few grazing rays, where the surface depth is still a zero of the field (below)
    assert (surface["depth"][hit] - volume["depth"][hit]).abs().median() < 0.005
    assert torch.allclose(surface["accumulation"][hit], torch.ones(int(hit.sum()), 1))
    # the crossing is a zero of the field: within 1/10 of a 200 px pixel's footprint here after the default 2
    # refine steps, and to float precision after 5
    points = rays.origins[hit] + rays.directions[hit] * surface["depth"][hit]
    assert model.field.sdf(points).abs().max() < 5e-3
    model.config.surface_refine_steps = 5
    exact = model.get_outputs(rays)
    points = rays.origins[hit] + rays.directions[hit] * exact["depth"][hit]
    assert model.field.sdf(points).abs().max() < 1e-4
    # normals: the field's analytic gradient at the crossing, as the volume path takes it at its expected depth
    normals = surface["normals"][hit] * 2.0 - 1.0
    gradient = torch.nn.functional.normalize(model.field.gradient(
        rays.origins[hit] + rays.directions[hit] * surface["depth"][hit]), dim=-1)
    assert torch.allclose(normals, gradient, atol=1e-5)
    cosine = (normals * (volume["normals"][hit] * 2.0 - 1.0)).sum(-1)
    assert cosine.median() > 0.99
    # empty rays stay background in both
    empty = volume["accumulation"][:, 0] < 1e-3
    assert torch.equal(surface["rgb"][empty], volume["rgb"][empty])


@torch.no_grad()
def test_rays_the_field_does_not_confirm_fall_back_to_the_volume_render():
    model = _sphere_model()
    rays = _rays(100)
    # a stale cached grid whose surface lies 0.3 inside the field's: where the grid brackets a crossing the field
    # is already negative at both ends, so no bracket is confirmed and every active ray is volume-rendered
    model.coarse_sdf.add_(0.3)
    model.config.eval_render = "surface"
    surface = model.get_outputs(rays)
    model.config.eval_render = "volume"
    volume = model.get_outputs(rays)
    assert volume["accumulation"].max() > 0.5
    for key in ("rgb", "accumulation", "depth"):
        assert torch.allclose(surface[key], volume[key]), key


@pytest.mark.parametrize("render", ["surface", "volume"])
def test_training_always_volume_renders(render):
    model = _sphere_model(eval_render=render)
    model.train()
    out = model.get_outputs(_rays(16))
    assert "eikonal_gradients" in out and out["rgb"].requires_grad
