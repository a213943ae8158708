"""nerfstudio's ns-render and ns-export on a nid-field checkpoint: what works, and one-line refusals for the rest.

One tiny checkpoint (a 32 px vase, 8 + 2 views, 5 steps) serves every test. ns-render runs through its real command
line once (interpolate) and camera-path in this process; both need ffmpeg (`scripts/setup.sh` installs it; without it
they are skipped). The ns-export commands also run in this process, through the same ``main`` that the command line
calls, which saves a ~10 s interpreter start each; the slow test checks a refusal through the command line.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import FAST, render_vases, run
from nerfstudio.data.scene_box import SceneBox

from nid_nerf.errors import NIDInputError
from nid_nerf.models.nid_model import NIDModelConfig

torch.set_num_threads(1)
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None,
                                  reason="ffmpeg/ffprobe not on PATH (scripts/setup.sh installs the ffmpeg package)")


def video_stream(path: Path) -> dict:
    """Frame count (decoded, not from the header), width and height of a video's first stream, from ffprobe."""
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=nb_read_frames,width,height", "-of", "json", str(path)],
                            capture_output=True, text=True, check=True)
    stream = json.loads(result.stdout)["streams"][0]
    return {"frames": int(stream["nb_read_frames"]), "width": int(stream["width"]), "height": int(stream["height"])}


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return render_vases(tmp_path_factory.mktemp("scene"), count=1, views_train=8, views_test=2) / "vases_0000"


@pytest.fixture(scope="module")
def config(scene, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("field")
    result = run(["ns-train", "nid-field", "--data", scene, "--output-dir", out, "--max-num-iterations", "5",
                  "--steps-per-save", "5", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "e" / "nid-field" / "t" / "config.yml"


@needs_ffmpeg
def test_ns_render_interpolate_writes_a_video(config, tmp_path):
    # 2 eval cameras: one transition of 3 steps = 3 frames, at half the training resolution
    video = tmp_path / "interpolate.mp4"
    result = run(["ns-render", "interpolate", "--load-config", config, "--output-path", video,
                  "--interpolation-steps", "3", "--frame-rate", "6", "--downscale-factor", "2"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert video_stream(video) == {"frames": 3, "width": 16, "height": 16}


@needs_ffmpeg
def test_ns_render_camera_path_writes_one_frame_per_camera(scene, config, tmp_path):
    transforms = json.loads((scene / "transforms.json").read_text())
    fov = 2.0 * math.degrees(math.atan(0.5 * transforms["h"] / transforms["fl_y"]))  # the viewer's vertical fov
    # the dataparser transform of these scenes is the identity (dataparser_transforms.json), so the dataset's
    # poses are already world poses
    assert json.loads((config.parent / "dataparser_transforms.json").read_text())["scale"] == 1.0
    path = {
        "camera_type": "perspective", "render_height": 24, "render_width": 24, "seconds": 1.0,
        "camera_path": [{"camera_to_world": sum(frame["transform_matrix"], []), "fov": fov, "aspect": 1.0}
                        for frame in transforms["frames"][:4]],
    }
    camera_path = tmp_path / "camera_path.json"
    camera_path.write_text(json.dumps(path))
    video = tmp_path / "path.mp4"
    # `ns-render camera-path --load-config ... --camera-path-filename ... --rendered-output-names rgb depth`, in this
    # process (the command line itself is checked by the interpolate test)
    from nerfstudio.scripts.render import RenderCameraPath

    RenderCameraPath(load_config=config, camera_path_filename=camera_path, output_path=video,
                     rendered_output_names=["rgb", "depth"]).main()
    assert video_stream(video) == {"frames": 4, "width": 48, "height": 24}  # rgb | depth side by side


def test_ns_export_pointcloud_and_cameras_work(config, tmp_path):
    import open3d as o3d
    from nerfstudio.scripts.exporter import ExportCameraPoses, ExportPointCloud

    ExportPointCloud(load_config=config, output_dir=tmp_path, num_points=500, num_rays_per_batch=2048).main()
    cloud = o3d.io.read_point_cloud(str(tmp_path / "point_cloud.ply"))
    points = torch.from_numpy(np.asarray(cloud.points))
    assert points.shape[0] > 100 and cloud.has_normals() and cloud.has_colors()
    assert bool((points.abs() <= 1.0 + 1e-4).all()), "points lie on the surface, inside the scene box"

    ExportCameraPoses(load_config=config, output_dir=tmp_path).main()
    assert len(json.loads((tmp_path / "transforms_train.json").read_text())) == 8
    assert len(json.loads((tmp_path / "transforms_eval.json").read_text())) == 2


def test_ns_export_marching_cubes_and_gaussian_splat_refuse_before_loading(config, tmp_path, monkeypatch):
    from nerfstudio.scripts.exporter import ExportGaussianSplat, ExportMarchingCubesMesh

    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # the refusal installs nid-nerf's one-line printer
    for command, name in ((ExportMarchingCubesMesh, "marching-cubes"), (ExportGaussianSplat, "gaussian-splat")):
        with pytest.raises(NIDInputError) as raised:
            command(load_config=config, output_dir=tmp_path / name).main()
        message = str(raised.value)
        assert message.startswith(f"ns-export {name} ") and "\n" not in message
        assert f"nid-export-mesh --load-config {config} --output mesh.ply" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "nothing was written"


@pytest.mark.slow  # one more interpreter start (~15 s); the refusal itself is checked in-process above
def test_refusal_is_one_line_on_the_command_line(config, tmp_path):
    result = run(["ns-export", "gaussian-splat", "--load-config", config, "--output-dir", tmp_path])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("nid-nerf error: ns-export gaussian-splat "), result.stderr


def test_rgba_image_is_the_colour_without_background_and_the_accumulation():
    config = NIDModelConfig(grid_resolution=12, log2_table_size=10, num_levels=4, max_resolution=32)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1)
    acc = torch.tensor([[[0.0], [0.5], [1.0]]])
    colour = torch.tensor([[[0.3, 0.6, 0.9]]]).expand(1, 3, 3)
    outputs = {"rgb_raw": colour * acc, "accumulation": acc, "rgb": colour * acc + (1 - acc)}
    rgba = model.get_rgba_image(outputs, "rgb")
    assert rgba.shape == (1, 3, 4)
    assert torch.equal(rgba[..., 3:], acc)
    assert torch.allclose(rgba[0, 1:, :3], colour[0, 1:]) and torch.equal(rgba[0, 0, :3], torch.zeros(3))
