"""A run solved against a dictionary loads without its dictionary.pt: config.yml records the adopted layout and
the checkpoint holds the weights (experts, decoder, code, refine table, code_mean / code_precision)."""

from __future__ import annotations

import shutil

import pytest
import torch
import yaml
from cli_helpers import FAST, render_vases, run
from nerfstudio.data.scene_box import SceneBox

from nid_nerf.fields.dictionary import export_dictionary
from nid_nerf.models.nid_model import NIDModelConfig

torch.set_num_threads(1)

LAYOUT = {"num_experts": 3, "top_k": 2, "num_levels": 4, "log2_table_size": 12, "max_resolution": 64,
          "geo_hidden_dim": 32, "color_hidden_dim": 32}
"""A dictionary layout that differs from nid-field's defaults in every field a shape depends on (log2_table_size
is FAST's 12, which the command line sets explicitly)."""


def _dictionary(path):
    torch.manual_seed(0)
    config = NIDModelConfig(learn_codes=True, grid_resolution=24, **LAYOUT)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1,
                         metadata={"num_scenes": 2})
    with torch.no_grad():
        model.field.gate.codes.copy_(torch.rand_like(model.field.gate.codes))
    return export_dictionary(model, path)


@pytest.fixture(scope="module")
def solved(tmp_path_factory):
    root = tmp_path_factory.mktemp("solve")
    scene = render_vases(root / "data", count=1, views_train=6, views_test=2) / "vases_0000"
    dictionary = _dictionary(root / "dict" / "dictionary.pt")
    result = run(["ns-train", "nid-field", "--data", scene, "--output-dir", root / "out",
                  "--pipeline.model.dictionary-path", dictionary, "--pipeline.model.solve-steps", "3",
                  "--max-num-iterations", "6", "--steps-per-save", "6", "--steps-per-eval-batch", "1000",
                  "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "1000", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "out" / "e" / "nid-field" / "t", dictionary, scene


def _render(config_path):
    from nid_nerf.mesh.load import load_sdf_pipeline

    _, pipeline, _ = load_sdf_pipeline(config_path)
    cameras = pipeline.datamanager.train_dataparser_outputs.cameras
    with torch.no_grad():
        outputs = pipeline.model.get_outputs_for_camera(cameras[0:1])
    return outputs, pipeline.model


def test_config_records_the_adopted_layout(solved):
    run_dir, _, _ = solved
    model = yaml.load((run_dir / "config.yml").read_text(), Loader=yaml.Loader).pipeline.model
    for name, value in LAYOUT.items():
        assert getattr(model, name) == value, name
    assert model.learn_codes


def test_a_solved_run_loads_and_renders_without_its_dictionary(solved, tmp_path):
    run_dir, dictionary, scene = solved
    before, _ = _render(run_dir / "config.yml")
    moved = tmp_path / "elsewhere.pt"
    shutil.move(dictionary, moved)
    try:
        after, model = _render(run_dir / "config.yml")
        for key in ("rgb", "depth", "accumulation"):
            torch.testing.assert_close(after[key], before[key], msg=key)
        assert model.code_precision.shape == (3, 3) and model.field.refine_table is not None
        assert bool(model.code_precision.diagonal().ne(1).any()), "the checkpoint's precision, not the placeholder"
        out = tmp_path / "eval.json"
        result = run(["ns-eval", "--load-config", run_dir / "config.yml", "--output-path", out])
        assert result.returncode == 0, result.stderr[-3000:]
        assert out.is_file()
        # a new solve still needs the file: one line naming it
        result = run(["ns-train", "nid-field", "--data", scene, "--output-dir", tmp_path / "new",
                      "--pipeline.model.dictionary-path", dictionary, "--max-num-iterations", "2", *FAST])
        assert result.returncode != 0 and "Traceback" not in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("nid-nerf error:")]
        assert len(lines) == 1 and str(dictionary) in lines[0] and "does not exist" in lines[0]
    finally:
        shutil.move(moved, dictionary)
