"""The nerfstudio viewer on a trained nid-field checkpoint.

(a) fast: a viewer camera goes through nerfstudio's own viewer code, the path a browser client
    takes: a viser camera placed on a training camera exactly as a click on its frustum does
    (`Viewer.init_scene`'s callback), `Viewer.get_camera_state`, then `RenderStateMachine._render_img`
    (`get_camera`, `model.get_outputs_for_camera(camera, obb_box=None)`, depth compositing) and
    `_send_output_to_viewer` (colormaps, uint8 image handed to viser), with the checkpoint loaded as
    `ns-viewer` loads it (`eval_setup`, `torch.load(weights_only=True)`).
(b) slow: `ns-viewer` driven by Debian's headless Chromium; the screenshot must show the scene.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import viser.transforms as vtf

TRAIN_STEPS = 15


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny scene (one procedural vase, 32 px) and a nid-field trained on it for a few steps."""
    from nid_nerf.benchmarks.harness import Budget, run_method
    from nid_nerf.benchmarks.method_config import make_trainer_config
    from nid_nerf.synthetic.collection_renderer import RenderSettings, SceneJob, render_scene

    root = tmp_path_factory.mktemp("viewer")
    settings = RenderSettings(views_train=12, views_test=2, resolution=32)
    result = render_scene(SceneJob("vase", family="vases", index=0), settings, root / "data")
    assert result.status == "rendered", result.reason
    config = make_trainer_config("nid-field", root / "data" / "vase", root / "outputs")
    torch.set_num_threads(2)
    run = run_method(
        config,
        Budget(seconds=600, max_steps=TRAIN_STEPS, eval_every_seconds=1e9, num_eval_images=1),
        check_native_eval=False,
        keep_checkpoint=True,
        progress=False,
    )
    assert run.config_path is not None and run.config_path.is_file()
    return run.config_path


@pytest.fixture(scope="module")
def loaded(checkpoint):
    """The pipeline as `ns-viewer --load-config` builds it."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, checkpoint_path, step = eval_setup(checkpoint, eval_num_rays_per_chunk=None, test_mode="test")
    assert checkpoint_path.is_file() and step == TRAIN_STEPS - 1
    return pipeline


class _Client:
    """Stands in for viser's ClientHandle: a browser camera, and a record of the image sent to it."""

    def __init__(self, wxyz, position, fov: float, aspect: float):
        self.camera = SimpleNamespace(wxyz=wxyz, position=position, fov=fov, aspect=aspect)
        self.scene = SimpleNamespace(set_background_image=self._set_background_image)
        self.sent: dict = {}

    def _set_background_image(self, image, format, jpeg_quality, depth):  # noqa: A002 - viser's keyword
        self.sent = {"image": image, "format": format, "depth": depth}


def _viewer(pipeline, max_res: int, output_render: str = "rgb"):
    """The attributes of nerfstudio's Viewer that the render state machine reads, with the defaults of its GUI."""
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.utils.colormaps import ColormapOptions

    control_panel = SimpleNamespace(
        crop_viewport=False, crop_obb=None, max_res=max_res, layer_depth=True, background_color=(38, 42, 55),
        output_render=output_render, colormap_options=ColormapOptions(), split=False,
        update_output_options=lambda keys: None,
    )
    return SimpleNamespace(
        ready=False, current_camera_idx=0, control_panel=control_panel, include_time=False,
        render_tab_state=SimpleNamespace(preview_render=False), train_lock=None, step=0, pipeline=pipeline,
        get_model=lambda: pipeline.model, update_colormap_options=lambda dimensions, dtype: None,
        config=ViewerConfig(), stats_markdown=SimpleNamespace(content=""),
        make_stats_markdown=lambda step, res: f"Step: {step}  \nResolution: {res}",
    )


def _client_on_training_camera(camera) -> _Client:
    """What a click on the training camera's frustum does to the browser camera (nerfstudio Viewer.init_scene)."""
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO

    c2w = camera.camera_to_worlds[0].cpu().numpy()
    rotation = vtf.SO3.from_matrix(c2w[:3, :3]) @ vtf.SO3.from_x_radians(np.pi)
    height, width = int(camera.height), int(camera.width)
    vertical_fov = 2.0 * math.atan(float(camera.cy) / float(camera.fy))
    return _Client(rotation.wxyz, c2w[:3, 3] * VISER_NERFSTUDIO_SCALE_RATIO, vertical_fov, width / height)


def _render_like_viewer(pipeline, camera, output_render: str = "rgb"):
    from nerfstudio.viewer.render_state_machine import RenderStateMachine
    from nerfstudio.viewer.viewer import VISER_NERFSTUDIO_SCALE_RATIO, Viewer

    client = _client_on_training_camera(camera)
    viewer = _viewer(pipeline, max_res=int(camera.height), output_render=output_render)
    camera_state = Viewer.get_camera_state(viewer, client)
    machine = RenderStateMachine(viewer, VISER_NERFSTUDIO_SCALE_RATIO, client)
    machine.state = "high"  # the static, full-resolution render
    outputs = machine._render_img(camera_state)
    machine._send_output_to_viewer(outputs, static_render=True)
    return outputs, client.sent, viewer


def test_viewer_camera_renders_the_training_view(loaded):
    """A viewer camera on training camera 0 renders what get_outputs_for_camera renders for that camera."""
    pipeline = loaded
    dataset = pipeline.datamanager.train_dataset
    camera = dataset.cameras[0:1].to(pipeline.device)

    outputs, sent, viewer = _render_like_viewer(pipeline, camera)

    image = sent["image"]
    assert image.dtype == np.uint8 and image.shape == (32, 32, 3)
    assert sent["depth"] is not None and sent["depth"].shape == (32, 32, 1)  # depth compositing with the frustums
    assert "32x32px" in viewer.stats_markdown.content
    for key in ("rgb", "depth", "accumulation", "normals"):
        assert key in outputs, f"the viewer's output menu lacks '{key}'"
        assert torch.isfinite(outputs[key]).all(), key

    pipeline.eval()
    with torch.no_grad():
        direct = pipeline.model.get_outputs_for_camera(camera)
    np.testing.assert_allclose(outputs["rgb"].cpu().numpy(), direct["rgb"].cpu().numpy(), atol=1e-4)
    expected = (direct["rgb"].clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1

    # after a few steps it is a picture of the vase, not a flat fill: closer to the ground truth than its mean colour
    truth = dataset[0]["image"][..., :3] * dataset[0]["image"][..., 3:] + (1 - dataset[0]["image"][..., 3:])
    truth = truth.numpy()
    render_error = np.mean((image / 255.0 - truth) ** 2)
    flat_error = np.mean((truth.mean(axis=(0, 1)) - truth) ** 2)
    assert image.std() > 5.0
    assert render_error < flat_error, f"viewer render MSE {render_error:.4f} vs flat-image MSE {flat_error:.4f}"


def test_every_viewer_output_type_can_be_shown(loaded):
    """Each entry of the viewer's 'Output type' menu goes through the viewer's colormaps to an RGB image."""
    pipeline = loaded
    camera = pipeline.datamanager.train_dataset.cameras[1:2].to(pipeline.device)
    outputs, _, _ = _render_like_viewer(pipeline, camera)
    for key in outputs:
        if key == "gl_z_buf_depth":
            continue
        _, sent, _ = _render_like_viewer(pipeline, camera, output_render=key)
        assert sent["image"].shape == (32, 32, 3), key


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium package is not installed")
def test_headless_chromium_sees_the_scene(checkpoint, tmp_path):
    """ns-viewer on the checkpoint, photographed by headless Chromium, shows the rendered vase."""
    from nid_nerf.benchmarks.viewer_check import capture_viewer

    capture = capture_viewer(checkpoint, tmp_path / "viewer.png", timeout=240, progress=False)
    assert capture.screenshot.is_file()
    assert max(capture.resolution) == 512, f"the full-resolution render never arrived: {capture.frames}"
    assert capture.ok, f"viewport looks empty: {capture.stats}; frames {capture.frames}\n{capture.log_tail}"
