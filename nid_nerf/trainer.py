"""NIDTrainer: nerfstudio's trainer with atomic writes, an early check of the output folder, and rank-0-only writes.

Multi-process runs (``--machine.num-devices N``, see ``nid_nerf.distributed``): every process trains,
only the process of global rank 0 writes (checkpoints, dictionary.pt, dataparser_transforms.json,
shards.json; nerfstudio's writer already logs from rank 0 only) and runs the evaluations, which use
the unwrapped model and no collective, so the other ranks need not wait for them.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Type

import torch
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.rich_utils import CONSOLE

from nid_nerf.allocator import keep_freed_memory
from nid_nerf.distributed import gather_objects, install_gloo_worker, is_main_process
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


def atomic_write_text(text: str, path: Path) -> None:
    """Write a text file through a temp file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def unwrapped_state_dict(pipeline: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The pipeline's state dict with DDP's ``_model.module.`` prefix dropped: the single-process key layout."""
    prefix = "_model.module."
    return {("_model." + k[len(prefix):] if k.startswith(prefix) else k): v for k, v in pipeline.state_dict().items()}


@dataclass
class NIDTrainerConfig(TrainerConfig):
    _target: Type = field(default_factory=lambda: NIDTrainer)

    def save_config(self) -> None:
        base_dir = self.get_base_dir()
        check_writable(base_dir)
        super().save_config()
        # nerfstudio's train.main calls save_config right before launch(): the last moment to let its
        # launcher start CPU processes (nerfstudio 1.1.5's worker requires CUDA; see nid_nerf.distributed)
        install_gloo_worker(self.machine)


class NIDTrainer(Trainer):
    def setup(self, test_mode="val") -> None:
        keep_freed_memory()  # 10-34 % faster CPU steps; see nid_nerf.allocator
        super().setup(test_mode=test_mode)

    def train(self) -> None:
        self._route_dataparser_transform()
        super().train()

    def _after_train(self) -> None:
        # before nerfstudio's _after_train, where rank 0 may stay serving the viewer for good
        if self.world_size > 1:
            self._write_shard_report()
        super()._after_train()

    def _route_dataparser_transform(self) -> None:
        """nerfstudio's train() writes dataparser_transforms.json from every process: rank 0 writes it, atomically."""
        outputs = getattr(self.pipeline.datamanager, "train_dataparser_outputs", None)
        if outputs is None:
            return
        save = outputs.save_dataparser_transform

        def save_from_rank0(path: Path) -> None:
            if not is_main_process():
                return
            tmp = path.parent / f".{path.name}.{os.getpid()}.tmp"
            try:
                save(tmp)
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)

        outputs.save_dataparser_transform = save_from_rank0

    def _write_shard_report(self) -> None:
        """shards.json: which training images each process owned and how many rays it drew from each. Collective."""
        report = getattr(self.pipeline.datamanager, "shard_report", None)
        mine = dict(report() if report is not None else {})
        # DDP keeps the replicas identical: equal checksums on every rank show the gradients were averaged
        mine["parameter_checksum"] = float(sum(p.detach().double().sum() for p in self.pipeline.model.parameters()))
        reports = gather_objects(mine)
        if is_main_process():
            atomic_write_text(json.dumps({"world_size": self.world_size, "ranks": reports}, indent=1),
                              self.base_dir / "shards.json")
            for r in reports:
                CONSOLE.log(f"rank {r.get('rank')}: {len(r.get('images', []))} images, {r.get('rays_drawn')} rays drawn")

    def eval_iteration(self, step: int) -> None:
        if is_main_process():  # rank 0 logs the only results anyway
            super().eval_iteration(step)

    def save_checkpoint(self, step: int) -> None:
        if not is_main_process():
            return
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        atomic_torch_save(
            {
                "step": step,
                "pipeline": unwrapped_state_dict(pipeline),  # type: ignore[arg-type]
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
            },
            ckpt_path,
        )
        if getattr(pipeline.model, "exports_dictionary", False):
            from nid_nerf.dictionary import export_dictionary

            export_dictionary(pipeline.model, self.base_dir / "dictionary.pt")
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != ckpt_path:
                    old.unlink()
