"""Mesh files load with their own colours; textures are looked up the right way round."""

from __future__ import annotations

import numpy as np
import pytest
from render_helpers import ASSETS, QUADRANTS, colored_box_ply, textured_grid

from nid_nerf.synthetic.colored_mesh import sample_texture
from nid_nerf.synthetic.mesh_loading import MeshRejected, load_mesh_file
from nid_nerf.synthetic.normalize import normalize_mesh, up_axis_rotation


@pytest.mark.parametrize("suffix", [".obj", ".glb"])
def test_texture_quadrants(tmp_path, suffix):
    mesh = load_mesh_file(textured_grid(tmp_path / f"grid{suffix}"))
    assert mesh.color_source == "texture"
    checked = 0
    for part in mesh.parts:
        centroids = part.vertices[part.faces].mean(1)
        albedo = part.albedo(np.arange(len(part.faces)), np.full((len(part.faces), 2), 1 / 3))
        for (u_low, v_low), rgb in QUADRANTS.items():
            # stay away from the quadrant borders, where bilinear filtering mixes colours
            sel = ((centroids[:, 0] < -0.1) if u_low else (centroids[:, 0] > 0.1)) & (
                (centroids[:, 1] < -0.1) if v_low else (centroids[:, 1] > 0.1)
            )
            assert sel.any()
            assert np.allclose(albedo[sel], np.asarray(rgb) / 255.0, atol=1e-6), (suffix, u_low, v_low)
            checked += int(sel.sum())
    assert checked > 0


def test_sample_texture_bilinear_and_wrap():
    texture = np.zeros((2, 2, 3))
    texture[1, 0] = 1.0  # bottom-left texel
    assert np.allclose(sample_texture(texture, np.array([[0.25, 0.25]])), [1, 1, 1])
    assert np.allclose(sample_texture(texture, np.array([[1.25, -0.75]])), [1, 1, 1])  # repeat wrapping
    assert np.allclose(sample_texture(texture, np.array([[0.5, 0.5]])), [0.25] * 3)  # centre: bilinear mean


def test_blob_obj_groups_and_no_own_colors():
    mesh = load_mesh_file(ASSETS / "blobs" / "blob_000.obj")
    assert mesh.color_source == "none" and mesh.num_faces > 100 and mesh.area() > 0


def test_vertex_colors(tmp_path):
    mesh = load_mesh_file(colored_box_ply(tmp_path / "b.ply", (0.2, 0.4, 0.6)))
    assert mesh.color_source == "vertex"
    assert np.allclose(mesh.parts[0].vertex_colors, np.round(np.array([0.2, 0.4, 0.6]) * 255) / 255)


def test_normalize_puts_mesh_in_sphere_z_up(tmp_path):
    mesh = load_mesh_file(colored_box_ply(tmp_path / "b.ply"))
    moved = mesh.transformed(np.eye(3), 3.0, np.array([5.0, -2.0, 1.0]))
    out, transform = normalize_mesh(moved, "y", radius=0.8)
    vertices, _ = out.concatenated()
    assert np.isclose(np.linalg.norm(vertices, axis=1).max(), 0.8)
    assert np.allclose(out.bounds().mean(0), 0.0, atol=1e-9)
    # the box is 1.0 (x) by 0.6 (y) by 0.8 (z): y becomes z, so the scene z extent is the file's y extent
    extent = out.bounds()[1] - out.bounds()[0]
    assert np.isclose(extent[2] / extent[0], 0.6 / 1.0) and np.isclose(extent[1] / extent[0], 0.8 / 1.0)
    for axis in ("x", "y", "z", "-x", "-y", "-z"):
        rot = up_axis_rotation(axis)
        assert np.allclose(rot @ rot.T, np.eye(3)) and np.isclose(np.linalg.det(rot), 1.0)
        vec = {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1]}[axis.lstrip("-")]
        sign = -1 if axis.startswith("-") else 1
        assert np.allclose(rot @ (sign * np.asarray(vec, float)), [0, 0, 1])


def test_rejections(tmp_path):
    (tmp_path / "garbage.obj").write_text("this is not\nan obj file at all\n")
    (tmp_path / "truncated.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 100\n")
    (tmp_path / "flat.obj").write_text("v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n")  # a zero-area triangle
    (tmp_path / "nan.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    kinds = {}
    for name in ("garbage.obj", "truncated.ply", "flat.obj", "nan.obj"):
        with pytest.raises(MeshRejected) as info:
            load_mesh_file(tmp_path / name)
        kinds[name] = info.value.kind
    assert kinds == {"garbage.obj": "broken", "truncated.ply": "broken", "flat.obj": "degenerate", "nan.obj": "broken"}


def test_gltf_base_color_factor_multiplies_texture(tmp_path):
    """glTF: base colour = baseColorFactor x texture (trimesh writes a SimpleMaterial's diffuse as the factor)."""
    import trimesh
    from PIL import Image

    mesh = trimesh.creation.box()
    mesh.visual = trimesh.visual.TextureVisuals(
        uv=np.full((len(mesh.vertices), 2), 0.5),
        material=trimesh.visual.material.SimpleMaterial(
            image=Image.fromarray(np.full((4, 4, 3), 200, np.uint8)), diffuse=[128, 255, 255, 255]
        ),
    )
    mesh.export(str(tmp_path / "f.glb"))
    loaded = load_mesh_file(tmp_path / "f.glb")
    part = loaded.parts[0]
    albedo = part.albedo(np.arange(2), np.full((2, 2), 1 / 3))
    assert np.allclose(albedo, np.array([128 / 255, 1, 1]) * 200 / 255, atol=2e-3)
