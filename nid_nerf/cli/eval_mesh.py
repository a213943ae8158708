"""``nid-eval-mesh``: compare a predicted mesh with a ground-truth mesh and write the metrics as JSON.

Example::

    nid-eval-mesh --pred vase.ply --gt data/demo/vase_000/mesh.ply --output vase_metrics.json

Metric definitions: see :mod:`nid_nerf.mesh.metrics`. Both meshes must be in the same frame and units.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import tyro

from nid_nerf.errors import install_excepthook
from nid_nerf.io import check_writable_file, write_json
from nid_nerf.mesh.metrics import load_mesh, mesh_metrics


@dataclass
class EvalMesh:
    """Chamfer-L1, F-score at 1% and 0.5% of the ground-truth bbox diagonal, and normal consistency."""

    pred: Path
    """Predicted mesh (e.g. from nid-export-mesh)."""
    gt: Path
    """Ground-truth mesh in the same frame."""
    num_points: int = 100_000
    """Surface samples on each mesh (N)."""
    output: Optional[Path] = None
    """JSON file to write (default: print only)."""
    seed: int = 0
    """Seed of the surface sampling."""

    def main(self) -> dict:
        return evaluate(self)


def evaluate(args: EvalMesh) -> dict:
    """Load both meshes, compute the metrics, print them and write the JSON atomically if asked."""
    if args.output is not None:
        check_writable_file(args.output, (".json",))
    pred = load_mesh(args.pred, role="predicted")
    gt = load_mesh(args.gt, role="ground-truth")
    metrics = mesh_metrics(pred, gt, num_points=args.num_points, seed=args.seed)
    metrics["pred"] = str(args.pred)
    metrics["gt"] = str(args.gt)
    if args.output is not None:
        write_json(args.output, metrics)
    print(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def entrypoint() -> None:
    """Console script ``nid-eval-mesh``."""
    install_excepthook()
    tyro.extras.set_accent_color("bright_yellow")
    tyro.cli(EvalMesh).main()


if __name__ == "__main__":
    entrypoint()
