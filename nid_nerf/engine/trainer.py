"""NIDTrainer: nerfstudio's trainer with atomic writes, an early check of the output folder, and rank-0-only writes.

Multi-process runs (``--machine.num-devices N``, see ``nid_nerf.engine.distributed``): every process trains,
only the process of global rank 0 writes (checkpoints, dictionary.pt, shards.json; nid-nerf's dataparsers
write dataparser_transforms.json from rank 0 only, see ``nid_nerf.dataparsers.outputs``; nerfstudio's
writer already logs from rank 0 only) and runs the evaluations, which use the unwrapped model and no
collective, so the other ranks need not wait for them.
"""

from __future__ import annotations

import re
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Set, Type

import yaml
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from nid_nerf.engine.allocator import keep_freed_memory
from nid_nerf.engine.distributed import gather_objects, is_main_process
from nid_nerf.engine.nerfstudio_patches import checkpoint_state, prepare_launch, unwrapped_state_dict
from nid_nerf.errors import NIDInputError
from nid_nerf.fields.dictionary import architecture_of, weights_from_checkpoint
from nid_nerf.io import check_writable_folder, remove_stale_temp_files, torch_save, write_json, write_text

CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")
"""A checkpoint file as nerfstudio names it; anything else in ``nerfstudio_models/`` is no checkpoint."""

_NEW_RUN_FOLDERS: Set[Path] = set()
"""Run folders (and their new parents) this process created in ``save_config``; removed again when the input
checks fail, so a rejected run leaves no stub folder behind (see :meth:`NIDTrainer.setup`)."""


def latest_checkpoint_step(checkpoint_dir: Path) -> Optional[int]:
    """The highest step of the ``step-<N>.ckpt`` files in ``checkpoint_dir`` (None: none), other names ignored.

    nerfstudio's own finder (``Trainer._load_checkpoint``, ``eval_utils.eval_load_checkpoint``) parses the
    name of every file in the folder as a step, so a single stray file (a temporary file left by a killed
    writer, an editor backup) makes it fail with ``invalid literal for int()``.
    """
    folder = Path(checkpoint_dir)
    if not folder.is_dir():
        return None
    steps = [int(m.group(1)) for p in folder.iterdir() if (m := CHECKPOINT_NAME.match(p.name)) and p.is_file()]
    return max(steps) if steps else None


def clean_checkpoint_folder(run_dir: Path, checkpoint_dir: Path) -> List[Path]:
    """Remove what killed checkpoint writers left: their temporary files in the run folder (where
    :meth:`NIDTrainer.save_checkpoint` writes them) and, from older versions, in ``nerfstudio_models/``."""
    removed = remove_stale_temp_files(run_dir, stems=lambda stem: stem.startswith(("step-", "dictionary")))
    removed += remove_stale_temp_files(checkpoint_dir, stems=lambda stem: stem.startswith("step-"))
    return removed


def _new_folders(folder: Path) -> List[Path]:
    """``folder`` and those of its parents that do not exist yet, innermost first."""
    new = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists():
            break
        new.append(candidate)
    return new


def follow_iterations(config: TrainerConfig) -> None:
    """Set every LogDecay schedule's ``max_steps`` to the run's ``max_num_iterations`` (when the config asks for
    it, see ``NIDTrainerConfig.schedules_follow_iterations``), so config.yml records the schedule that ran."""
    from nid_nerf.engine.schedulers import LogDecaySchedulerConfig

    if not getattr(config, "schedules_follow_iterations", False):
        return
    if config.load_dir is not None or config.load_checkpoint is not None:
        return  # a resumed run counts --max-num-iterations from its loaded step: its schedules stay as they are
    for group in config.optimizers.values():
        scheduler = group.get("scheduler")
        if isinstance(scheduler, LogDecaySchedulerConfig):
            scheduler.max_steps = int(config.max_num_iterations)


@dataclass
class NIDTrainerConfig(TrainerConfig):
    """nerfstudio's TrainerConfig; its ``save_config`` also prepares the launch (see :meth:`save_config`)."""

    _target: Type = field(default_factory=lambda: NIDTrainer)
    schedules_follow_iterations: bool = True
    """Decay every learning rate over ``max_num_iterations``: the method's schedules are written for its own
    iteration count (nid-field 2000, nid-dict 6000), so that ``--max-num-iterations 3000`` on nid-dict would
    otherwise stop half way down its decay (the experts at 1/5 of their rate instead of 1/30). False keeps each
    scheduler's own ``max_steps`` (the benchmarks, whose nominal iteration count is not their budget). A resumed
    run (``--load-dir``) keeps its schedules: nerfstudio counts its iterations from the loaded step."""

    def save_config(self) -> None:
        """Prepare the launch, check that the run folder is writable, then save config.yml (nerfstudio's).

        nerfstudio's ``train.main`` calls ``save_config`` right before ``launch()`` and has no other hook in
        between, so the launch-time patches (one-line NIDInputError, the gloo worker for CPU processes) are
        applied here, first, so that a bad output folder is already reported in one line.
        """
        prepare_launch(self)
        follow_iterations(self)
        new = _new_folders(Path(self.get_base_dir()).absolute())
        check_writable_folder(self.get_base_dir())
        _NEW_RUN_FOLDERS.update(new)
        super().save_config()


class NIDTrainer(Trainer):
    """nerfstudio's Trainer; checkpoints are atomic, single-process keyed, and written by rank 0 only."""

    config: NIDTrainerConfig

    def setup(self, test_mode="val") -> None:
        """nerfstudio's setup, after removing killed writers' temporary files; on bad input, no stub run folder.

        ``ns-train`` writes the run folder and its config.yml (``save_config``) before the dataparser has read
        the data; when the input checks then fail (NIDInputError), the folder is removed again if this
        process created it, so outputs/ does not fill with empty runs. An existing folder is never removed.
        """
        keep_freed_memory()  # 10-34 % faster CPU steps; see nid_nerf.engine.allocator
        follow_iterations(self.config)
        if is_main_process():
            clean_checkpoint_folder(self.base_dir, self.checkpoint_dir)
        model_config = self.config.pipeline.model
        saved = architecture_of(model_config), getattr(model_config, "learn_codes", None)
        resumes = self.config.load_dir is not None or self.config.load_checkpoint is not None
        try:
            with weights_from_checkpoint(resumes):  # a resumed solve gets its dictionary from the checkpoint
                super().setup(test_mode=test_mode)
        except NIDInputError:
            self._remove_new_run_folder()
            raise
        if (architecture_of(model_config), getattr(model_config, "learn_codes", None)) != saved:
            self._resave_config()

    def _resave_config(self) -> None:
        """Re-write config.yml with the architecture the model adopted from its dictionary.

        ``ns-train`` saves config.yml before the model is built, so a solve against a 4-level dictionary would
        record nid-field's 8 levels; loading the run without its dictionary.pt (moved, deleted) builds its
        shapes from config.yml alone and must find the real ones.
        """
        if not is_main_process():
            return
        path = Path(self.base_dir) / "config.yml"
        if path.is_file():
            write_text(path, yaml.dump(self.config))

    def _remove_new_run_folder(self) -> None:
        base = Path(self.base_dir).absolute()
        if base not in _NEW_RUN_FOLDERS:
            return
        shutil.rmtree(base, ignore_errors=True)
        for parent in base.parents:  # the experiment / method folders this run created, if still empty
            if parent not in _NEW_RUN_FOLDERS:
                break
            try:
                parent.rmdir()
            except OSError:
                break
        _NEW_RUN_FOLDERS.difference_update([base, *base.parents])

    def _load_checkpoint(self) -> None:
        """nerfstudio's loader, given the latest ``step-<N>.ckpt`` itself (stray names in the folder ignored).

        A subclass hook on nerfstudio's private ``Trainer._load_checkpoint`` (listed in nerfstudio_patches):
        with ``--load-dir`` and no ``--load-step`` nerfstudio would parse every file name in the folder.
        """
        if self.config.load_dir is not None and self.config.load_step is None:
            step = latest_checkpoint_step(self.config.load_dir)
            if step is None:
                raise NIDInputError(
                    f"--load-dir {self.config.load_dir} holds no checkpoint (step-<N>.ckpt); pass the "
                    "nerfstudio_models/ folder of a run that saved one"
                )
            self.config.load_step = step
        super()._load_checkpoint()

    def train(self) -> None:
        """nerfstudio's training loop; Ctrl-C saves a checkpoint and exits with status 130, without a traceback.

        nerfstudio's single-process ``launch`` catches KeyboardInterrupt, prints its traceback and exits 0,
        and the steps since the last save are lost. Here the interrupt is caught first: the current step is
        saved (atomically), one line says where and how to resume, and SystemExit(130) (128 + SIGINT, the
        shell convention) passes through nerfstudio's handler.
        """
        try:
            super().train()
        except KeyboardInterrupt:
            if is_main_process() and getattr(self, "pipeline", None) is not None:
                self.save_checkpoint(self.step)
                print(
                    f"nid-nerf: interrupted at step {self.step}; saved {self.checkpoint_dir}/step-{self.step:09d}.ckpt"
                    f"; resume with --load-dir {self.checkpoint_dir}",
                    file=sys.stderr,
                )
            raise SystemExit(130) from None

    code_encoder = None
    """nid-dict: the code encoder fitted after training (written into dictionary.pt with the final checkpoint)."""

    def _after_train(self) -> None:
        # before nerfstudio's _after_train, where rank 0 may stay serving the viewer for good
        if self.world_size > 1:
            self._write_shard_report()
        self._fit_code_encoder()
        super()._after_train()  # saves the final checkpoint, and dictionary.pt with the encoder

    def _fit_code_encoder(self) -> None:
        """nid-dict: fit the amortized code encoder to the learned codes (``encoder_steps``; rank 0 only)."""
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        model = pipeline.model
        steps = int(getattr(model.config, "encoder_steps", 0) or 0)
        if not getattr(model, "exports_dictionary", False) or steps <= 0 or not is_main_process():
            return
        from nid_nerf.engine.datamanager import scene_indices
        from nid_nerf.fields.code_encoder import fit_encoder_to_dictionary

        dataset = pipeline.datamanager.train_dataset
        self.code_encoder, _ = fit_encoder_to_dictionary(model, dataset, steps, scene_indices(dataset),
                                                         log=CONSOLE.log)

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
        state = checkpoint_state(step, unwrapped_state_dict(pipeline), self.optimizers, self.grad_scaler)
        # the temporary file goes to the run folder: nerfstudio parses every name in nerfstudio_models/ as a step
        torch_save(ckpt_path, state, temp_dir=self.base_dir)
        if getattr(pipeline.model, "exports_dictionary", False):
            from nid_nerf.fields.dictionary import export_dictionary

            export_dictionary(pipeline.model, self.base_dir / "dictionary.pt", encoder=self.code_encoder)
        if self.config.save_only_latest_checkpoint:
            for old in self.checkpoint_dir.glob("step-*.ckpt"):
                if old != ckpt_path and CHECKPOINT_NAME.match(old.name):
                    old.unlink()
