"""A small headless CPU renderer for mesh figures: open3d ``RaycastingScene`` + two-sided Lambert shading.

No OpenGL context is needed, so it works on servers. Vertex colours are interpolated with the hit's barycentric
coordinates; meshes without colours are drawn light grey.

    python -m nid_nerf.mesh.render --mesh gt.ply exported.ply --output docs/mesh_spot.png
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import open3d as o3d
import trimesh

from nid_nerf.errors import NIDInputError
from nid_nerf.io import save_image


def _camera(center: np.ndarray, radius: float, azimuth_deg: float, elevation_deg: float, up_axis: int) -> np.ndarray:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    # Spherical offset with `up_axis` as the vertical.
    horizontal = [i for i in range(3) if i != up_axis]
    offset = np.zeros(3)
    offset[horizontal[0]] = np.cos(el) * np.cos(az)
    offset[horizontal[1]] = np.cos(el) * np.sin(az)
    offset[up_axis] = np.sin(el)
    return center + radius * offset


def render_mesh(
    mesh: trimesh.Trimesh,
    width: int = 512,
    height: int = 512,
    azimuth_deg: float = 30.0,
    elevation_deg: float = 25.0,
    fov_deg: float = 35.0,
    up_axis: int = 2,
    background: Tuple[float, float, float] = (1.0, 1.0, 1.0),
    ambient: float = 0.25,
    smooth: bool = True,
) -> np.ndarray:
    """Render ``mesh`` from a camera orbiting its bounding-box centre. Returns uint8 RGB [H W 3].

    ``smooth`` interpolates vertex normals across each triangle (Phong normals); otherwise face normals (flat).
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.uint32)
    if len(faces) == 0:
        raise NIDInputError("the mesh to render has no faces; pass a triangle mesh")
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(vertices), o3d.core.Tensor(faces))
    lo, hi = mesh.bounds
    center = 0.5 * (lo + hi)
    half_diag = 0.5 * float(np.linalg.norm(hi - lo))
    distance = half_diag / np.sin(np.radians(fov_deg) / 2) * 1.05
    eye = _camera(center, distance, azimuth_deg, elevation_deg, up_axis)
    up = np.zeros(3)
    up[up_axis] = 1.0
    rays = o3d.t.geometry.RaycastingScene.create_rays_pinhole(
        fov_deg=fov_deg, center=center.tolist(), eye=eye.tolist(), up=up.tolist(), width_px=width, height_px=height
    )
    hits = scene.cast_rays(rays)
    t_hit = hits["t_hit"].numpy()
    hit = np.isfinite(t_hit)
    prim = hits["primitive_ids"].numpy()[hit].astype(np.int64)
    uv = hits["primitive_uvs"].numpy()[hit]
    normals = hits["primitive_normals"].numpy()[hit]
    bary = np.stack([1.0 - uv[:, 0] - uv[:, 1], uv[:, 0], uv[:, 1]], axis=-1)  # weights of the face's 3 vertices
    corners = faces[prim].astype(np.int64)  # [M 3]
    if smooth:
        vertex_normals = np.asarray(mesh.vertex_normals, dtype=np.float32)
        interp = np.einsum("mk,mkc->mc", bary, vertex_normals[corners])
        normals = interp / np.maximum(np.linalg.norm(interp, axis=-1, keepdims=True), 1e-12)
    dirs = rays.numpy()[..., 3:][hit]
    dirs = dirs / np.linalg.norm(dirs, axis=-1, keepdims=True)

    if mesh.visual.kind == "vertex":
        tri = np.asarray(mesh.visual.vertex_colors, dtype=np.float32)[corners, :3] / 255.0  # [M 3 3]
        albedo = np.einsum("mk,mkc->mc", bary, tri)
    elif mesh.visual.kind == "face":
        albedo = np.asarray(mesh.visual.face_colors, dtype=np.float32)[prim, :3] / 255.0
    else:
        albedo = np.full((len(prim), 3), 0.8, dtype=np.float32)
    # Headlight a little above and to the side of the camera; two-sided so inverted faces still show.
    light = -dirs + 0.35 * up[None, :]
    light /= np.linalg.norm(light, axis=-1, keepdims=True)
    lambert = np.abs(np.sum(normals * light, axis=-1, keepdims=True))
    shaded = albedo * (ambient + (1.0 - ambient) * lambert)
    image = np.empty((height, width, 3), dtype=np.float32)
    image[:] = np.asarray(background, dtype=np.float32)
    image[hit] = shaded
    # open3d's pinhole rays come out rotated by 180 degrees relative to (row down, column right) with `up` on top.
    image = image[::-1, ::-1]
    return np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)


def render_turntable(
    mesh: trimesh.Trimesh, azimuths: Sequence[float] = (30.0, 150.0, 270.0), size: int = 384, **kwargs
) -> np.ndarray:
    """Side-by-side renders from several azimuths. Returns uint8 RGB [size, size * len(azimuths), 3]."""
    return np.concatenate([render_mesh(mesh, size, size, azimuth_deg=a, **kwargs) for a in azimuths], axis=1)


@dataclass
class RenderMeshes:
    """Render meshes to one PNG: a row per mesh, a column per azimuth (headless CPU ray casting)."""

    mesh: Tuple[Path, ...]
    """Mesh files (.ply, .obj, .glb, ...); one row each."""
    output: Path
    """PNG to write."""
    azimuths: Tuple[float, ...] = (30.0, 150.0, 270.0)
    """Camera azimuths in degrees around the up axis."""
    elevation: float = 25.0
    size: int = 384
    """Pixels per view (square)."""
    up_axis: int = 2
    """0, 1 or 2: which world axis points up in the picture (nid-nerf scenes are z-up)."""

    def main(self) -> Path:
        from nid_nerf.mesh.metrics import load_mesh

        if self.output.suffix.lower() != ".png":
            raise NIDInputError(f"output {self.output} must end in .png; pass --output <name>.png")
        rows = []
        for path in self.mesh:
            mesh = load_mesh(path, role="input")
            rows.append(
                render_turntable(mesh, self.azimuths, self.size, elevation_deg=self.elevation, up_axis=self.up_axis)
            )
        return save_image(self.output, np.concatenate(rows, axis=0))


def entrypoint() -> None:
    """``python -m nid_nerf.mesh.render --mesh a.ply b.ply --output docs/mesh_a.png``."""
    import tyro

    tyro.cli(RenderMeshes).main()


if __name__ == "__main__":
    entrypoint()
