"""Put a mesh in the scene frame: z up, centred on its bounding box, inside a sphere of a given radius."""

from __future__ import annotations

from typing import Dict, Literal, Tuple

import numpy as np
from jaxtyping import Float

from nid_nerf.synthetic.colored_mesh import ColoredMesh

UpAxis = Literal["x", "y", "z", "-x", "-y", "-z"]


def up_axis_rotation(up_axis: UpAxis) -> Float[np.ndarray, "3 3"]:
    """A proper rotation that takes the file's ``up_axis`` to +z (nerfstudio's world up)."""
    table = {
        "z": np.eye(3),
        "-z": np.diag([1.0, -1.0, -1.0]),
        "y": np.array([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]]),  # y -> z, z -> -y
        "-y": np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]]),
        "x": np.array([[0, 0, -1.0], [0, 1.0, 0], [1.0, 0, 0]]),  # x -> z
        "-x": np.array([[0, 0, 1.0], [0, 1.0, 0], [-1.0, 0, 0]]),
    }
    return table[up_axis]


def normalize_mesh(mesh: ColoredMesh, up_axis: UpAxis, radius: float) -> Tuple[ColoredMesh, Dict]:
    """Rotate ``up_axis`` to +z, move the bounding-box centre to the origin, scale the farthest vertex to
    ``radius``. Returns the new mesh and the similarity ``x_scene = scale * R @ x_file + offset``."""
    rotation = up_axis_rotation(up_axis)
    rotated = mesh.transformed(rotation, 1.0, np.zeros(3))
    lo, hi = rotated.bounds()
    centre = 0.5 * (lo + hi)
    used = [p.vertices[np.unique(p.faces)] for p in rotated.parts]
    extent = max(float(np.linalg.norm(v - centre, axis=1).max()) for v in used)
    scale = radius / max(extent, 1e-30)
    offset = -scale * centre
    out = rotated.transformed(np.eye(3), scale, offset)
    transform = {"rotation": rotation.tolist(), "scale": scale, "offset": offset.tolist(), "up_axis": up_axis}
    return out, transform
