"""Slow end-to-end: render a tiny scene, `ns-train nid-field` for 60 steps, then the console scripts
`nid-export-mesh` and `nid-eval-mesh` exactly as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trimesh

BIN = Path(sys.executable).parent


def _run(args, cwd):
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, f"{args[0]} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_train_export_and_evaluate(tmp_path):
    _run([str(BIN / "nid-render-collection"), "--family", "vases", "--count", "1", "--output", "data",
          "--resolution", "32", "--views-train", "20", "--views-test", "2", "--workers", "1", "--quiet"], tmp_path)
    (scene,) = [p for p in (tmp_path / "data").iterdir() if p.is_dir()]
    _run([str(BIN / "ns-train"), "nid-field", "--data", str(scene), "--max-num-iterations", "60",
          "--steps-per-save", "60", "--vis", "tensorboard", "--output-dir", "outputs", "--timestamp", "e2e",
          "--machine.device-type", "cpu"], tmp_path)
    config = tmp_path / "outputs" / scene.name / "nid-field" / "e2e" / "config.yml"
    assert config.is_file()

    _run([str(BIN / "nid-export-mesh"), "--load-config", str(config), "--output", "mesh.glb",
          "--resolution", "96", "--keep-largest"], tmp_path)
    mesh = trimesh.load(str(tmp_path / "mesh.glb"), force="mesh")
    assert len(mesh.faces) > 1000
    assert len(mesh.split(only_watertight=False)) == 1
    assert mesh.visual.kind == "vertex"

    _run([str(BIN / "nid-eval-mesh"), "--pred", "mesh.glb", "--gt", str(scene / "gt_mesh.ply"),
          "--num-points", "20000", "--output", "metrics.json"], tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["num_points"] == 20000
    # 60 steps only: a rough vase, but in the right place and at the right scale.
    assert metrics["chamfer_l1"] < 0.1 * metrics["gt_bbox_diagonal"]

    # Bad input through the console script: one line on stderr, no traceback, non-zero exit.
    bad = subprocess.run([str(BIN / "nid-export-mesh"), "--load-config", str(config), "--output", "m.ply",
                          "--bbox", "3", "3", "3", "4", "4", "4"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode != 0
    assert "empty isosurface" in bad.stderr and "Traceback" not in bad.stderr
