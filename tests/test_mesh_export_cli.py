"""nid-export-mesh on real nid-field configs and checkpoints (an untrained checkpoint keeps it fast), and each
bad-input case: missing config, config without an SDF, missing checkpoint, missing data, empty isosurface,
unwritable output."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh
import yaml

from nid_nerf.cli.export_mesh import ExportMesh, export_mesh
from nid_nerf.errors import NIDInputError


def _render_scene(root: Path) -> Path:
    from nid_nerf.synthetic.collection_renderer import RenderSettings, family_jobs, render_collection

    settings = RenderSettings(views_train=6, views_test=2, resolution=32)
    render_collection(family_jobs("vases", 1), root / "data", settings, workers=1, progress=False)
    (scene,) = [p for p in (root / "data").iterdir() if p.is_dir()]
    return scene


def _save_config(method: str, root: Path, data: Path, timestamp: str):
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[method])
    config.output_dir = root / "outputs"
    config.experiment_name = "scene"
    config.timestamp = timestamp
    config.pipeline.datamanager.data = data
    config.machine.device_type = "cpu"
    config.save_config()
    return config, config.get_base_dir() / "config.yml"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return _render_scene(tmp_path_factory.mktemp("mesh_scene"))


@pytest.fixture(scope="module")
def nid_run(scene, tmp_path_factory) -> Path:
    """A nid-field run folder with config.yml and an untrained (step 0) checkpoint of the real model."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("nid_run")
    config, config_path = _save_config("nid-field", root, scene, "untrained")
    pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
    ckpt_dir = config.get_checkpoint_dir()
    ckpt_dir.mkdir(parents=True)
    torch.save({"step": 0, "pipeline": pipeline.state_dict()}, ckpt_dir / "step-000000000.ckpt")
    return config_path


def test_exports_coloured_mesh_in_each_format(nid_run, tmp_path):
    for suffix in (".ply", ".obj", ".glb"):
        out = tmp_path / "sub" / f"mesh{suffix}"
        assert export_mesh(ExportMesh(load_config=nid_run, output=out, resolution=40)) == out
        mesh = trimesh.load(str(out), force="mesh")
        assert len(mesh.faces) > 100
        # The untrained field is its sphere prior (radius 0.5 of the half extent of the [-1, 1]^3 box) plus a small
        # random decoder output.
        radius = np.linalg.norm(mesh.vertices, axis=1)
        assert 0.2 < radius.mean() < 0.8
        assert np.asarray(mesh.visual.vertex_colors).shape == (len(mesh.vertices), 4)
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["mesh.glb", "mesh.obj", "mesh.ply"]  # no temps


def test_vertex_colors_come_from_the_radiance_head(nid_run, tmp_path):
    from nid_nerf.mesh.load import load_sdf_pipeline

    out = export_mesh(ExportMesh(load_config=nid_run, output=tmp_path / "m.ply", resolution=32))
    mesh = trimesh.load(str(out), process=False)
    _, pipeline, _ = load_sdf_pipeline(nid_run)
    positions = torch.tensor(mesh.vertices, dtype=torch.float32)
    directions = -torch.nn.functional.normalize(torch.tensor(mesh.vertex_normals, dtype=torch.float32), dim=-1)
    with torch.no_grad():
        expected = pipeline.model.field.color(positions, directions).numpy()
    got = np.asarray(mesh.visual.vertex_colors)[:, :3] / 255.0
    np.testing.assert_allclose(got, expected, atol=1.5 / 255)


def test_options_no_colors_bbox_keep_largest_dense(nid_run, tmp_path):
    out = tmp_path / "m.ply"
    export_mesh(ExportMesh(load_config=nid_run, output=out, resolution=32, colors=False, keep_largest=True))
    plain = trimesh.load(str(out), force="mesh")
    assert plain.visual.kind is None  # no colours written
    assert len(plain.split(only_watertight=False)) == 1
    # A bbox that cuts the object in half: no vertex beyond x = 0.
    half = tmp_path / "half.ply"
    export_mesh(ExportMesh(load_config=nid_run, output=half, resolution=32, colors=False, bbox=(-1, -1, -1, 0, 1, 1)))
    assert trimesh.load(str(half), force="mesh").vertices[:, 0].max() <= 1e-6
    # Narrow band (default) and dense evaluation give the same mesh on a real field.
    dense = tmp_path / "dense.ply"
    band = tmp_path / "band.ply"
    export_mesh(ExportMesh(load_config=nid_run, output=dense, resolution=32, colors=False, dense=True))
    export_mesh(ExportMesh(load_config=nid_run, output=band, resolution=32, colors=False))
    a, b = trimesh.load(str(dense), process=False), trimesh.load(str(band), process=False)
    assert len(a.faces) == len(b.faces)
    np.testing.assert_allclose(np.sort(a.vertices, axis=0), np.sort(b.vertices, axis=0), atol=1e-5)


def test_missing_config(tmp_path):
    with pytest.raises(NIDInputError, match="does not exist") as info:
        export_mesh(ExportMesh(load_config=tmp_path / "nope" / "config.yml", output=tmp_path / "m.ply"))
    assert "nope/config.yml" in str(info.value)


def test_unreadable_config(tmp_path):
    bad = tmp_path / "config.yml"
    bad.write_text("just: [unclosed")
    with pytest.raises(NIDInputError, match="cannot be read"):
        export_mesh(ExportMesh(load_config=bad, output=tmp_path / "m.ply"))
    bad.write_text("a: 1\n")
    with pytest.raises(NIDInputError, match="not an ns-train TrainerConfig"):
        export_mesh(ExportMesh(load_config=bad, output=tmp_path / "m.ply"))


def test_config_without_sdf(scene, tmp_path):
    _, config_path = _save_config("nerfacto", tmp_path, scene, "nerfacto")
    with pytest.raises(NIDInputError, match="has no SDF") as info:
        export_mesh(ExportMesh(load_config=config_path, output=tmp_path / "m.ply"))
    assert "nerfacto" in str(info.value) and "nid-field" in str(info.value)


def test_missing_checkpoint(scene, tmp_path):
    _, config_path = _save_config("nid-field", tmp_path, scene, "no_ckpt")
    with pytest.raises(NIDInputError, match="no checkpoint"):
        export_mesh(ExportMesh(load_config=config_path, output=tmp_path / "m.ply"))


def test_moved_run_missing_data_and_data_override(nid_run, scene, tmp_path):
    # The run folder moved and the data is gone: checkpoints are found next to config.yml, the data needs --data.
    moved = tmp_path / "elsewhere" / "scene" / "nid-field" / "untrained"
    shutil.copytree(nid_run.parent, moved)
    config = yaml.load((moved / "config.yml").read_text(), Loader=yaml.Loader)
    config.output_dir = tmp_path / "old_outputs"
    config.pipeline.datamanager.data = tmp_path / "gone"
    (moved / "config.yml").write_text(yaml.dump(config))
    with pytest.raises(NIDInputError, match="training data .*gone does not exist.*--data"):
        export_mesh(ExportMesh(load_config=moved / "config.yml", output=tmp_path / "m.ply", resolution=24))
    out = export_mesh(
        ExportMesh(load_config=moved / "config.yml", output=tmp_path / "m.ply", resolution=24, data=scene)
    )
    assert out.is_file()


def test_empty_isosurface(nid_run, tmp_path):
    with pytest.raises(NIDInputError, match="empty isosurface") as info:
        export_mesh(ExportMesh(load_config=nid_run, output=tmp_path / "m.ply", resolution=16, bbox=(2, 2, 2, 3, 3, 3)))
    assert "--bbox" in str(info.value) and "--isovalue" in str(info.value)
    assert not (tmp_path / "m.ply").exists()


def test_unwritable_output(nid_run, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(NIDInputError, match="cannot be written"):
        export_mesh(ExportMesh(load_config=nid_run, output=blocker / "mesh.ply"))
    with pytest.raises(NIDInputError, match="extension"):
        export_mesh(ExportMesh(load_config=nid_run, output=tmp_path / "mesh.stl"))
    folder = tmp_path / "dir.ply"
    folder.mkdir()
    with pytest.raises(NIDInputError, match="is a folder"):
        export_mesh(ExportMesh(load_config=nid_run, output=folder))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_read_only_output_folder(nid_run, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(NIDInputError, match="not writable"):
            export_mesh(ExportMesh(load_config=nid_run, output=ro / "mesh.ply"))
    finally:
        ro.chmod(0o700)


def test_scene_index_out_of_range(nid_run, tmp_path):
    with pytest.raises(NIDInputError, match="scene-index 3 is out of range"):
        export_mesh(ExportMesh(load_config=nid_run, output=tmp_path / "m.ply", scene_index=3))


@pytest.mark.slow
def test_nid_dict_scene_index(tmp_path):
    """An untrained nid-dict checkpoint over a two-scene collection: each --scene-index exports its own scene."""
    from nid_nerf.synthetic.collection_renderer import RenderSettings, family_jobs, render_collection

    torch.manual_seed(0)
    settings = RenderSettings(views_train=4, views_test=1, resolution=16)
    render_collection(family_jobs("vases", 2), tmp_path / "collection", settings, workers=1, progress=False)
    config, config_path = _save_config("nid-dict", tmp_path, tmp_path / "collection", "dict")
    pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
    assert pipeline.model.num_scenes == 2
    with torch.no_grad():  # make the two scenes' codes differ, so their surfaces differ
        for p in pipeline.model.field.gate.parameters():
            p.copy_(torch.randn_like(p))
    ckpt_dir = config.get_checkpoint_dir()
    ckpt_dir.mkdir(parents=True)
    torch.save({"step": 0, "pipeline": pipeline.state_dict()}, ckpt_dir / "step-000000000.ckpt")
    meshes = []
    for index in (0, 1):
        out = export_mesh(ExportMesh(load_config=config_path, output=tmp_path / f"s{index}.ply", resolution=32,
                                     scene_index=index, colors=False))
        meshes.append(trimesh.load(str(out), process=False))
    assert not np.array_equal(meshes[0].vertices, meshes[1].vertices)
    with pytest.raises(NIDInputError, match="scene-index 2 is out of range .* holds 2 scene"):
        export_mesh(ExportMesh(load_config=config_path, output=tmp_path / "s2.ply", scene_index=2))
