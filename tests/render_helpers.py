"""Helpers for the collection tests: small meshes in every input format, and fast render settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from nid_nerf.synthetic.collection_renderer import RenderSettings

ASSETS = Path(__file__).parent / "assets" / "meshes"
SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "meshes"

FAST = RenderSettings(views_train=6, views_test=2, resolution=32)


def colored_box_ply(path: Path, rgb=(1.0, 0.0, 0.0)) -> Path:
    """A box whose vertex colours are all ``rgb`` (PLY vertex colours)."""
    mesh = trimesh.creation.box(extents=[1.0, 0.6, 0.8])
    rgba = np.append(np.round(np.asarray(rgb) * 255), 255).astype(np.uint8)
    mesh.visual.vertex_colors = np.tile(rgba, (len(mesh.vertices), 1))
    mesh.export(str(path))
    return path


def textured_quad_mesh() -> trimesh.Trimesh:
    """A thick double-sided slab whose texture is red on the left half and blue on the right half."""
    mesh = trimesh.creation.box(extents=[1.0, 1.0, 0.05])
    uv = np.stack([(mesh.vertices[:, 0] + 0.5), (mesh.vertices[:, 1] + 0.5)], axis=1)
    texture = np.zeros((8, 8, 3), dtype=np.uint8)
    texture[:, :4] = [255, 0, 0]
    texture[:, 4:] = [0, 0, 255]
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(texture), diffuse=[255, 255, 255, 255])
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return mesh


def write_textured(path: Path) -> Path:
    textured_quad_mesh().export(str(path))
    return path


def plain_stl(path: Path) -> Path:
    trimesh.creation.icosphere(subdivisions=2).export(str(path))
    return path


def masked_mean_color(scene: Path) -> np.ndarray:
    """Mean RGB of object pixels over all training images of a rendered scene."""
    pixels = []
    for image in sorted((scene / "images").glob("train_*.png")):
        rgba = np.asarray(Image.open(image)).astype(np.float64) / 255.0
        pixels.append(rgba[rgba[..., 3] > 0.5, :3])
    return np.concatenate(pixels).mean(0)


def cosine(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


QUADRANTS = {  # (u < .5, v < .5) -> colour; image row 0 is the top, i.e. v close to 1
    (True, True): (255, 0, 0),
    (False, True): (0, 0, 255),
    (True, False): (0, 255, 0),
    (False, False): (255, 255, 0),
}


def textured_grid(path: Path, n: int = 8) -> Path:
    """A flat n x n grid on [-0.5, 0.5]^2 (z = 0) with uv = xy + 0.5 and a four-colour quadrant texture."""
    xs = np.linspace(-0.5, 0.5, n + 1)
    gx, gy = np.meshgrid(xs, xs, indexing="xy")
    vertices = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], 1)
    faces = []
    for r in range(n):
        for c in range(n):
            a, b, d = r * (n + 1) + c, r * (n + 1) + c + 1, (r + 1) * (n + 1) + c
            faces += [[a, b, d + 1], [a, d + 1, d]]
    texture = np.zeros((16, 16, 3), dtype=np.uint8)
    texture[8:, :8] = QUADRANTS[(True, True)]
    texture[8:, 8:] = QUADRANTS[(False, True)]
    texture[:8, :8] = QUADRANTS[(True, False)]
    texture[:8, 8:] = QUADRANTS[(False, False)]
    mesh = trimesh.Trimesh(vertices, np.array(faces), process=False)
    material = trimesh.visual.material.SimpleMaterial(image=Image.fromarray(texture), diffuse=[255, 255, 255, 255])
    mesh.visual = trimesh.visual.TextureVisuals(uv=vertices[:, :2] + 0.5, material=material)
    mesh.export(str(path))
    return path
