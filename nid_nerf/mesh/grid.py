"""The sampling grid of mesh extraction: an axis-aligned box of isotropic voxels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
import torch
from torch import Tensor

from nid_nerf.errors import NIDInputError


def default_device() -> torch.device:
    """cuda when a GPU is present, else cpu."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass(frozen=True)
class Grid:
    """An axis-aligned grid of isotropic voxels: sample (ix, iy, iz) sits at ``origin + voxel * (ix, iy, iz)``."""

    origin: np.ndarray
    """[3] world position of sample (0, 0, 0), float64."""
    voxel: float
    """Spacing between samples (world units), the same along every axis."""
    shape_xyz: tuple
    """Number of samples along x, y, z."""

    def axis(self, i: int) -> np.ndarray:
        """float32 world coordinates of the samples along axis i (computed once, so every chunking agrees)."""
        return (self.origin[i] + self.voxel * np.arange(self.shape_xyz[i], dtype=np.float64)).astype(np.float32)

    def index_to_world(self, idx_xyz: np.ndarray) -> np.ndarray:
        """[V 3] fractional grid indices (x, y, z) -> world positions, float64."""
        return self.origin[None, :] + self.voxel * np.asarray(idx_xyz, dtype=np.float64)

    @property
    def num_points(self) -> int:
        nx, ny, nz = self.shape_xyz
        return int(nx) * int(ny) * int(nz)


def make_grid(bbox: Union[Sequence[float], np.ndarray, Tensor], resolution: int) -> Grid:
    """Grid over ``bbox`` with ``resolution`` samples along its longest side and the same spacing on the others.

    Args:
        bbox: [2 3] (min corner, max corner) like ``SceneBox.aabb``, or 6 numbers ``xmin ymin zmin xmax ymax zmax``.
        resolution: samples along the longest side (>= 2).
    """
    box = torch.as_tensor(bbox).detach().cpu().double().numpy().reshape(2, 3)
    lo, hi = box[0], box[1]
    extent = hi - lo
    if not np.all(np.isfinite(box)) or np.any(extent <= 0):
        raise NIDInputError(
            f"bounding box {box.ravel().tolist()} is empty or not finite; "
            "pass --bbox xmin ymin zmin xmax ymax zmax with each max > min"
        )
    if int(resolution) < 2:
        raise NIDInputError(f"resolution {resolution} is too small; pass --resolution 2 or more (e.g. 256)")
    voxel = float(extent.max()) / (int(resolution) - 1)
    # A small tolerance so a cube bbox gets exactly `resolution` samples on every axis.
    counts = np.floor(extent / voxel + 1e-6).astype(np.int64) + 1
    counts = np.maximum(counts, 2)
    return Grid(origin=lo.copy(), voxel=voxel, shape_xyz=tuple(int(c) for c in counts))
