"""Train any nerfstudio method in this process, one timed iteration at a time: the one loop of every benchmark.

A :class:`TrainRun` is ``ns-train``'s setup (seed, Trainer, pipeline, optimizers, callbacks), built
inside :func:`~nid_nerf.engine.nerfstudio_patches.isolated_event_writers` so that many runs can live
in one process. Its :meth:`TrainRun.step` is ``Trainer.train``'s own step without its side jobs:
training callbacks before and after ``trainer.train_iteration(step)`` (data loading, forward,
backward, optimizer and scheduler steps), timed with ``time.perf_counter``. :func:`train` steps one
run, or several in turn (one iteration each, so that they share the same background load of a
shared CPU), until a :class:`Stop` rule (steps and/or seconds of training clock) holds, calling
per-step hooks after each iteration; every benchmark (speed, quality, few-view, dictionary sweep,
inpainting, sampler) is this loop with its own hooks.

Evaluation is off the training clock: the model renders a fixed set of held-out images with
``model.get_outputs_for_camera``, the call the viewer and ``ns-eval`` use, which also gives the render
speed in rays per second. PSNR is computed here, the same way for every method: on a white
background. Eval images with an alpha channel are composited onto white, and models built on
nerfstudio's RGBRenderer render onto white through nerfstudio's own background override (the one
the viewer's crop box uses); models with their own renderer must render eval images onto white.
"""

from __future__ import annotations

import contextlib
import math
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import numpy as np
import torch
from jaxtyping import Float
from nerfstudio.cameras.cameras import Cameras
from nerfstudio.engine.callbacks import TrainingCallbackLocation
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.model_components.renderers import background_color_override_context
from torch import Tensor
from tqdm import tqdm

from nid_nerf.benchmarks.method_config import loadable_config
from nid_nerf.engine.nerfstudio_patches import isolated_event_writers, lpips_patched_out


@dataclass
class Budget:
    """How long to train and how often to score."""

    seconds: float = 300.0
    """training wall-clock budget (evaluation excluded)"""
    max_steps: Optional[int] = None
    """stop earlier after this many iterations"""
    eval_every_seconds: float = 30.0
    """score the held-out images each time the training clock passes a multiple of this"""
    num_eval_images: int = 3
    """held-out images scored at every evaluation (evenly spaced over the eval split)"""


@dataclass
class EvalPoint:
    """One evaluation of the held-out images."""

    step: int
    """iterations done"""
    train_seconds: float
    """training clock when it was taken"""
    psnr: float
    """mean PSNR (dB) over the eval images"""
    rays_per_second: float
    """median over the eval images of rays / seconds of one `get_outputs_for_camera` call"""


@dataclass
class MethodResult:
    """What one method did within the budget."""

    method: str
    iteration_seconds: list[float] = field(default_factory=list)
    evals: list[EvalPoint] = field(default_factory=list)
    native_eval: dict = field(default_factory=dict)
    """the method's own `pipeline.get_eval_image_metrics_and_images` on one eval image, or the error it raised"""
    config_path: Optional[Path] = None
    """config.yml of the saved checkpoint, when one was saved"""
    image_size: tuple[int, int] = (0, 0)
    """(height, width) of the eval images"""
    num_train_images: int = 0
    num_eval_images: int = 0
    """images in the eval split (the fixed eval set is `Budget.num_eval_images` of them)"""

    @property
    def steps(self) -> int:
        return len(self.iteration_seconds)

    @property
    def train_seconds(self) -> float:
        return float(sum(self.iteration_seconds))

    @property
    def median_iteration_seconds(self) -> float:
        return statistics.median(self.iteration_seconds) if self.iteration_seconds else math.nan

    @property
    def final_psnr(self) -> float:
        return self.evals[-1].psnr if self.evals else math.nan

    @property
    def render_rays_per_second(self) -> float:
        return self.evals[-1].rays_per_second if self.evals else math.nan

    def psnr_at(self, seconds: float) -> float:
        """PSNR of the last evaluation taken at or before `seconds` of training clock (NaN if none)."""
        before = [e.psnr for e in self.evals if e.train_seconds <= seconds + 1e-9]
        return before[-1] if before else math.nan


def psnr(prediction: Float[Tensor, "*bs 3"], target: Float[Tensor, "*bs 3"]) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1]."""
    mse = torch.mean((prediction.clamp(0.0, 1.0) - target) ** 2).item()
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def composite_rgb(image: Float[Tensor, "H W C"]) -> Float[Tensor, "H W 3"]:
    """RGB of an eval image; an alpha channel left in by the dataparser is composited onto white."""
    if image.shape[-1] == 4:
        return image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
    return image[..., :3]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators, as ``ns-train`` does before building a trainer."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class EvalSet:
    """A fixed set of held-out cameras and their ground-truth RGB."""

    cameras: list[Cameras]
    images: list[Float[Tensor, "H W 3"]]

    @classmethod
    def from_pipeline(cls, pipeline, count: int) -> EvalSet:
        """`count` eval images evenly spaced over the eval split (all of them when it has fewer)."""
        dataset = pipeline.datamanager.eval_dataset
        if dataset is None or len(dataset) == 0:
            raise RuntimeError("the eval split is empty: the benchmark needs held-out images")
        indices = sorted(set(np.linspace(0, len(dataset) - 1, max(1, count)).round().astype(int).tolist()))
        device = pipeline.device
        cameras = [dataset.cameras[i : i + 1].to(device) for i in indices]
        images = [composite_rgb(dataset[i]["image"]).to(device) for i in indices]
        return cls(cameras, images)


def evaluate(pipeline, eval_set: EvalSet) -> tuple[float, float]:
    """Mean PSNR over the eval set and the median rays/s of `model.get_outputs_for_camera`."""
    model = pipeline.model
    was_training = model.training
    pipeline.eval()
    scores, speeds = [], []
    try:
        white = torch.ones(3, device=pipeline.device)
        with torch.no_grad(), background_color_override_context(white):
            for camera, image in zip(eval_set.cameras, eval_set.images):
                start = time.perf_counter()
                outputs = model.get_outputs_for_camera(camera)
                elapsed = time.perf_counter() - start
                scores.append(psnr(outputs["rgb"], image))
                speeds.append(image.shape[0] * image.shape[1] / elapsed)
    finally:
        if was_training:
            pipeline.train()
    return float(np.mean(scores)), float(statistics.median(speeds))


def native_eval(pipeline, step: int) -> dict:
    """The method's own eval-image path (`ns-train`'s eval and `ns-eval`), on one eval image."""
    pipeline.eval()
    try:
        with torch.no_grad():
            start = time.perf_counter()
            metrics, _ = pipeline.get_eval_image_metrics_and_images(step=step)
            seconds = time.perf_counter() - start
        result = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        result["seconds"] = seconds
        result["ok"] = True
        return result
    except Exception as error:  # noqa: BLE001 - reported, not hidden: the benchmark prints it
        return {"ok": False, "error": f"{type(error).__name__}: {error}"}
    finally:
        pipeline.train()


def setup_trainer(config: TrainerConfig) -> Trainer:
    """`ns-train`'s setup (seed, Trainer, pipeline, optimizers, callbacks) with LPIPS kept offline."""
    seed_everything(config.machine.seed)
    trainer = config.setup(local_rank=0, world_size=1)
    with lpips_patched_out():
        trainer.setup()
    return trainer


def train_step(trainer: Trainer, step: int) -> float:
    """One `Trainer.train` iteration (callbacks included); returns its wall-clock seconds."""
    start = time.perf_counter()
    trainer.pipeline.train()
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.BEFORE_TRAIN_ITERATION)
    loss, _, _ = trainer.train_iteration(step)
    for callback in trainer.callbacks:
        callback.run_callback_at_location(step, location=TrainingCallbackLocation.AFTER_TRAIN_ITERATION)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{trainer.config.method_name}: loss became {loss.item()} at step {step}")
    return time.perf_counter() - start


def save_checkpoint(trainer: Trainer, step: int) -> Path:
    """Write config.yml, dataparser_transforms.json and a checkpoint, as `ns-train` leaves them."""
    config = trainer.config
    loadable_config(config).save_config()
    datamanager = trainer.pipeline.datamanager
    if hasattr(datamanager, "train_dataparser_outputs"):
        datamanager.train_dataparser_outputs.save_dataparser_transform(
            config.get_base_dir() / "dataparser_transforms.json"
        )
    trainer.save_checkpoint(step)
    return config.get_base_dir() / "config.yml"


class TrainRun:
    """One method's trainer, set up as ``ns-train`` does, trained one timed iteration at a time.

    The trainer is built inside :func:`isolated_event_writers` (left again by :meth:`close`), so the
    writers its setup adds stay with this run even while other runs live in the same process (the
    sampler benchmark keeps three open at once). Use it as a context manager.
    """

    def __init__(self, config: TrainerConfig, *, eval_images: Optional[int] = None, name: Optional[str] = None):
        """Set up `config`'s trainer; with `eval_images`, also fix the held-out images :meth:`evaluate` scores."""
        self.name = name or config.method_name or "?"
        self._exit = contextlib.ExitStack()
        self._exit.enter_context(isolated_event_writers())
        try:
            self.trainer = setup_trainer(config)
            self.pipeline = self.trainer.pipeline
            self.eval_set = EvalSet.from_pipeline(self.pipeline, eval_images) if eval_images else None
        except BaseException:
            self._exit.close()
            raise
        self.start_clock()

    def start_clock(self) -> None:
        """No iterations done yet: the training clock at zero and no PSNR measured."""
        self.iteration_seconds: list[float] = []
        self.train_seconds = 0.0
        """training clock: the sum of the iteration times, evaluation excluded"""
        self.last_psnr = math.nan
        """PSNR of the latest :meth:`evaluate` (for progress bars)"""

    @property
    def steps(self) -> int:
        """Iterations done."""
        return len(self.iteration_seconds)

    def step(self) -> float:
        """One ``Trainer.train`` iteration (callbacks included) at the next step, on the clock; returns its seconds."""
        seconds = self.iterate(self.steps)
        self.iteration_seconds.append(seconds)
        self.train_seconds += seconds
        return seconds

    def iterate(self, step: int) -> float:
        """The trainer's iteration `step` and its wall-clock seconds (:meth:`step` keeps the clock)."""
        seconds = train_step(self.trainer, step)
        self.trainer.step = step
        return seconds

    def evaluate(self) -> EvalPoint:
        """Score the eval set now (off the training clock): mean PSNR and the median render rays/s."""
        if self.eval_set is None:
            raise RuntimeError(f"{self.name}: built without eval_images, so there is no eval set to score")
        psnr_db, rays_per_second = evaluate(self.pipeline, self.eval_set)
        self.last_psnr = psnr_db
        return EvalPoint(self.steps, self.train_seconds, psnr_db, rays_per_second)

    def close(self) -> None:
        """Drop the event writers this run's setup added (and nerfstudio's buffered events)."""
        self._exit.close()

    def __enter__(self) -> TrainRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Stop:
    """When training stops: after `steps` iterations, or once the training clock reaches `seconds` (either first)."""

    steps: Optional[int] = None
    seconds: Optional[float] = None

    def reached(self, run: TrainRun) -> bool:
        return (self.steps is not None and run.steps >= self.steps) or (
            self.seconds is not None and run.train_seconds >= self.seconds
        )


Hook = Callable[[TrainRun], None]
"""Called after each iteration of a run, with the run (``run.steps`` iterations done)."""


def train(
    runs: Union[TrainRun, Sequence[TrainRun]], stop: Stop, hooks: Sequence[Hook] = (), progress: Optional[str] = None
) -> None:
    """Train until `stop` holds for every run: each unfinished run does one iteration in turn, then the hooks see it.

    Several runs share the process's global random generators, so the order (run A's iteration and
    hooks, then run B's, then A's again) is part of what a benchmark's numbers depend on; it never changes.
    `progress` is the label of a progress bar (none when None).
    """
    runs = list(runs) if isinstance(runs, (list, tuple)) else [runs]
    by_steps = stop.steps is not None
    total = stop.steps if by_steps else round(stop.seconds or 0)
    bar = tqdm(total=total, unit="it" if by_steps else "s", desc=progress, disable=progress is None, leave=False,
               dynamic_ncols=True)
    try:
        while active := [run for run in runs if not stop.reached(run)]:
            for run in active:
                run.step()
                for hook in hooks:
                    hook(run)
            slowest = min(runs, key=lambda r: r.steps if by_steps else r.train_seconds)
            bar.n = min(slowest.steps if by_steps else round(slowest.train_seconds), total)
            bar.set_postfix_str(" ".join(f"{r.name}={r.last_psnr:.2f}" for r in runs if math.isfinite(r.last_psnr)))
    finally:
        bar.close()


@dataclass
class EveryTrainSeconds:
    """Hook: evaluate each time the training clock passes a multiple of `seconds` (a long iteration skips marks)."""

    seconds: float
    points: list[EvalPoint] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.next_mark = self.seconds

    def __call__(self, run: TrainRun) -> None:
        if run.train_seconds >= self.next_mark:
            self.points.append(run.evaluate())
            while self.next_mark <= run.train_seconds:
                self.next_mark += self.seconds


def run_method(
    config: TrainerConfig,
    budget: Budget,
    *,
    check_native_eval: bool = True,
    keep_checkpoint: bool = False,
    progress: bool = True,
) -> MethodResult:
    """Train `config` for `budget` and score it; see the module docstring for what is timed.

    Args:
        config: a TrainerConfig, e.g. from :func:`nid_nerf.benchmarks.method_config.make_trainer_config`.
        budget: the training budget and evaluation schedule.
        check_native_eval: also run the method's own eval-image path once at the end.
        keep_checkpoint: save a checkpoint and config.yml under `config.output_dir` at the end.
        progress: show a progress bar over the training clock.
    """
    with TrainRun(config, eval_images=budget.num_eval_images) as run:
        pipeline = run.pipeline
        result = MethodResult(
            method=run.name,
            image_size=tuple(run.eval_set.images[0].shape[:2]),
            num_train_images=len(pipeline.datamanager.train_dataset),
            num_eval_images=len(pipeline.datamanager.eval_dataset),
        )
        marks = EveryTrainSeconds(budget.eval_every_seconds, result.evals)
        stop = Stop(steps=budget.max_steps, seconds=budget.seconds)
        train(run, stop, [marks], progress=result.method if progress else None)
        result.iteration_seconds = run.iteration_seconds
        if not result.evals or result.evals[-1].step != run.steps:
            result.evals.append(run.evaluate())
        if check_native_eval:
            result.native_eval = native_eval(pipeline, run.steps)
        if keep_checkpoint:
            result.config_path = save_checkpoint(run.trainer, max(run.steps - 1, 0))
    return result
