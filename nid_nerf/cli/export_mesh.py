"""``nid-export-mesh``: a trained nid-field / nid-dict checkpoint -> coloured triangle mesh (PLY, OBJ or GLB).

Example::

    nid-export-mesh --load-config outputs/vase/nid-field/2024-01-01_000000/config.yml --output vase.ply
    nid-export-mesh --load-config outputs/collection/nid-dict/.../config.yml --scene-index 3 --output s3.glb \\
        --resolution 512 --keep-largest

Runs on the GPU when there is one, else on the CPU. The SDF is evaluated in slabs of z planes, so memory stays at
one float32 grid (4 bytes per sample) plus one chunk of network activations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Tuple

import numpy as np
import torch
import tyro
from rich.console import Console

from nid_nerf.errors import NIDInputError, install_excepthook
from nid_nerf.io import MESH_SUFFIXES, check_writable_file, write_mesh
from nid_nerf.mesh.extract import DEFAULT_CHUNK_POINTS, extract_mesh
from nid_nerf.mesh.frames import bbox_to_model_frame, mesh_to_input_frame, model_from_input

CONSOLE = Console(stderr=True)


@dataclass
class ExportMesh:
    """Export the zero level set of a trained nid-nerf SDF as a triangle mesh with vertex colours."""

    load_config: Path
    """config.yml written by ns-train nid-field or nid-dict."""
    output: Path
    """Mesh file to write: .ply, .obj or .glb."""
    resolution: int = 256
    """Grid samples along the longest side of the bounding box."""
    bbox: Optional[Tuple[float, float, float, float, float, float]] = None
    """xmin ymin zmin xmax ymax zmax, in the frame of --frame (default: the model's scene box)."""
    frame: Literal["input", "model"] = "input"
    """input: the frame of the scene's transforms file, where the user's cameras and point clouds are (nid-scene
    may have centred and scaled the poses to train; this undoes it); model: the frame the model trained in."""
    colors: bool = True
    """Vertex colours from the radiance head, looking along the negative normal (--no-colors to skip)."""
    keep_largest: bool = False
    """Keep only the largest connected component."""
    scene_index: Optional[int] = None
    """Scene of a nid-dict collection to export (default: the model's default scene)."""
    isovalue: float = 0.0
    """SDF level to extract."""
    dense: bool = False
    """Evaluate every grid sample. By default only a narrow band of 4^3-cell blocks around the surface is (blocks
    whose corner SDF says the surface may be inside, assuming |grad sdf| <= 2); the mesh is the same for a true SDF."""
    data: Optional[Path] = None
    """Training data folder, if it moved since training (the scene box is read from it)."""
    chunk_points: int = DEFAULT_CHUNK_POINTS
    """Points per network call (lower it if memory is short)."""

    def main(self) -> Path:
        return export_mesh(self)


def _check_scene_index(model, scene_index: Optional[int], config_path: Path) -> None:
    num_scenes = getattr(model, "num_scenes", None)
    if num_scenes is None:
        num_scenes = getattr(getattr(model, "field", None), "num_scenes", None)
    if num_scenes is None:
        return
    if scene_index is None:
        if int(num_scenes) > 1:
            CONSOLE.print(f"The model holds {int(num_scenes)} scenes; exporting scene 0 (pass --scene-index to choose)")
        return
    if not 0 <= scene_index < int(num_scenes):
        raise NIDInputError(
            f"--scene-index {scene_index} is out of range for config {config_path}, which holds {int(num_scenes)} "
            f"scene(s); pass --scene-index between 0 and {int(num_scenes) - 1}"
        )


def export_mesh(args: ExportMesh) -> Path:
    """Validate inputs, load the checkpoint, extract the mesh and write it atomically. Returns the output path."""
    from nid_nerf.mesh.load import load_sdf_pipeline

    output = check_writable_file(args.output, MESH_SUFFIXES)
    if args.resolution < 2:
        raise NIDInputError(f"--resolution {args.resolution} is too small; pass 2 or more (e.g. 256)")
    _, pipeline, checkpoint = load_sdf_pipeline(args.load_config, data=args.data)
    model = pipeline.model
    _check_scene_index(model, args.scene_index, args.load_config)
    field = model.field
    device = next(iter(model.parameters()), torch.empty(0)).device
    to_model = model_from_input(pipeline, args.scene_index) if args.frame == "input" else None
    if to_model is not None and np.allclose(to_model, np.eye(4)):
        to_model = None  # the scene kept its frame (nid-render-collection's scenes): nothing to undo
    bbox = args.bbox if args.bbox is not None else model.scene_box.aabb.detach().cpu()
    if args.bbox is not None and to_model is not None:
        bbox = torch.from_numpy(bbox_to_model_frame(args.bbox, to_model))
    kwargs = {} if args.scene_index is None else {"scene_index": args.scene_index}

    def sdf_fn(positions):
        return field.sdf(positions, **kwargs)

    def color_fn(positions, directions):
        return field.color(positions, directions, **kwargs)

    CONSOLE.print(f"Loaded {checkpoint}; extracting at resolution {args.resolution} on {device}")
    start = time.perf_counter()
    mesh = extract_mesh(
        sdf_fn,
        bbox,
        resolution=args.resolution,
        isovalue=args.isovalue,
        color_fn=color_fn if args.colors else None,
        keep_largest=args.keep_largest,
        dense=args.dense,
        chunk_points=args.chunk_points,
        device=device,
    )
    if to_model is not None:
        mesh = mesh_to_input_frame(mesh, to_model)
    write_mesh(output, mesh)
    CONSOLE.print(
        f"Wrote {output}: {len(mesh.vertices)} vertices, {len(mesh.faces)} faces "
        f"({time.perf_counter() - start:.1f} s)"
    )
    return output


def entrypoint() -> None:
    """Console script ``nid-export-mesh``."""
    install_excepthook()
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(ExportMesh).main()


if __name__ == "__main__":
    entrypoint()
