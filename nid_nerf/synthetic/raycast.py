"""CPU ray casting of a :class:`ColoredMesh` (open3d RaycastingScene, Embree): RGBA, depth, normals, mask."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from jaxtyping import Bool, Float, UInt8

from nid_nerf.synthetic.cameras import Pinhole
from nid_nerf.synthetic.colored_mesh import ColoredMesh, face_normals


@dataclass(frozen=True)
class Shading:
    """Lambertian plus ambient under one directional light fixed in the world (so radiance is view-independent)."""

    light_dir: Tuple[float, float, float] = (0.35, -0.45, 0.82)
    """Direction towards the light, world frame (z up); normalised on use."""
    ambient: float = 0.4
    diffuse: float = 0.6


@dataclass
class ViewRenders:
    rgba: UInt8[np.ndarray, "N H W 4"]
    """Shaded albedo, straight (not premultiplied) alpha; alpha is the mask."""
    depth: Float[np.ndarray, "N H W"]
    """z-depth along the camera's viewing axis, in scene units; 0 where the ray misses."""
    normals: Float[np.ndarray, "N H W 3"]
    """Unit world-frame geometric normals facing the camera; 0 where the ray misses."""
    mask: Bool[np.ndarray, "N H W"]


def lambertian(
    albedo: Float[np.ndarray, "*bs 3"],
    normals: Float[np.ndarray, "*bs 3"],
    shading: Shading,
) -> Float[np.ndarray, "*bs 3"]:
    light = np.asarray(shading.light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    cosine = np.clip(normals @ light, 0.0, None)[..., None]
    return albedo * (shading.ambient + shading.diffuse * cosine)


def raycast_views(
    mesh: ColoredMesh,
    camera_to_worlds: Float[np.ndarray, "N 4 4"],
    intrinsics: Pinhole,
    shading: Shading = Shading(),
    nthreads: int = 0,
    max_rays_per_cast: int = 1 << 20,
) -> ViewRenders:
    """Cast one ray through each pixel centre of each view (nerfstudio's pixel convention)."""
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene(nthreads=nthreads)
    normals_per_part = []
    for part in mesh.parts:
        scene.add_triangles(
            o3d.core.Tensor(part.vertices.astype(np.float32)), o3d.core.Tensor(part.faces.astype(np.uint32))
        )
        normals_per_part.append(face_normals(part.vertices, part.faces))

    n, h, w = len(camera_to_worlds), intrinsics.height, intrinsics.width
    dirs_cam = intrinsics.camera_directions().reshape(-1, 3)
    rgba = np.zeros((n, h * w, 4), dtype=np.uint8)
    depth = np.zeros((n, h * w), dtype=np.float32)
    normals = np.zeros((n, h * w, 3), dtype=np.float32)
    mask = np.zeros((n, h * w), dtype=bool)

    views_per_cast = max(1, max_rays_per_cast // (h * w))
    for start in range(0, n, views_per_cast):
        c2w = camera_to_worlds[start : start + views_per_cast]
        dirs = np.einsum("vij,pj->vpi", c2w[:, :3, :3], dirs_cam)  # t along dirs is the z-depth
        origins = np.broadcast_to(c2w[:, None, :3, 3], dirs.shape)
        rays = np.concatenate([origins, dirs], axis=-1).reshape(-1, 6).astype(np.float32)
        hits = scene.cast_rays(o3d.core.Tensor(rays))
        t_hit = hits["t_hit"].numpy()
        geometry = hits["geometry_ids"].numpy().astype(np.int64)
        face = hits["primitive_ids"].numpy().astype(np.int64)
        bary = hits["primitive_uvs"].numpy().astype(np.float64)
        hit = np.isfinite(t_hit)

        color = np.zeros((len(rays), 3))
        normal = np.zeros((len(rays), 3))
        flat_dirs = dirs.reshape(-1, 3)
        for g, part in enumerate(mesh.parts):
            sel = np.flatnonzero(hit & (geometry == g))
            if len(sel) == 0:
                continue
            nrm = normals_per_part[g][face[sel]]
            facing = np.sum(nrm * flat_dirs[sel], axis=-1) > 0  # back face seen: flip to face the camera
            nrm[facing] *= -1.0
            normal[sel] = nrm
            color[sel] = lambertian(part.albedo(face[sel], bary[sel]), nrm, shading)

        k = len(c2w)
        rows = slice(start, start + k)
        hit_v = hit.reshape(k, -1)
        mask[rows] = hit_v
        depth[rows] = np.where(hit_v, t_hit.reshape(k, -1), 0.0)
        normals[rows] = normal.reshape(k, -1, 3)
        rgba[rows, :, :3] = np.round(np.clip(color, 0.0, 1.0) * 255.0).reshape(k, -1, 3).astype(np.uint8)
        rgba[rows, :, 3] = hit_v * np.uint8(255)

    return ViewRenders(
        rgba=rgba.reshape(n, h, w, 4),
        depth=depth.reshape(n, h, w),
        normals=normals.reshape(n, h, w, 3),
        mask=mask.reshape(n, h, w),
    )
