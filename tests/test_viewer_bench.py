"""The speed-benchmark harness (nid_nerf.benchmarks) and the viewer check's helpers."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from nid_nerf.benchmarks.harness import Budget, EvalPoint, MethodResult, composite_rgb, psnr, run_method
from nid_nerf.benchmarks.method_config import loadable_config, make_trainer_config, override_flags
from nid_nerf.benchmarks.report import first_eval_after, markdown_report
from nid_nerf.benchmarks.viewer_check import (
    VISER_MAX_RADIUS,
    VISER_SCALE,
    VISER_START_RADIUS,
    viewport_stats,
    wheel_deltas,
)
from nid_nerf.engine.nerfstudio_patches import OfflineLPIPS, lpips_patched_out
from nid_nerf.errors import NIDInputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    from nid_nerf.synthetic.collection_renderer import RenderSettings, SceneJob, render_scene

    root = tmp_path_factory.mktemp("bench")
    result = render_scene(SceneJob("vase", family="vases", index=1), RenderSettings(6, 2, 24), root)
    assert result.status == "rendered", result.reason
    return root / "vase"


def test_lpips_is_patched_out_only_inside_the_block():
    import torchmetrics.image.lpip as lpip

    original = lpip.LearnedPerceptualImagePatchSimilarity
    with lpips_patched_out():
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        metric = LearnedPerceptualImagePatchSimilarity(normalize=True)  # no AlexNet download
        assert isinstance(metric, OfflineLPIPS)
        assert math.isnan(float(metric(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))))
    assert lpip.LearnedPerceptualImagePatchSimilarity is original


def test_nerfacto_config_gets_the_benchmark_overrides(scene, tmp_path):
    config = make_trainer_config("nerfacto", scene, tmp_path, rays_per_batch=1024,
                                 overrides={"pipeline.model.background_color": "random"})
    datamanager = config.pipeline.datamanager
    assert type(datamanager).__name__ == "VanillaDataManagerConfig"  # one process: no prefetching worker
    assert datamanager.train_num_rays_per_batch == datamanager.eval_num_rays_per_batch == 1024
    assert config.pipeline.model.implementation == "torch"
    assert config.pipeline.model.background_color == "random"
    assert config.machine.device_type == "cpu" and not config.is_viewer_enabled()
    assert datamanager.dataparser.data == scene
    # the saved config has nerfacto's own datamanager class again, as ns-viewer / ns-eval expect
    saved = yaml.load(yaml.dump(loadable_config(config)), Loader=yaml.Loader)
    assert type(saved.pipeline.datamanager).__name__ == "ParallelDataManagerConfig"
    assert saved.pipeline.datamanager.train_num_rays_per_batch == 1024
    assert override_flags({"pipeline.model.background_color": "random"}) == "--pipeline.model.background-color random"


def test_bad_method_data_or_override_is_one_clear_error(scene, tmp_path):
    with pytest.raises(NIDInputError, match="unknown method 'no-such-method'"):
        make_trainer_config("no-such-method", scene, tmp_path)
    with pytest.raises(NIDInputError, match="does not exist"):
        make_trainer_config("nerfacto", tmp_path / "missing", tmp_path)
    with pytest.raises(NIDInputError, match="no config option 'pipeline.model.no_such_option'"):
        make_trainer_config("nerfacto", scene, tmp_path, overrides={"pipeline.model.no_such_option": 1})


def test_psnr_and_white_compositing():
    target = torch.full((4, 4, 3), 0.5)
    assert psnr(target + 0.1, target) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    rgba = torch.tensor([[[1.0, 0.0, 0.0, 0.25]]])
    assert torch.allclose(composite_rgb(rgba), torch.tensor([[[1.0, 0.75, 0.75]]]))
    assert composite_rgb(torch.rand(2, 2, 3)).shape == (2, 2, 3)


def test_wheel_deltas_reach_the_requested_orbit_radius():
    for distance in (0.3, 2.5, 4.0):
        deltas = wheel_deltas(distance)
        assert all(abs(d) <= 200.0 + 1e-9 for d in deltas)
        radius = VISER_START_RADIUS * 0.95 ** (-sum(deltas) / 100.0)  # camera-controls' dolly per wheel pixel
        assert radius == pytest.approx(distance * VISER_SCALE, rel=1e-9)
    far = VISER_START_RADIUS * 0.95 ** (-sum(wheel_deltas(1e6)) / 100.0)
    assert far == pytest.approx(VISER_MAX_RADIUS)


def test_viewport_stats_tell_a_render_from_an_empty_canvas():
    empty = np.full((300, 400, 3), 255, np.uint8)
    empty[280:, :30] = (200, 0, 0)  # the axes gizmo in the corner is ignored
    assert not viewport_stats(empty).shows_scene()
    scene = empty.copy()
    yy, xx = np.mgrid[:300, :400]
    scene[(yy - 150) ** 2 + (xx - 200) ** 2 < 60**2] = (30, 90, 200)
    stats = viewport_stats(scene)
    assert stats.shows_scene() and 0.05 < stats.structured_fraction < 0.5


def _result(method: str, step_seconds: float, psnrs: list[tuple[float, float]], rays: float) -> MethodResult:
    result = MethodResult(method=method, iteration_seconds=[step_seconds] * 10)
    result.evals = [EvalPoint(step=i, train_seconds=t, psnr=p, rays_per_second=rays) for i, (t, p) in enumerate(psnrs)]
    result.native_eval = {"ok": True, "psnr": psnrs[-1][1], "seconds": 1.0}
    return result


def test_report_states_each_target_with_the_measured_numbers():
    ours = _result("nid-field", 0.4, [(60.5, 20.0), (120.2, 24.0)], 25_000.0)
    theirs = _result("nerfacto", 2.8, [(61.0, 15.0), (122.0, 25.0)], 271.0)
    assert first_eval_after(theirs, 120.0).psnr == 25.0 and first_eval_after(theirs, 200.0) is None
    text = markdown_report(
        [ours, theirs], command="python scripts/benchmark_speed.py --data x", data_summary="d", budget_summary="b",
        marks=[60.0, 120.0], flags={}, loads={}, plot_name="speed_psnr_vs_time.png", ours="nid-field",
        baseline="nerfacto",
    )
    assert "python scripts/benchmark_speed.py --data x" in text
    assert "= 7.0x faster (target >= 5x): **met**" in text
    assert "60 s: 20.00 vs 15.00, 120 s: 24.00 vs 25.00; higher at 1 of 2 marks: **NOT met**" in text
    assert "25,000 rays/s (target >= 20,000): **met**" in text


@pytest.mark.slow
def test_nerfacto_trains_and_evaluates_offline_in_the_harness(scene, tmp_path):
    """nerfacto-torch builds (LPIPS patched out), trains, renders and runs its own eval path without network."""
    config = make_trainer_config("nerfacto", scene, tmp_path, overrides={"pipeline.model.background_color": "random"})
    result = run_method(config, Budget(seconds=600, max_steps=2, eval_every_seconds=1e9, num_eval_images=1),
                        keep_checkpoint=True, progress=False)
    assert result.steps == 2 and all(s > 0 for s in result.iteration_seconds)
    assert len(result.evals) == 1 and result.evals[0].step == 2
    assert math.isfinite(result.final_psnr) and result.render_rays_per_second > 0
    assert result.native_eval["ok"], result.native_eval
    assert math.isnan(result.native_eval["lpips"])  # the offline stub
    assert result.config_path.is_file() and list(result.config_path.parent.glob("nerfstudio_models/*.ckpt"))


@pytest.mark.slow
def test_benchmark_script_end_to_end(scene, tmp_path):
    output = tmp_path / "speed.md"
    command = [sys.executable, str(REPO / "scripts" / "benchmark_speed.py"), "--data", str(scene),
               "--seconds", "4", "--max-steps", "2", "--eval-every", "2", "--eval-images", "1",
               "--methods", "nid-field", "nerfacto", "--output", str(output)]
    run = subprocess.run(command, capture_output=True, text=True, timeout=1500, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    text = output.read_text()
    assert "| nid-field |" in text and "| nerfacto |" in text and "## Targets of issue #2" in text
    assert (tmp_path / "speed_psnr_vs_time.png").stat().st_size > 10_000
    assert '"median_iteration_seconds"' in output.with_suffix(".json").read_text()
