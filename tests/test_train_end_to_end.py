"""End to end through the real command line: ns-train nid-field / nid-dict, checkpoints, resume, ns-eval.

Tiny scenes (32 px) and a few dozen steps, so the whole file runs in a few minutes on 2 CPU cores.
"""

import json
import shutil

import pytest
import torch
from cli_helpers import FAST, render_vases, run


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return render_vases(tmp_path_factory.mktemp("collection"), count=3, views_train=12, views_test=3)


@pytest.fixture(scope="module")
def field_run(collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("field")
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0000", "--output-dir", out,
                  "--max-num-iterations", "30", "--steps-per-save", "30", "--steps-per-eval-batch", "15",
                  "--steps-per-eval-image", "15", "--steps-per-eval-all-images", "1000", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "e" / "nid-field" / "t"


def test_nid_field_trains_and_writes_a_weights_only_checkpoint(field_run):
    ckpts = sorted((field_run / "nerfstudio_models").glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["step-000000029.ckpt"]
    assert not list((field_run / "nerfstudio_models").glob(".*tmp")), "no half-written checkpoint left behind"
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)  # what ns-eval / ns-viewer do
    assert state["step"] == 29
    assert any(k.endswith("field.experts.tables") for k in state["pipeline"])
    # every learning rate decays over this run's 30 steps, not nid-field's nominal 2000
    config = (field_run / "config.yml").read_text()
    assert config.count("max_steps: 30\n") == 6 and "max_steps: 2000" not in config


def test_ns_eval_reports_metrics(field_run, tmp_path):
    out = tmp_path / "eval.json"
    result = run(["ns-eval", "--load-config", field_run / "config.yml", "--output-path", out])
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads(out.read_text())["results"]
    assert 8.0 < metrics["psnr"] < 60.0 and 0.0 < metrics["ssim"] <= 1.0


def test_resume_with_load_dir(field_run, collection, tmp_path):
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0000", "--output-dir", tmp_path,
                  "--load-dir", field_run / "nerfstudio_models", "--max-num-iterations", "40",
                  "--steps-per-save", "40", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    # nerfstudio counts --max-num-iterations from the loaded step (29): steps 30..69 run
    models = tmp_path / "e" / "nid-field" / "t" / "nerfstudio_models"
    assert "step-000000069.ckpt" in [p.name for p in models.glob("*")]


def test_unwritable_output_dir_is_one_line(collection, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0000", "--output-dir", blocker / "sub",
                  "--max-num-iterations", "1", *FAST])
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("nid-nerf error:")]
    assert len(lines) == 1 and "cannot write to output folder" in lines[0] and "--output-dir" in lines[0]


def test_dictionary_pretrain_then_solve(collection, tmp_path):
    train = tmp_path / "train"
    train.mkdir()
    for name in ("vases_0000", "vases_0001"):
        shutil.copytree(collection / name, train / name)
    dict_args = ["--pipeline.model.num-experts", "4", "--pipeline.model.top-k", "2",
                 "--pipeline.model.dense-warmup-steps", "10", "--pipeline.model.usage-log-interval", "10",
                 "--pipeline.model.encoder-steps", "20"]
    result = run(["ns-train", "nid-dict", "--data", train, "--output-dir", tmp_path / "dict",
                  "--max-num-iterations", "20", "--steps-per-save", "20", *dict_args, *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    dictionary = tmp_path / "dict" / "e" / "nid-dict" / "t" / "dictionary.pt"
    payload = torch.load(dictionary, weights_only=True)
    assert payload["tables"].shape[0] == 4 and payload["codes"].shape == (2, 4)
    assert payload["code_cov"].shape == (4, 4)
    assert payload["encoder"]["spec"]["num_experts"] == 4, "nid-dict fits the code encoder after pretraining"
    assert "code encoder: 20 steps on 2 scenes' codes" in result.stdout

    # solve a held-out scene against it: 10 solve steps, then refine
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0002", "--output-dir", tmp_path / "solve",
                  "--pipeline.model.dictionary-path", dictionary, "--pipeline.model.solve-steps", "10",
                  "--max-num-iterations", "20", "--steps-per-save", "20", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stdout.split())
    # the default start: a code search over the mean code, the encoder's prediction and the 2 pretraining codes
    assert "nid: code search over 4 codes on 1024 training rays" in said, said[-3000:]
    assert "refining with a refine table from step 10 " in said, "12 views: min(10, many_view_solve_steps) steps"
    state = torch.load(next((tmp_path / "solve").rglob("*.ckpt")), weights_only=True)["pipeline"]
    tables = next(v for k, v in state.items() if k.endswith("field.experts.tables"))
    assert torch.equal(tables, payload["tables"]), "the dictionary stays frozen while solving"
    residual = next(v for k, v in state.items() if k.endswith("field.refine_table"))
    assert residual.abs().sum() > 0, "the refine stage trained the residual table"
    codes = next(v for k, v in state.items() if k.endswith("field.gate.codes"))
    sparse = next(v for k, v in state.items() if k.endswith("field.gate.sparse"))
    assert not bool(sparse), "the default solve gate is dense"
    assert bool(((codes[0] - payload["code_mean"]).abs() > 1e-6).all()), "a dense solve moves every entry of the code"

    # --code-init encoder: the encoder's prediction alone
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0002", "--output-dir", tmp_path / "enc",
                  "--pipeline.model.dictionary-path", dictionary, "--pipeline.model.code-init", "encoder",
                  "--max-num-iterations", "1", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stdout.split())
    assert "the solve starts from the code the dictionary's encoder predicts from 12 training views" in said
    assert "code search" not in said

    # an older dictionary without an encoder: said in one line, and the search renders the mean code and the 2
    # pretraining scenes' codes
    old = tmp_path / "old_dictionary.pt"
    torch.save({k: v for k, v in payload.items() if k != "encoder"}, old)
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0001", "--output-dir", tmp_path / "old",
                  "--pipeline.model.dictionary-path", old, "--pipeline.model.code-search-rays", "256",
                  "--max-num-iterations", "1", *FAST])
    assert result.returncode == 0, result.stderr[-3000:]
    said = " ".join(result.stdout.split())
    assert "no code encoder" in said and "the code search goes without its prediction" in said, said[-3000:]
    assert "nid: code search over 3 codes on 256 training rays" in said, said[-3000:]

    # a dictionary whose architecture disagrees with explicit options fails with one line
    result = run(["ns-train", "nid-field", "--data", collection / "vases_0002", "--output-dir", tmp_path / "bad",
                  "--pipeline.model.dictionary-path", dictionary, "--pipeline.model.num-experts", "8",
                  "--max-num-iterations", "1", *FAST])
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "num_experts=8 (dictionary has 4)" in result.stderr
