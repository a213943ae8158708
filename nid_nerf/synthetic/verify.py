"""Independent checks of a rendered scene against its ground-truth mesh.

- depth: back-project every masked depth pixel and measure its distance to ``gt_mesh.ply``;
- masks: rasterise ``gt_mesh.ply`` with a plain numpy edge-function rasteriser (no ray casting) and compare.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import trimesh
from jaxtyping import Bool, Float
from PIL import Image

from nid_nerf.synthetic.cameras import Pinhole
from nid_nerf.synthetic.scene_writer import decode_depth


def load_scene(scene_dir: Path):
    scene_dir = Path(scene_dir)
    meta = json.loads((scene_dir / "transforms.json").read_text())
    info = json.loads((scene_dir / "nid_scene.json").read_text())
    mesh = trimesh.load(str(scene_dir / "gt_mesh.ply"), process=False)
    intr = Pinhole(int(meta["w"]), int(meta["h"]), meta["fl_x"], meta["fl_y"], meta["cx"], meta["cy"])
    return meta, info, mesh, intr


def backproject(
    depth: Float[np.ndarray, "H W"], c2w: Float[np.ndarray, "4 4"], intr: Pinhole
) -> Float[np.ndarray, "H W 3"]:
    """World points of z-depth pixels (camera looks along -z, pixel centres at +0.5)."""
    cam = intr.camera_directions() * depth[..., None]
    return cam @ c2w[:3, :3].T + c2w[:3, 3]


def rasterize_silhouette(
    vertices: Float[np.ndarray, "V 3"], faces: np.ndarray, c2w: Float[np.ndarray, "4 4"], intr: Pinhole
) -> Bool[np.ndarray, "H W"]:
    """Pixels whose centre lies inside the projection of any triangle (all triangles in front of the camera).

    Each triangle is tested only against the pixel centres in its bounding box, all triangles at once.
    """
    w2c = np.linalg.inv(c2w)
    cam = vertices @ w2c[:3, :3].T + w2c[:3, 3]
    z = -cam[:, 2]
    if np.any(z <= 1e-9):
        raise ValueError("mesh crosses the camera plane; the rasteriser handles only meshes in front of the camera")
    uv = np.stack([intr.fx * cam[:, 0] / z + intr.cx, -intr.fy * cam[:, 1] / z + intr.cy], -1)
    tri = uv[faces]  # F 3 2, pixel (x, y) coordinates; pixel centres at +0.5
    area = (tri[:, 1, 0] - tri[:, 0, 0]) * (tri[:, 2, 1] - tri[:, 0, 1]) - (tri[:, 1, 1] - tri[:, 0, 1]) * (
        tri[:, 2, 0] - tri[:, 0, 0]
    )
    tri = tri[np.abs(area) > 1e-12]
    # pixel index ranges whose centres (k + 0.5) can lie inside each triangle's bounding box
    lo = np.clip(np.ceil(tri.min(1) - 0.5), 0, [intr.width, intr.height]).astype(np.int64)
    hi = np.clip(np.floor(tri.max(1) - 0.5), -1, [intr.width - 1, intr.height - 1]).astype(np.int64)
    nx, ny = np.maximum(hi[:, 0] - lo[:, 0] + 1, 0), np.maximum(hi[:, 1] - lo[:, 1] + 1, 0)
    counts = nx * ny
    owner = np.repeat(np.arange(len(tri)), counts)
    local = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    px = lo[owner, 0] + local % np.maximum(nx[owner], 1)
    py = lo[owner, 1] + local // np.maximum(nx[owner], 1)
    p = np.stack([px + 0.5, py + 0.5], -1)
    t = tri[owner]

    def edge(a, b):
        return (b[:, 0] - a[:, 0]) * (p[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (p[:, 0] - a[:, 0])

    e0, e1, e2 = edge(t[:, 0], t[:, 1]), edge(t[:, 1], t[:, 2]), edge(t[:, 2], t[:, 0])
    inside = ((e0 >= 0) & (e1 >= 0) & (e2 >= 0)) | ((e0 <= 0) & (e1 <= 0) & (e2 <= 0))
    out = np.zeros((intr.height, intr.width), dtype=bool)
    out[py[inside], px[inside]] = True
    return out


def check_scene(scene_dir: Path, max_views: Optional[int] = None, silhouettes: bool = True) -> Dict:
    """Depth reprojection error (relative to the scene scale = object radius) and mask/silhouette agreement."""
    import open3d as o3d

    scene_dir = Path(scene_dir)
    meta, info, mesh, intr = load_scene(scene_dir)
    scale = float(info["scene_scale"])
    raycast = o3d.t.geometry.RaycastingScene(nthreads=1)
    raycast.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)), o3d.core.Tensor(np.asarray(mesh.faces, np.uint32))
    )
    frames = meta["frames"][: max_views or None]
    errors: List[np.ndarray] = []
    ious, mismatched, boundary_only = [], 0, True
    for frame in frames:
        c2w = np.asarray(frame["transform_matrix"], dtype=np.float64)
        depth = decode_depth(np.asarray(Image.open(scene_dir / frame["depth_file_path"])))
        mask = np.asarray(Image.open(scene_dir / frame["object_mask_path"])) > 127
        alpha = np.asarray(Image.open(scene_dir / frame["file_path"]))[..., 3] > 127
        if not np.array_equal(mask, alpha) or not np.array_equal(mask, depth > 0):
            raise AssertionError(f"{frame['file_path']}: mask, alpha and depth>0 disagree")
        points = backproject(depth, c2w, intr)[mask]
        if len(points):
            d = raycast.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
            errors.append(d / scale)
        if silhouettes:
            sil = rasterize_silhouette(np.asarray(mesh.vertices), np.asarray(mesh.faces), c2w, intr)
            union = np.logical_or(sil, mask).sum()
            ious.append(np.logical_and(sil, mask).sum() / max(union, 1))
            diff = sil ^ mask
            mismatched += int(diff.sum())
            if diff.any() and not _on_boundary(diff, sil):
                boundary_only = False
    err = np.concatenate(errors) if errors else np.zeros(0)
    return {
        "scene": scene_dir.name,
        "views": len(frames),
        "depth_error_mean": float(err.mean()) if len(err) else float("nan"),
        "depth_error_p99": float(np.percentile(err, 99)) if len(err) else float("nan"),
        "depth_error_max": float(err.max()) if len(err) else float("nan"),
        "mask_iou_mean": float(np.mean(ious)) if ious else float("nan"),
        "mask_iou_min": float(np.min(ious)) if ious else float("nan"),
        "mask_mismatched_pixels": mismatched,
        "mask_mismatch_on_boundary_only": boundary_only,
    }


def _on_boundary(diff: np.ndarray, silhouette: np.ndarray) -> bool:
    """Every differing pixel touches (8-neighbourhood) a silhouette edge pixel."""
    pad = np.pad(silhouette, 1, mode="edge")
    h, w = silhouette.shape
    neighbours = [pad[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    edge = np.zeros_like(silhouette)
    for n in neighbours:
        edge |= n != silhouette
    return bool(np.all(edge[diff]))


def check_collection(collection: Path, max_views: Optional[int] = None) -> List[Dict]:
    """:func:`check_scene` on every rendered scene of a collection folder (each report names its collection)."""
    from tqdm import tqdm

    from nid_nerf.errors import NIDInputError

    collection = Path(collection)
    scenes = sorted(p.parent for p in collection.glob("*/nid_scene.json"))
    if not scenes:
        raise NIDInputError(f"{collection} holds no rendered scenes (no */nid_scene.json); pass a collection folder")
    reports = [check_scene(s, max_views) for s in tqdm(scenes, desc=collection.name, unit="scene")]
    for r in reports:
        r["collection"] = collection.name
    return reports


def collection_summary(name: str, reports: List[Dict]) -> str:
    """One line per collection: depth-to-mesh error (share of the scene scale) and mask IoU, with the worst cases."""
    mean = np.array([r["depth_error_mean"] for r in reports])
    worst = max(reports, key=lambda r: r["depth_error_mean"])
    ious = np.array([r["mask_iou_mean"] for r in reports])
    return (
        f"{name}: {len(reports)} scenes, {sum(r['views'] for r in reports)} views | depth->mesh error "
        f"mean {100 * mean.mean():.3f}% of scene scale "
        f"(worst scene {worst['scene']} {100 * worst['depth_error_mean']:.3f}%, "
        f"max pixel {100 * max(r['depth_error_max'] for r in reports):.3f}%) | mask IoU vs rasterised mesh "
        f"mean {ious.mean():.4f}, min {min(r['mask_iou_min'] for r in reports):.4f}, "
        f"{sum(r['mask_mismatched_pixels'] for r in reports)} differing pixels, all on silhouette edges: "
        f"{all(r['mask_mismatch_on_boundary_only'] for r in reports)}"
    )


def main(argv: Optional[List[str]] = None) -> int:
    """Check collections and print one summary line each (``scripts/verify_collection.py``); 0 when done."""
    import argparse

    from nid_nerf.io import write_text

    parser = argparse.ArgumentParser(description="Check rendered scenes against their ground-truth meshes: depth "
                                     "back-projected onto gt_mesh.ply, and masks against an independent rasterisation.")
    parser.add_argument("collections", nargs="+", type=Path)
    parser.add_argument("--max-views", type=int, default=None, help="check only the first N frames of each scene")
    parser.add_argument("--json", type=Path, default=None, help="write per-scene results here")
    args = parser.parse_args(argv)
    rows: List[Dict] = []
    for collection in args.collections:
        reports = check_collection(collection, args.max_views)
        rows += reports
        print(collection_summary(collection.name, reports))
    if args.json:
        write_text(args.json, json.dumps(rows, indent=1))
    return 0
