"""Centre and scale of a capture whose poses come in any frame and units (nid-scene's ``--normalize``).

A photo capture (COLMAP through ns-process-data, a phone app) puts the object anywhere, at any scale. Kept in
its own frame, a vase whose translations were multiplied by 10 trained to 9.1 dB against 20.1 dB (as reported in
the issue), the default box (half-size 1) being a tenth of the object's size; here, a 32 px vase from 20 views
(x10 and offset, 300 steps) gave 8.4 dB kept in its frame and 26.0 dB normalised. The frame found here depends
only on the cameras (and the sparse points when the capture has them), so it is the same for any similarity
transform of the input:

- **centre**: the point nearest to every camera's optical axis, in least squares (object captures orbit the
  object and point at it);
- **scale**: the radius R of the largest sphere about that centre every camera sees whole, the median over the
  cameras of ``distance * sin(half field of view)``; it maps to 1, the default box's half-size. The synthetic
  scenes (cameras at 2.5, 45 degrees field of view, object radius 0.8, box half-size 1) give R = 0.957: the box
  found for them is the one they were rendered with, within 5 %;
- **sparse points** (``ply_file_path``), when at least :data:`MIN_POINTS` lie inside that sphere, shrink it to
  the object: the box of their 1st-99th percentiles, padded by 10 %, kept between 0.5 R and R.

Everything here is plain geometry on arrays (OpenGL camera-to-world, as transforms.json stores them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

MIN_POINTS = 20
"""Sparse points inside the visible sphere needed before they, not the cameras alone, size the box."""
POINT_PADDING = 0.1
"""The box of the sparse points is widened by this fraction of its half-size (points sit on the surface)."""
MISS_FRACTION = 0.5
"""Warn when more than this share of the cameras' optical axes miss the scene box."""


@dataclass(frozen=True)
class Normalisation:
    """``p_model = scale * (p_input - centre)``."""

    centre: np.ndarray
    scale: float
    num_points: int = 0
    """Sparse points that sized the box (0: the cameras alone)."""

    def matrix(self) -> np.ndarray:
        """The 4x4 similarity from the input frame to the model frame."""
        m = np.eye(4)
        m[:3, :3] *= self.scale
        m[:3, 3] = -self.scale * np.asarray(self.centre, dtype=np.float64)
        return m


def optical_axes(camera_to_worlds: np.ndarray):
    """Camera centres and unit viewing directions (OpenGL: the camera looks along its -z)."""
    c2w = np.asarray(camera_to_worlds, dtype=np.float64)
    directions = -c2w[:, :3, 2]
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True).clip(min=1e-12)
    return c2w[:, :3, 3], directions


def camera_focus(origins: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """The point nearest to all the lines ``o + t d`` in least squares.

    A ridge of 1e-6 per camera toward the mean camera centre keeps it defined when the axes are parallel
    (forward-facing captures), where the lines have no nearest point.
    """
    n = len(origins)
    projectors = np.eye(3)[None] - directions[:, :, None] * directions[:, None, :]
    a = projectors.sum(0) + 1e-6 * n * np.eye(3)
    b = np.einsum("nij,nj->i", projectors, origins) + 1e-6 * n * origins.mean(0)
    return np.linalg.solve(a, b)


def fit_normalisation(
    camera_to_worlds: np.ndarray, half_fovs: np.ndarray, points: Optional[np.ndarray] = None
) -> Normalisation:
    """The centre and scale of a capture (see the module docstring); ``half_fovs`` in radians, per camera, of the
    smaller image side."""
    origins, directions = optical_axes(camera_to_worlds)
    centre = camera_focus(origins, directions)
    distances = np.linalg.norm(origins - centre, axis=1)
    radius = float(np.median(distances * np.sin(np.asarray(half_fovs, dtype=np.float64))))
    if not np.isfinite(radius) or radius <= 0:
        radius = float(np.median(distances)) or 1.0
    used = 0
    if points is not None and len(points):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        inside = pts[np.linalg.norm(pts - centre, axis=1) < radius]
        if len(inside) >= MIN_POINTS:
            lo, hi = np.percentile(inside, 1, axis=0), np.percentile(inside, 99, axis=0)
            centre = 0.5 * (lo + hi)
            half = float((0.5 * (hi - lo)).max()) * (1.0 + POINT_PADDING)
            radius = float(np.clip(half, 0.5 * radius, radius))
            used = len(inside)
    return Normalisation(centre=centre, scale=1.0 / radius, num_points=used)


def axes_missing_box(camera_to_worlds: np.ndarray, aabb: np.ndarray) -> np.ndarray:
    """Per camera: True where the optical axis (in front of the camera) does not pass through the box."""
    origins, directions = optical_axes(camera_to_worlds)
    aabb = np.asarray(aabb, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(directions) < 1e-12, 1e-12, directions)
        t0, t1 = (aabb[0] - origins) * inv, (aabb[1] - origins) * inv
    near = np.minimum(t0, t1).max(1)
    far = np.maximum(t0, t1).min(1)
    return ~((far >= np.maximum(near, 0.0)) & (far > 0))
