"""The headless mesh renderer used for docs/mesh_*.png: orientation, colours, background, CLI."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from PIL import Image

from nid_nerf.errors import NIDInputError
from nid_nerf.mesh.render import RenderMeshes, render_mesh, render_turntable


def _two_markers(offset):
    """A red ball at +offset and a blue ball at -offset (so the bbox centre is the origin)."""
    red = trimesh.creation.icosphere(2, radius=0.1)
    red.apply_translation(offset)
    blue = trimesh.creation.icosphere(2, radius=0.1)
    blue.apply_translation(-np.asarray(offset, dtype=float))
    mesh = trimesh.util.concatenate([red, blue])
    mesh.visual.vertex_colors = np.r_[
        np.tile([255, 0, 0, 255], (len(red.vertices), 1)), np.tile([0, 0, 255, 255], (len(blue.vertices), 1))
    ]
    return mesh


def _red_centroid(image):
    red = (image[..., 0] > 100) & (image[..., 2] < 60)
    rows, cols = np.nonzero(red)
    return rows.mean(), cols.mean()


@pytest.mark.parametrize("up_axis", [1, 2])
def test_up_is_up_and_right_is_right(up_axis):
    up = np.eye(3)[up_axis]
    # Azimuth 0 puts the camera on the first horizontal axis, looking at the origin: right = forward x up.
    horizontal = [i for i in range(3) if i != up_axis]
    forward = -np.eye(3)[horizontal[0]]
    right = np.cross(forward, up)
    size = 64
    row, col = _red_centroid(render_mesh(_two_markers(up), size, size, 0.0, 0.0, up_axis=up_axis))
    assert row < size * 0.25 and abs(col - size / 2) < 2
    row, col = _red_centroid(render_mesh(_two_markers(right), size, size, 0.0, 0.0, up_axis=up_axis))
    assert col > size * 0.75 and abs(row - size / 2) < 2


def test_colours_shading_and_background():
    box = trimesh.creation.box(extents=[1, 1, 1])
    box.visual.face_colors = np.tile([0, 200, 0, 255], (len(box.faces), 1))
    image = render_mesh(box, 48, 48)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert np.all(image[0, 0] == 255)  # background
    centre = image[24, 24].astype(int)
    assert centre[1] > 60 and centre[0] == 0 and centre[2] == 0  # green, shaded
    grey = render_mesh(trimesh.creation.box(extents=[1, 1, 1]), 48, 48)[24, 24]
    assert grey[0] == grey[1] == grey[2] > 0


def test_render_turntable_and_cli(tmp_path):
    sphere = trimesh.creation.icosphere(3)
    strip = render_turntable(sphere, azimuths=(0, 90), size=32)
    assert strip.shape == (32, 64, 3)
    a, b = tmp_path / "a.ply", tmp_path / "b.obj"
    sphere.export(a)
    trimesh.creation.box().export(b)
    out = RenderMeshes(mesh=(a, b), output=tmp_path / "docs" / "fig.png", azimuths=(0.0, 120.0, 240.0), size=40).main()
    assert Image.open(out).size == (120, 80)
    with pytest.raises(NIDInputError, match=".png"):
        RenderMeshes(mesh=(a,), output=tmp_path / "fig.jpg").main()
    with pytest.raises(NIDInputError, match="does not exist"):
        RenderMeshes(mesh=(tmp_path / "missing.ply",), output=tmp_path / "fig.png").main()
