"""Mesh extraction on analytic SDFs: accuracy, chunking, narrow band, colours, clean-up and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nid_nerf.errors import NIDInputError
from nid_nerf.mesh.evaluate import block_lattice, evaluate_sdf_grid, evaluate_sdf_grid_band
from nid_nerf.mesh.extract import extract_mesh, keep_largest_component, marching_cubes_mesh, vertex_colors
from nid_nerf.mesh.grid import make_grid

CUBE = [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]


def sphere_sdf(center=(0.0, 0.0, 0.0), radius=0.5):
    c = torch.tensor(center, dtype=torch.float32)

    def sdf(p):
        return (p - c).norm(dim=-1, keepdim=True) - radius

    return sdf


def box_sdf(center, half):
    c, h = torch.tensor(center, dtype=torch.float32), torch.tensor(half, dtype=torch.float32)

    def sdf(p):
        q = (p - c).abs() - h
        return (q.clamp(min=0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0))[:, None]

    return sdf


def union(*fns):
    return lambda p: torch.stack([f(p).reshape(-1) for f in fns]).min(dim=0).values[:, None]


def test_sphere_radius_and_orientation():
    resolution = 64
    mesh = extract_mesh(sphere_sdf(radius=0.5), CUBE, resolution=resolution, device="cpu", progress=False)
    voxel = 2.0 / (resolution - 1)
    radius_error = np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.5)
    # Linear interpolation of an exact SDF along grid edges: error is a small fraction of a voxel.
    assert radius_error.max() < 0.02 * voxel
    assert mesh.is_watertight
    # Outward faces: positive volume close to 4/3 pi r^3.
    assert mesh.volume == pytest.approx(4.0 / 3.0 * np.pi * 0.125, rel=0.01)


def test_off_centre_box_in_non_cubic_bbox():
    sdf = box_sdf((0.2, -0.1, 0.3), (0.3, 0.2, 0.25))
    bbox = [-0.5, -0.5, -0.2, 0.7, 0.4, 0.8]
    grid = make_grid(bbox, 60)
    assert max(grid.shape_xyz) == 60 and grid.shape_xyz[0] == 60  # longest side (x) gets the resolution
    mesh = extract_mesh(sdf, bbox, resolution=60, device="cpu", progress=False)
    expected = np.array([[-0.1, -0.3, 0.05], [0.5, 0.1, 0.55]])
    # Box faces fall between samples; marching cubes places them exactly on the zero crossing of the linear SDF.
    assert np.allclose(mesh.bounds, expected, atol=1e-3)
    assert mesh.volume == pytest.approx(0.6 * 0.4 * 0.5, rel=0.02)


def test_chunked_equals_unchunked_and_chunks_are_bounded():
    sdf = union(sphere_sdf((0.1, -0.2, 0.05), 0.45), box_sdf((0.4, 0.4, 0.4), (0.3, 0.1, 0.2)))
    grid = make_grid([-1, -1, -1, 1, 1, 1.3], 24)
    sizes = []

    def counting(p):
        sizes.append(p.shape[0])
        return sdf(p)

    whole = evaluate_sdf_grid(sdf, grid, chunk_points=10**9, device="cpu", progress=False)
    per_planes = evaluate_sdf_grid(counting, grid, chunk_points=1500, device="cpu", progress=False)
    assert max(sizes) <= 1500 and len(sizes) > 1
    sizes.clear()
    per_rows = evaluate_sdf_grid(counting, grid, chunk_points=100, device="cpu", progress=False)  # < one plane
    assert max(sizes) <= 100
    assert whole.dtype == np.float32 and whole.shape == grid.shape_xyz[::-1]
    np.testing.assert_array_equal(whole, per_planes)
    np.testing.assert_array_equal(whole, per_rows)
    # Index order [z, y, x]: check one sample against the formula.
    x, y, z = (grid.axis(i)[j] for i, j in zip(range(3), (5, 7, 11)))
    assert whole[11, 7, 5] == pytest.approx(float(sdf(torch.tensor([[x, y, z]]))), abs=1e-6)


@pytest.mark.parametrize(
    "resolution,block,min_lattice", [(37, 3, 32), (64, 4, 32), (65, 8, 32), (50, 5, 32), (129, 4, 32), (90, 3, 8)]
)
def test_narrow_band_mesh_equals_dense_mesh(resolution, block, min_lattice):
    sdf = union(sphere_sdf((0.1, -0.2, 0.05), 0.45), box_sdf((0.4, 0.4, 0.4), (0.3, 0.1, 0.2)))
    grid = make_grid([-1, -1, -1, 1, 1, 1.3], resolution)
    dense = evaluate_sdf_grid(sdf, grid, device="cpu", progress=False)
    stats = {}
    sizes = []

    def counting(p):
        sizes.append(p.shape[0])
        return sdf(p)

    band = evaluate_sdf_grid_band(
        counting, grid, block=block, chunk_points=4096, device="cpu", progress=False, stats=stats,
        min_lattice=min_lattice,
    )
    assert stats["levels"] == (1 if resolution <= 65 and min_lattice == 32 else 2 if resolution == 129 else 3)
    assert max(sizes) <= 4096
    assert sum(sizes) == stats["evaluated"] < stats["total"]  # each sample evaluated at most once
    assert np.array_equal(np.sign(dense), np.sign(band))  # same inside/outside everywhere
    evaluated = band == dense
    assert evaluated.mean() > 0.1
    a, b = marching_cubes_mesh(dense, grid), marching_cubes_mesh(band, grid)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)


def test_narrow_band_saves_most_evaluations_at_high_resolution():
    stats = {}
    extract_mesh(sphere_sdf(radius=0.5), CUBE, resolution=128, device="cpu", progress=False, stats=stats)
    assert stats["evaluated"] < 0.25 * stats["total"]


def test_block_lattice_covers_grid():
    assert block_lattice(10, 4).tolist() == [0, 4, 8, 9]
    assert block_lattice(9, 4).tolist() == [0, 4, 8]


def test_vertex_colors_position_and_direction():
    sdf = sphere_sdf(radius=0.5)
    seen = {}

    def color_from_position(p, d):
        seen["device"] = p.device
        return (p + 1.0) / 2.0

    mesh = extract_mesh(sdf, CUBE, 32, color_fn=color_from_position, device="cpu", progress=False)
    rgb = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    assert seen["device"].type == "cpu"
    np.testing.assert_allclose(rgb, (mesh.vertices + 1.0) / 2.0, atol=1.0 / 255 + 1e-6)
    # direction = -normal: a colour that encodes -direction recovers the outward normal of the sphere.
    rgba = vertex_colors(mesh, lambda p, d: (1.0 - d) / 2.0, device="cpu", progress=False)
    assert rgba.dtype == np.uint8 and rgba.shape == (len(mesh.vertices), 4)
    normals = rgba[:, :3] / 255.0 * 2.0 - 1.0
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    assert np.mean(np.sum(normals * radial, axis=1)) > 0.99


def test_vertex_colors_with_autograd_color_head():
    mesh = extract_mesh(sphere_sdf(radius=0.5), CUBE, 24, device="cpu", progress=False)

    def needs_grad(p, d):
        p = p.requires_grad_(True)
        s = p.norm(dim=-1).sum()
        (grad,) = torch.autograd.grad(s, p)
        return (grad + 1.0) / 2.0

    rgba = vertex_colors(mesh, needs_grad, device="cpu", progress=False)
    radial = mesh.vertices / np.linalg.norm(mesh.vertices, axis=1, keepdims=True)
    np.testing.assert_allclose(rgba[:, :3] / 255.0, (radial + 1.0) / 2.0, atol=1.0 / 255 + 1e-6)


def test_keep_largest_component():
    sdf = union(sphere_sdf((-0.4, 0.0, 0.0), 0.35), sphere_sdf((0.6, 0.0, 0.0), 0.15))
    both = extract_mesh(sdf, CUBE, 48, device="cpu", progress=False)
    big = extract_mesh(sdf, CUBE, 48, keep_largest=True, device="cpu", progress=False)
    assert len(both.split(only_watertight=False)) == 2
    assert len(big.split(only_watertight=False)) == 1
    assert np.all(big.vertices[:, 0] < 0.0)
    assert big.volume == pytest.approx(4.0 / 3.0 * np.pi * 0.35**3, rel=0.02)
    assert big.is_watertight
    single = keep_largest_component(big)
    assert len(single.faces) == len(big.faces)


def test_empty_isosurface_says_so_and_suggests_fixes():
    outside = sphere_sdf(center=(5.0, 0.0, 0.0), radius=0.5)
    for dense in (True, False):
        with pytest.raises(NIDInputError, match="empty isosurface") as info:
            extract_mesh(outside, CUBE, 16, dense=dense, device="cpu", progress=False)
        message = str(info.value)
        assert "--bbox" in message and "--isovalue" in message and "\n" not in message
    with pytest.raises(NIDInputError, match="never crosses 3"):
        extract_mesh(sphere_sdf(), CUBE, 16, isovalue=3.0, device="cpu", progress=False)


def test_nan_sdf_and_bad_bbox_are_input_errors():
    with pytest.raises(NIDInputError, match="NaN"):
        extract_mesh(lambda p: torch.full((p.shape[0], 1), float("nan")), CUBE, 8, device="cpu", progress=False)
    with pytest.raises(NIDInputError, match="bounding box"):
        make_grid([0, 0, 0, 1, -1, 1], 16)
    with pytest.raises(NIDInputError, match="resolution"):
        make_grid(CUBE, 1)


def test_isovalue_shifts_surface():
    mesh = extract_mesh(sphere_sdf(radius=0.5), CUBE, 48, isovalue=0.1, device="cpu", progress=False)
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.6).max() < 2e-3
