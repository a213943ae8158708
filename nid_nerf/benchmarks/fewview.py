"""Few-view benchmark of the Neural Implicit Dictionary (issue #4), in one run on one machine.

For every held-out scene of every collection and every number of training views it trains, in this
process and with ``ns-train nid-field``'s own config (overriding only data, views, budget and the
dictionary):

- ``nid``: the scene's code solved against a pretrained ``dictionary.pt`` (``--solve-steps``), then
  refined with the per-scene residual table for the rest of the budget. The state at the end of the
  solve stage is scored as **solve only** (a solve-only run with ``--solve-steps`` steps is exactly that
  state), the end of the run as **solve + refine**;
- ``scratch``: the same field (K = 1) from scratch, same step budget;
- ``nerfacto`` (``--pipeline.model.implementation torch``, LPIPS patched out in the harness), on the
  subset of scenes and views given by ``--nerfacto-scenes`` / ``--nerfacto-views``.

Measured per run: PSNR every ``--eval-every`` steps on ``--eval-images`` test views (white background,
off the training clock), then PSNR and SSIM on all test views (the ``ns-eval`` path), and the Chamfer
distance / F-score of the marching-cubes mesh against the scene's ``gt_mesh.ply`` (SDF methods).
"Time to quality" is the training clock at which a run first reaches the final PSNR of the
from-scratch run that used all training views of that scene (``--all-views``).

    python scripts/benchmark_fewview.py \\
        --collection vases=data/fewview/vases:outputs/fewview/dict/vases/nid-dict/k16/dictionary.pt \\
        --collection blobs=data/fewview/blobs:outputs/fewview/dict/blobs/nid-dict/k16/dictionary.pt \\
        --held-out 5 --views 1 3 5 10 --resume

The held-out scenes are the last ``--held-out`` scenes of each collection (sorted names): pretrain the
dictionary with ``nid-collection --exclude-scenes`` on exactly those (see docs/fewview_benchmark.md).
Writes a markdown report, a JSON of every evaluation, and two plots (PSNR vs views, PSNR vs time).

The solve run (:func:`train_run`, :class:`Run`, :class:`Collection`) is shared with the dictionary sweep
and the inpainting benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from tqdm import tqdm

from nid_nerf.benchmarks.harness import Stop, TrainRun, train
from nid_nerf.benchmarks.method_config import make_trainer_config
from nid_nerf.benchmarks.report import REPO_ROOT, command_line, finite_mean, fmt, pyplot
from nid_nerf.errors import NIDInputError
from nid_nerf.io import save_figure, write_text

SDF_METHODS = ("nid", "nid-mean", "nid-fixed", "scratch")
NID_METHODS = ("nid", "nid-mean", "nid-fixed")
"""nid: solve from the dictionary encoder's predicted code (the mean code without one), then refine with the
annealed penalty (nid-field's defaults); nid-mean: the solve only, from the mean code; nid-fixed: nid with the
refine penalty and code prior at full weight throughout (the refine before the anneal)."""


@dataclass
class Collection:
    """A rendered collection and the dictionary pretrained on it without its held-out scenes."""

    name: str
    root: Path
    dictionary: Path

    @staticmethod
    def parse(text: str) -> Collection:
        """``NAME=FOLDER:DICTIONARY`` (the ``--collection`` flag); both paths must exist."""
        try:
            name, rest = text.split("=", 1)
            root, dictionary = rest.split(":", 1)
        except ValueError:
            raise NIDInputError(
                f"--collection '{text}' is not NAME=FOLDER:DICTIONARY; e.g. vases=data/fewview/vases:dict/dictionary.pt"
            ) from None
        collection = Collection(name, Path(root), Path(dictionary))
        if not collection.root.is_dir():
            raise NIDInputError(
                f"collection folder {collection.root} does not exist; render it with nid-render-collection"
            )
        if not collection.dictionary.is_file():
            raise NIDInputError(
                f"dictionary {collection.dictionary} does not exist; pretrain it with ns-train nid-dict "
                f"--data {collection.root} ... nid-collection --exclude-scenes <held-out scenes>"
            )
        return collection

    def scenes(self) -> List[str]:
        """Scene folders (sorted names): the held-out ones are the last."""
        return sorted(p.name for p in self.root.iterdir() if (p / "transforms.json").is_file())


@dataclass
class Score:
    """Final scores of a model state: all test views, plus the mesh for SDF methods."""

    step: int
    seconds: float
    psnr: float
    ssim: float
    chamfer: Optional[float] = None
    f_score_1pct: Optional[float] = None


@dataclass
class Run:
    """One training run of the solve benchmarks and what was measured on it."""

    collection: str
    scene: str
    views: int
    """training views (the scene's full train split for the all-views runs)"""
    method: str
    curve: List[Tuple[int, float, float]] = field(default_factory=list)
    """(step, training seconds, PSNR on the eval subset)"""
    scores: Dict[str, Score] = field(default_factory=dict)
    """'final', and 'solve' for nid (the end of the solve stage)"""
    extra: Dict[str, float] = field(default_factory=dict)
    """what a caller's ``after`` hook measured on the trained pipeline"""
    median_iteration_ms: float = math.nan

    @property
    def key(self) -> str:
        return f"{self.collection}/{self.scene}/{self.views}/{self.method}"

    def curve_until(self, step: Optional[int]) -> List[Tuple[int, float, float]]:
        return [c for c in self.curve if step is None or c[0] <= step]


def time_to_reach(curve: Sequence[Tuple[int, float, float]], target: float, column: int = 1) -> Optional[float]:
    """Training seconds (``column`` 1) or steps (0) when the PSNR curve first reaches ``target``.

    Linear between evaluations; the curve starts at (0 steps, 0 s) below any target.
    """
    previous = (0.0, -math.inf)
    for point in curve:
        x, value = float(point[column]), point[2]
        if value >= target:
            x0, v0 = previous
            if not math.isfinite(v0):
                return x
            return x0 + (x - x0) * (target - v0) / max(value - v0, 1e-9)
        previous = (x, value)
    return None


def eval_steps(steps: int, every: int, solve_steps: Optional[int]) -> set:
    """Dense early (1, 2, 5, 10, 15, 20, 30, 40, 60, 80), then every ``every`` steps, plus the solve end and the end."""
    marks = {m for m in (1, 2, 5, 10, 15, 20, 30, 40, 60, 80) if m < steps}
    marks |= set(range(every, steps + 1, every)) | {steps}
    if solve_steps is not None and solve_steps <= steps:
        marks.add(solve_steps)
    return marks


# ----------------------------------------------------------------------------------------------
# training
# ----------------------------------------------------------------------------------------------


def method_overrides(method: str, views: Optional[int], args, dictionary: Path) -> Tuple[str, Dict[str, object]]:
    """The registered method and config overrides of one benchmark method (nid, scratch or nerfacto)."""
    overrides: Dict[str, object] = {"pipeline.datamanager.dataparser.num_train_views": views}
    if method in NID_METHODS:
        overrides.update({
            "pipeline.model.dictionary_path": dictionary,
            "pipeline.model.solve_steps": args.solve_steps,
            "pipeline.model.solve_gate": args.solve_gate,
            "pipeline.model.refine": method != "nid-mean",
        })
        if method == "nid-mean":
            overrides["pipeline.model.code_init"] = "mean"
        if method == "nid-fixed":
            overrides["pipeline.model.refine_anneal_steps"] = None
        return "nid-field", overrides
    if method == "scratch":
        return "nid-field", overrides
    if method == "nerfacto":
        overrides.update({"pipeline.model.implementation": "torch", "pipeline.model.background_color": "white"})
        return "nerfacto", overrides
    raise NIDInputError(f"unknown few-view method '{method}'; pick nid, scratch or nerfacto")


def final_score(pipeline, step: int, seconds: float, scene_dir: Path, sdf: bool, mesh_resolution: int) -> Score:
    """PSNR/SSIM over every test view (the ns-eval path) and, for SDF models, the mesh against gt_mesh.ply."""
    pipeline.eval()
    try:
        with torch.no_grad():
            metrics = pipeline.get_average_eval_image_metrics(step=step)
        score = Score(step, seconds, float(metrics["psnr"]), float(metrics["ssim"]))
        gt_path = scene_dir / "gt_mesh.ply"
        if sdf and gt_path.is_file():
            import trimesh

            from nid_nerf.mesh.extract import extract_mesh
            from nid_nerf.mesh.metrics import mesh_metrics

            model = pipeline.model
            with torch.no_grad():
                mesh = extract_mesh(model.field.sdf, model.scene_box.aabb.detach().cpu(), resolution=mesh_resolution,
                                    keep_largest=True, progress=False)
            if len(mesh.faces):
                result = mesh_metrics(mesh, trimesh.load(gt_path, force="mesh"), num_points=20_000)
                score.chamfer, score.f_score_1pct = float(result["chamfer_l1"]), float(result["f_score_1pct"])
        return score
    finally:
        pipeline.train()


def add_run_arguments(parser: argparse.ArgumentParser, *, steps: int, solve_steps: int, rays: int,
                      threads: int) -> None:
    """The options of one :func:`train_run` and of resuming, shared by the benchmarks built on it."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--solve-steps", type=int, default=solve_steps)
    parser.add_argument("--solve-gate", choices=["dense", "top-k"], default="dense",
                        help="experts a solved code may use (nid-field --pipeline.model.solve-gate)")
    parser.add_argument("--rays", type=int, default=rays)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=threads)
    parser.add_argument("--resume", action="store_true", help="reuse finished results from the work dir's JSON")


def add_output_arguments(parser: argparse.ArgumentParser, work: str, page: str, **figures: str) -> None:
    """``--work-dir`` (under outputs/), ``--output`` (the markdown page under docs/) and one flag per figure."""
    parser.add_argument("--work-dir", type=Path, default=REPO_ROOT / "outputs" / work)
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / page)
    for flag, name in figures.items():
        parser.add_argument(f"--{flag.replace('_', '-')}", type=Path, default=REPO_ROOT / "docs" / name)


def parse_run_arguments(parser: argparse.ArgumentParser, argv: Optional[List[str]], script: str):
    """Parse the flags, set torch's threads and create the work dir: how every solve benchmark starts.

    Returns the arguments and the command line for the report.
    """
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    return args, command_line(script, argv)


def single_run_settings(args, mesh_resolution: int) -> argparse.Namespace:
    """:func:`train_run` settings for a benchmark that scores only the end of each run (and of its solve)."""
    return argparse.Namespace(all_views_count=10**9, steps=args.steps, solve_steps=args.solve_steps,
                              solve_gate=args.solve_gate, rays=args.rays, seed=args.seed, eval_every=args.steps,
                              eval_images=1, mesh_resolution=mesh_resolution, nerfacto_steps=0)


def train_run(run: Run, scene_dir: Path, args, dictionary: Path, work: Path,
              extra_overrides: Optional[Dict[str, object]] = None,
              after: Optional[Callable[[object], Dict[str, float]]] = None) -> Run:
    """Train one run in this process and score it; ``extra_overrides`` are further config attributes, and
    ``after(pipeline)`` may measure more on the trained pipeline (kept in ``run.extra``)."""
    views = None if run.views >= args.all_views_count else run.views
    method, overrides = method_overrides(run.method, views, args, dictionary)
    overrides.update(extra_overrides or {})
    steps = {"nerfacto": args.nerfacto_steps, "nid-mean": args.solve_steps}.get(run.method, args.steps)
    config = make_trainer_config(method, scene_dir, work / run.key.replace("/", "_"), rays_per_batch=args.rays,
                                 dataparser="nid-scene", seed=args.seed, max_num_iterations=steps,
                                 overrides=overrides)
    sdf = run.method in SDF_METHODS
    nid = run.method in NID_METHODS
    with TrainRun(config, eval_images=args.eval_images) as trained:
        # finding the starting code (encoder, code search) is part of the solve: it starts the training clock
        trained.train_seconds = float(getattr(trained.pipeline, "start_seconds", 0.0))
        # the model's own solve length: shorter than --solve-steps for scenes of many views (solve_views)
        solve_steps = trained.pipeline.model.scene_solve_steps() if nid else None
        marks = eval_steps(steps, args.eval_every, solve_steps)

        def score(trained: TrainRun) -> None:
            done = trained.steps
            if done in marks:
                run.curve.append((done, trained.train_seconds, trained.evaluate().psnr))
            if nid and done == solve_steps:
                run.scores["solve"] = final_score(trained.pipeline, done, trained.train_seconds, scene_dir, sdf,
                                                  args.mesh_resolution)

        if nid and getattr(args, "score_start", False):
            score_start(run, trained, scene_dir, args)
        train(trained, Stop(steps=steps), [score])
        run.scores["final"] = final_score(trained.pipeline, steps, trained.train_seconds, scene_dir, sdf,
                                          args.mesh_resolution)
        run.median_iteration_ms = 1000 * float(np.median(trained.iteration_seconds))
        if after is not None:
            run.extra = after(trained.pipeline)
    return run


def score_start(run: Run, trained: TrainRun, scene_dir: Path, args) -> None:
    """Before any solve step: the starting code's scores (``start``; the curve's step 0) and, for ``nid``, the mean
    code's (``start_mean``), after which the run goes on from its own starting code."""
    model = trained.pipeline.model
    start = model.field.gate.codes[0].detach().clone()
    run.scores["start"] = final_score(trained.pipeline, 0, trained.train_seconds, scene_dir, True,
                                      args.mesh_resolution)
    run.curve.append((0, trained.train_seconds, trained.evaluate().psnr))
    if run.method == "nid":
        model.start_code(model.code_mean)
        run.scores["start_mean"] = final_score(trained.pipeline, 0, 0.0, scene_dir, True, args.mesh_resolution)
        model.start_code(start)


def load_done(path: Path) -> Dict[str, Run]:
    """Finished runs of an earlier invocation (``--resume``), by :attr:`Run.key`."""
    if not path.is_file():
        return {}
    done = {}
    for item in json.loads(path.read_text())["runs"]:
        scores = {k: Score(**v) for k, v in item.pop("scores").items()}
        item["curve"] = [tuple(c) for c in item.get("curve", [])]  # JSON gives lists
        run = Run(**item, scores=scores)
        done[run.key] = run
    return done


def save_runs(path: Path, command: str, runs: List[Run], done: Dict[str, Run]) -> None:
    """The JSON of every run so far: this invocation's, then the reused ones it has not redone."""
    keys = {r.key for r in runs}
    payload = {"command": command, "runs": [asdict(r) for r in runs] + [asdict(r) for k, r in done.items()
                                                                         if k not in keys]}
    write_text(path, json.dumps(payload, indent=1, default=str))


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------

ROWS = (("solve", "nid", "solve"), ("solve + refine", "nid", "final"), ("scratch", "scratch", "final"),
        ("nerfacto", "nerfacto", "final"))


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return fmt(value, spec, missing="-")


def scores_of(runs: List[Run], collection: str, views: int, method: str, stage: str) -> List[Score]:
    return [r.scores[stage] for r in runs
            if r.collection == collection and r.views == views and r.method == method and stage in r.scores]


def time_to_quality(runs: List[Run], collection: str, scene: str, all_views: int) -> Dict[str, Optional[float]]:
    """Seconds for each (views, row) of this scene to reach scratch@all-views' final PSNR on the eval subset."""
    reference = [
        r for r in runs if (r.collection, r.scene, r.views, r.method) == (collection, scene, all_views, "scratch")
    ]
    if not reference or not reference[0].curve:
        return {}
    target = reference[0].curve[-1][2]
    out: Dict[str, Optional[float]] = {"target_psnr": target}
    for r in runs:
        if (r.collection, r.scene) != (collection, scene):
            continue
        parts = [(r.method, r.curve)]
        if r.method == "nid":
            solve_step = r.scores["solve"].step if "solve" in r.scores else None
            parts = [("solve", r.curve_until(solve_step)), ("solve + refine", r.curve)]
        for name, curve in parts:
            out[f"{r.views}/{name}"] = time_to_reach(curve, target, 1)
            out[f"{r.views}/{name}/steps"] = time_to_reach(curve, target, 0)
    return out


def _quality_rows(runs: List[Run], args, collection: Collection, views_all: List[int]) -> List[str]:
    """The per-views table of one collection and the 3-view gain line."""
    lines = ["| views | method | scenes | PSNR | SSIM | Chamfer | F@1% |", "|---|---|---|---|---|---|---|"]
    for views in views_all:
        for label, method, stage in ROWS:
            scores = scores_of(runs, collection.name, views, method, stage)
            if not scores:
                continue
            shown = "all" if views >= args.all_views_count else views
            lines.append(
                f"| {shown} | {label} | {len(scores)} | {_fmt(finite_mean([s.psnr for s in scores]))} | "
                f"{_fmt(finite_mean([s.ssim for s in scores]), '.3f')} | "
                f"{_fmt(finite_mean([s.chamfer for s in scores]), '.4f')} | "
                f"{_fmt(finite_mean([s.f_score_1pct for s in scores]), '.3f')} |"
            )
    gain = [a.psnr - b.psnr for a, b in zip(scores_of(runs, collection.name, 3, "nid", "final"),
                                             scores_of(runs, collection.name, 3, "scratch", "final"))]
    solve_gain = [a.psnr - b.psnr for a, b in zip(scores_of(runs, collection.name, 3, "nid", "solve"),
                                                   scores_of(runs, collection.name, 3, "scratch", "final"))]
    if gain:
        lines += ["", f"At 3 views, NID solve + refine - scratch: **{_fmt(finite_mean(gain))} dB** (per scene: "
                  f"{', '.join(_fmt(g) for g in gain)}); solve only - scratch: {_fmt(finite_mean(solve_gain))} dB."]
    return lines + [""]


def _ttq_cell(got: Dict[str, Tuple], method: str) -> str:
    """``seconds s (steps)`` to the target, or '-' when never reached."""
    t, n = got[method]
    return "-" if t is None else f"{t:.1f} s ({n:.0f})"


def _ttq_ratio(got: Dict[str, Tuple], method: str) -> str:
    """Speed-up over scratch in seconds (and steps), or '-'."""
    (t, n), (t0, n0) = got[method], got["scratch"]
    if t is None or t0 is None or t <= 0 or n <= 0:
        return "-"
    return f"{t0 / t:.1f}x ({n0 / n:.1f}x)"


def _time_to_quality_rows(runs: List[Run], args, collection: Collection, names: List[str],
                          views_all: List[int]) -> List[str]:
    """The time-to-quality table of one collection."""
    lines = ["Time to quality: training seconds (and steps) until a run first reaches the final PSNR of "
             "scratch with all views, on the eval subset; '-' = never within the budget. Speed-up = scratch's "
             "time / the run's time (seconds; steps in brackets: every method's step costs about the same, and "
             "steps do not depend on the machine's load).", "",
             "| scene | target dB | views | solve | solve + refine | scratch | speed-up solve | "
             "speed-up solve + refine |", "|---|---|---|---|---|---|---|---|"]
    for scene in names:
        ttq = time_to_quality(runs, collection.name, scene, args.all_views_count)
        if not ttq:
            continue
        for views in views_all:
            got = {m: (ttq.get(f"{views}/{m}"), ttq.get(f"{views}/{m}/steps"))
                   for m in ("solve", "solve + refine", "scratch")}
            if all(v[0] is None for v in got.values()):
                continue
            shown = "all" if views >= args.all_views_count else views
            lines.append(f"| {scene} | {ttq['target_psnr']:.2f} | {shown} | {_ttq_cell(got, 'solve')} | "
                         f"{_ttq_cell(got, 'solve + refine')} | {_ttq_cell(got, 'scratch')} | "
                         f"{_ttq_ratio(got, 'solve')} | {_ttq_ratio(got, 'solve + refine')} |")
    return lines + [""]


def markdown(runs: List[Run], args, collections: List[Collection], command: str, started: str) -> str:
    """The benchmark page: setup, then per collection the quality table and the time-to-quality table."""
    views_all = sorted({r.views for r in runs})
    lines = [
        "# Few-view benchmark: NID solve vs from scratch",
        "",
        f"Command (one run, {started}): `{command}`",
        "",
        f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}",
        f"- images {args.resolution_note}; {args.rays} rays per batch; every SDF run {args.steps} steps "
        f"(nid: {args.solve_steps} solve + {args.steps - args.solve_steps} refine)"
        + (f"; nerfacto {args.nerfacto_steps} steps" if any(r.method == "nerfacto" for r in runs) else ""),
        f"- PSNR/SSIM: all test views of each scene (ns-eval path, white background); Chamfer (L1, world units, "
        f"object radius 0.8) and F-score@1% of the marching-cubes mesh ({args.mesh_resolution}^3, isovalue 0) "
        "against gt_mesh.ply",
        f"- 'all' = every training view of the scene ({args.all_views_count}); held-out scenes were excluded from "
        "pretraining (`nid-collection --exclude-scenes`)",
        "",
    ]
    for collection in collections:
        names = sorted({r.scene for r in runs if r.collection == collection.name})
        lines += [f"## {collection.name} ({len(names)} held-out scenes: {', '.join(names)})", ""]
        lines += _quality_rows(runs, args, collection, views_all)
        lines += _time_to_quality_rows(runs, args, collection, names, views_all)
    ms = {
        m: finite_mean([r.median_iteration_ms for r in runs if r.method == m]) for m in ("nid", "scratch", "nerfacto")
    }
    lines += ["Median iteration time: " + ", ".join(f"{m} {_fmt(v, '.0f')} ms" for m, v in ms.items()), ""]
    return "\n".join(lines) + "\n"


COLORS = {"solve": "tab:orange", "solve + refine": "tab:red", "scratch": "tab:blue", "nerfacto": "tab:gray"}


def plot_views(runs: List[Run], args, collections: List[Collection], path: Path) -> None:
    """Mean test PSNR against training views, one panel per collection."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(collections), figsize=(5 * len(collections), 4), squeeze=False)
    for ax, collection in zip(axes[0], collections):
        views = sorted({r.views for r in runs if r.collection == collection.name})
        for label, method, stage in ROWS:
            points = [(v, finite_mean([s.psnr for s in scores_of(runs, collection.name, v, method, stage)]))
                      for v in views]
            points = [(v, p) for v, p in points if math.isfinite(p)]
            if points:
                ax.plot(*zip(*points), "o-", label=label, color=COLORS[label])
        ax.set_xscale("log")
        ax.set_xticks(views, [("all" if v >= args.all_views_count else str(v)) for v in views])
        ax.set_xlabel("training views")
        ax.set_ylabel("test PSNR (dB)")
        ax.set_title(f"{collection.name}: held-out scenes (mean)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    save_figure(path, fig, dpi=120)


def plot_time(runs: List[Run], args, collections: List[Collection], path: Path) -> None:
    """PSNR on the eval subset against training seconds, at 3 views and with all views (each line a scene)."""
    plt = pyplot()
    shown_views = [v for v in (3, args.all_views_count) if any(r.views == v for r in runs)]
    fig, axes = plt.subplots(len(shown_views), len(collections), figsize=(5 * len(collections), 3.6 * len(shown_views)),
                             squeeze=False)
    for row, views in enumerate(shown_views):
        for ax, collection in zip(axes[row], collections):
            for r in runs:
                if r.collection != collection.name or r.views != views or not r.curve:
                    continue
                s, t, p = zip(*r.curve)
                label = {"nid": "NID solve + refine"}.get(r.method, r.method)
                ax.plot(t, p, "-", color=COLORS.get("solve + refine" if r.method == "nid" else r.method),
                        alpha=0.6, label=label)
                if "solve" in r.scores:
                    ax.plot([r.scores["solve"].seconds], [r.curve_until(r.scores["solve"].step)[-1][2]], "o",
                            color=COLORS["solve"], label="end of solve")
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            ax.legend(unique.values(), unique.keys(), fontsize=8)
            ax.set_xlabel("training seconds")
            ax.set_ylabel("PSNR, eval subset (dB)")
            ax.set_title(f"{collection.name}, {'all' if views >= args.all_views_count else views} views "
                         "(each line a scene)")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig, dpi=120)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_fewview.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", action="append", required=True, help="NAME=FOLDER:DICTIONARY (repeat)")
    parser.add_argument("--held-out", type=int, default=5, help="last N scenes of each collection")
    parser.add_argument("--views", type=int, nargs="*", default=[1, 3, 5, 10],
                        help="numbers of training views (none: only the all-views runs)")
    parser.add_argument("--all-views-count", type=int, default=50, help="the scenes' train split size ('all')")
    parser.add_argument("--all-views-scenes", type=int, default=5, help="held-out scenes per collection that also "
                        "run with all views (time to quality)")
    parser.add_argument("--methods", nargs="+", default=["nid", "scratch"])
    parser.add_argument("--nerfacto-scenes", type=int, default=1, help="first N held-out scenes of each collection")
    parser.add_argument("--nerfacto-views", type=int, nargs="*", default=[3])
    parser.add_argument("--nerfacto-steps", type=int, default=60)
    add_run_arguments(parser, steps=300, solve_steps=100, rays=1024, threads=2)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--eval-images", type=int, default=3)
    parser.add_argument("--mesh-resolution", type=int, default=96)
    add_output_arguments(parser, "fewview_bench", "fewview_benchmark.md", plot_views="fewview_psnr_vs_views.png",
                         plot_time="fewview_psnr_vs_time.png")
    return parser


def plan_runs(collections: List[Collection], args) -> List[Tuple[Collection, str, int, str]]:
    """(collection, scene, views, method) of every run, the all-views scratch runs (the time-to-quality targets)
    first."""
    plan: List[Tuple[Collection, str, int, str]] = []
    for collection in collections:
        held = collection.scenes()[-args.held_out:]
        for i, scene in enumerate(held):
            views = list(args.views) + ([args.all_views_count] if i < args.all_views_scenes else [])
            for v in views:
                for method in args.methods:
                    plan.append((collection, scene, v, method))
            if "nerfacto" not in args.methods and i < args.nerfacto_scenes:
                plan += [(collection, scene, v, "nerfacto") for v in args.nerfacto_views]
    plan.sort(key=lambda p: (p[2] != args.all_views_count, p[3] == "nerfacto"))
    return plan


def resolution_note(collection: Collection) -> str:
    """``HxW px`` of the collection's first image, for the report."""
    import imageio.v2 as imageio

    first = next(iter(sorted((collection.root / collection.scenes()[0] / "images").glob("*.png"))))
    return "x".join(str(s) for s in imageio.imread(first).shape[:2]) + " px"


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark (``scripts/benchmark_fewview.py``)."""
    args, command = parse_run_arguments(build_parser(), argv, "benchmark_fewview.py")
    collections = [Collection.parse(text) for text in args.collection]
    started = time.strftime("%Y-%m-%d %H:%M")
    json_path = args.work_dir / "fewview_benchmark.json"
    done = load_done(json_path) if args.resume else {}
    plan = plan_runs(collections, args)
    args.resolution_note = resolution_note(collections[0])

    runs: List[Run] = []
    bar = tqdm(plan, desc="few-view runs", unit="run")
    for collection, scene, views, method in bar:
        run = Run(collection.name, scene, views, method)
        bar.set_postfix_str(run.key)
        if run.key in done:
            runs.append(done[run.key])
            continue
        runs.append(train_run(run, collection.root / scene, args, collection.dictionary, args.work_dir / "runs"))
        final = run.scores["final"]
        tqdm.write(f"{run.key}: PSNR {final.psnr:.2f} SSIM {final.ssim:.3f} Chamfer {_fmt(final.chamfer, '.4f')} "
                   f"({run.median_iteration_ms:.0f} ms/it)")
        save_runs(json_path, command, runs, done)
    write_text(args.output, markdown(runs, args, collections, command, started))
    plot_views(runs, args, collections, args.plot_views)
    plot_time(runs, args, collections, args.plot_time)
    print(f"wrote {args.output}, {args.plot_views}, {args.plot_time}, {json_path}")
