"""What must never be lost: checkpoints survive kill -9 and Ctrl-C, and a rejected run leaves no stub folder."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from pathlib import Path

import pytest

from nid_nerf.engine.trainer import NIDTrainer, clean_checkpoint_folder, latest_checkpoint_step
from nid_nerf.errors import NIDInputError

# A process that saves one good checkpoint through NIDTrainer.save_checkpoint, then starts a second save whose
# torch.save writes half a file and hangs: the test kills it there with SIGKILL.
_SAVER = textwrap.dedent(
    """
    import sys, time, types
    from pathlib import Path

    import torch
    from nid_nerf.engine.trainer import NIDTrainer

    run = Path(sys.argv[1])
    pipeline = torch.nn.Linear(2, 2)
    pipeline.model = types.SimpleNamespace()  # no dictionary export
    trainer = types.SimpleNamespace(
        pipeline=pipeline,
        optimizers=types.SimpleNamespace(optimizers={}, schedulers={}),
        grad_scaler=torch.amp.GradScaler("cuda", enabled=False),
        checkpoint_dir=run / "nerfstudio_models",
        base_dir=run,
        config=types.SimpleNamespace(save_only_latest_checkpoint=False),
    )
    NIDTrainer.save_checkpoint(trainer, 100)

    def hanging_save(obj, f, *args, **kwargs):
        f.write(b"half a checkpoint")
        f.flush()
        (run / "writing").write_text("now")
        time.sleep(120)

    torch.save = hanging_save
    NIDTrainer.save_checkpoint(trainer, 200)
    """
)


class _Pipeline:
    def __init__(self) -> None:
        self.loaded = None

    def load_pipeline(self, state, step) -> None:
        self.loaded = (state, step)


def _bare_trainer(**attributes) -> NIDTrainer:
    """A NIDTrainer with only ``attributes`` (no pipeline built): for its methods that need nothing else."""
    trainer = NIDTrainer.__new__(NIDTrainer)
    trainer.__dict__.update(attributes)
    return trainer


def test_kill_9_during_a_checkpoint_save_leaves_the_last_good_checkpoint_loadable(tmp_path):
    from nerfstudio.utils.eval_utils import eval_load_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    script = tmp_path / "saver.py"
    script.write_text(_SAVER)
    process = subprocess.Popen([sys.executable, str(script), str(run)], env=dict(os.environ, PYTHONWARNINGS="ignore"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (run / "writing").exists():
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "the saver never reached its second save"
            time.sleep(0.1)
        os.kill(process.pid, signal.SIGKILL)  # mid-save
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    checkpoints = run / "nerfstudio_models"
    assert os.listdir(checkpoints) == ["step-000000100.ckpt"]  # the temp file is not in here
    (leftover,) = [p for p in run.iterdir() if ".tmp" in p.name]
    assert leftover.name.startswith(".step-000000200.") and leftover.read_bytes() == b"half a checkpoint"

    # nerfstudio's own finder (ns-eval, nid-export-mesh, --load-dir resume) parses every name in the folder
    config = types.SimpleNamespace(load_dir=checkpoints, load_step=None)
    pipeline = _Pipeline()
    path, step = eval_load_checkpoint(config, pipeline)
    assert (path.name, step, pipeline.loaded[1]) == ("step-000000100.ckpt", 100, 100)
    assert set(pipeline.loaded[0]) == {"weight", "bias"}

    assert clean_checkpoint_folder(run, checkpoints) == [leftover]  # its writer is dead: removed at the next start
    assert sorted(p.name for p in run.iterdir()) == ["nerfstudio_models", "writing"]


def test_stray_names_in_the_checkpoint_folder_are_ignored_and_old_temp_files_cleaned(tmp_path, monkeypatch):
    from nerfstudio.engine.trainer import Trainer

    checkpoints = tmp_path / "run" / "nerfstudio_models"
    checkpoints.mkdir(parents=True)
    for step in (5, 10):
        (checkpoints / f"step-{step:09d}.ckpt").write_bytes(b"x")
    legacy = checkpoints / ".step-000000015.ckpt.k2j4h5.tmp"  # an older version's temp name, 0 bytes
    legacy.write_bytes(b"")
    (checkpoints / "notes.txt").write_text("mine")
    assert latest_checkpoint_step(checkpoints) == 10

    seen = []
    monkeypatch.setattr(Trainer, "_load_checkpoint", lambda self: seen.append(self.config.load_step))
    trainer = _bare_trainer(config=types.SimpleNamespace(load_dir=checkpoints, load_step=None))
    NIDTrainer._load_checkpoint(trainer)  # nerfstudio's loader then gets the step: no name parsing
    assert seen == [10]

    assert clean_checkpoint_folder(checkpoints.parent, checkpoints) == [legacy]
    assert sorted(p.name for p in checkpoints.iterdir()) == ["notes.txt", "step-000000005.ckpt", "step-000000010.ckpt"]

    trainer.config.load_dir, trainer.config.load_step = tmp_path, None
    with pytest.raises(NIDInputError, match="holds no checkpoint"):
        NIDTrainer._load_checkpoint(trainer)


def test_ctrl_c_saves_a_checkpoint_and_exits_non_zero_without_a_traceback(tmp_path, monkeypatch, capsys):
    from nerfstudio.engine.trainer import Trainer

    def interrupted(self):
        self.step = 42
        raise KeyboardInterrupt

    saved = []
    monkeypatch.setattr(Trainer, "train", interrupted)
    trainer = _bare_trainer(pipeline=object(), checkpoint_dir=tmp_path / "nerfstudio_models", step=0)
    trainer.save_checkpoint = saved.append
    with pytest.raises(SystemExit) as exit_info:
        NIDTrainer.train(trainer)
    assert exit_info.value.code == 130 and saved == [42]
    err = capsys.readouterr().err
    assert "interrupted at step 42" in err and "--load-dir" in err and "Traceback" not in err


def _nid_field_config(root: Path, data: Path):
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods["nid-field"])
    config.output_dir = root / "outputs"
    config.experiment_name = "e"
    config.timestamp = "t"
    config.vis = "tensorboard"
    config.machine.device_type = "cpu"
    config.pipeline.datamanager.data = data
    return config


def test_a_run_that_fails_its_input_checks_leaves_no_run_folder(tmp_path):
    bad = tmp_path / "bad_scene"
    bad.mkdir()
    (bad / "transforms.json").write_text('{"frames": [')
    config = _nid_field_config(tmp_path, bad)
    config.save_config()  # what ns-train does before it starts the trainer: the folder and config.yml exist now
    assert (config.get_base_dir() / "config.yml").is_file()
    trainer = config.setup(local_rank=0, world_size=1)
    with pytest.raises(NIDInputError, match="malformed JSON"):
        trainer.setup()
    assert not (tmp_path / "outputs").exists()  # nor any of the folders it created

    existing = _nid_field_config(tmp_path, bad)  # a folder that was there before is never removed
    existing.get_base_dir().mkdir(parents=True)
    existing.save_config()
    with pytest.raises(NIDInputError):
        existing.setup(local_rank=0, world_size=1).setup()
    assert (existing.get_base_dir() / "config.yml").is_file()


@pytest.mark.slow
def test_ctrl_c_during_ns_train(tmp_path):
    """A real ns-train run, interrupted with SIGINT once it trains: checkpoint saved, status 130, no traceback."""
    from cli_helpers import BIN, FAST, render_vases

    data = render_vases(tmp_path / "data", 1, 4, 1)
    scene = next(p for p in data.iterdir() if p.is_dir())
    out = tmp_path / "outputs"
    args = [str(BIN / "ns-train"), "nid-field", *FAST, "--output-dir", str(out), "--max-num-iterations", "100000",
            "--steps-per-save", "100000", "--steps-per-eval-batch", "100000", "--steps-per-eval-image", "100000",
            "--steps-per-eval-all-images", "100000", "--logging.steps-per-log", "1", "nid-scene", "--data",
            str(scene)]
    env = dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    run = out / "e" / "nid-field" / "t"
    try:
        deadline = time.monotonic() + 600
        while not (run / "dataparser_transforms.json").is_file():  # written when training starts
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "ns-train never started training"
            time.sleep(0.5)
        time.sleep(5)  # a few steps in
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stdout + stderr, (stdout + stderr)[-3000:]
    assert "interrupted at step" in stderr
    assert latest_checkpoint_step(run / "nerfstudio_models") is not None
