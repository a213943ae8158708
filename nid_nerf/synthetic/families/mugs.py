"""Mugs: a hollow cylinder (optionally tapered) with a floor and a half-torus handle."""

from __future__ import annotations

from typing import Dict

import numpy as np
import trimesh

from nid_nerf.synthetic.colored_mesh import ColoredMesh
from nid_nerf.synthetic.families.solid import box, random_color, union_colored

SECTIONS = 48


def sample_params(rng: np.random.Generator) -> Dict:
    return {
        "radius": float(rng.uniform(0.22, 0.36)),
        "height": float(rng.uniform(0.45, 0.85)),
        "taper": float(rng.uniform(0.75, 1.05)),
        "wall": float(rng.uniform(0.02, 0.04)),
        "floor": float(rng.uniform(0.03, 0.07)),
        "handle_size": float(rng.uniform(0.45, 0.7)),
        "handle_thickness": float(rng.uniform(0.025, 0.045)),
        "handle_squash": float(rng.uniform(0.9, 1.4)),
        "body_color": random_color(rng),
        "inside_color": random_color(rng, saturation=(0.0, 0.2), value=(0.75, 0.95)),
        "handle_same_color": bool(rng.random() < 0.7),
        "handle_color": random_color(rng),
    }


def build(p: Dict) -> ColoredMesh:
    r_top, h, wall, floor = p["radius"], p["height"], p["wall"], p["floor"]
    r_bot = r_top * p["taper"]
    outline = np.array(
        [
            [0.0, 0.0],
            [r_bot, 0.0],
            [r_top, h],
            [r_top - wall, h],
            [r_bot - wall + (r_top - r_bot) * floor / h, floor],
            [0.0, floor],
        ]
    )
    cup = trimesh.creation.revolve(outline, sections=SECTIONS)

    # handle: a torus in the xz-plane centred on the outer wall, cut to the half outside the cup
    major = 0.5 * p["handle_size"] * h
    minor = p["handle_thickness"]
    torus = trimesh.creation.torus(major_radius=major, minor_radius=minor, major_sections=48, minor_sections=16)
    torus.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    torus.apply_scale([1.0, 1.0, p["handle_squash"]])
    r_mid = 0.5 * (r_top + r_bot)
    torus.apply_translation([r_mid, 0.0, 0.5 * h])
    zc = 0.5 * h
    half_height = major * p["handle_squash"] + minor
    outside = box(
        [r_mid - wall, -2 * minor, zc - half_height - 0.01],
        [r_mid + major + 2 * minor, 2 * minor, zc + half_height + 0.01],
    )
    try:
        handle = trimesh.boolean.intersection([torus, outside], engine="manifold")
    except (ImportError, ValueError):  # no manifold3d: keep the faces of the torus outside the cup instead
        handle = torus.slice_plane([r_mid - wall, 0.0, 0.0], [1.0, 0.0, 0.0], cap=True)

    body = p["body_color"]
    handle_color = body if p["handle_same_color"] else p["handle_color"]
    mesh = union_colored([(cup, body), (handle, handle_color)])
    # the inside of the cup (above the floor, within the wall) gets its own glaze colour
    part = mesh.parts[0]
    centroids = part.vertices[part.faces].mean(1)
    radial = np.linalg.norm(centroids[:, :2], axis=1)
    r_at = r_bot + (r_top - r_bot) * np.clip(centroids[:, 2] / h, 0, 1)
    inside = (centroids[:, 2] > floor - 1e-6) & (radial < r_at - 0.5 * wall) & (centroids[:, 2] < h - 1e-6)
    part.face_colors[inside] = p["inside_color"]
    return mesh
