"""SDF -> mesh: grid evaluation, marching cubes, component clean-up, vertex colours.

Pure functions around two callables, so they work for any SDF (a trained field or an analytic shape):

- ``sdf_fn(positions: Float[Tensor, "N 3"]) -> Float[Tensor, "N 1"] or Float[Tensor, "N"]`` (world coordinates);
- ``color_fn(positions: Float[Tensor, "N 3"], directions: Float[Tensor, "N 3"]) -> Float[Tensor, "N 3"]`` in [0, 1].

Memory stays bounded: the grid is evaluated in chunks of at most ``chunk_points`` points (slabs of z planes, see
:mod:`nid_nerf.mesh.evaluate`), results go straight into a single float32 volume of shape [nz, ny, nx], and
scikit-image's marching cubes works on float32 without copying it. A 512^3 grid therefore costs 512 MiB for the
volume plus one chunk of network activations.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
import trimesh
from jaxtyping import Float
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from skimage.measure import marching_cubes
from torch import Tensor
from tqdm.auto import tqdm

from nid_nerf.errors import NIDInputError
from nid_nerf.mesh.evaluate import DEFAULT_CHUNK_POINTS, SDFFn, evaluate_sdf_grid, evaluate_sdf_grid_band
from nid_nerf.mesh.grid import Grid, default_device, make_grid

ColorFn = Callable[[Float[Tensor, "N 3"], Float[Tensor, "N 3"]], Float[Tensor, "N 3"]]

__all__ = ["DEFAULT_CHUNK_POINTS", "Grid", "extract_mesh", "keep_largest_component", "make_grid", "marching_cubes_mesh",
           "vertex_colors"]


def _describe_bbox(grid: Grid) -> str:
    hi = grid.origin + grid.voxel * (np.asarray(grid.shape_xyz) - 1)
    return " ".join(f"{v:.3g}" for v in [*grid.origin, *hi])


def marching_cubes_mesh(volume: np.ndarray, grid: Grid, isovalue: float = 0.0) -> trimesh.Trimesh:
    """Marching cubes (Lewiner) on a [nz, ny, nx] SDF volume (negative inside) -> world-space mesh, outward faces.

    Raises:
        NIDInputError: the volume holds NaN, or the SDF never crosses ``isovalue`` inside the grid.
    """
    num_nan = int(np.isnan(volume).sum())
    if num_nan:
        raise NIDInputError(
            f"the SDF is NaN at {num_nan} of {volume.size} grid points; "
            "the checkpoint has diverged: retrain it or export an earlier checkpoint"
        )
    vmin, vmax = float(volume.min()), float(volume.max())
    if not (vmin < isovalue < vmax):
        raise NIDInputError(
            f"empty isosurface: the SDF never crosses {isovalue:g} inside the box [{_describe_bbox(grid)}] "
            f"(SDF range there is [{vmin:.4g}, {vmax:.4g}]); pass --bbox xmin ymin zmin xmax ymax zmax that encloses "
            f"the object, or an --isovalue between {vmin:.4g} and {vmax:.4g}"
        )
    # Volume index order is (z, y, x); for an SDF (negative inside) "descent" gives outward-facing triangles.
    verts_zyx, faces, _, _ = marching_cubes(volume, level=float(isovalue), gradient_direction="descent")
    verts = grid.index_to_world(verts_zyx[:, ::-1])
    # marching_cubes returns (z, y, x) columns; flipping to (x, y, z) mirrors the frame, so flip winding back.
    faces = np.ascontiguousarray(faces[:, ::-1])
    return trimesh.Trimesh(vertices=verts, faces=faces, process=False)


def keep_largest_component(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Keep the connected component (through shared vertices) with the most faces; drop unused vertices."""
    faces = np.asarray(mesh.faces)
    num_vertices = len(mesh.vertices)
    if len(faces) == 0:
        return mesh
    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(num_vertices, num_vertices))
    num_components, labels = connected_components(graph, directed=False)
    if num_components <= 1:
        return mesh
    face_labels = labels[faces[:, 0]]
    largest = np.bincount(face_labels, minlength=num_components).argmax()
    keep = face_labels == largest
    out = mesh.copy()
    out.update_faces(keep)
    out.remove_unreferenced_vertices()
    return out


def _call_color(color_fn: ColorFn, positions: Tensor, directions: Tensor) -> Tensor:
    """``color_fn`` without autograd; again with autograd if it needs d sdf / dx for its normal input."""
    try:
        with torch.no_grad():
            return color_fn(positions, directions)
    except RuntimeError as err:
        if "grad" not in str(err):
            raise
    with torch.enable_grad():
        return color_fn(positions, directions).detach()


def vertex_colors(
    mesh: trimesh.Trimesh,
    color_fn: ColorFn,
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
) -> np.ndarray:
    """Colour of each vertex as seen by a ray arriving along the negative normal (direction = -normal).

    Returns:
        uint8 RGBA [V 4].
    """
    device = torch.device(device) if device is not None else default_device()
    positions = torch.from_numpy(np.asarray(mesh.vertices, dtype=np.float32))
    normals = torch.from_numpy(np.asarray(mesh.vertex_normals, dtype=np.float32))
    normals = torch.nn.functional.normalize(normals, dim=-1)
    rgb = np.empty((len(positions), 3), dtype=np.float32)
    bar = tqdm(total=len(positions), desc="vertex colours", unit="vert", disable=not progress, leave=False)
    for start in range(0, len(positions), int(chunk_points)):
        end = min(len(positions), start + int(chunk_points))
        out = _call_color(color_fn, positions[start:end].to(device), -normals[start:end].to(device))
        rgb[start:end] = out.detach().reshape(-1, 3).float().cpu().numpy()
        bar.update(end - start)
    bar.close()
    rgb = np.nan_to_num(rgb, nan=0.0).clip(0.0, 1.0)
    rgba = np.full((len(rgb), 4), 255, dtype=np.uint8)
    rgba[:, :3] = np.round(rgb * 255.0).astype(np.uint8)
    return rgba


def extract_mesh(
    sdf_fn: SDFFn,
    bbox: Union[Sequence[float], np.ndarray, Tensor],
    resolution: int = 256,
    isovalue: float = 0.0,
    color_fn: Optional[ColorFn] = None,
    keep_largest: bool = False,
    dense: bool = False,
    block: int = 4,
    lipschitz: float = 2.0,
    chunk_points: int = DEFAULT_CHUNK_POINTS,
    device: Optional[Union[str, torch.device]] = None,
    progress: bool = True,
    stats: Optional[dict] = None,
) -> trimesh.Trimesh:
    """SDF callable -> (optionally coloured) triangle mesh in world coordinates.

    Steps: grid over ``bbox`` -> SDF on the grid (narrow band by default, every sample with ``dense``) -> marching
    cubes at ``isovalue`` -> optionally keep the largest component -> optionally vertex colours from ``color_fn``.

    Args:
        bbox: [2 3] or 6 numbers (xmin ymin zmin xmax ymax zmax).
        resolution: samples along the longest side of the box.
        block, lipschitz: narrow-band parameters (see :func:`~nid_nerf.mesh.evaluate.evaluate_sdf_grid_band`).
        stats: if given, filled with evaluation counts and the grid shape.
    """
    grid = make_grid(bbox, resolution)
    if dense or block <= 1:
        volume = evaluate_sdf_grid(sdf_fn, grid, chunk_points=chunk_points, device=device, progress=progress)
        if stats is not None:
            stats.update(evaluated=grid.num_points, total=grid.num_points)
    else:
        volume = evaluate_sdf_grid_band(
            sdf_fn,
            grid,
            isovalue=isovalue,
            block=block,
            lipschitz=lipschitz,
            chunk_points=chunk_points,
            device=device,
            progress=progress,
            stats=stats,
        )
    if stats is not None:
        stats["grid_shape_xyz"] = list(grid.shape_xyz)
    mesh = marching_cubes_mesh(volume, grid, isovalue=isovalue)
    del volume
    if keep_largest:
        mesh = keep_largest_component(mesh)
    if color_fn is not None:
        mesh.visual.vertex_colors = vertex_colors(
            mesh, color_fn, chunk_points=chunk_points, device=device, progress=progress
        )
    return mesh
