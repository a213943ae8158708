"""Each input format renders into a complete nerfstudio scene, with colours from the right source."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from render_helpers import ASSETS, FAST, colored_box_ply, cosine, masked_mean_color, plain_stl, write_textured

from nid_nerf.synthetic.collection_renderer import discover_mesh_jobs, render_collection
from nid_nerf.synthetic.colors import palette_color


def _render(meshes, out, settings=FAST, workers=1):
    jobs, skipped = discover_mesh_jobs(meshes)
    results, stats = render_collection(jobs, out, settings, workers=workers, skipped_inputs=skipped, progress=False)
    return {r.name: r for r in results}, stats


def test_scene_folder_layout(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    colored_box_ply(meshes / "box.ply")
    results, _ = _render(meshes, tmp_path / "out")
    scene = tmp_path / "out" / "box"
    assert results["box"].status == "rendered"
    meta = json.loads((scene / "transforms.json").read_text())
    assert len(meta["train_filenames"]) == FAST.views_train and meta["val_filenames"] == meta["test_filenames"]
    assert len(meta["test_filenames"]) == FAST.views_test and len(meta["frames"]) == FAST.views_train + FAST.views_test
    assert (meta["w"], meta["h"]) == (FAST.resolution, FAST.resolution)
    for frame in meta["frames"]:
        rgba = np.asarray(Image.open(scene / frame["file_path"]))
        depth = np.asarray(Image.open(scene / frame["depth_file_path"]))
        normals = np.asarray(Image.open(scene / frame["normal_file_path"]))
        mask = np.asarray(Image.open(scene / frame["object_mask_path"]))
        assert rgba.shape == (32, 32, 4) and depth.dtype == np.uint16 and normals.shape == (32, 32, 3)
        assert np.array_equal(rgba[..., 3] > 0, mask > 0) and np.array_equal(depth > 0, mask > 0)
        assert 0 < (mask > 0).mean() < 1  # the object is in view and does not fill the frame
    assert (scene / "gt_mesh.ply").is_file()
    assert json.loads((tmp_path / "out" / "collection.json").read_text())["scenes"] == ["box"]


def test_ply_vertex_colors(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    colored_box_ply(meshes / "redbox.ply", rgb=(0.9, 0.1, 0.1))
    results, _ = _render(meshes, tmp_path / "out")
    assert results["redbox"].color_source == "vertex"
    assert cosine(masked_mean_color(tmp_path / "out" / "redbox"), (0.9, 0.1, 0.1)) > 0.99


@pytest.mark.parametrize("suffix", [".glb", ".obj"])
def test_texture_colors(tmp_path, suffix):
    """GLB (embedded texture) and OBJ (+ .mtl + .png written by trimesh): both halves of the texture show."""
    meshes = tmp_path / "in"
    meshes.mkdir()
    if suffix == ".obj":
        folder = meshes / "slab"  # OBJ with its .mtl and texture in its own folder (one mesh per folder)
        folder.mkdir()
        write_textured(folder / "slab.obj")
    else:
        write_textured(meshes / "slab.glb")
    results, _ = _render(meshes, tmp_path / "out")
    assert results["slab"].color_source == "texture"
    pixels = []
    for image in (tmp_path / "out" / "slab" / "images").glob("*.png"):
        rgba = np.asarray(Image.open(image)).astype(float)
        pixels.append(rgba[rgba[..., 3] > 0, :3])
    pixels = np.concatenate(pixels)
    reddish = (pixels[:, 0] > 2 * pixels[:, 2] + 20).mean()
    bluish = (pixels[:, 2] > 2 * pixels[:, 0] + 20).mean()
    assert reddish > 0.2 and bluish > 0.2, (reddish, bluish)


def test_stl_gets_palette_color(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    plain_stl(meshes / "ball.stl")
    results, _ = _render(meshes, tmp_path / "out")
    assert results["ball"].color_source == "palette"
    assert cosine(masked_mean_color(tmp_path / "out" / "ball"), palette_color("ball")) > 0.99


def test_obj_with_colors_json_wins(tmp_path):
    """colors.json wins over the mesh's own colours; real pybullet blobs (OBJ with convex-part groups)."""
    meshes = tmp_path / "in"
    shutil.copytree(ASSETS / "blobs", meshes, ignore=shutil.ignore_patterns("SOURCE.md"))
    colored_box_ply(meshes / "blob_007.ply", rgb=(1.0, 0.0, 0.0))  # same name as blob_007.obj: skipped
    colored_box_ply(meshes / "other.ply", rgb=(1.0, 0.0, 0.0))
    colors = json.loads((meshes / "colors.json").read_text())
    colors["other"] = [0.1, 0.8, 0.2]
    (meshes / "colors.json").write_text(json.dumps(colors))
    results, stats = _render(meshes, tmp_path / "out")
    assert {n for n, r in results.items() if r.status == "rendered"} == {"blob_000", "blob_007", "other"}
    assert any("already named 'blob_007'" in reason for _, reason in stats["skipped"])
    for name in ("blob_000", "blob_007", "other"):
        assert results[name].color_source == "colors.json"
        assert cosine(masked_mean_color(tmp_path / "out" / name), colors[name]) > 0.99


def test_deterministic_for_a_seed(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    plain_stl(meshes / "ball.stl")
    shutil.copy(ASSETS / "blobs" / "blob_000.obj", meshes)
    _render(meshes, tmp_path / "a")
    _render(meshes, tmp_path / "b", workers=2)  # parallel workers give the same bytes
    from dataclasses import replace

    _render(meshes, tmp_path / "c", settings=replace(FAST, seed=1))
    for name in ("ball", "blob_000"):
        files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a" / name).rglob("*") if p.is_file())
        assert files
        for rel in files:
            assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
        poses_a = json.loads((tmp_path / "a" / name / "transforms.json").read_text())["frames"][0]["transform_matrix"]
        poses_c = json.loads((tmp_path / "c" / name / "transforms.json").read_text())["frames"][0]["transform_matrix"]
        assert not np.allclose(poses_a, poses_c)


def test_existing_scenes_are_kept_and_overwrite_redoes(tmp_path):
    meshes = tmp_path / "in"
    meshes.mkdir()
    plain_stl(meshes / "ball.stl")
    _render(meshes, tmp_path / "out")
    results, stats = _render(meshes, tmp_path / "out")
    assert results["ball"].status == "exists" and stats["rendered"] == 0
    from dataclasses import replace

    assert results["ball"].notes == []
    results, _ = _render(meshes, tmp_path / "out", settings=replace(FAST, resolution=24))
    assert results["ball"].status == "exists" and "resolution 32 -> 24" in results["ball"].notes[0]
    results, _ = _render(meshes, tmp_path / "out", settings=replace(FAST, overwrite=True))
    assert results["ball"].status == "rendered"
    assert not list((tmp_path / "out").glob(".tmp-*"))
