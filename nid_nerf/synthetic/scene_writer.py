"""Write one rendered scene as a nerfstudio-format folder, atomically (temp folder, then rename)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
import trimesh
from jaxtyping import Float
from PIL import Image

from nid_nerf.io import TEMP_FOLDER_PREFIX, atomic_folder
from nid_nerf.synthetic.cameras import Pinhole
from nid_nerf.synthetic.raycast import ViewRenders

DEPTH_UNIT = 1e-3
"""Depth PNGs hold uint16 z-depth in units of 1/1000 scene units (nerfstudio's default ``depth_unit_scale_factor``)."""

TEMP_PREFIX = TEMP_FOLDER_PREFIX


def encode_depth(depth: Float[np.ndarray, "H W"]) -> np.ndarray:
    return np.clip(np.round(depth / DEPTH_UNIT), 0, 65535).astype(np.uint16)


def decode_depth(png: np.ndarray) -> Float[np.ndarray, "H W"]:
    return png.astype(np.float64) * DEPTH_UNIT


def encode_normals(normals: Float[np.ndarray, "H W 3"], mask: np.ndarray) -> np.ndarray:
    """World-frame unit normals as RGB = (n + 1) / 2; background pixels are 0."""
    rgb = np.round((normals + 1.0) * 0.5 * 255.0).clip(0, 255).astype(np.uint8)
    return rgb * mask[..., None].astype(np.uint8)


def decode_normals(png: np.ndarray) -> Float[np.ndarray, "H W 3"]:
    n = png[..., :3].astype(np.float64) / 255.0 * 2.0 - 1.0
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)


def write_scene(
    output_dir: Path,
    name: str,
    splits: Dict[str, ViewRenders],
    poses: Dict[str, Float[np.ndarray, "N 4 4"]],
    intrinsics: Pinhole,
    gt_vertices: Float[np.ndarray, "V 3"],
    gt_faces: np.ndarray,
    scene_box_half: float,
    info: Dict,
    overwrite: bool = False,
) -> Path:
    """Write ``output_dir/name``: images/ (RGBA), depths/, normals/, masks/, transforms.json, gt_mesh.ply and
    nid_scene.json. Everything goes into a hidden temp folder first, which is renamed into place at the end, so
    an interrupted run never leaves a scene that looks complete."""
    output_dir = Path(output_dir)
    final = output_dir / name
    with atomic_folder(final, if_exists="replace" if overwrite else "error") as tmp:
        for sub in ("images", "depths", "normals", "masks"):
            (tmp / sub).mkdir(parents=True)
        frames: List[Dict] = []
        split_files: Dict[str, List[str]] = {}
        for split, renders in splits.items():
            split_files[split] = []
            for k in range(len(renders.rgba)):
                stem = f"{split}_{k:04d}.png"
                Image.fromarray(renders.rgba[k]).save(tmp / "images" / stem)
                Image.fromarray(encode_depth(renders.depth[k])).save(tmp / "depths" / stem)
                Image.fromarray(encode_normals(renders.normals[k], renders.mask[k])).save(
                    tmp / "normals" / stem
                )
                Image.fromarray(renders.mask[k].astype(np.uint8) * 255).save(tmp / "masks" / stem)
                frames.append(
                    {
                        "file_path": f"images/{stem}",
                        "depth_file_path": f"depths/{stem}",
                        "normal_file_path": f"normals/{stem}",
                        "object_mask_path": f"masks/{stem}",
                        "transform_matrix": np.asarray(poses[split][k]).tolist(),
                    }
                )
                split_files[split].append(f"images/{stem}")
        transforms = transforms_dict(frames, split_files, intrinsics, scene_box_half)
        (tmp / "transforms.json").write_text(json.dumps(transforms, indent=1))
        trimesh.Trimesh(gt_vertices, gt_faces, process=False).export(str(tmp / "gt_mesh.ply"))
        (tmp / "nid_scene.json").write_text(json.dumps(info, indent=1, sort_keys=True, default=_jsonable))
    return final


def transforms_dict(
    frames: Sequence[Dict], split_files: Dict[str, List[str]], intrinsics: Pinhole, scene_box_half: float
) -> Dict:
    """nerfstudio ``transforms.json`` content. ``val`` is the test split (nerfstudio evaluates on ``val``)."""
    test = split_files.get("test", [])
    return {
        "camera_model": "OPENCV",
        "fl_x": intrinsics.fx,
        "fl_y": intrinsics.fy,
        "cx": intrinsics.cx,
        "cy": intrinsics.cy,
        "w": intrinsics.width,
        "h": intrinsics.height,
        "k1": 0.0,
        "k2": 0.0,
        "p1": 0.0,
        "p2": 0.0,
        "orientation_override": "none",
        "scene_box": [[-scene_box_half] * 3, [scene_box_half] * 3],
        "depth_unit_scale_factor": DEPTH_UNIT,
        "frames": list(frames),
        "train_filenames": split_files.get("train", []),
        "val_filenames": test,
        "test_filenames": test,
    }


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
