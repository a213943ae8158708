"""NIDTrainer: nerfstudio's trainer with atomic checkpoints and an early check of the output folder."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig

from nid_nerf.errors import NIDInputError


def check_writable(folder: Path) -> None:
    """Raise a one-line NIDInputError if ``folder`` cannot be created or written."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise NIDInputError(
            f"cannot write to output folder {folder} ({err.strerror or err}); "
            "pass a writable --output-dir (or fix its permissions)"
        ) from None


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class NIDTrainerConfig(TrainerConfig):
    _target: Type = field(default_factory=lambda: NIDTrainer)

    def save_config(self) -> None:
        base_dir = self.get_base_dir()
        check_writable(base_dir)
        super().save_config()


class NIDTrainer(Trainer):
    def save_checkpoint(self, step: int) -> None:
        model = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        atomic_torch_save(
            {
                "step": step,
                "pipeline": model.state_dict(),  # type: ignore[union-attr]
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
            },
            ckpt_path,
        )
        if getattr(model.model, "exports_dictionary", False):
            from nid_nerf.dictionary import export_dictionary

            export_dictionary(model.model, self.base_dir / "dictionary.pt")
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != ckpt_path:
                    old.unlink()
