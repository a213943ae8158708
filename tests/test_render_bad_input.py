"""Bad input to the collection renderer: each bad item is skipped with a warning that lists it; nothing usable
is a clear error; an interrupted run leaves no scene that looks complete."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import trimesh
from render_helpers import ASSETS, FAST, plain_stl

from nid_nerf.cli.render_collection import main as render_main
from nid_nerf.errors import NIDInputError
from nid_nerf.synthetic import scene_writer
from nid_nerf.synthetic.collection_renderer import discover_mesh_jobs, render_collection


def _run(meshes, out, settings=FAST):
    jobs, skipped = discover_mesh_jobs(meshes)
    results, stats = render_collection(jobs, out, settings, workers=1, skipped_inputs=skipped, progress=False)
    return {r.name: r for r in results}, dict(stats["skipped"])


def test_every_bad_item_is_skipped_and_listed(tmp_path, capsys):
    meshes = tmp_path / "in"
    meshes.mkdir()
    plain_stl(meshes / "good.stl")
    (meshes / "empty_folder").mkdir()
    (meshes / "README.txt").write_text("not a mesh")
    (meshes / "broken.obj").write_text("v 0 0\nf 1 2 3 4 5\ngarbage\n")
    (meshes / "flat.ply").write_text(
        "ply\nformat ascii 1.0\nelement vertex 3\nproperty float x\nproperty float y\nproperty float z\n"
        "element face 1\nproperty list uchar int vertex_indices\nend_header\n0 0 0\n1 1 1\n2 2 2\n3 0 1 2\n"
    )
    (meshes / "colors.json").write_text("{ this is not json")
    assert render_main(["--meshes", str(meshes), "--output", str(tmp_path / "out"), "--views-train", "3",
                        "--views-test", "1", "--resolution", "16", "--workers", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    for item, why in [("empty_folder/", "empty folder"), ("README.txt", "not a mesh"), ("broken.obj", "broken"),
                      ("flat.ply", "degenerate"), ("colors.json", "not valid JSON")]:
        line = next((ln for ln in err.splitlines() if ln.strip().startswith(f"- {item}:")), None)
        assert line is not None and why in line, (item, err)
    collection = json.loads((tmp_path / "out" / "collection.json").read_text())
    assert collection["scenes"] == ["good"] and len(collection["skipped"]) == 5
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["collection.json", "good"]


def test_huge_mesh_is_decimated_or_rejected(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    sphere = trimesh.creation.icosphere(subdivisions=4)  # 5120 faces
    sphere.visual.vertex_colors = np.tile([200, 50, 50, 255], (len(sphere.vertices), 1)).astype(np.uint8)
    sphere.export(str(meshes / "big.ply"))
    results, _ = _run(meshes, tmp_path / "dec", replace(FAST, max_faces=1000, decimate_to=500))
    assert results["big"].status == "rendered" and results["big"].faces <= 500
    assert "decimated from 5,120" in results["big"].notes[0]
    info = json.loads((tmp_path / "dec" / "big" / "nid_scene.json").read_text())
    assert info["source"]["decimated_from_faces"] == 5120 and info["color_source"] == "vertex"
    with pytest.raises(NIDInputError, match="huge"):
        _run(meshes, tmp_path / "rej", replace(FAST, max_faces=1000, huge="reject"))


@pytest.mark.slow
def test_more_than_a_million_faces_is_decimated(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    trimesh.creation.icosphere(subdivisions=8).export(str(meshes / "huge.ply"))  # 1,310,720 faces
    results, _ = _run(meshes, tmp_path / "out")
    assert results["huge"].status == "rendered" and results["huge"].faces <= FAST.decimate_to


def test_nothing_usable_is_an_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(NIDInputError, match="no mesh files"):
        _run(empty, tmp_path / "out")
    (empty / "notes.md").write_text("hi")
    (empty / "bad.stl").write_bytes(b"\x00" * 10)
    with pytest.raises(NIDInputError, match="no usable mesh: ") as info:
        _run(empty, tmp_path / "out")
    assert "bad.stl: broken" in str(info.value) and "notes.md: not a mesh" in str(info.value)
    with pytest.raises(NIDInputError, match="does not exist"):
        _run(tmp_path / "missing", tmp_path / "out")
    assert not (tmp_path / "out" / "collection.json").exists()


def test_unwritable_output_is_an_error(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    plain_stl(meshes / "a.stl")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NIDInputError, match="cannot be written"):
        _run(meshes, tmp_path / "file" / "out")


def test_interrupted_scene_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    meshes = tmp_path / "in"
    shutil.copytree(ASSETS / "blobs", meshes, ignore=shutil.ignore_patterns("SOURCE.md"))
    real_export = trimesh.Trimesh.export

    def crash(self, *args, **kwargs):  # dies after the images are written, before the scene is complete
        raise KeyboardInterrupt

    monkeypatch.setattr(trimesh.Trimesh, "export", crash)
    with pytest.raises(KeyboardInterrupt):
        _run(meshes, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == []  # no scene, no temp folder

    # a temp folder left by a killed process (pid that no longer exists) is cleaned on the next run
    stale = tmp_path / "out" / f"{scene_writer.TEMP_PREFIX}999999999-abc-blob_000"
    (stale / "images").mkdir(parents=True)
    monkeypatch.setattr(trimesh.Trimesh, "export", real_export)
    results, _ = _run(meshes, tmp_path / "out")
    assert {r.status for r in results.values()} == {"rendered"}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blob_000", "blob_007", "collection.json"]
