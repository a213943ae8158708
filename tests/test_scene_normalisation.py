"""nid-scene's --normalize: a capture at any scale and offset gets the frame of the original scene (up to the
normalisation), cameras that look away from the box are reported in one line, and meshes come back in the
input frame."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import trimesh

from nid_nerf.dataparsers import NIDSceneDataParserConfig
from nid_nerf.dataparsers.normalisation import axes_missing_box, camera_focus, optical_axes
from nid_nerf.dataparsers.outputs import INPUT_FRAME_KEY

torch.set_num_threads(1)

SCALE, OFFSET = 10.0, np.array([3.0, -7.0, 2.0])
R0 = 2.5 * np.sin(np.deg2rad(22.5))
"""Radius of the sphere every synthetic camera sees whole (distance 2.5, 45 degree field of view)."""


def _outputs(data: Path, split: str = "train", **options):
    return NIDSceneDataParserConfig(data=data, **options).setup().get_dataparser_outputs(split=split)


def _rewrite(scene: Path, out: Path, pose=lambda m: m, points=None) -> Path:
    """A copy of ``scene`` whose poses are ``pose(4x4)``, without its 'scene_box' (as a real capture has none)."""
    shutil.copytree(scene, out)
    meta = json.loads((out / "transforms.json").read_text())
    meta.pop("scene_box")
    for frame in meta["frames"]:
        frame["transform_matrix"] = pose(np.asarray(frame["transform_matrix"], dtype=np.float64)).tolist()
    if points is not None:
        trimesh.PointCloud(points).export(str(out / "sparse_pc.ply"))
        meta["ply_file_path"] = "sparse_pc.ply"
    (out / "transforms.json").write_text(json.dumps(meta))
    return out


def _scaled(m):
    m = m.copy()
    m[:3, 3] = SCALE * m[:3, 3] + OFFSET
    return m


def _looking_away(m):
    m = m.copy()
    m[:3, 0] *= -1  # half a turn about the camera's own y axis: it now faces away from the object
    m[:3, 2] *= -1
    return m


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from nid_nerf.synthetic.collection_renderer import RenderSettings, family_jobs, render_collection

    root = tmp_path_factory.mktemp("norm")
    settings = RenderSettings(views_train=6, views_test=2, resolution=24)
    render_collection(family_jobs("vases", 1), root / "data", settings, workers=1, progress=False)
    return root / "data" / "vases_0000"


@pytest.fixture(scope="module")
def scaled(scene, tmp_path_factory) -> Path:
    return _rewrite(scene, tmp_path_factory.mktemp("scaled") / "vase", _scaled)


def test_synthetic_scenes_keep_their_frame(scene):
    out = _outputs(scene)
    meta = json.loads((scene / "transforms.json").read_text())
    assert torch.allclose(out.scene_box.aabb, torch.tensor(meta["scene_box"], dtype=torch.float32))
    assert torch.equal(out.metadata[INPUT_FRAME_KEY], torch.eye(4, dtype=torch.float64))
    assert float(out.dataparser_scale) == 1.0


@pytest.mark.parametrize("split", ["train", "val"])
def test_translated_x10_scene_matches_the_original(scene, scaled, split):
    original = _outputs(scene, split)
    moved = _outputs(scaled, split)  # auto: no scene_box in the file, so the poses are normalised
    forced = _outputs(scene, split, normalize="cameras")
    torch.testing.assert_close(moved.cameras.camera_to_worlds, forced.cameras.camera_to_worlds, atol=1e-4, rtol=0)
    torch.testing.assert_close(moved.scene_box.aabb, forced.scene_box.aabb)
    torch.testing.assert_close(moved.scene_box.aabb, torch.tensor([[-1.0] * 3, [1.0] * 3]))
    # against the synthetic frame: same rotations, positions 1 / R0 times larger, same box up to R0 (4.5 %)
    c2w, ref = moved.cameras.camera_to_worlds, original.cameras.camera_to_worlds
    torch.testing.assert_close(c2w[:, :3, :3], ref[:, :3, :3], atol=1e-5, rtol=0)
    torch.testing.assert_close(c2w[:, :3, 3], ref[:, :3, 3] / float(R0), atol=1e-4, rtol=0)
    # nerfstudio's dataparser_transforms.json maps the file's poses onto the model's
    meta = json.loads((scaled / "transforms.json").read_text())
    names = [Path(p).name for p in moved.image_filenames]
    by_name = {Path(f["file_path"]).name: np.asarray(f["transform_matrix"]) for f in meta["frames"]}
    t = moved.dataparser_transform.double().numpy()
    for k, name in enumerate(names):
        p = by_name[name][:3, 3]
        expected = float(moved.dataparser_scale) * (t[:, :3] @ p + t[:, 3])
        np.testing.assert_allclose(c2w[k, :3, 3].numpy(), expected, atol=1e-4)
        m = moved.metadata[INPUT_FRAME_KEY].numpy()
        np.testing.assert_allclose(m[:3, :3] @ p + m[:3, 3], expected, atol=1e-4)


def test_warning_when_cameras_look_away(scene, scaled, tmp_path, monkeypatch):
    from nid_nerf.dataparsers import scene as scene_module

    logged = []
    monkeypatch.setattr(scene_module.CONSOLE, "log", lambda *args, **kwargs: logged.append(" ".join(map(str, args))))

    def warnings():
        found = [m for m in logged if "look away from the scene box" in m]
        logged.clear()
        return found

    _outputs(scaled)
    assert warnings() == []
    _outputs(scaled, normalize="none")  # x10 poses in the default box [-1, 1]^3: every axis misses it
    (line,) = warnings()
    assert "\n" not in line and "6 of 6 cameras" in line and "--normalize cameras" in line
    assert str(scaled / "transforms.json") in line
    away = _rewrite(scene, tmp_path / "away", _looking_away)
    _outputs(away)
    (line,) = warnings()
    assert "6 of 6 cameras look away" in line


def test_geometry_helpers():
    dirs = np.random.default_rng(0).normal(size=(20, 3))
    origins = 4.0 * dirs / np.linalg.norm(dirs, axis=1, keepdims=True) + [1.0, 2.0, 3.0]
    focus = camera_focus(origins, (np.array([1.0, 2.0, 3.0]) - origins) / 4.0)
    np.testing.assert_allclose(focus, [1.0, 2.0, 3.0], atol=1e-4)
    c2w = np.tile(np.eye(4)[:3], (2, 1, 1))
    c2w[:, :3, 3] = [[0, 0, 5], [5, 0, 5]]  # both look along -z; only the first toward the unit box
    assert axes_missing_box(c2w, np.array([[-1.0] * 3, [1.0] * 3])).tolist() == [False, True]
    o, d = optical_axes(c2w)
    np.testing.assert_allclose(d, [[0, 0, -1], [0, 0, -1]])


def test_sparse_points_size_the_box(scene, tmp_path):
    gt = trimesh.load(scene / "gt_mesh.ply", process=False)
    surface = np.asarray(gt.sample(2000, seed=0))
    background = np.random.default_rng(1).uniform(-30, 30, size=(50, 3))  # far away: outside the visible sphere
    points = np.concatenate([surface * SCALE + OFFSET, background * SCALE + OFFSET])
    capture = _rewrite(scene, tmp_path / "pts", _scaled, points=points)
    out = _outputs(capture)
    m = out.metadata[INPUT_FRAME_KEY].numpy()
    in_model = (surface * SCALE + OFFSET) @ m[:3, :3].T + m[:3, 3]
    lo, hi = in_model.min(0), in_model.max(0)
    assert np.abs(0.5 * (lo + hi)).max() < 0.05, "the box is centred on the object"
    assert 0.8 < (0.5 * (hi - lo)).max() < 0.95, "the object fills the box (10 % padding, 1-99 % percentiles)"


def test_exported_mesh_is_in_the_input_frame(scaled, tmp_path):
    from nerfstudio.configs.method_configs import all_methods

    from nid_nerf.cli.export_mesh import ExportMesh, export_mesh

    torch.manual_seed(0)
    config = copy.deepcopy(all_methods["nid-field"])
    config.output_dir, config.experiment_name, config.timestamp = tmp_path / "outputs", "scene", "untrained"
    config.pipeline.datamanager.data = scaled
    config.machine.device_type = "cpu"
    config.save_config()
    pipeline = config.pipeline.setup(device="cpu", test_mode="inference")
    config.get_checkpoint_dir().mkdir(parents=True)
    torch.save({"step": 0, "pipeline": pipeline.state_dict()}, config.get_checkpoint_dir() / "step-000000000.ckpt")
    config_path = config.get_base_dir() / "config.yml"
    # the untrained SDF is a sphere of radius 0.5 about the box centre: in the file's frame, about the point the
    # cameras look at (OFFSET), with radius 0.5 * 10 * R0
    mesh = trimesh.load(export_mesh(ExportMesh(load_config=config_path, output=tmp_path / "in.ply", resolution=32,
                                               colors=False)), process=False)
    radii = np.linalg.norm(mesh.vertices - OFFSET, axis=1)
    np.testing.assert_allclose(np.median(radii), 0.5 * SCALE * R0, rtol=0.03)
    model = trimesh.load(export_mesh(ExportMesh(load_config=config_path, output=tmp_path / "model.ply",
                                                resolution=32, colors=False, frame="model")), process=False)
    np.testing.assert_allclose(np.median(np.linalg.norm(model.vertices, axis=1)), 0.5, rtol=0.03)
    # the same mesh, moved by the inverse normalisation: back onto the x10-translated cameras
    np.testing.assert_allclose(mesh.vertices, model.vertices * SCALE * R0 + OFFSET, atol=1e-3)
    assert np.array_equal(mesh.faces, model.faces)
    # a --bbox is in the output's frame: the input-frame box around the sphere gives the same mesh
    half = SCALE * R0
    boxed = trimesh.load(export_mesh(ExportMesh(load_config=config_path, output=tmp_path / "box.ply", resolution=32,
                                                colors=False, bbox=(*(OFFSET - half), *(OFFSET + half)))),
                         process=False)
    np.testing.assert_allclose(np.median(np.linalg.norm(boxed.vertices - OFFSET, axis=1)), 0.5 * half, rtol=0.03)


def _frontal_arc(distance: float = 4.0):
    """Cameras on a frontal arc (azimuth -45..45, elevation -30..30 degrees) looking at the origin, world z up: a
    handheld capture of an object on a wall, every camera's image-up near +z."""
    from nid_nerf.synthetic.cameras import look_at

    az, el = np.meshgrid(np.deg2rad(np.linspace(-45, 45, 4)), np.deg2rad(np.linspace(-30, 30, 3)))
    dirs = np.stack([np.cos(el) * np.sin(az), -np.cos(el) * np.cos(az), np.sin(el)], -1).reshape(-1, 3)
    return look_at(distance * dirs)


def test_up_stretch_of_a_portrait_arc():
    from nid_nerf.dataparsers.normalisation import MAX_STRETCH, fit_normalisation

    c2w = _frontal_arc()
    across, up = np.full(len(c2w), np.deg2rad(20.0)), np.full(len(c2w), np.deg2rad(35.0))
    fit = fit_normalisation(c2w[:, :3], across, vertical_half_fovs=up)
    radius = 4.0 * np.sin(np.deg2rad(20.0))  # every camera 4 from the focus, the origin
    np.testing.assert_allclose(1.0 / fit.scale, radius, rtol=1e-4)
    np.testing.assert_allclose(fit.stretch, np.sin(np.deg2rad(35.0)) / np.sin(np.deg2rad(20.0)), rtol=1e-4)
    assert fit.up is not None and fit.up[2] > 0.99
    # the reach along u and the radius across it (depth included) both land on the unit sphere
    m = fit.matrix()
    reach = fit.stretch * radius * fit.up
    across_u = np.cross(fit.up, [1.0, 0.0, 0.0])
    for point in (reach, radius * across_u / np.linalg.norm(across_u), radius * np.array([0.0, -1.0, 0.0])):
        np.testing.assert_allclose(np.linalg.norm(m[:3, :3] @ point + m[:3, 3]), 1.0, atol=0.02)
    # landscape, or square: the sphere; very tall: capped
    assert fit_normalisation(c2w[:, :3], across, vertical_half_fovs=across).up is None
    assert fit_normalisation(c2w[:, :3], up, vertical_half_fovs=across).stretch == 1.0
    tall = fit_normalisation(c2w[:, :3], np.full(len(c2w), 0.1), vertical_half_fovs=up)
    assert tall.stretch == MAX_STRETCH


def test_no_up_stretch_without_a_shared_up(scene):
    from nid_nerf.dataparsers.normalisation import fit_normalisation

    meta = json.loads((scene / "transforms.json").read_text())
    c2w = np.array([f["transform_matrix"] for f in meta["frames"]])[:, :3]  # an orbit over the whole sphere
    fit = fit_normalisation(c2w, np.full(len(c2w), 0.3), vertical_half_fovs=np.full(len(c2w), 0.6))
    assert fit.up is None and fit.stretch == 1.0
    np.testing.assert_allclose(fit.matrix()[:3, :3], fit.scale * np.eye(3))


def test_up_stretched_rays_are_the_files_rays(scene, tmp_path, monkeypatch):
    """A portrait capture (the vertical field of view the wider, as instant-ngp's fox): the model frame is squeezed
    along the cameras' up, and each model ray, mapped back by the recorded input frame, is the file's pixel ray."""
    from nid_nerf.dataparsers import scene as scene_module

    arc = _frontal_arc()
    out_dir = _rewrite(scene, tmp_path / "portrait")
    meta = json.loads((out_dir / "transforms.json").read_text())
    for k, frame in enumerate(meta["frames"]):
        frame["transform_matrix"] = (_scaled(arc[k % len(arc)])).tolist()
    fx = float(meta.get("fl_x") or meta["frames"][0]["fl_x"])
    for holder in [meta] + meta["frames"]:
        if "fl_y" in holder:
            holder["fl_y"] = 0.6 * fx  # a taller field of view than wide
    meta["fl_y"] = 0.6 * fx
    (out_dir / "transforms.json").write_text(json.dumps(meta))
    logged = []
    monkeypatch.setattr(scene_module.CONSOLE, "log", lambda *args, **kwargs: logged.append(" ".join(map(str, args))))
    out = _outputs(out_dir)
    assert any("times farther along the cameras' up" in line for line in logged)
    m = out.metadata[INPUT_FRAME_KEY].numpy()
    singular = np.linalg.svd(m[:3, :3], compute_uv=False)
    assert singular.max() / singular.min() > 1.2, "not a similarity: squeezed along up"
    inverse = np.linalg.inv(m)
    by_name = {Path(f["file_path"]).name: f for f in meta["frames"]}
    cameras = out.cameras
    for k in range(2):
        frame = by_name[Path(out.image_filenames[k]).name]
        c2w_file = np.asarray(frame["transform_matrix"])
        fy = float(frame.get("fl_y", meta["fl_y"]))
        cx = float(frame.get("cx", meta.get("cx")))
        cy = float(frame.get("cy", meta.get("cy")))
        pixel = torch.tensor([[5.5, 17.5]])  # (row, col)
        ray = cameras.generate_rays(camera_indices=k, coords=pixel)
        for t in (0.5, 2.0):
            p_model = (ray.origins + t * ray.directions).reshape(3).double().numpy()
            p_file = inverse[:3, :3] @ p_model + inverse[:3, 3]
            p_cam = np.linalg.inv(c2w_file) @ np.r_[p_file, 1.0]
            col = fx * p_cam[0] / -p_cam[2] + cx
            row = -fy * p_cam[1] / -p_cam[2] + cy
            np.testing.assert_allclose([row, col], [5.5, 17.5], atol=1e-3)
    flat = _outputs(out_dir, up_stretch=False).metadata[INPUT_FRAME_KEY].numpy()
    singular = np.linalg.svd(flat[:3, :3], compute_uv=False)
    np.testing.assert_allclose(singular.max() / singular.min(), 1.0, atol=1e-9)
