"""Deterministic camera rigs around an object at the origin (nerfstudio / OpenGL convention, z up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
from jaxtyping import Float


@dataclass(frozen=True)
class Pinhole:
    """Pinhole intrinsics in nerfstudio's convention: pixel centres at +0.5, principal point at the centre."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float

    @staticmethod
    def from_fov(width: int, height: int, fov_deg: float) -> Pinhole:
        """Square pixels; ``fov_deg`` spans the smaller image side."""
        focal = 0.5 * min(width, height) / np.tan(0.5 * np.deg2rad(fov_deg))
        return Pinhole(width, height, float(focal), float(focal), width / 2.0, height / 2.0)

    def camera_directions(self) -> Float[np.ndarray, "H W 3"]:
        """Per-pixel ray directions in the camera frame with z = -1 (so a ray parameter t is the z-depth)."""
        j, i = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5, indexing="xy")
        x = (j - self.cx) / self.fx
        y = -(i - self.cy) / self.fy
        return np.stack([x, y, -np.ones_like(x)], axis=-1)


def fibonacci_sphere(n: int) -> Float[np.ndarray, "n 3"]:
    """``n`` nearly evenly spread unit vectors (golden-angle spiral)."""
    k = np.arange(n) + 0.5
    z = 1.0 - 2.0 * k / n
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, 1.0))
    phi = np.pi * (3.0 - np.sqrt(5.0)) * k
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=-1)


def random_rotation(rng: np.random.Generator) -> Float[np.ndarray, "3 3"]:
    """A uniformly random rotation (QR of a Gaussian matrix, sign-fixed)."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def uniform_sphere(n: int, rng: np.random.Generator) -> Float[np.ndarray, "n 3"]:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def look_at(
    centres: Float[np.ndarray, "n 3"], target: Optional[Float[np.ndarray, " 3"]] = None
) -> Float[np.ndarray, "n 4 4"]:
    """Camera-to-world matrices (x right, y up, z back) looking from ``centres`` at ``target`` (default: the
    origin), world z up."""
    back = centres - (np.zeros(3) if target is None else target)
    back = back / np.linalg.norm(back, axis=-1, keepdims=True)
    up_world = np.tile(np.array([0.0, 0.0, 1.0]), (len(centres), 1))
    near_pole = np.abs(back[:, 2]) > 0.999
    up_world[near_pole] = np.array([0.0, 1.0, 0.0])
    right = np.cross(up_world, back)
    right /= np.linalg.norm(right, axis=-1, keepdims=True)
    up = np.cross(back, right)
    c2w = np.tile(np.eye(4), (len(centres), 1, 1))
    c2w[:, :3, 0], c2w[:, :3, 1], c2w[:, :3, 2], c2w[:, :3, 3] = right, up, back, centres
    return c2w


def orbit_views(
    num_train: int, num_test: int, distance: float, rng: np.random.Generator
) -> tuple[Float[np.ndarray, "n 4 4"], Float[np.ndarray, "m 4 4"]]:
    """Training views spread on a randomly rotated Fibonacci sphere; test views uniformly random on the sphere.

    Both look at the origin from ``distance``. The same ``rng`` state gives the same cameras.
    """
    rotation = random_rotation(rng)
    train_dirs = fibonacci_sphere(num_train) @ rotation.T if num_train else np.zeros((0, 3))
    test_dirs = uniform_sphere(num_test, rng) if num_test else np.zeros((0, 3))
    return look_at(distance * train_dirs), look_at(distance * test_dirs)
