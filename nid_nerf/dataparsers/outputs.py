"""nid-nerf's DataparserOutputs (rank-0-only, atomic transform file) and small pure helpers on DataparserOutputs:
subsets, scene tags and concatenation."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Dict, List, Sequence

import torch
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
from nerfstudio.utils import comms

from nid_nerf.io import atomic_path

SCENE_INDEX = "scene_index"
"""Key of the per-image scene index: in ``cameras.metadata`` (shape [N, 1], reaches ``RayBundle.metadata``)
and in ``DataparserOutputs.metadata`` (shape [N])."""

OCCLUSION_KEYS = ("occlusion_filenames", "occlusion_hidden_fractions")
"""Per training image, with --occlusion: its hidden region (PNG, 255 = hidden) and the share of its object
pixels that is hidden (see nid_nerf.dataparsers.occlusion)."""

INPUT_FRAME_KEY = "model_from_input"
"""4x4 float64 similarity from the scene's input frame (its transforms file) to the model's frame: what
nid-export-mesh inverts to write meshes in the input frame. A collection holds one per scene (``scene_`` + key)."""

PER_IMAGE_KEYS = ("depth_filenames", "normal_filenames", SCENE_INDEX, *OCCLUSION_KEYS)
"""Metadata entries with one item per image, which follow the images through subsets and concatenation."""


class NIDDataparserOutputs(DataparserOutputs):
    """nerfstudio's DataparserOutputs whose ``dataparser_transforms.json`` is written once, atomically.

    nerfstudio's ``Trainer.train`` saves the file from every process of a multi-process run, all to the
    same path, with a plain ``open(path, "w")``: N processes race on one file and a crash leaves half of
    it. Here only the process of global rank 0 writes it (a single process is rank 0), through a
    temporary sibling renamed into place; the content is nerfstudio's own. Same fields as the base class
    (no ``@dataclass`` of its own), so ``dataclasses.replace`` keeps the type.
    """

    def save_dataparser_transform(self, path: Path) -> None:
        if not comms.is_main_process():
            return
        with atomic_path(path) as tmp:
            super().save_dataparser_transform(tmp)


def as_nid_outputs(outputs: DataparserOutputs) -> NIDDataparserOutputs:
    """The same outputs as :class:`NIDDataparserOutputs` (what nid-nerf's dataparsers return)."""
    if isinstance(outputs, NIDDataparserOutputs):
        return outputs
    return NIDDataparserOutputs(**{f.name: getattr(outputs, f.name) for f in fields(outputs) if f.init})


def subset_outputs(outputs: DataparserOutputs, indices: Sequence[int]) -> DataparserOutputs:
    """Keep images ``indices`` (in that order): filenames, cameras, masks and every per-image metadata entry."""
    n = len(outputs.image_filenames)
    idx = torch.as_tensor(list(indices), dtype=torch.long)
    metadata = {
        key: _subset_value(value, idx, n) if key in PER_IMAGE_KEYS else value for key, value in outputs.metadata.items()
    }
    return replace(
        outputs,
        image_filenames=[outputs.image_filenames[i] for i in indices],
        cameras=outputs.cameras[idx],
        mask_filenames=None if outputs.mask_filenames is None else [outputs.mask_filenames[i] for i in indices],
        metadata=metadata,
    )


def tag_scene(outputs: DataparserOutputs, scene_index: int, scene_name: str) -> DataparserOutputs:
    """Attach the scene index to every image: in the cameras (so rays carry it) and in the metadata."""
    n = len(outputs.image_filenames)
    tags = torch.full((n,), scene_index, dtype=torch.long)
    cameras = outputs.cameras
    camera_metadata = dict(cameras.metadata or {})
    camera_metadata[SCENE_INDEX] = tags[:, None].clone()
    cameras.metadata = camera_metadata
    metadata = dict(outputs.metadata)
    metadata.update({SCENE_INDEX: tags, "scene_names": [scene_name], "num_scenes": 1})
    return replace(outputs, cameras=cameras, metadata=metadata)


def concat_cameras(cameras: Sequence[Cameras]) -> Cameras:
    """One Cameras object from several; each camera keeps its own intrinsics and resolution."""
    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(c, name).reshape(len(c), -1) for c in cameras], dim=0)

    keys = set.intersection(*[set((c.metadata or {}).keys()) for c in cameras])
    metadata = {k: torch.cat([c.metadata[k] for c in cameras], 0) for k in keys if _all_tensors(cameras, k)}
    return Cameras(
        camera_to_worlds=torch.cat([c.camera_to_worlds for c in cameras], 0),
        fx=cat("fx"),
        fy=cat("fy"),
        cx=cat("cx"),
        cy=cat("cy"),
        width=cat("width"),
        height=cat("height"),
        distortion_params=torch.cat([c.distortion_params.reshape(len(c), -1) for c in cameras], 0)
        if all(c.distortion_params is not None for c in cameras)
        else None,
        camera_type=cat("camera_type"),
        metadata=metadata or None,
    )


def _all_tensors(cameras: Sequence[Cameras], key: str) -> bool:
    return all(isinstance(c.metadata[key], torch.Tensor) and c.metadata[key].shape[0] == len(c) for c in cameras)


def _subset_value(value: Any, idx: torch.Tensor, n: int) -> Any:
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == n:
        return value[idx]
    if isinstance(value, list) and len(value) == n:
        return [value[i] for i in idx.tolist()]
    return value


def concat_lists(values: List[Any]) -> Any:
    """Concatenate per-scene per-image lists; None if any scene lacks them."""
    if any(v is None for v in values):
        return None
    out: List[Any] = []
    for v in values:
        out.extend(v)
    return out


def merge_metadata(per_scene: Sequence[Dict[str, Any]], names: Sequence[str]) -> Dict[str, Any]:
    merged = {
        SCENE_INDEX: torch.cat([m[SCENE_INDEX] for m in per_scene], 0),
        "scene_names": list(names),
        "num_scenes": len(names),
        "depth_filenames": concat_lists([m.get("depth_filenames") for m in per_scene]),
        "normal_filenames": concat_lists([m.get("normal_filenames") for m in per_scene]),
        "depth_unit_scale_factor": per_scene[0].get("depth_unit_scale_factor", 1e-3),
        "mask_color": None,
    }
    if all(INPUT_FRAME_KEY in m for m in per_scene):
        merged["scene_" + INPUT_FRAME_KEY] = torch.stack([torch.as_tensor(m[INPUT_FRAME_KEY]) for m in per_scene])
    if all("occlusion" in m for m in per_scene):
        merged["occlusion"] = per_scene[0]["occlusion"]
        merged.update({key: concat_lists([m.get(key) for m in per_scene]) for key in OCCLUSION_KEYS})
    return merged
