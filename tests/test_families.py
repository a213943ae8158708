"""Procedural shape families: exact watertight meshes, deterministic members, parametric variety."""

from __future__ import annotations

import json

import numpy as np
import pytest
import trimesh
from render_helpers import FAST

from nid_nerf.errors import NIDInputError
from nid_nerf.synthetic.collection_renderer import family_jobs, render_collection
from nid_nerf.synthetic.families import FAMILIES, make_member
from nid_nerf.synthetic.verify import check_scene


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_members_are_closed_solids_and_vary(family):
    extents, colors = [], []
    for index in range(4):
        mesh, params = make_member(family, index, seed=0)
        vertices, faces = mesh.concatenated()
        solid = trimesh.Trimesh(vertices, faces, process=True)
        assert solid.is_watertight and solid.is_volume, (family, index)
        extents.append(solid.extents / solid.extents.max())
        colors.append(np.unique(mesh.parts[0].face_colors, axis=0))
        json.dumps(params)  # parameters are stored in nid_scene.json
    assert np.ptp(np.array(extents), axis=0).max() > 0.05  # proportions differ between members
    assert len({tuple(c[0]) for c in colors}) > 1


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_members_are_deterministic(family):
    a, pa = make_member(family, 3, seed=7)
    b, pb = make_member(family, 3, seed=7)
    c, pc = make_member(family, 3, seed=8)
    assert pa == pb and pa != pc
    assert np.array_equal(a.concatenated()[0], b.concatenated()[0])


def test_family_collection_renders_and_checks_out(tmp_path):
    jobs = family_jobs("mugs", 2) + family_jobs("chairs", 1) + family_jobs("vases", 1)
    results, stats = render_collection(jobs, tmp_path, FAST, workers=1, progress=False)
    assert stats["rendered"] == 4 and not stats["skipped"]
    for name in ("mugs_0000", "chairs_0000", "vases_0000"):
        report = check_scene(tmp_path / name)
        assert report["depth_error_mean"] < 0.01 and report["mask_iou_min"] > 0.97
        info = json.loads((tmp_path / name / "nid_scene.json").read_text())
        assert info["source"]["kind"] == "family" and info["color_source"] == "family"


def test_unknown_family_or_count():
    with pytest.raises(NIDInputError, match="unknown shape family"):
        family_jobs("tables", 3)
    with pytest.raises(NIDInputError, match="at least 1"):
        family_jobs("chairs", 0)
