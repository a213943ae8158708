"""Benchmark the residual ray sampler (INT for rays) against uniform sampling, in one run.

Every scene is rendered once (``nid_nerf.synthetic`` render tools) from the classic meshes and the blob
collection in ../shared/data/meshes; every variant then trains ``ns-train nid-field``'s own config
(same model, same budget, same seed), overriding only the data, the step budget and the sampler.
The loop is ``Trainer.train``'s iteration (callbacks + ``train_iteration``), timed per step with
``time.perf_counter``. Every ``--eval-every`` steps the held-out images are rendered off the clock and
scored (PSNR, composited on white).

Reported per scene and variant: PSNR vs wall-clock and vs iterations, the wall-clock (and steps) to
reach 95 % of uniform's final PSNR in dB, and the sampler's own time per iteration (sample + observe)
against the uniform sampler's. Writes a markdown table, a PSNR plot, a JSON of every eval point, and
an INT Fig. 5-like figure (which pixels get picked over training, next to the residual map).

    python scripts/benchmark_sampler.py --steps 1500 --eval-every 100
    python scripts/benchmark_sampler.py --steps 20 --eval-every 10 --scenes spot --output /tmp/b.md  # smoke

Variants are ``name:key=value,...`` over the datamanager's ``pixel_sampler`` options (``sampler`` picks
uniform or residual), e.g. ``--variants uniform residual unbiased power:rule=power,alpha=2``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import platform
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from nid_nerf.benchmarks.harness import Stop, TrainRun, composite_rgb, train
from nid_nerf.benchmarks.method_config import make_trainer_config
from nid_nerf.benchmarks.report import REPO_ROOT, command_line, fmt, pyplot, write_markdown_keeping_notes
from nid_nerf.errors import NIDInputError, install_excepthook
from nid_nerf.io import save_figure, save_npz, write_text

DEFAULT_MESHES = REPO_ROOT.parent / "shared" / "data" / "meshes"

PRESET_VARIANTS: Dict[str, Dict[str, object]] = {
    "uniform": {"sampler": "uniform"},
    "residual": {"sampler": "residual"},
    "unbiased": {"sampler": "residual", "rule": "power", "unbiased": True},
}
"""Named variants; the residual ones use the sampler's defaults unless overridden."""


# ----------------------------------------------------------------------------------------------
# scenes
# ----------------------------------------------------------------------------------------------


def mesh_path(name: str, meshes_root: Path) -> Path:
    """spot -> classic/spot.obj, blob_003 -> blobs/blob_003.obj, or a path to a mesh file."""
    candidates = [Path(name), meshes_root / "classic" / f"{name}.obj", meshes_root / "blobs" / f"{name}.obj"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise NIDInputError(
        f"no mesh for scene '{name}' (looked for {', '.join(str(c) for c in candidates[1:])}); "
        "pass a classic name (spot, cow, teapot, suzanne, stanford-bunny), blob_NNN, or a mesh path"
    )


def render_scene(name: str, meshes_root: Path, data_dir: Path, resolution: int, views_train: int, views_test: int,
                 seed: int) -> Path:
    """Render (once; cached in ``data_dir``) a posed RGBA scene of one mesh. Returns the scene folder."""
    from nid_nerf.synthetic.collection_renderer import RenderSettings, SceneJob
    from nid_nerf.synthetic.collection_renderer import render_scene as render_collection_scene

    out = data_dir / f"{Path(name).stem}_{resolution}px_{views_train}v_s{seed}"
    if (out / "transforms.json").is_file() or (out / "transforms_train.json").is_file():
        return out
    mesh = mesh_path(name, meshes_root)
    settings = RenderSettings(views_train=views_train, views_test=views_test, resolution=resolution, seed=seed)
    result = render_collection_scene(SceneJob(out.name, path=str(mesh)), settings, out.parent)
    if result.status == "skipped":
        raise NIDInputError(f"could not render {mesh}: {result.reason}; pass a watertight mesh file")
    return out


# ----------------------------------------------------------------------------------------------
# training one variant
# ----------------------------------------------------------------------------------------------


@dataclass
class EvalPoint:
    """One evaluation of a variant (the JSON keeps these three numbers)."""

    step: int
    seconds: float
    psnr: float


@dataclass
class RunResult:
    """What one variant did on one scene."""

    scene: str
    variant: str
    overrides: Dict[str, object]
    iteration_seconds: List[float] = field(default_factory=list)
    sampler_seconds: List[float] = field(default_factory=list)
    evals: List[EvalPoint] = field(default_factory=list)
    snapshots: List[Dict] = field(default_factory=list)
    final_evals: int = 3
    """The final PSNR is the mean of this many last evaluations (a single one is noisy)."""

    @property
    def final_psnr(self) -> float:
        last = self.evals[-max(self.final_evals, 1):]
        return float(np.mean([e.psnr for e in last])) if last else math.nan

    @property
    def median_iteration_ms(self) -> float:
        """Median (the first two iterations left out), so that other processes' load spikes do not dominate."""
        return 1e3 * float(np.median(self.iteration_seconds[2:] or self.iteration_seconds))

    @property
    def median_sampler_ms(self) -> float:
        return 1e3 * float(np.median(self.sampler_seconds[2:] or self.sampler_seconds))

    def reach(self, target: float) -> Tuple[float, float]:
        """(seconds, steps) when PSNR first reaches ``target``, linearly interpolated between evals."""
        prev = None
        for point in self.evals:
            if point.psnr >= target:
                if prev is None or point.psnr == prev.psnr:
                    return point.seconds, float(point.step)
                f = (target - prev.psnr) / (point.psnr - prev.psnr)
                return prev.seconds + f * (point.seconds - prev.seconds), prev.step + f * (point.step - prev.step)
            prev = point
        return math.nan, math.nan



def variant_config(scene_dir: Path, overrides: Dict[str, object], output_dir: Path, args):
    """``ns-train nid-field``'s config (the benchmark harness's) with this data, step budget and sampler.

    The learning-rate schedules are shortened to the step budget (the method's are 2000 steps long), so that a
    short benchmark ends on the same decayed rates as a full run.
    """
    overrides = dict(overrides)
    sampler = str(overrides.pop("sampler", "residual"))
    config = make_trainer_config("nid-field", scene_dir, output_dir, seed=args.seed, max_num_iterations=args.steps,
                                 device="cuda" if torch.cuda.is_available() else "cpu")
    for group in config.optimizers.values():
        scheduler = group.get("scheduler")
        if scheduler is not None and hasattr(scheduler, "max_steps"):
            scheduler.max_steps = args.steps
    datamanager = config.pipeline.datamanager
    datamanager.sampler = sampler
    pixel_sampler = datamanager.pixel_sampler
    valid = {f.name for f in dataclasses.fields(pixel_sampler)}
    for key, value in overrides.items():
        if key not in valid:
            raise NIDInputError(f"unknown pixel_sampler option '{key}'; options: {', '.join(sorted(valid))}")
        setattr(pixel_sampler, key, value)
    if "history_steps" not in overrides and sampler == "residual":
        pixel_sampler.history_steps = args.figure_history
    datamanager.residual_image_every = 0
    return config


class SamplerClock:
    """Times the train pixel sampler's ``sample`` and the datamanager's ``observe_residuals`` (instance attributes
    wrapping the bound methods: nothing of the classes changes)."""

    def __init__(self, datamanager) -> None:
        self.seconds = 0.0
        sampler = datamanager.train_pixel_sampler
        for owner, name in ((sampler, "sample"), (datamanager, "observe_residuals")):
            inner = getattr(owner, name)
            setattr(owner, name, self._wrap(inner))

    def _wrap(self, inner):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        return timed

    def lap(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


def snapshot(pipeline, sampler, image_index: int) -> Dict:
    """Render one training view and copy its residual map and recent picks (INT Fig. 5 columns)."""
    dataset = pipeline.datamanager.train_dataset
    camera = dataset.cameras[image_index : image_index + 1].to(pipeline.device)
    pipeline.eval()
    with torch.no_grad():
        render = pipeline.model.get_outputs_for_camera(camera)["rgb"].clamp(0, 1).cpu()
    pipeline.train()
    rmap = sampler.residual_map
    picks_res, picks_uni = [], []
    for absolute, flags in sampler.history:
        sel = absolute[:, 0] == image_index
        picks_res.append(absolute[sel & flags, 1:])
        picks_uni.append(absolute[sel & ~flags, 1:])
    return {
        "step": sampler.step,
        "render": render.numpy(),
        "residual": rmap.image(image_index).numpy().copy(),
        "stride": rmap.stride,
        "picked": torch.cat(picks_res).numpy() if picks_res else np.zeros((0, 2)),
        "uniform": torch.cat(picks_uni).numpy() if picks_uni else np.zeros((0, 2)),
        "history_steps": len(sampler.history),
    }


class VariantRun:
    """One variant's :class:`TrainRun`, with the sampler's clock, its evaluations and the figure's snapshots."""

    def __init__(self, scene: str, scene_dir: Path, variant: str, overrides: Dict[str, object], args) -> None:
        """Set up the variant's trainer (seeded with ``--seed``: the same initial model for every variant)."""
        from nid_nerf.sampling.residual_sampler import ResidualPixelSampler

        config = variant_config(scene_dir, overrides, args.work_dir / f"{scene}-{variant}", args)
        self.args = args
        self.run = TrainRun(config, eval_images=args.eval_images, name=variant)
        datamanager = self.run.pipeline.datamanager
        self.clock = SamplerClock(datamanager)
        self.sampler = datamanager.train_pixel_sampler
        self.result = RunResult(scene, variant, overrides)
        wants_figure = scene == args.figure_scene and variant == args.figure_variant
        self.snapshot_steps = set(args.figure_steps) if wants_figure and isinstance(
            self.sampler, ResidualPixelSampler) else set()

    def after_step(self) -> None:
        """After each iteration: the sampler's time, evaluations and figure snapshots, off the clock."""
        run, result = self.run, self.result
        result.iteration_seconds.append(run.iteration_seconds[-1])
        result.sampler_seconds.append(self.clock.lap())
        done = run.steps
        if done % self.args.eval_every == 0 or done == self.args.steps:
            result.evals.append(EvalPoint(done, run.train_seconds, run.evaluate().psnr))
        if done in self.snapshot_steps:
            result.snapshots.append(snapshot(run.pipeline, self.sampler, self.args.figure_image))

    def close(self) -> RunResult:
        self.run.close()
        del self.run, self.sampler
        return self.result


def run_scene(scene: str, scene_dir: Path, variants: List[Tuple[str, Dict[str, object]]], args) -> List[RunResult]:
    """Train every variant on one scene; ``--interleave``: one iteration of each in turn, so that all
    variants see the same background load of a shared CPU."""
    groups = [variants] if args.interleave else [[v] for v in variants]
    results = []
    for group in groups:
        runs = [VariantRun(scene, scene_dir, name, overrides, args) for name, overrides in group]
        by_run = {id(v.run): v for v in runs}
        label = "+".join(name for name, _ in group)
        train([v.run for v in runs], Stop(steps=args.steps), [lambda run, by_run=by_run: by_run[id(run)].after_step()],
              progress=f"{scene}/{label}")
        results.extend(v.close() for v in runs)
    return results


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------


def summarise(results: List[RunResult], baseline: str = "uniform") -> List[Dict]:
    """Per scene and variant: final PSNR, steps and seconds to 95 % of the baseline's final PSNR, overhead.

    Seconds come two ways: the clock (``time.perf_counter`` over the training iterations, which on a
    shared CPU includes other processes' load) and load-normalised = steps to target x (uniform's
    median iteration + this sampler's extra median time per iteration).
    """
    rows = []
    by_scene: Dict[str, Dict[str, RunResult]] = {}
    for r in results:
        by_scene.setdefault(r.scene, {})[r.variant] = r
    for scene, runs in by_scene.items():
        base = runs.get(baseline)
        if base is None:
            base_psnr = target = base_seconds = base_steps = base_ms = base_sampler_ms = math.nan
        else:
            base_psnr, target = base.final_psnr, 0.95 * base.final_psnr
            base_seconds, base_steps = base.reach(target)
            base_ms, base_sampler_ms = base.median_iteration_ms, base.median_sampler_ms
        base_norm = base_steps * base_ms / 1e3
        for variant, run in runs.items():
            seconds, steps = run.reach(target)
            overhead_ms = run.median_sampler_ms - base_sampler_ms
            norm = steps * (base_ms + overhead_ms) / 1e3
            rows.append({
                "scene": scene,
                "variant": variant,
                "final_psnr": run.final_psnr,
                "delta_psnr": run.final_psnr - base_psnr,
                "target_psnr": target,
                "steps_to_target": steps,
                "steps_saved": 1.0 - steps / base_steps if base_steps > 0 else math.nan,
                "seconds_to_target": seconds,
                "time_saved": 1.0 - seconds / base_seconds if base_seconds > 0 else math.nan,
                "norm_seconds_to_target": norm,
                "norm_time_saved": 1.0 - norm / base_norm if base_norm > 0 else math.nan,
                "iteration_ms": run.median_iteration_ms,
                "sampler_ms": run.median_sampler_ms,
                "overhead_ms": overhead_ms,
                "overhead_pct": 100.0 * overhead_ms / base_ms if base_ms > 0 else math.nan,
                "train_seconds": float(sum(run.iteration_seconds)),
            })
    return rows


def markdown(rows: List[Dict], results: List[RunResult], args, command: str, started: str, wall: float) -> str:
    """The benchmark page: setup, the variants' overrides, per-scene rows and the means over scenes."""
    variants = list(dict.fromkeys(r["variant"] for r in rows))
    lines = [
        "# Residual ray sampler benchmark",
        "",
        "Generated by `scripts/benchmark_sampler.py` (the numbers below are what this run measured).",
        "",
        "```",
        command,
        "```",
        "",
        f"- started {started}, total {wall / 60:.1f} min on {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, torch {torch.__version__}",
        f"- model: `ns-train nid-field` config, {args.steps} steps, "
        f"{args.resolution}x{args.resolution} RGBA renders, {args.views_train} train / {args.views_test} test views, "
        f"PSNR on {args.eval_images} test views every {args.eval_every} steps, seed {args.seed}",
        ("- the variants of each scene were trained interleaved (one iteration of each in turn), so that they "
         "share the same background load" if args.interleave else "- the variants were trained one after the other"),
        f"- final PSNR = mean of the last {args.final_evals} evaluations (one evaluation alone varies by up to "
        "~1 dB from one to the next)",
        "- target = 95 % of uniform's final PSNR (dB); time/steps to target interpolated between evaluations; "
        "'saved' = 1 - residual/uniform",
        "- 'clock' seconds = measured training time (this CPU is shared, other jobs' load is in it); "
        "'normalised' = steps to target x (uniform's median iteration + the sampler's extra median time)",
        "- sampler overhead = median (sample + observe) time per iteration minus uniform's median sample time, "
        "as a share of uniform's median iteration",
        "",
        "| variant | overrides |",
        "|---|---|",
    ]
    for v in variants:
        ov = next(r.overrides for r in results if r.variant == v)
        lines.append(f"| {v} | `{', '.join(f'{k}={val}' for k, val in ov.items())}` |")
    lines += [
        "",
        "| scene | variant | final PSNR | vs uniform | target | steps to target | steps saved "
        "| s to target (clock) | saved (clock) | s to target (normalised) | saved (normalised) "
        "| median ms / iter | sampler ms / iter | overhead |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scene']} | {r['variant']} | {fmt(r['final_psnr'], '.2f')} | {fmt(r['delta_psnr'], '+.2f')} "
            f"| {fmt(r['target_psnr'], '.2f')} "
            f"| {fmt(r['steps_to_target'], '.0f')} | {fmt(100 * r['steps_saved'], '+.0f', ' %')} "
            f"| {fmt(r['seconds_to_target'], '.0f')} | {fmt(100 * r['time_saved'], '+.0f', ' %')} "
            f"| {fmt(r['norm_seconds_to_target'], '.0f')} | {fmt(100 * r['norm_time_saved'], '+.0f', ' %')} "
            f"| {fmt(r['iteration_ms'], '.0f')} | {fmt(r['sampler_ms'], '.2f')} "
            f"| {fmt(r['overhead_pct'], '.2f', ' %')} |"
        )
    lines += ["", "**Mean over scenes**", "",
              "| variant | final PSNR | vs uniform | steps saved | saved (clock) | saved (normalised) | overhead |",
              "|---|---|---|---|---|---|---|"]
    for v in variants:
        sel = [r for r in rows if r["variant"] == v]

        def mean(key: str, sel=sel) -> float:
            vals = [r[key] for r in sel if math.isfinite(r[key])]
            return float(np.mean(vals)) if len(vals) == len(sel) and vals else math.nan

        lines.append(
            f"| {v} | {fmt(mean('final_psnr'), '.2f')} | {fmt(mean('delta_psnr'), '+.2f')} "
            f"| {fmt(100 * mean('steps_saved'), '+.0f', ' %')} | {fmt(100 * mean('time_saved'), '+.0f', ' %')} "
            f"| {fmt(100 * mean('norm_time_saved'), '+.0f', ' %')} | {fmt(mean('overhead_pct'), '.2f', ' %')} |"
        )
    lines += ["", "![PSNR vs wall-clock and iterations](sampler_psnr.png)", ""]
    if args.figure:
        lines += [f"![Picked pixels over training]({Path(args.figure).name})", ""]
    return "\n".join(lines) + "\n"


def plot_psnr(results: List[RunResult], rows: List[Dict], path: Path) -> None:
    """PSNR against wall-clock (top) and iterations (bottom), one column per scene."""
    plt = pyplot()
    scenes = list(dict.fromkeys(r.scene for r in results))
    fig, axes = plt.subplots(2, len(scenes), figsize=(4.2 * len(scenes), 6.4), squeeze=False)
    colours = {}
    for col, scene in enumerate(scenes):
        target = next((r["target_psnr"] for r in rows if r["scene"] == scene), math.nan)
        for run in (r for r in results if r.scene == scene):
            c = colours.setdefault(run.variant, f"C{len(colours)}")
            xs_t = [0.0] + [e.seconds for e in run.evals]
            xs_s = [0] + [e.step for e in run.evals]
            ys = [math.nan] + [e.psnr for e in run.evals]
            axes[0, col].plot(xs_t, ys, "-o", ms=2.5, color=c, label=run.variant)
            axes[1, col].plot(xs_s, ys, "-o", ms=2.5, color=c, label=run.variant)
        for row in range(2):
            ax = axes[row, col]
            if math.isfinite(target):
                ax.axhline(target, color="grey", ls="--", lw=0.8)
            ax.grid(alpha=0.3)
            ax.set_ylabel("test PSNR (dB)")
        axes[0, col].set_title(scene)
        axes[0, col].set_xlabel("training wall-clock (s)")
        axes[1, col].set_xlabel("iterations")
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("uniform vs residual ray sampling (dashed: 95 % of uniform's final PSNR)", fontsize=10)
    fig.tight_layout()
    save_figure(path, fig, dpi=110, bbox_inches="tight")


def plot_selection(run: RunResult, gt: np.ndarray, path: Path, image_index: int) -> None:
    """INT Fig. 5 for rays: rows = render, residual map, picked pixels; columns = training steps."""
    plt = pyplot()
    snaps = run.snapshots
    fig, axes = plt.subplots(3, len(snaps) + 1, figsize=(1.9 * (len(snaps) + 1), 6.0), squeeze=False)
    axes[0, 0].imshow(gt)
    axes[0, 0].set_title("ground truth", fontsize=8)
    axes[1, 0].axis("off")
    axes[2, 0].axis("off")
    axes[1, 0].text(0.5, 0.5, "residual map\n(magenta: never\nvisited)", ha="center", va="center", fontsize=8)
    axes[2, 0].text(0.5, 0.5, "picked pixels\nwhite: residual\nblue: uniform floor", ha="center", va="center",
                    fontsize=8)
    vmax = max((float(np.nanmax(np.where(np.isfinite(s["residual"]), s["residual"], np.nan)))
                for s in snaps if np.isfinite(s["residual"]).any()), default=1.0)
    for col, s in enumerate(snaps, start=1):
        axes[0, col].imshow(s["render"])
        axes[0, col].set_title(f"step {s['step']}", fontsize=8)
        res = s["residual"]
        finite = np.isfinite(res)
        shown = np.where(finite, res, 0.0)
        rgb = plt.get_cmap("turbo")(np.clip(shown / max(vmax, 1e-9), 0, 1))[..., :3]
        rgb[~finite] = (1.0, 0.0, 1.0)
        axes[1, col].imshow(rgb, interpolation="nearest")
        h, w = s["render"].shape[:2]
        picks = np.zeros((h, w, 3))
        for key, colour in (("uniform", (0.2, 0.4, 1.0)), ("picked", (1.0, 1.0, 1.0))):
            p = s[key].astype(int)
            picks[p[:, 0], p[:, 1]] = colour
        axes[2, col].imshow(picks, interpolation="nearest")
        axes[2, col].set_xlabel(f"last {s['history_steps']} steps", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{run.scene}, training view {image_index}: where the residual sampler puts its rays", fontsize=9)
    fig.tight_layout()
    save_figure(path, fig, dpi=110, bbox_inches="tight")


def parse_value(text: str):
    """A variant option's value: a bool, an int, a float or the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_variant(spec: str) -> Tuple[str, Dict[str, object]]:
    """``name`` (a preset) or ``name:key=value,key=value`` (on top of the preset of that name, if any)."""
    name, _, rest = spec.partition(":")
    overrides = dict(PRESET_VARIANTS.get(name, {"sampler": "residual"}))
    if rest:
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq:
                raise NIDInputError(f"bad variant option '{item}' in '{spec}'; use key=value")
            overrides[key.strip().replace("-", "_")] = parse_value(value.strip())
    if not re.fullmatch(r"[A-Za-z0-9_.+-]+", name):
        raise NIDInputError(f"bad variant name '{name}'; use letters, digits and _.+-")
    return name, overrides


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_sampler.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", nargs="+", default=["spot", "cow", "teapot", "blob_000"])
    parser.add_argument("--variants", nargs="+", default=["uniform", "residual", "unbiased"])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--eval-images", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--views-train", type=int, default=50)
    parser.add_argument("--views-test", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--meshes", type=Path, default=DEFAULT_MESHES)
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT / "outputs" / "sampler_bench" / "data")
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "outputs" / "sampler_bench" / "runs")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "sampler_benchmark.md")
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "docs" / "sampler_psnr.png")
    parser.add_argument("--json", type=Path, default=None, help="default: next to --output's runs in --work-dir")
    parser.add_argument("--figure", type=Path, default=REPO_ROOT / "docs" / "sampler_selection.png",
                        help="INT Fig. 5-like figure ('' to skip)")
    parser.add_argument("--figure-scene", default=None, help="default: the first scene")
    parser.add_argument("--figure-variant", default="residual")
    parser.add_argument("--figure-image", type=int, default=0)
    parser.add_argument("--figure-steps", type=int, nargs="+", default=None)
    parser.add_argument("--overhead-only", action="store_true",
                        help="only time the samplers on a synthetic batch of this size (no training) and print a table")
    parser.add_argument("--final-evals", type=int, default=3,
                        help="final PSNR = mean of this many last evaluations")
    parser.add_argument("--interleave", action=argparse.BooleanOptionalAction, default=True,
                        help="step the variants of a scene in turn (same background load for all); "
                        "--no-interleave trains them one after the other")
    parser.add_argument("--resume", action="store_true",
                        help="reuse the finished runs of an interrupted invocation with the same settings")
    parser.add_argument("--figure-history", type=int, default=50, help="batches of picks each figure column shows")
    return parser


def train_or_reuse(scenes: Dict[str, Path], variants, args, json_path: Path, command: str) -> List[RunResult]:
    """Every (scene, variant) run: trained now, or reused from an interrupted invocation (``--resume``)."""
    results: List[RunResult] = []
    settings = {k: str(getattr(args, k)) for k in ("steps", "eval_every", "eval_images", "resolution", "views_train",
                                                   "views_test", "seed", "interleave")}
    done = load_finished_runs(json_path, settings) if args.resume else {}
    for scene, scene_dir in scenes.items():
        todo = [(n, o) for n, o in variants if run_key(scene, n, o) not in done]
        fresh = {r.variant: r for r in run_scene(scene, scene_dir, todo, args)} if todo else {}
        for name, overrides in variants:
            if name in fresh:
                result = fresh[name]
                save_snapshots(result, json_path)
            else:
                result = done[run_key(scene, name, overrides)]
                print(f"{scene}/{name}: reused from {json_path}", flush=True)
            result.final_evals = args.final_evals
            results.append(result)
            print(f"{scene}/{name}: final PSNR {result.final_psnr:.2f} dB, {result.median_iteration_ms:.0f} ms/iter "
                  f"(median), sampler {result.median_sampler_ms:.2f} ms/iter", flush=True)
        dump = [{**dataclasses.asdict(r), "snapshots": len(r.snapshots)} for r in results]
        write_text(json_path, json.dumps({"command": command, "settings": settings, "runs": dump},
                                         indent=1, default=str))
    return results


def print_rows(rows: List[Dict]) -> None:
    """One line per scene and variant: final PSNR, steps and seconds to target, overhead."""
    for r in rows:
        print(f"{r['scene']:>12} {r['variant']:>10}: final {r['final_psnr']:.2f} dB, to target "
              f"{fmt(r['steps_to_target'], '.0f')} steps ({fmt(100 * r['steps_saved'], '+.0f', suffix='%')}), "
              f"{fmt(r['seconds_to_target'], '.0f')} s clock ({fmt(100 * r['time_saved'], '+.0f', suffix='%')}), "
              f"{fmt(r['norm_seconds_to_target'], '.0f')} s normalised "
              f"({fmt(100 * r['norm_time_saved'], '+.0f', suffix='%')}), "
              f"overhead {fmt(r['overhead_pct'], '.2f', suffix='%')}")


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark (``scripts/benchmark_sampler.py``)."""
    args = build_parser().parse_args(argv)
    install_excepthook()
    torch.set_num_threads(args.threads)
    variants = [parse_variant(v) for v in args.variants]
    labels = {name: Path(name).stem for name in args.scenes}  # spot -> spot, /x/sphere.obj -> sphere
    args.figure_scene = args.figure_scene or labels[args.scenes[0]]
    if args.figure_steps is None:
        args.figure_steps = sorted({max(1, s) for s in (10, args.steps // 10, args.steps // 3, args.steps)})
    args.work_dir.mkdir(parents=True, exist_ok=True)
    command = command_line("benchmark_sampler.py", argv)
    started = time.strftime("%Y-%m-%d %H:%M")
    t0 = time.perf_counter()

    if args.overhead_only:
        print(sampler_overhead_table(variants, args))
        return
    scene_dirs = {labels[name]: render_scene(name, args.meshes, args.data_dir, args.resolution, args.views_train,
                                             args.views_test, args.seed)
                  for name in tqdm(args.scenes, desc="render scenes", leave=False)}
    json_path = args.json or (args.work_dir / f"{args.output.stem}.json")
    results = train_or_reuse(scene_dirs, variants, args, json_path, command)
    rows = summarise(results)
    plot_psnr(results, rows, args.plot)
    if args.figure and str(args.figure):
        run = next((r for r in results if r.snapshots), None)
        if run is not None:
            gt = snapshot_gt(scene_dirs[run.scene], args.figure_image)
            plot_selection(run, gt, args.figure, args.figure_image)
    text = markdown(rows, results, args, command, started, time.perf_counter() - t0)
    write_markdown_keeping_notes(args.output, text)
    print_rows(rows)
    print(f"wrote {args.output}, {args.plot}, {json_path}")


def sampler_overhead_table(variants: List[Tuple[str, Dict[str, object]]], args, repeats: int = 200) -> str:
    """Time sample + observe alone on a synthetic cached batch of the benchmark's size (no model)."""
    from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig

    from nid_nerf.sampling.residual_sampler import ResidualPixelSamplerConfig

    n, res, rays = args.views_train, args.resolution, 1024
    batch = {"image": torch.rand(n, res, res, 4), "image_idx": torch.randperm(n)}
    lines = ["| variant | sample ms | observe ms | total ms |", "|---|---|---|---|"]
    for name, overrides in variants:
        overrides = dict(overrides)
        if overrides.pop("sampler", "residual") == "uniform":
            sampler = PixelSampler(PixelSamplerConfig(num_rays_per_batch=rays))
        else:
            sampler = ResidualPixelSamplerConfig(num_rays_per_batch=rays, ratio_steps=repeats, **overrides).setup(
                image_sizes=[(res, res)] * n
            )
        sample_s = observe_s = 0.0
        for i in range(repeats + 10):
            t0 = time.perf_counter()
            out = sampler.sample(batch)
            t1 = time.perf_counter()
            if hasattr(sampler, "observe"):
                sampler.observe(out["indices"], torch.rand(rays))
            t2 = time.perf_counter()
            if i >= 10:
                sample_s, observe_s = sample_s + t1 - t0, observe_s + t2 - t1
        ms = 1e3 / repeats
        lines.append(f"| {name} | {sample_s * ms:.2f} | {observe_s * ms:.2f} | {(sample_s + observe_s) * ms:.2f} |")
    return "\n".join(lines)


def run_key(scene: str, variant: str, overrides: Dict[str, object]) -> str:
    """The key a finished run is found by on ``--resume``."""
    return json.dumps([scene, variant, {k: str(v) for k, v in overrides.items()}], sort_keys=True)


def snapshot_path(json_path: Path, scene: str, variant: str) -> Path:
    """Where a run's figure snapshots are kept, next to the JSON."""
    return json_path.with_name(f"{json_path.stem}_{scene}_{variant}_snapshots.npz")


def save_snapshots(result: RunResult, json_path: Path) -> None:
    """The figure snapshots of a finished run, so that ``--resume`` can redraw the figure."""
    if not result.snapshots:
        return
    arrays = {f"{i}/{k}": np.asarray(v) for i, snap in enumerate(result.snapshots) for k, v in snap.items()}
    path = snapshot_path(json_path, result.scene, result.variant)
    save_npz(path, **arrays)


def load_finished_runs(json_path: Path, settings: Dict[str, str]) -> Dict[str, RunResult]:
    """Runs of an earlier, interrupted invocation with the same settings (``--resume``)."""
    if not json_path.is_file():
        return {}
    data = json.loads(json_path.read_text())
    if data.get("settings") != settings:
        print(f"--resume: {json_path} was made with other settings; starting afresh", flush=True)
        return {}
    done = {}
    for r in data["runs"]:
        result = RunResult(r["scene"], r["variant"], r["overrides"], r["iteration_seconds"], r["sampler_seconds"],
                           [EvalPoint(**e) for e in r["evals"]])
        snaps = snapshot_path(json_path, result.scene, result.variant)
        if r.get("snapshots") and snaps.is_file():
            with np.load(snaps) as z:
                count = 1 + max(int(k.split("/")[0]) for k in z.files)
                result.snapshots = [{k.split("/", 1)[1]: (z[k].item() if z[k].ndim == 0 else z[k])
                                     for k in z.files if k.startswith(f"{i}/")} for i in range(count)]
        done[run_key(result.scene, result.variant, result.overrides)] = result
    return done


def snapshot_gt(scene_dir: Path, image_index: int) -> np.ndarray:
    """The ground-truth training image of the figure, as the datamanager serves it (white background)."""
    from nid_nerf.configs.method_configs import nid_field

    dataparser = copy.deepcopy(nid_field.config.pipeline.datamanager.dataparser)
    dataparser.data = scene_dir
    outputs = dataparser.setup().get_dataparser_outputs(split="train")
    from nerfstudio.data.datasets.base_dataset import InputDataset

    image = InputDataset(outputs)[image_index]["image"]
    return composite_rgb(image).numpy()

