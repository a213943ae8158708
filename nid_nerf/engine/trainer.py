"""NIDTrainer: nerfstudio's trainer with atomic writes, an early check of the output folder, and rank-0-only writes.

Multi-process runs (``--machine.num-devices N``, see ``nid_nerf.engine.distributed``): every process trains,
only the process of global rank 0 writes (checkpoints, dictionary.pt, shards.json; nid-nerf's dataparsers
write dataparser_transforms.json from rank 0 only, see ``nid_nerf.dataparsers.outputs``; nerfstudio's
writer already logs from rank 0 only) and runs the evaluations, which use the unwrapped model and no
collective, so the other ranks need not wait for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Type

from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from nid_nerf.engine.allocator import keep_freed_memory
from nid_nerf.engine.distributed import gather_objects, is_main_process
from nid_nerf.engine.nerfstudio_patches import checkpoint_state, prepare_launch, unwrapped_state_dict
from nid_nerf.io import check_writable_folder, torch_save, write_json


@dataclass
class NIDTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig; its ``save_config`` also prepares the launch (see :meth:`save_config`)."""

    _target: Type = field(default_factory=lambda: NIDTrainer)

    def save_config(self) -> None:
        """Prepare the launch, check that the run folder is writable, then save config.yml (nerfstudio's).

        nerfstudio's ``train.main`` calls ``save_config`` right before ``launch()`` and has no other hook in
        between, so the launch-time patches (one-line NIDInputError, the gloo worker for CPU processes) are
        applied here, first, so that a bad output folder is already reported in one line.
        """
        prepare_launch(self)
        check_writable_folder(self.get_base_dir())
        super().save_config()


class NIDTrainer(Trainer):
    """nerfstudio's Trainer; checkpoints are atomic, single-process keyed, and written by rank 0 only."""

    config: NIDTrainerConfig

    def setup(self, test_mode="val") -> None:
        keep_freed_memory()  # 10-34 % faster CPU steps; see nid_nerf.engine.allocator
        super().setup(test_mode=test_mode)

    def _after_train(self) -> None:
        # before nerfstudio's _after_train, where rank 0 may stay serving the viewer for good
        if self.world_size > 1:
            self._write_shard_report()
        super()._after_train()

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
                num_images = len(r.get("images", []))
                CONSOLE.log(f"rank {r.get('rank')}: {num_images} images, {r.get('rays_drawn')} rays drawn")

    @check_main_thread  # rank 0 logs the only results anyway
    def eval_iteration(self, step: int) -> None:
        super().eval_iteration(step)

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """nerfstudio's checkpoint, written atomically, with single-process keys; plus dictionary.pt for nid-dict."""
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        ckpt_path: Path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        torch_save(ckpt_path, checkpoint_state(step, unwrapped_state_dict(pipeline), self.optimizers, self.grad_scaler))
        if getattr(pipeline.model, "exports_dictionary", False):
            from nid_nerf.fields.dictionary import export_dictionary

            export_dictionary(pipeline.model, self.base_dir / "dictionary.pt")
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("*.ckpt"):
                if old != ckpt_path:
                    old.unlink()
