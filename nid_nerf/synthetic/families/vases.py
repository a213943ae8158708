"""Vases: open-topped solids of revolution with a random smooth profile, wall thickness and an optional band."""

from __future__ import annotations

from typing import Dict

import numpy as np
import trimesh
from scipy.interpolate import PchipInterpolator

from nid_nerf.synthetic.colored_mesh import ColoredMesh, MeshPart
from nid_nerf.synthetic.families.solid import random_color

SECTIONS = 48
PROFILE_SAMPLES = 40


def sample_params(rng: np.random.Generator) -> Dict:
    height = float(rng.uniform(0.6, 1.2))
    return {
        "height": height,
        "base_radius": float(rng.uniform(0.12, 0.26)),
        "belly_radius": float(rng.uniform(0.22, 0.42)),
        "belly_at": float(rng.uniform(0.2, 0.5)),
        "neck_radius": float(rng.uniform(0.07, 0.18)),
        "neck_at": float(rng.uniform(0.65, 0.88)),
        "lip_radius": float(rng.uniform(0.10, 0.28)),
        "wall": float(rng.uniform(0.015, 0.035)),
        "floor": float(rng.uniform(0.03, 0.08)),
        "band": bool(rng.random() < 0.6),
        "band_from": float(rng.uniform(0.3, 0.6)),
        "band_width": float(rng.uniform(0.05, 0.15)),
        "body_color": random_color(rng),
        "band_color": random_color(rng),
    }


def outer_profile(p: Dict) -> PchipInterpolator:
    """Monotone cubic through (z, r) control points: no overshoot, so the radius stays positive."""
    h = p["height"]
    z = np.array([0.0, p["belly_at"] * h, p["neck_at"] * h, h])
    r = np.array([p["base_radius"], p["belly_radius"], p["neck_radius"], p["lip_radius"]])
    return PchipInterpolator(z, r)


def build(p: Dict) -> ColoredMesh:
    h, wall, floor = p["height"], p["wall"], p["floor"]
    radius = outer_profile(p)
    z_out = np.linspace(0.0, h, PROFILE_SAMPLES)
    z_in = np.linspace(h, floor, PROFILE_SAMPLES)
    r_in = np.maximum(radius(z_in) - wall, 0.25 * wall)
    # closed (r, z) outline, counter-clockwise: axis -> base -> outer wall up -> lip -> inner wall down -> floor
    outline = np.concatenate(
        [
            [[0.0, 0.0]],
            np.stack([radius(z_out), z_out], 1),
            np.stack([r_in, z_in], 1),
            [[0.0, floor]],
        ]
    )
    mesh = trimesh.creation.revolve(outline, sections=SECTIONS)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    colors = np.tile(np.asarray(p["body_color"], float), (len(faces), 1))
    if p["band"]:
        zc = vertices[faces][:, :, 2].mean(1) / h
        in_band = (zc > p["band_from"]) & (zc < p["band_from"] + p["band_width"])
        colors[in_band] = p["band_color"]
    return ColoredMesh(parts=[MeshPart(vertices, faces, face_colors=colors)], color_source="family")
