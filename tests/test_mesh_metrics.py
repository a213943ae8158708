"""Mesh metrics (Chamfer-L1, F-score, normal consistency) on meshes with known answers, and the eval CLI."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import trimesh

from nid_nerf.cli.eval_mesh import EvalMesh, evaluate
from nid_nerf.errors import NIDInputError
from nid_nerf.mesh.metrics import f_score, mesh_metrics

N = 20_000


def sphere(radius=1.0):
    return trimesh.creation.icosphere(subdivisions=5, radius=radius)


def test_identical_meshes_score_perfectly():
    mesh = sphere()
    m = mesh_metrics(mesh, mesh.copy(), num_points=N)
    assert m["chamfer_l1"] == 0.0 and m["accuracy"] == 0.0 and m["completeness"] == 0.0
    assert m["f_score_1pct"] == 1.0 and m["f_score_0.5pct"] == 1.0
    assert m["normal_consistency"] == pytest.approx(1.0, abs=1e-9)
    assert m["num_points"] == N


def test_concentric_spheres_have_the_radius_gap_as_chamfer():
    # Same icosphere scaled by 1.02 about its centre: every sample is 0.02 from the other surface.
    inner, outer = sphere(1.0), sphere(1.02)
    m = mesh_metrics(inner, outer, num_points=N)
    assert m["chamfer_l1"] == pytest.approx(0.02, abs=2e-4)
    assert m["accuracy"] == pytest.approx(m["completeness"], abs=2e-4)
    diagonal = m["gt_bbox_diagonal"]
    assert diagonal == pytest.approx(np.linalg.norm(outer.extents))
    # tau(1%) = 0.0353 > 0.02 > tau(0.5%) = 0.0177
    assert m["f_score_1pct"] == 1.0
    assert m["f_score_0.5pct"] == 0.0
    assert m["thresholds"]["1pct"]["tau"] == pytest.approx(0.01 * diagonal)
    assert m["normal_consistency"] > 0.999


def test_shifted_sphere_matches_point_to_surface_distance():
    # A unit sphere shifted by d along x: a point at polar angle theta is d |cos theta| from the other sphere (to first
    # order), and |cos theta| is uniform on [0, 1] for area-uniform samples. So chamfer -> d / 2 and the fraction of
    # points within tau (precision = recall = F) -> tau / d. Nearest-sample distances approach this as N grows.
    d = 0.05
    gt = sphere()
    pred = gt.copy()
    pred.apply_translation([d, 0.0, 0.0])
    m = mesh_metrics(pred, gt, num_points=200_000)
    assert m["chamfer_l1"] == pytest.approx(d / 2, rel=0.05)
    for key in ("1pct", "0.5pct"):
        t = m["thresholds"][key]
        assert t["f_score"] == pytest.approx(t["tau"] / d, abs=0.02)


def test_f_score_formula():
    s = f_score(np.array([0.0, 0.0, 1.0, 1.0]), np.array([0.0, 1.0, 1.0, 1.0]), tau=0.5)
    assert s["precision"] == 0.5 and s["recall"] == 0.25
    assert s["f_score"] == pytest.approx(2 * 0.5 * 0.25 / 0.75)
    assert f_score(np.ones(3), np.ones(3), tau=0.5)["f_score"] == 0.0


def test_eval_cli_writes_json(tmp_path):
    pred, gt = tmp_path / "pred.ply", tmp_path / "gt.obj"
    sphere(1.0).export(pred)
    sphere(1.02).export(gt)
    out = tmp_path / "metrics" / "m.json"
    result = evaluate(EvalMesh(pred=pred, gt=gt, num_points=5000, output=out))
    on_disk = json.loads(out.read_text())
    assert on_disk["chamfer_l1"] == pytest.approx(result["chamfer_l1"])
    assert on_disk["num_points"] == 5000
    for key in ("chamfer_l1", "f_score_1pct", "f_score_0.5pct", "normal_consistency", "num_points"):
        assert key in on_disk
    assert [p for p in os.listdir(out.parent) if p != "m.json"] == []  # no temp files left behind


def test_eval_cli_bad_inputs(tmp_path):
    gt = tmp_path / "gt.ply"
    sphere().export(gt)
    with pytest.raises(NIDInputError, match="does not exist"):
        evaluate(EvalMesh(pred=tmp_path / "missing.ply", gt=gt))
    cloud = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).normal(size=(100, 3))).export(cloud)
    with pytest.raises(NIDInputError, match="no triangles"):
        evaluate(EvalMesh(pred=cloud, gt=gt))
    garbage = tmp_path / "garbage.ply"
    garbage.write_bytes(b"ply\nformat nonsense\n")
    with pytest.raises(NIDInputError, match="garbage.ply"):
        evaluate(EvalMesh(pred=garbage, gt=gt))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(NIDInputError, match="cannot be written"):
        evaluate(EvalMesh(pred=gt, gt=gt, output=blocker / "m.json"))
    with pytest.raises(NIDInputError, match="extension"):
        evaluate(EvalMesh(pred=gt, gt=gt, output=tmp_path / "m.txt"))
