"""NIDTrainer: nerfstudio's trainer with atomic writes, an early check of the output folder, and rank-0-only writes.

Multi-process runs (``--machine.num-devices N``, see ``nid_nerf.engine.distributed``): every process trains,
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

from nid_nerf.engine.allocator import keep_freed_memory
from nid_nerf.engine.distributed import gather_objects, install_gloo_worker, is_main_process
from nid_nerf.errors import install_excepthook
from nid_nerf.io import check_writable_folder, torch_save, write_json


def unwrapped_state_dict(pipeline: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The pipeline's state dict with DDP's ``_model.module.`` prefix dropped: the single-process key layout."""
    prefix = "_model.module."
    return {("_model." + k[len(prefix):] if k.startswith(prefix) else k): v for k, v in pipeline.state_dict().items()}


@dataclass
class NIDTrainerConfig(TrainerConfig):
    _target: Type = field(default_factory=lambda: NIDTrainer)

    def save_config(self) -> None:
        install_excepthook()  # a nid-nerf run: NIDInputError prints as one line
        base_dir = self.get_base_dir()
        check_writable_folder(base_dir)
        super().save_config()
        # nerfstudio's train.main calls save_config right before launch(): the last moment to let its
        # launcher start CPU processes (nerfstudio 1.1.5's worker requires CUDA; see nid_nerf.engine.distributed)
        install_gloo_worker(self.machine)


class NIDTrainer(Trainer):
    def setup(self, test_mode="val") -> None:
        keep_freed_memory()  # 10-34 % faster CPU steps; see nid_nerf.engine.allocator
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
            write_json(self.base_dir / "shards.json", {"world_size": self.world_size, "ranks": reports}, indent=1,
                       sort_keys=False)
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
        torch_save(
            ckpt_path,
            {
                "step": step,
                "pipeline": unwrapped_state_dict(pipeline),  # type: ignore[arg-type]
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
            },
        )
        if getattr(pipeline.model, "exports_dictionary", False):
            from nid_nerf.fields.dictionary import export_dictionary

            export_dictionary(pipeline.model, self.base_dir / "dictionary.pt")
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != ckpt_path:
                    old.unlink()
