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
- **up stretch**: a portrait capture frames an upright object taller than it is wide. When the cameras share an up
  vector u (the mean of their image-up axes has length >= :data:`SHARED_UP`) and see farther up than across, the
  object may reach ``median(distance * sin(vertical half field of view))`` along u, up to :data:`MAX_STRETCH` times
  R: the model frame is squeezed along u by that ratio, so that reach lands on the unit sphere too. Across u (the
  viewing depth included, where a wall behind the object would be) the radius stays R. On instant-ngp's fox (270x480
  portrait, half fields of view 21.4 and 34.9 degrees) the ratio is 1.57: the sphere of radius R cut the ears and
  the snout off the SDF, and the background field drew them. The map stays affine, so rays stay rays and meshes go
  back to the input frame exactly; the SDF is a distance in the squeezed frame (its zero set is what matters);
- **sparse points** (``ply_file_path``), when at least :data:`MIN_POINTS` lie inside that sphere, shrink it to
  the object: the box of their 1st-99th percentiles, padded by 10 %, kept between 0.5 R and R (no up stretch).

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
SHARED_UP = 0.9
"""The cameras share an up vector when the mean of their unit image-up axes is at least this long."""
MAX_STRETCH = 2.0
"""The up stretch is capped at this ratio (a 9:16 portrait at the same focal length gives 1.57)."""
MISS_FRACTION = 0.5
"""Warn when more than this share of the cameras' optical axes miss the scene box."""


@dataclass(frozen=True)
class Normalisation:
    """``p_model = scale * squeeze @ (p_input - centre)``, ``squeeze = I - (1 - 1 / stretch) u u^T``."""

    centre: np.ndarray
    scale: float
    num_points: int = 0
    """Sparse points that sized the box (0: the cameras alone)."""
    up: Optional[np.ndarray] = None
    """The cameras' shared unit up vector u (None: no up stretch)."""
    stretch: float = 1.0
    """How much farther than ``1 / scale`` the object may reach along ``up``."""

    def squeeze(self) -> np.ndarray:
        """The 3x3 linear part, less the scale (the identity without an up stretch)."""
        if self.up is None or self.stretch == 1.0:
            return np.eye(3)
        u = np.asarray(self.up, dtype=np.float64)
        return np.eye(3) - (1.0 - 1.0 / self.stretch) * np.outer(u, u)

    def matrix(self) -> np.ndarray:
        """The 4x4 affine map from the input frame to the model frame (a similarity without an up stretch)."""
        m = np.eye(4)
        m[:3, :3] = self.scale * self.squeeze()
        m[:3, 3] = -m[:3, :3] @ np.asarray(self.centre, dtype=np.float64)
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


def up_stretch(camera_to_worlds: np.ndarray, distances: np.ndarray, radius: float,
               vertical_half_fovs: np.ndarray):
    """The shared up vector and the stretch along it (module docstring), or (None, 1.0)."""
    ups = np.asarray(camera_to_worlds, dtype=np.float64)[:, :3, 1]
    ups = ups / np.linalg.norm(ups, axis=1, keepdims=True).clip(min=1e-12)
    mean = ups.mean(0)
    if np.linalg.norm(mean) < SHARED_UP:
        return None, 1.0
    reach = float(np.median(distances * np.sin(np.asarray(vertical_half_fovs, dtype=np.float64))))
    stretch = float(np.clip(reach / radius, 1.0, MAX_STRETCH)) if np.isfinite(reach) else 1.0
    if stretch <= 1.0 + 1e-3:
        return None, 1.0
    return mean / np.linalg.norm(mean), stretch


def fit_normalisation(
    camera_to_worlds: np.ndarray, half_fovs: np.ndarray, points: Optional[np.ndarray] = None,
    vertical_half_fovs: Optional[np.ndarray] = None,
) -> Normalisation:
    """The centre and scale of a capture (see the module docstring); ``half_fovs`` in radians, per camera, of the
    smaller image side; ``vertical_half_fovs`` of the image's height (None: no up stretch)."""
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
    up, stretch = None, 1.0
    if not used and vertical_half_fovs is not None:
        up, stretch = up_stretch(camera_to_worlds, distances, radius, vertical_half_fovs)
    return Normalisation(centre=centre, scale=1.0 / radius, num_points=used, up=up, stretch=stretch)


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
