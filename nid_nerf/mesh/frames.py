"""Meshes in the input frame: undo the similarity a dataparser applied to the poses (nid-scene's ``--normalize``).

The model trains in a normalised frame (for a capture in arbitrary units: centred on the object, scaled so it fills
[-1, 1]^3). A mesh written in that frame lands far from, and at another size than, the user's own cameras and
point clouds; the 4x4 similarity the dataparser recorded (``model_from_input`` in its metadata) is inverted here.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
import trimesh

from nid_nerf.dataparsers.outputs import INPUT_FRAME_KEY


def model_from_input(pipeline, scene_index: Optional[int] = None) -> Optional[np.ndarray]:
    """The 4x4 from the input frame to the model frame that the pipeline's dataparser recorded, or None
    (another dataparser: its meshes stay in the model frame)."""
    outputs = getattr(getattr(pipeline, "datamanager", None), "train_dataparser_outputs", None)
    metadata = getattr(outputs, "metadata", None) or {}
    per_scene = metadata.get("scene_" + INPUT_FRAME_KEY)
    if per_scene is not None:
        return np.asarray(torch.as_tensor(per_scene)[scene_index or 0], dtype=np.float64)
    single = metadata.get(INPUT_FRAME_KEY)
    return None if single is None else np.asarray(torch.as_tensor(single), dtype=np.float64)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def mesh_to_input_frame(mesh: trimesh.Trimesh, matrix: np.ndarray) -> trimesh.Trimesh:
    """``mesh`` (model frame) moved into the input frame, ``matrix`` being model_from_input; colours kept."""
    inverse = np.linalg.inv(matrix)
    mesh.vertices = transform_points(mesh.vertices, inverse)
    if np.linalg.det(inverse[:3, :3]) < 0:  # a mirroring transform would turn the faces inside out
        mesh.faces = mesh.faces[:, ::-1]
    return mesh


def bbox_to_model_frame(bbox: Sequence[float], matrix: np.ndarray) -> np.ndarray:
    """An input-frame box (xmin ymin zmin xmax ymax zmax) as the model-frame box that holds its 8 corners."""
    lo, hi = np.asarray(bbox[:3], dtype=np.float64), np.asarray(bbox[3:], dtype=np.float64)
    corners = np.array([[(lo, hi)[i][0], (lo, hi)[j][1], (lo, hi)[k][2]] for i in (0, 1) for j in (0, 1)
                        for k in (0, 1)])
    moved = transform_points(corners, matrix)
    return np.stack([moved.min(0), moved.max(0)]).astype(np.float32)
