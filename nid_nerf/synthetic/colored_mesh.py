"""A triangle mesh made of parts, each with its own albedo: uniform, per face, per vertex or a UV texture."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import List, Optional, Tuple

import numpy as np
from jaxtyping import Float, Int


@dataclass
class MeshPart:
    """One geometry with one kind of albedo. Exactly one of the colour fields is used, in this order:
    ``texture`` (with ``uv``), ``vertex_colors``, ``face_colors``; with none of them the part is grey."""

    vertices: Float[np.ndarray, "V 3"]
    faces: Int[np.ndarray, "F 3"]
    face_colors: Optional[Float[np.ndarray, "F 3"]] = None
    vertex_colors: Optional[Float[np.ndarray, "V 3"]] = None
    uv: Optional[Float[np.ndarray, "V 2"]] = None
    texture: Optional[Float[np.ndarray, "H W 3"]] = None
    texture_factor: Float[np.ndarray, " 3"] = field(default_factory=lambda: np.ones(3))

    def albedo(self, face_ids: Int[np.ndarray, " N"], bary: Float[np.ndarray, "N 2"]) -> Float[np.ndarray, "N 3"]:
        """Albedo at hit points given by face index and barycentrics ``(u, v)``: p = (1-u-v) a + u b + v c."""
        weights = np.stack([1.0 - bary[:, 0] - bary[:, 1], bary[:, 0], bary[:, 1]], axis=-1)[..., None]
        corners = self.faces[face_ids]
        if self.texture is not None and self.uv is not None:
            uv = (self.uv[corners] * weights).sum(axis=1)
            return sample_texture(self.texture, uv) * self.texture_factor
        if self.vertex_colors is not None:
            return (self.vertex_colors[corners] * weights).sum(axis=1)
        if self.face_colors is not None:
            return self.face_colors[face_ids]
        return np.full((len(face_ids), 3), 0.6)

    def mean_color(self) -> Float[np.ndarray, " 3"]:
        """Area-weighted mean albedo (used when a part must become uniform, e.g. after decimation)."""
        if len(self.faces) == 0:
            return np.full(3, 0.6)
        area = triangle_areas(self.vertices, self.faces)
        centre = np.full((len(self.faces), 2), 1.0 / 3.0)
        colors = self.albedo(np.arange(len(self.faces)), centre)
        return (colors * area[:, None]).sum(0) / max(area.sum(), 1e-30)


@dataclass
class ColoredMesh:
    """A mesh as a list of parts, plus where its colours came from (for the scene's metadata)."""

    parts: List[MeshPart]
    color_source: str = "none"

    @property
    def num_faces(self) -> int:
        return int(sum(len(p.faces) for p in self.parts))

    @property
    def num_vertices(self) -> int:
        return int(sum(len(p.vertices) for p in self.parts))

    def area(self) -> float:
        return float(sum(triangle_areas(p.vertices, p.faces).sum() for p in self.parts))

    def bounds(self) -> Float[np.ndarray, "2 3"]:
        points = np.concatenate([p.vertices[np.unique(p.faces)] for p in self.parts if len(p.faces)], axis=0)
        return np.stack([points.min(0), points.max(0)])

    def concatenated(self) -> Tuple[Float[np.ndarray, "V 3"], Int[np.ndarray, "F 3"]]:
        """All parts as one vertex and face array (the ground-truth geometry)."""
        vertices, faces, offset = [], [], 0
        for part in self.parts:
            vertices.append(part.vertices)
            faces.append(part.faces + offset)
            offset += len(part.vertices)
        return np.concatenate(vertices, 0), np.concatenate(faces, 0)

    def transformed(self, rotation: Float[np.ndarray, "3 3"], scale: float, offset: Float[np.ndarray, " 3"]):
        """x -> scale * rotation @ x + offset, applied to every part (a similarity keeps the face winding)."""
        parts = [replace(p, vertices=scale * p.vertices @ rotation.T + offset) for p in self.parts]
        return ColoredMesh(parts=parts, color_source=self.color_source)

    def with_uniform_color(self, rgb: Float[np.ndarray, " 3"], source: str) -> ColoredMesh:
        parts = [
            MeshPart(vertices=p.vertices, faces=p.faces, face_colors=np.tile(np.asarray(rgb, float), (len(p.faces), 1)))
            for p in self.parts
        ]
        return ColoredMesh(parts=parts, color_source=source)


def triangle_areas(vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"]) -> Float[np.ndarray, " F"]:
    tri = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=-1)


def face_normals(vertices: Float[np.ndarray, "V 3"], faces: Int[np.ndarray, "F 3"]) -> Float[np.ndarray, "F 3"]:
    """Unit geometric normals from the winding (counter-clockwise = outward)."""
    tri = vertices[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-30)


def sample_texture(texture: Float[np.ndarray, "H W 3"], uv: Float[np.ndarray, "N 2"]) -> Float[np.ndarray, "N 3"]:
    """Bilinear lookup with repeat wrapping; v = 0 is the bottom row of the image (OBJ/glTF-from-trimesh UVs)."""
    h, w = texture.shape[:2]
    x = np.mod(uv[:, 0], 1.0) * w - 0.5
    y = (1.0 - np.mod(uv[:, 1], 1.0)) * h - 0.5
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    x0w, x1w = np.mod(x0, w), np.mod(x0 + 1, w)
    y0w, y1w = np.mod(y0, h), np.mod(y0 + 1, h)
    top = texture[y0w, x0w] * (1 - fx) + texture[y0w, x1w] * fx
    bottom = texture[y1w, x0w] * (1 - fx) + texture[y1w, x1w] * fx
    return top * (1 - fy) + bottom * fy
