"""Helpers for the tests that go through the real command line (ns-train, nid-render-collection, ...)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Sequence

BIN = Path(sys.executable).parent
"""The venv's bin folder: ns-train, ns-render, nid-render-collection, ..."""

FAST = [
    "--vis", "tensorboard",
    "--machine.device-type", "cpu",
    "--viewer.quit-on-train-completion", "True",
    "--pipeline.model.grid-resolution", "24",
    "--pipeline.model.num-fine-samples", "16",
    "--pipeline.model.eval-num-fine-samples", "12",
    "--pipeline.model.log2-table-size", "12",
    "--pipeline.datamanager.train-num-rays-per-batch", "256",
    "--experiment-name", "e",
    "--timestamp", "t",
]
"""ns-train flags for tiny, fast runs; the run folder is <output-dir>/e/<method>/t."""


def run(args: Sequence, timeout: float = 900, **env) -> subprocess.CompletedProcess:
    """Run a venv command (``args[0]`` names it) and capture its output; ``env`` adds environment variables."""
    environment = dict(os.environ, PYTHONWARNINGS="ignore", **env)
    return subprocess.run([str(BIN / args[0]), *map(str, args[1:])], capture_output=True, text=True,
                          env=environment, timeout=timeout)


def render_vases(out: Path, count: int, views_train: int, views_test: int) -> Path:
    """``count`` procedural vases at 32 px in ``out`` (one scene folder each); returns ``out``."""
    result = run(["nid-render-collection", "--family", "vases", "--count", count, "--resolution", "32",
                  "--views-train", views_train, "--views-test", views_test, "--output", out, "--quiet",
                  "--workers", "1"])
    assert result.returncode == 0, result.stderr
    return out


def plane_rays(n: int, half_width: float, origin: Sequence[float]):
    """A RayBundle of about ``n`` rays from ``origin`` through a square grid of side 2 * ``half_width`` on z = 0
    (the model tests' cameras: a point on the -z side looking at the unit box)."""
    import math

    import torch
    from nerfstudio.cameras.rays import RayBundle

    side = int(math.sqrt(n))
    lin = torch.linspace(-half_width, half_width, side)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    targets = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.zeros(side * side)], -1)
    origins = torch.tensor(list(origin), dtype=torch.float32).expand_as(targets).clone()
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    return RayBundle(origins=origins, directions=directions, pixel_area=torch.ones(len(origins), 1))
