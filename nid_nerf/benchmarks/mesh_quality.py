"""Mesh quality run (issue #6 "must show"): render a mesh into a scene, train nid-field from scratch with all views,
export the mesh, score it against the ground truth and draw the figure.

    python -m nid_nerf.benchmarks.mesh_quality --mesh ../shared/data/meshes/classic/spot.obj --work /tmp/spot_quality \\
        --figure docs/mesh_spot.png

Writes ``<work>/quality.json`` (metrics, timings, the commands) and prints a markdown summary. Training is
``ns-train nid-field`` run as a subprocess, exactly as a user runs it (so it is not a
:class:`~nid_nerf.benchmarks.harness.TrainRun`: what is measured here is the user's command line).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import tyro

from nid_nerf.errors import NIDInputError
from nid_nerf.io import write_text


@dataclass
class QualityRun:
    """Render -> ns-train nid-field (all views, from scratch) -> nid-export-mesh -> metrics -> figure."""

    mesh: Path
    """Ground-truth mesh file (OBJ, PLY, GLB, STL)."""
    work: Path
    """Folder for the scene, the training run, the exported mesh and quality.json."""
    steps: int = 2000
    """Training iterations (nid-field's default)."""
    views_train: int = 100
    views_test: int = 10
    image_resolution: int = 64
    """Rendered image width = height."""
    up_axis: str = "y"
    """Up axis of the mesh file (OBJ/glTF: y)."""
    mesh_resolution: int = 256
    """Marching-cubes grid."""
    keep_largest: bool = True
    num_points: int = 100_000
    figure: Optional[Path] = None
    """PNG to write: ground truth (top row) and exported mesh (bottom row)."""
    device_type: str = "cpu"
    """ns-train --machine.device-type (cpu or cuda)."""

    def main(self) -> dict:
        return run_quality(self)


def _run(cmd: List[str], cwd: Path, log: Path) -> float:
    """Run one command with its output in ``log``; its wall-clock seconds."""
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed with exit code {code}; see {log}")
    return time.perf_counter() - start


def run_quality(args: QualityRun) -> dict:
    """Render the mesh (once), train (unless its last checkpoint exists), export, score, draw; the quality.json dict."""
    from nid_nerf.cli.eval_mesh import EvalMesh, evaluate
    from nid_nerf.cli.export_mesh import ExportMesh, export_mesh
    from nid_nerf.mesh.render import RenderMeshes
    from nid_nerf.synthetic.collection_renderer import RenderSettings, SceneJob, render_collection

    mesh_path = Path(args.mesh).expanduser().resolve()
    if not mesh_path.is_file():
        raise NIDInputError(f"mesh {mesh_path} does not exist; pass --mesh <mesh file>")
    work = Path(args.work).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    name = mesh_path.stem
    scene = work / "data" / name
    if not (scene / "transforms.json").is_file():
        settings = RenderSettings(
            views_train=args.views_train,
            views_test=args.views_test,
            resolution=args.image_resolution,
            up_axis=args.up_axis,  # type: ignore[arg-type]
        )
        render_collection([SceneJob(name=name, path=str(mesh_path))], work / "data", settings, workers=1)
    bin_dir = Path(sys.executable).parent
    train_cmd = [
        str(bin_dir / "ns-train"), "nid-field", "--data", str(scene), "--max-num-iterations", str(args.steps),
        "--steps-per-save", str(min(args.steps, 250)), "--vis", "tensorboard", "--output-dir", str(work / "outputs"),
        "--timestamp", "quality", "--machine.device-type", args.device_type,
    ]
    config = work / "outputs" / name / "nid-field" / "quality" / "config.yml"
    checkpoint = config.parent / "nerfstudio_models" / f"step-{args.steps - 1:09d}.ckpt"
    train_s = None
    if not checkpoint.is_file():
        train_s = _run(train_cmd, work, work / "train.log")
    exported = work / f"{name}_nid_field.ply"
    start = time.perf_counter()
    export_mesh(ExportMesh(load_config=config, output=exported, resolution=args.mesh_resolution,
                           keep_largest=args.keep_largest))
    export_s = time.perf_counter() - start
    metrics = evaluate(EvalMesh(pred=exported, gt=scene / "gt_mesh.ply", num_points=args.num_points,
                                output=work / "metrics.json"))
    if args.figure is not None:
        RenderMeshes(mesh=(scene / "gt_mesh.ply", exported), output=args.figure).main()
    result = {
        "mesh": str(mesh_path),
        "train_command": " ".join(train_cmd),
        "train_seconds": train_s,
        "export_seconds_incl_load": export_s,
        "steps": args.steps,
        "views_train": args.views_train,
        "image_resolution": args.image_resolution,
        "mesh_resolution": args.mesh_resolution,
        "metrics": metrics,
    }
    write_text(work / "quality.json", json.dumps(result, indent=2) + "\n")
    print(
        f"| {name} | {args.views_train} views {args.image_resolution} px, {args.steps} steps | "
        f"{metrics['chamfer_l1']:.4f} | {metrics['f_score_1pct']:.3f} | {metrics['f_score_0.5pct']:.3f} | "
        f"{metrics['normal_consistency']:.3f} |"
    )
    return result


def entrypoint() -> None:
    """``python -m nid_nerf.benchmarks.mesh_quality``."""
    tyro.cli(QualityRun).main()


if __name__ == "__main__":
    entrypoint()
