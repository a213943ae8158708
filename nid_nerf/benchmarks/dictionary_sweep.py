"""Dictionary size sweep (issue #4): quality and cost of NID for K experts and top-k gating.

For every (K, k) of ``--experts`` x ``--top-k`` with k <= K it

1. pretrains a dictionary with ``ns-train nid-dict``'s own config on the collection minus its last
   ``--held-out`` scenes (in this process, ``--pretrain-steps`` steps, timed per step), and writes it
   to ``WORK/dict_K{K}_k{k}.pt``;
2. solves each held-out scene from ``--views`` training views against it (the few-view benchmark's
   ``nid`` run: ``--solve-steps`` solve, then refine up to ``--steps``), and scores the end of the
   solve and the end of the run on all test views (PSNR, SSIM) and the mesh (Chamfer, F@1%).

A from-scratch run per held-out scene, with the same views and steps, is the reference. Cost is the
measured median seconds per step of pretraining and of solving; the per-sample field cost of the same
grid is in docs/field_cost.md.

    python scripts/benchmark_dictionary_sweep.py --collection data/fewview/vases --held-out 5 \\
        --scenes 3 --experts 16 64 256 --top-k 4 16 64 --resume

Every finished point is kept in ``WORK/sweep.json``; ``--resume`` skips them (and reuses a dictionary
that was already written), so the sweep can be run in sittings. Writes a markdown page and a plot.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from tqdm import tqdm

from nid_nerf.benchmarks.fewview import (
    Collection,
    Run,
    add_output_arguments,
    add_run_arguments,
    parse_run_arguments,
    single_run_settings,
    train_run,
)
from nid_nerf.benchmarks.harness import Stop, TrainRun, train
from nid_nerf.benchmarks.method_config import make_trainer_config
from nid_nerf.benchmarks.report import finite_mean, pyplot, torch_line
from nid_nerf.fields.dictionary import export_dictionary
from nid_nerf.io import save_figure, write_text


def grid(experts: List[int], top_k: List[int]) -> List[tuple]:
    """(K, k) points with k <= K, cheapest first."""
    return sorted(((K, k) for K in experts for k in top_k if k <= K), key=lambda p: (p[0], p[1]))


PROBE_STEPS = 8
"""steps of each phase (dense gate, then top-k) in the throwaway run that times a pretraining step for
``--pretrain-seconds``; the first 2 of each phase are not counted (allocation, warm-up)"""


def _pretrain_config(collection: Path, exclude: List[str], K: int, k: int, args, out: Path, steps: int,
                     dense_steps: int):
    overrides = {
        "pipeline.model.num_experts": K,
        "pipeline.model.top_k": k,
        "pipeline.model.dense_warmup_steps": dense_steps,
        "pipeline.datamanager.dataparser.exclude_scenes": tuple(exclude),
    }
    if getattr(args, "pretrain_scenes_per_step", None) is not None:
        overrides["pipeline.datamanager.scenes_per_step"] = args.pretrain_scenes_per_step
    return make_trainer_config("nid-dict", collection, out, rays_per_batch=args.rays, dataparser="nid-collection",
                               seed=args.seed, max_num_iterations=steps, overrides=overrides)


def budget_steps(dense_steps: int, seconds: float, dense_step_s: float, topk_step_s: float) -> int:
    """Steps that fill ``seconds`` of pretraining: the dense warm-up at its rate, the rest at the top-k rate.

    >>> budget_steps(100, 600.0, 0.5, 0.25)   # 100 dense steps take 50 s, 550 s more at 0.25 s
    2300
    """
    rest = max(0.0, seconds - dense_steps * dense_step_s)
    return dense_steps + int(rest / topk_step_s)


def probe_step_seconds(collection: Path, exclude: List[str], K: int, k: int, args, work: Path) -> Tuple[float, float]:
    """Median seconds of a pretraining step with the dense gate and with the top-k gate, from a throwaway run."""
    config = _pretrain_config(collection, exclude, K, k, args, work / "probe" / f"K{K}_k{k}", 2 * PROBE_STEPS,
                              PROBE_STEPS)
    with TrainRun(config) as run:
        train(run, Stop(steps=2 * PROBE_STEPS), progress=f"time a step, K={K} k={k}")
    times = run.iteration_seconds
    return float(np.median(times[2:PROBE_STEPS])), float(np.median(times[PROBE_STEPS + 2:]))


def pretrain(collection: Path, exclude: List[str], K: int, k: int, args, work: Path) -> Dict:
    """Pretrain one dictionary with nid-dict's config; returns its timing and where it was written.

    With ``args.pretrain_seconds`` every K gets the same wall-clock: a short probe times a step of this K, and the
    run gets the steps that fill the budget (its learning-rate schedule spans those steps).
    """
    steps, probe = args.pretrain_steps, None
    if getattr(args, "pretrain_seconds", None):
        probe = probe_step_seconds(collection, exclude, K, k, args, work)
        steps = budget_steps(args.dense_warmup_steps, args.pretrain_seconds, *probe)
        tqdm.write(f"K={K} k={k}: {probe[0]:.3f} s / dense step, {probe[1]:.3f} s / top-k step -> {steps} steps "
                   f"in {args.pretrain_seconds:.0f} s")
    config = _pretrain_config(collection, exclude, K, k, args, work / "pretrain" / f"K{K}_k{k}", steps,
                              args.dense_warmup_steps)
    with TrainRun(config) as run:
        train(run, Stop(steps=steps), progress=f"pretrain K={K} k={k}")
        model = run.pipeline.model
        path = export_dictionary(model, work / f"dict_K{K}_k{k}.pt")
        usage = model.field.gate.usage()
        num_scenes = int(model.num_scenes)
    times = run.iteration_seconds
    sparse = times[args.dense_warmup_steps:] or times
    return {
        "dictionary": str(path),
        "pretrain_steps": len(times),
        "pretrain_seconds": float(sum(times)),
        "pretrain_step_s_dense": float(np.median(times[: args.dense_warmup_steps] or times)),
        "pretrain_step_s_topk": float(np.median(sparse)),
        "probe_step_s": probe,
        "experts_used": int((usage > 1e-3).sum()),
        "num_scenes": num_scenes,
    }


def score_dict(run: Run) -> Dict:
    """A run's scores and median step time, as the sweep's JSON keeps them."""
    return {stage: asdict(score) for stage, score in run.scores.items()} | {"median_step_ms": run.median_iteration_ms}


def summary(point: Dict, stage: str, key: str) -> float:
    """Mean of one score over the scenes solved against one dictionary."""
    return finite_mean(s[stage][key] if stage in s else None for s in point["scenes"].values())


def point_keys(results: Dict) -> List[str]:
    """``K{K}_k{k}`` keys of the finished points, in (K, k) order."""
    return sorted(results["points"], key=lambda s: tuple(int(x[1:]) for x in s.split("_")))


def markdown(results: Dict, args, command: str) -> str:
    """The sweep page: one row per (K, k) point, and the scratch reference."""
    scratch = results.get("scratch", {})
    lines = [
        "# Dictionary sweep: quality and cost over K experts and top-k",
        "",
        f"Command: `{command}`",
        "",
        torch_line(),
        f"- pretraining: `nid-dict` on {results.get('num_train_scenes', '?')} scenes of `{args.collection}`, "
        + (f"equal wall-clock of {args.pretrain_seconds:.0f} s per dictionary (steps from a timed probe; the "
           f"measured seconds and steps are in the table), {args.dense_warmup_steps} dense steps"
           + (f", {args.pretrain_scenes_per_step} scenes a step" if getattr(args, "pretrain_scenes_per_step", None)
              else "")
           if getattr(args, "pretrain_seconds", None) else
           f"{args.pretrain_steps} steps ({args.dense_warmup_steps} dense)") + f", {args.rays} rays per step",
        f"- solving: {len(results.get('scenes', []))} held-out scenes ({', '.join(results.get('scenes', []))}) from "
        f"{args.views} views, {args.steps} steps ({args.solve_steps} solve with a {args.solve_gate} gate, "
        f"then refine), "
        f"scored on all test views; mesh {args.mesh_resolution}^3",
        "",
        "| K | k | pretrain steps (s) | pretrain s/step (dense / top-k) | experts used | solve PSNR | "
        "solve + refine PSNR | SSIM | Chamfer | F@1% | solve ms/step |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key in point_keys(results):
        p = results["points"][key]
        K, k = (int(x[1:]) for x in key.split("_"))
        lines.append(
            f"| {K} | {k} | {p.get('pretrain_steps', '?')} ({p['pretrain_seconds']:.0f}) | "
            f"{p['pretrain_step_s_dense']:.2f} / {p['pretrain_step_s_topk']:.2f} | "
            f"{p['experts_used']}/{K} | {summary(p, 'solve', 'psnr'):.2f} | {summary(p, 'final', 'psnr'):.2f} | "
            f"{summary(p, 'final', 'ssim'):.3f} | {summary(p, 'final', 'chamfer'):.4f} | "
            f"{summary(p, 'final', 'f_score_1pct'):.3f} | "
            f"{finite_mean(s['median_step_ms'] for s in p['scenes'].values()):.0f} |"
        )
    if scratch:
        lines.append(
            f"| scratch | - | - | - | - | - | {finite_mean(s['final']['psnr'] for s in scratch.values()):.2f} | "
            f"{finite_mean(s['final']['ssim'] for s in scratch.values()):.3f} | "
            f"{finite_mean(s['final']['chamfer'] for s in scratch.values()):.4f} | "
            f"{finite_mean(s['final']['f_score_1pct'] for s in scratch.values()):.3f} | "
            f"{finite_mean(s['median_step_ms'] for s in scratch.values()):.0f} |"
        )
    lines += ["", "PSNR and SSIM are means over the held-out scenes; 'solve' is the state at the end of the solve "
              "stage, 'solve + refine' the end of the run. 'experts used' counts experts with more than 0.1% of the "
              "gate's magnitude over the training scenes.", ""]
    return "\n".join(lines)


def plot(results: Dict, path: Path) -> None:
    """Held-out PSNR (left) and pretraining s/step (right) against K, one line per k."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    by_k: Dict[int, List] = {}
    for key, p in results["points"].items():
        K, k = (int(x[1:]) for x in key.split("_"))
        by_k.setdefault(k, []).append((K, summary(p, "solve", "psnr"), summary(p, "final", "psnr"),
                                       p["pretrain_step_s_topk"]))
    for i, (k, rows) in enumerate(sorted(by_k.items())):
        rows.sort()
        Ks, color = [r[0] for r in rows], f"C{i}"
        axes[0].plot(Ks, [r[2] for r in rows], "o-", color=color, label=f"k={k}, solve + refine")
        axes[0].plot(Ks, [r[1] for r in rows], "o--", color=color, alpha=0.5, label=f"k={k}, solve")
        axes[1].plot(Ks, [r[3] for r in rows], "o-", color=color, label=f"k={k}")
    scratch = results.get("scratch", {})
    if scratch:
        axes[0].axhline(finite_mean(s["final"]["psnr"] for s in scratch.values()), color="k", ls=":", label="scratch")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("K (experts)")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("held-out PSNR (dB)")
    axes[1].set_ylabel("pretraining s / step (top-k phase)")
    axes[0].set_title("quality")
    axes[1].set_title("cost")
    fig.tight_layout()
    save_figure(path, fig, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_dictionary_sweep.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", type=Path, required=True, help="a nid-collection folder")
    parser.add_argument("--held-out", type=int, default=5, help="the last N scenes are excluded from pretraining")
    parser.add_argument("--scenes", type=int, default=3, help="first N held-out scenes are solved")
    parser.add_argument("--experts", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--top-k", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--pretrain-seconds", type=float, default=None,
                        help="equal pretraining wall-clock per dictionary instead of --pretrain-steps (a short probe "
                        "times a step of each K)")
    parser.add_argument("--pretrain-scenes-per-step", type=int, default=None,
                        help="nid-dict --pipeline.datamanager.scenes-per-step while pretraining (default: nid-dict's, "
                        "rays from every scene each step)")
    parser.add_argument("--dense-warmup-steps", type=int, default=100)
    parser.add_argument("--views", type=int, default=3)
    add_run_arguments(parser, steps=150, solve_steps=50, rays=512, threads=1)
    parser.add_argument("--mesh-resolution", type=int, default=64)
    add_output_arguments(parser, "dictionary_sweep", "dictionary_sweep.md", plot="dictionary_sweep.png")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Run the sweep (``scripts/benchmark_dictionary_sweep.py``)."""
    args, command = parse_run_arguments(build_parser(), argv, "benchmark_dictionary_sweep.py")
    json_path = args.work_dir / "sweep.json"
    results = json.loads(json_path.read_text()) if args.resume and json_path.is_file() else {}
    results.setdefault("points", {})
    results.setdefault("scratch", {})
    all_scenes = Collection("sweep", args.collection, Path()).scenes()
    held = all_scenes[-args.held_out:]
    solved = held[: args.scenes]
    results["scenes"], results["num_train_scenes"] = solved, len(all_scenes) - len(held)
    run_args = single_run_settings(args, args.mesh_resolution)

    def save() -> None:
        write_text(json_path, json.dumps(results, indent=1))

    for scene in solved:
        if scene not in results["scratch"]:
            run = train_run(Run("sweep", scene, args.views, "scratch"), args.collection / scene, run_args, Path(),
                            args.work_dir / "runs")
            results["scratch"][scene] = score_dict(run)
            save()
    for K, k in tqdm(grid(args.experts, args.top_k), desc="dictionary sweep", unit="point"):
        key = f"K{K}_k{k}"
        point = results["points"].get(key)
        if point is None or not Path(point["dictionary"]).is_file():
            point = pretrain(args.collection, held, K, k, args, args.work_dir) | {"scenes": {}}
            results["points"][key] = point
            save()
        for scene in solved:
            if scene in point["scenes"]:
                continue
            run = train_run(Run(key, scene, args.views, "nid"), args.collection / scene, run_args,
                            Path(point["dictionary"]), args.work_dir / "runs")
            point["scenes"][scene] = score_dict(run)
            tqdm.write(f"{key} {scene}: solve {run.scores['solve'].psnr:.2f} dB, "
                       f"solve + refine {run.scores['final'].psnr:.2f} dB")
            save()
    write_text(args.output, markdown(results, args, command))
    plot(results, args.plot)
    print(f"sweep -> {args.output}, {args.plot}")

