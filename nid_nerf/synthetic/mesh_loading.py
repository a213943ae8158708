"""Read a mesh file (OBJ, PLY, GLB/glTF, STL) into a :class:`ColoredMesh` with the file's own colours, if any.

Problems with the file raise :class:`MeshRejected`; the caller skips the mesh with a warning.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np
import trimesh
from jaxtyping import Float

from nid_nerf.synthetic.colored_mesh import ColoredMesh, MeshPart, triangle_areas

MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".stl")

# trimesh fills these in when a file has UVs but no material; they are not the file's own colours.
_TRIMESH_PLACEHOLDER_RGBA = (100, 100, 100, 255)


class MeshRejected(Exception):
    """A mesh that cannot be rendered. ``kind`` is one of: broken, degenerate, huge, empty."""

    def __init__(self, kind: str, reason: str):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def load_mesh_file(path: Path) -> ColoredMesh:
    """Load every triangle geometry in ``path`` (scene graph transforms applied) with its own colours.

    ``color_source`` is ``texture``, ``vertex``, ``face`` or ``material`` when the file carries colours,
    else ``none``. Faces with out-of-range vertex indices and zero-area faces are dropped.

    A triangle with a NaN or infinite vertex means the export went wrong (the mesh would render with holes
    that the file does not have), so such a mesh is refused rather than silently cut; NaN vertices that no
    triangle uses are harmless and ignored.

    Raises:
        MeshRejected: the file cannot be parsed, has no triangles or NaN/infinite vertices in its triangles
        (``broken``), or has zero area (``degenerate``).
    """
    path = Path(path)
    logging.getLogger("trimesh").setLevel(logging.ERROR)
    try:
        scene = trimesh.load(str(path), force="scene", process=False)
        geometries = scene.dump()
    except Exception as err:  # trimesh raises many types on a corrupt file
        raise MeshRejected("broken", f"cannot be parsed as a mesh ({type(err).__name__}: {err})") from None
    meshes = [g for g in geometries if isinstance(g, trimesh.Trimesh) and len(g.faces) > 0]
    if not meshes:
        raise MeshRejected("broken", "contains no triangles")

    bad = sum(_non_finite_vertices_used(mesh) for mesh in meshes)
    if bad:
        raise MeshRejected(
            "broken",
            f"has {bad} vertices with NaN or infinite coordinates used by its triangles; repair or re-export the "
            "mesh (e.g. remove those vertices in Blender or MeshLab)",
        )
    parts: List[MeshPart] = []
    sources = set()
    for mesh in meshes:
        part, source = _part_from_trimesh(mesh)
        if part is not None:
            parts.append(part)
            sources.add(source)
    if not parts:
        raise MeshRejected("broken", "no valid triangles (non-finite or out-of-range vertex indices)")

    parts, dropped = _drop_degenerate_faces(parts)
    if not parts:
        raise MeshRejected("degenerate", "has zero surface area (every triangle is degenerate)")

    sources.discard("none")
    if not sources:
        source = "none"
    elif len(sources) == 1:
        source = sources.pop()
    else:
        source = "+".join(sorted(sources))
    return ColoredMesh(parts=parts, color_source=source)


def _non_finite_vertices_used(mesh: trimesh.Trimesh) -> int:
    """How many distinct vertices with a NaN or infinite coordinate the (in-range) faces of ``mesh`` use."""
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1)
    faces = faces[(faces >= 0) & (faces < len(vertices))]
    if not len(faces):
        return 0
    used = np.unique(faces)
    return int((~np.all(np.isfinite(vertices[used]), axis=1)).sum())


def _part_from_trimesh(mesh: trimesh.Trimesh) -> Tuple[Optional[MeshPart], str]:
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if faces.ndim != 2 or faces.shape[1] != 3:
        return None, "none"
    valid = np.all((faces >= 0) & (faces < len(vertices)), axis=1)
    finite_vertex = np.all(np.isfinite(vertices), axis=1)
    valid &= np.all(finite_vertex[np.clip(faces, 0, max(len(vertices) - 1, 0))], axis=1) if len(vertices) else False
    if not np.any(valid):
        return None, "none"
    vertices = np.where(finite_vertex[:, None], vertices, 0.0)
    part = MeshPart(vertices=vertices, faces=faces)
    source = _attach_colors(part, mesh.visual, len(faces))
    return _keep_faces(part, valid), source


def _attach_colors(part: MeshPart, visual, num_faces: int) -> str:
    """Fill the part's colour fields from a trimesh visual; return the colour source name."""
    kind = getattr(visual, "kind", None)
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = getattr(visual, "material", None)
        image, factor = _material_image_and_factor(material)
        uv = getattr(visual, "uv", None)
        if image is not None and uv is not None and len(uv) == len(part.vertices) and np.all(np.isfinite(uv)):
            part.uv = np.asarray(uv, dtype=np.float64)
            part.texture = image
            part.texture_factor = factor
            return "texture"
        if image is not None:  # a texture without usable UVs: its mean colour
            part.face_colors = np.tile(image.reshape(-1, 3).mean(0) * factor, (num_faces, 1))
            return "material"
        if factor is not None and not np.allclose(factor, 1.0):
            part.face_colors = np.tile(factor, (num_faces, 1))
            return "material"
        return "none"
    if kind == "vertex":
        colors = np.asarray(visual.vertex_colors, dtype=np.float64)[:, :3] / 255.0
        if len(colors) == len(part.vertices):
            part.vertex_colors = colors
            return "vertex"
    if kind == "face":
        colors = np.asarray(visual.face_colors, dtype=np.float64)[:, :3] / 255.0
        if len(colors) == num_faces:
            part.face_colors = colors
            return "face"
    return "none"


def _material_image_and_factor(material) -> Tuple[Optional[Float[np.ndarray, "H W 3"]], Optional[np.ndarray]]:
    """(texture image in [0, 1], colour factor) of a trimesh material; placeholders count as nothing."""
    if material is None:
        return None, None
    if isinstance(material, trimesh.visual.material.PBRMaterial):
        image = material.baseColorTexture
        factor = material.baseColorFactor
        factor = None if factor is None else np.asarray(factor, dtype=np.float64)[:3] / 255.0
    else:
        image = getattr(material, "image", None)
        diffuse = getattr(material, "diffuse", None)
        factor = None if diffuse is None else np.asarray(diffuse, dtype=np.float64)[:3] / 255.0
        if image is not None:
            factor = None  # OBJ's Kd is not reliably a multiplier of map_Kd in the wild; use the texture as is
    if image is not None:
        rgba = np.asarray(image.convert("RGBA"))
        if rgba.shape[:2] == (2, 2) and np.all(rgba.reshape(-1, 4) == _TRIMESH_PLACEHOLDER_RGBA):
            return None, None  # trimesh's stand-in for "UVs but no material"
        texture = rgba[..., :3].astype(np.float64) / 255.0
        return texture, (np.ones(3) if factor is None else factor)
    return None, factor


def _keep_faces(part: MeshPart, keep: np.ndarray) -> Optional[MeshPart]:
    if not np.any(keep):
        return None
    part.faces = part.faces[keep]
    if part.face_colors is not None:
        part.face_colors = part.face_colors[keep]
    return part


def _drop_degenerate_faces(parts: List[MeshPart]) -> Tuple[List[MeshPart], int]:
    """Remove zero-area triangles; a threshold relative to the mesh size keeps this scale-free."""
    points = np.concatenate([p.vertices[p.faces.reshape(-1)] for p in parts], 0)
    diag = float(np.linalg.norm(points.max(0) - points.min(0)))
    eps = (diag * 1e-7) ** 2
    kept: List[MeshPart] = []
    dropped = 0
    for part in parts:
        keep = triangle_areas(part.vertices, part.faces) > eps
        dropped += int((~keep).sum())
        if np.any(keep):
            kept.append(_keep_faces(part, keep))
    return kept, dropped
