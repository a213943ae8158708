"""Build one exact, watertight coloured mesh from coloured primitive solids (manifold3d boolean union)."""

from __future__ import annotations

import colorsys
import warnings
from typing import List, Sequence, Tuple

import numpy as np
import trimesh

from nid_nerf.synthetic.colored_mesh import ColoredMesh, MeshPart

ColoredSolid = Tuple[trimesh.Trimesh, Sequence[float]]


def random_color(rng: np.random.Generator, saturation=(0.35, 0.85), value=(0.45, 0.95)) -> List[float]:
    """A random albedo from HSV ranges that keep shading visible (never near black or white)."""
    rgb = colorsys.hsv_to_rgb(rng.uniform(0.0, 1.0), rng.uniform(*saturation), rng.uniform(*value))
    return [round(float(c), 4) for c in rgb]


def box(lo: Sequence[float], hi: Sequence[float]) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return trimesh.creation.box(extents=hi - lo, transform=trimesh.transformations.translation_matrix((lo + hi) / 2))


def cylinder(x: float, y: float, z0: float, z1: float, radius: float, sections: int = 24) -> trimesh.Trimesh:
    """A vertical cylinder from z0 to z1 at (x, y)."""
    transform = trimesh.transformations.translation_matrix([x, y, (z0 + z1) / 2])
    return trimesh.creation.cylinder(radius=radius, height=z1 - z0, sections=sections, transform=transform)


def union_colored(solids: Sequence[ColoredSolid]) -> ColoredMesh:
    """Boolean union of the solids; each face of the result takes the colour of the solid whose surface it lies on.

    The union removes internal walls, so the result is one closed surface: depth, masks and the ground-truth
    mesh all describe the same solid.
    """
    meshes = [m for m, _ in solids]
    merged = _union(meshes) if len(meshes) > 1 else meshes[0].copy()
    vertices = np.asarray(merged.vertices, dtype=np.float64)
    faces = np.asarray(merged.faces, dtype=np.int64)
    centroids = vertices[faces].mean(axis=1)
    distances = np.stack([_unsigned_distance(m, centroids) for m in meshes], axis=1)
    owner = np.argmin(distances, axis=1)
    colors = np.asarray([c for _, c in solids], dtype=np.float64)[owner]
    return ColoredMesh(parts=[MeshPart(vertices, faces, face_colors=colors)], color_source="family")


def _union(meshes: Sequence[trimesh.Trimesh]) -> trimesh.Trimesh:
    try:
        import manifold3d  # noqa: F401  (trimesh's boolean engine)
    except ImportError:
        global _WARNED
        if not _WARNED:
            warnings.warn(
                "manifold3d is not installed: procedural shapes are left as overlapping parts (internal walls stay in "
                "gt_mesh.ply); install it with: pip install manifold3d",
                stacklevel=3,
            )
            _WARNED = True
        return trimesh.util.concatenate(list(meshes))
    return trimesh.boolean.union(list(meshes), engine="manifold")


_WARNED = False


def _unsigned_distance(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene(nthreads=1)
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32))
    )
    return scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
