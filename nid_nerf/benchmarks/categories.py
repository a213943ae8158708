"""Category benchmark (issue #13): few-view reconstruction of held-out ShapeNet objects against a dictionary.

For each category (a collection folder and the dictionary pretrained on it without its held-out objects) and each
evaluated held-out object, in this process, with ``ns-train nid-field``'s own config:

- **views** (``--views`` and all): ``nid`` (solve from nid-field's starting code, then refine with
  the annealed penalty: nid-field's defaults) and ``scratch`` (the same field, K = 1), same step budget. ``nid`` is
  also scored at step 0 (the starting code alone: by default the code search's pick among the mean code, the
  encoder's prediction and the pretraining codes; and the mean code) and at the end of its solve;
- **encoder** (``--encoder-views``): ``nid-mean``, the solve alone from the mean code, for the solve steps the
  predicted code saves;
- **long budget** (``--long-objects`` objects, ``--long-views``, all views by default, ``--long-steps``): ``nid``,
  ``scratch`` and, with all views, ``nid-fixed`` (the refine penalty and code prior at full weight throughout: the
  refine before the anneal), to check that the prior never loses when the views allow a from-scratch field to
  converge. A long 3-view scratch run gives the converged PSNR that the 3-view time to quality aims at.

Scores: PSNR and SSIM on every test view (ns-eval's path, white background); PSNR on ``--eval-images`` test views
during training for the curves. Pictures (3 views, the first ``--figure-objects`` objects): the inputs, a test view
(truth, NID, scratch) and the two meshes. ShapeNet renders carry no ground-truth meshes, so there is no Chamfer.

    python scripts/benchmark_categories.py \\
        --category chair=../shared/data/collections/shapenet_views/chair:outputs/shapenet/chair/dictionary.pt \\
        --held-out 20 --objects 6 --resume

Each category's runs go to ``<work-dir>/runs_<category>.json``, so categories may run in parallel processes; a last
invocation with every ``--category`` and ``--resume`` then only writes the report (add ``--report-only`` to report
the finished runs without running the missing ones, e.g. when categories finished different numbers of objects).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nid_nerf.benchmarks import fewview
from nid_nerf.benchmarks.fewview import Collection, Run, Score, load_done, time_to_reach, train_run
from nid_nerf.benchmarks.report import finite_mean, fmt, pyplot
from nid_nerf.errors import NIDInputError
from nid_nerf.io import save_figure, write_text

SUFFIX_LONG = "-long"
"""Collection-name suffix of the long-budget runs (their keys differ from the main runs')."""


def _fmt(value: Optional[float], spec: str = ".2f") -> str:
    return fmt(value, spec, missing="-")


# ----------------------------------------------------------------------------------------------
# the plan and the runs
# ----------------------------------------------------------------------------------------------


def evaluated_objects(collection: Collection, held_out: int, objects: int, first: int = 0) -> List[str]:
    """``objects`` of the collection's last ``held_out`` scenes (those left out of pretraining), from the
    ``first``-th on (a second process can take the later objects of the same work dir)."""
    return collection.scenes()[-held_out:][first:first + objects]


METHODS = ("nid", "scratch", "nid-mean", "nid-fixed")
"""Every run method of the plan (``--methods`` picks some: scratch runs need no dictionary, so they can run
while one is pretrained, in the same work dir)."""


def plan_runs(collections: Sequence[Collection], args) -> List[Tuple[Collection, str, str, int, str]]:
    """(collection, run group name, object, views, method) of every run: main, then encoder, then long budget.

    The long budget runs at each of ``args.long_views`` (the fixed-penalty NID only with all views, where the
    refine penalty is what caps it)."""
    plan = []
    for collection in collections:
        objects = evaluated_objects(collection, args.held_out, args.objects, getattr(args, "first_object", 0))
        for scene in objects:
            all_views = [] if getattr(args, "no_all_views", False) else [args.all_views_count]
            for views in [*args.views, *all_views]:
                plan += [(collection, collection.name, scene, views, m) for m in ("nid", "scratch")]
            plan += [(collection, collection.name, scene, v, "nid-mean") for v in args.encoder_views]
        for views in long_views(args):
            methods = ("nid", "nid-fixed", "scratch") if views >= args.all_views_count else ("nid", "scratch")
            plan += [(collection, collection.name + SUFFIX_LONG, scene, views, m)
                     for scene in objects[: args.long_objects] for m in methods]
    wanted = set(getattr(args, "methods", None) or METHODS)
    return [p for p in plan if p[4] in wanted]


def long_views(args) -> List[int]:
    """The view counts of the long budget (all views when ``--long-views`` is not given)."""
    return sorted({min(v, args.all_views_count) for v in (getattr(args, "long_views", None) or [args.all_views_count])})


def figure_hook(run: Run, work: Path, args):
    """For the figure objects' 3-view nid / scratch runs: save a test view (truth, render), the inputs and a
    picture of the mesh as PNGs under ``work/pictures``."""
    from PIL import Image, ImageDraw

    from nid_nerf.benchmarks.harness import composite_rgb
    from nid_nerf.benchmarks.real_captures import export_mesh, mesh_picture, test_view_metrics

    def after(pipeline) -> Dict[str, float]:
        folder = work / "pictures"
        folder.mkdir(parents=True, exist_ok=True)
        stem = f"{run.collection}_{run.scene}_{run.views}"
        rows, pictures = test_view_metrics(pipeline, {}, limit=1, keep=1)
        truth, render = pictures[0]
        Image.fromarray(truth).save(folder / f"{stem}_truth.png")
        Image.fromarray(render).save(folder / f"{stem}_{run.method}.png")
        dataset = pipeline.datamanager.train_dataset
        inputs = [np.round(composite_rgb(dataset.get_image_float32(i)).clamp(0, 1).numpy() * 255).astype(np.uint8)
                  for i in range(len(dataset))]
        Image.fromarray(np.concatenate(inputs, axis=1)).save(folder / f"{stem}_inputs.png")
        try:
            mesh, _ = export_mesh(pipeline, args.mesh_resolution, keep_largest=False)
        except NIDInputError:  # the SDF never crosses 0 in the box: the run lost the object
            mesh = None
        if mesh is not None and len(mesh.faces):
            cams = dataset.cameras.camera_to_worlds.numpy()
            Image.fromarray(mesh_picture(mesh, cams, size=160)).save(folder / f"{stem}_{run.method}_mesh.png")
            mesh.export(folder / f"{stem}_{run.method}_mesh.ply")
        else:
            blank = Image.new("RGB", (480, 160), "white")
            ImageDraw.Draw(blank).text((150, 72), "no surface (SDF > 0 in the box)", fill="black")
            blank.save(folder / f"{stem}_{run.method}_mesh.png")
        return {"figure_psnr": float(rows[0]["psnr"]), "surface": float(mesh is not None and len(mesh.faces) > 0)}

    return after


def run_settings(args, long: bool) -> argparse.Namespace:
    """:func:`fewview.train_run`'s settings for a main or a long-budget run."""
    return argparse.Namespace(
        all_views_count=args.all_views_count, steps=args.long_steps if long else args.steps,
        solve_steps=args.solve_steps, solve_gate="dense", rays=args.rays, seed=args.seed,
        eval_every=args.long_eval_every if long else args.eval_every, eval_images=args.eval_images,
        mesh_resolution=args.mesh_resolution, nerfacto_steps=0, score_start=True)


def runs_path(work: Path, collection: str) -> Path:
    return work / f"runs_{collection}.json"


def save_category(path: Path, command: str, runs: List[Run]) -> None:
    """Write ``runs`` into the category's JSON, keeping the runs already there that this invocation did not
    redo: processes with different ``--methods`` (or objects) may share one work dir. The read, merge and write
    happen under an exclusive lock on ``<path>.lock``; the write itself is atomic."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        merged = load_done(path)
        merged.update({r.key: r for r in runs})
        write_text(path, json.dumps({"command": command, "runs": [asdict(r) for r in merged.values()]}, indent=1,
                                    default=str))


# ----------------------------------------------------------------------------------------------
# report
# ----------------------------------------------------------------------------------------------


def pick(runs: Sequence[Run], collection: str, views: int, method: str, stage: str = "final") -> List[Score]:
    return [r.scores[stage] for r in runs
            if (r.collection, r.views, r.method) == (collection, views, method) and stage in r.scores]


def paired(runs: Sequence[Run], collection: str, views: int, a: Tuple[str, str], b: Tuple[str, str]
           ) -> List[float]:
    """Per-object PSNR differences a - b, for the objects that have both ((method, stage) each)."""
    by = {}
    for r in runs:
        if (r.collection, r.views) == (collection, views):
            for m, stage in (a, b):
                if r.method == m and stage in r.scores:
                    by.setdefault(r.scene, {})[(m, stage)] = r.scores[stage].psnr
    return [v[a] - v[b] for v in by.values() if a in v and b in v]


def quality_table(runs: Sequence[Run], name: str, views_all: Sequence[int], all_count: int) -> List[str]:
    rows = [("start code, 0 steps", "nid", "start"), ("mean code, 0 steps", "nid", "start_mean"),
            ("solve", "nid", "solve"), ("solve + refine", "nid", "final"), ("scratch", "scratch", "final")]
    lines = ["| views | " + " | ".join(r[0] for r in rows) + " | NID - scratch (min over objects) |",
             "|---|" + "---|" * (len(rows) + 1)]
    for views in views_all:
        if not pick(runs, name, views, "nid") and not pick(runs, name, views, "scratch"):
            continue  # a partial run (--no-all-views) has no row for it
        cells = []
        for _, method, stage in rows:
            scores = pick(runs, name, views, method, stage)
            cells.append(f"{_fmt(finite_mean([s.psnr for s in scores]))} / "
                         f"{_fmt(finite_mean([s.ssim for s in scores]), '.3f')}" if scores else "-")
        gain = paired(runs, name, views, ("nid", "final"), ("scratch", "final"))
        shown = "all (15)" if views >= all_count else str(views)
        lines.append(f"| {shown} | " + " | ".join(cells)
                     + f" | **{_fmt(finite_mean(gain), '+.2f')}** ({_fmt(min(gain) if gain else None, '+.2f')}) |")
    return lines


def encoder_table(runs: Sequence[Run], name: str, views_list: Sequence[int], solve_steps: int) -> List[str]:
    """Predicted code against the mean code and the solved code, and the solve steps the prediction saves."""
    lines = ["| views | objects | mean code | start code | seconds to the start code | solved code (mean start, "
             f"{solve_steps} steps) | start - solved | steps to the solved PSNR: from mean / from start |",
             "|---|---|---|---|---|---|---|---|"]
    for views in views_list:
        objects = sorted({r.scene for r in runs if (r.collection, r.views, r.method) == (name, views, "nid-mean")})
        mean0, pred0, solved, gaps, steps_mean, steps_pred, seconds = [], [], [], [], [], [], []
        for scene in objects:
            nid = next((r for r in runs if (r.collection, r.scene, r.views, r.method) == (name, scene, views, "nid")),
                       None)
            mean_run = next(r for r in runs if (r.collection, r.scene, r.views, r.method) ==
                            (name, scene, views, "nid-mean"))
            if nid is None or "start" not in nid.scores or "final" not in mean_run.scores:
                continue
            mean0.append(nid.scores["start_mean"].psnr)
            pred0.append(nid.scores["start"].psnr)
            seconds.append(nid.scores["start"].seconds)
            solved.append(mean_run.scores["final"].psnr)
            gaps.append(pred0[-1] - solved[-1])
            # on the eval subset's curves: the mean-start solve's final value is the target for both
            target = mean_run.curve[-1][2]
            steps_mean.append(time_to_reach(mean_run.curve, target, 0))
            steps_pred.append(time_to_reach(nid.curve_until(solve_steps), target, 0))
        reached = [s for s in steps_pred if s is not None]
        lines.append(f"| {views} | {len(gaps)} | {_fmt(finite_mean(mean0))} | {_fmt(finite_mean(pred0))} | "
                     f"{_fmt(finite_mean(seconds), '.1f')} | "
                     f"{_fmt(finite_mean(solved))} | {_fmt(finite_mean(gaps), '+.2f')} | "
                     f"{_fmt(finite_mean([s for s in steps_mean if s is not None]), '.0f')} / "
                     f"{_fmt(finite_mean(reached), '.0f')} ({len(reached)}/{len(steps_pred)} reached) |")
    return lines


def time_to_quality_table(runs: Sequence[Run], name: str, views: int = 3) -> List[str]:
    """Seconds and steps until each run first reaches scratch's final PSNR at the same views (eval subset).

    ``name`` is the run group: the main runs, or the long budget's (``name + SUFFIX_LONG``), whose scratch runs
    have converged, so that their final PSNR is the converged quality the issue's time to quality aims at."""
    lines = ["| object | scratch's final dB | scratch | NID (solve + refine) | NID's final dB | "
             "speed-up, seconds (steps) |", "|---|---|---|---|---|---|"]
    for r in sorted((r for r in runs if (r.collection, r.views, r.method) == (name, views, "scratch")),
                    key=lambda r: r.scene):
        nid = next((n for n in runs if (n.collection, n.scene, n.views, n.method) == (name, r.scene, views, "nid")),
                   None)
        if nid is None or not r.curve:
            continue
        target = r.curve[-1][2]
        t0, n0 = time_to_reach(r.curve, target, 1), time_to_reach(r.curve, target, 0)
        t1, n1 = time_to_reach(nid.curve, target, 1), time_to_reach(nid.curve, target, 0)
        cell = "-" if t1 is None else f"{t1:.1f} s ({n1:.0f})"
        ratio = "-"
        if t1 is not None and t0:
            # reached at step 0: the starting code alone is there (its seconds are the code search's)
            seconds = f"{t0 / t1:.1f}x" if t1 > 0 else "at 0 s"
            ratio = f"{seconds} ({n0 / n1:.1f}x)" if n1 > 0 else f"{seconds} (at step 0)"
        lines.append(f"| {r.scene} | {target:.2f} | {t0:.1f} s ({n0:.0f}) | {cell} | {nid.curve[-1][2]:.2f} | "
                     f"{ratio} |")
    return lines


def long_table(runs: Sequence[Run], name: str, views: int) -> List[str]:
    long_name = name + SUFFIX_LONG
    lines = ["| method | objects | PSNR | SSIM | - scratch (per object) |", "|---|---|---|---|---|"]
    for method, label in (("nid", "NID, annealed refine (default)"), ("nid-fixed", "NID, fixed penalty (before)"),
                          ("scratch", "scratch")):
        scores = pick(runs, long_name, views, method)
        if not scores:
            continue
        diff = paired(runs, long_name, views, (method, "final"), ("scratch", "final"))
        lines.append(f"| {label} | {len(scores)} | {_fmt(finite_mean([s.psnr for s in scores]))} | "
                     f"{_fmt(finite_mean([s.ssim for s in scores]), '.3f')} | "
                     + (", ".join(_fmt(d, "+.2f") for d in diff) if method != "scratch" else "") + " |")
    return lines


def markdown(runs: List[Run], args, collections: Sequence[Collection], command: str, started: str) -> str:
    views_all = [*args.views, args.all_views_count]
    lines = ["# Category benchmark: held-out ShapeNet objects from few views, NID against scratch", "",
             f"Command (one run, {started}): `{command}`", "",
             f"- data: `../shared/data/collections/shapenet_views` (ShapeNetCore renders, 128x128 px RGBA, 15 train "
             f"and 5 test views per object); the dictionary of each category was pretrained on its first "
             f"{len(collections[0].scenes()) - args.held_out} objects; the held-out objects are the last "
             f"{args.held_out}, of which the first {args.objects} are evaluated here",
             f"- every run {args.steps} steps of {args.rays} rays (NID: {args.solve_steps} solve + "
             f"{args.steps - args.solve_steps} refine up to 3 views; with more views nid-field's solve_views "
             "and many_view_solve_steps shorten the solve, 20 steps by default); long budget: "
             f"{args.long_steps} steps; 1 thread "
             "per process",
             f"- NID's start code: code_init {getattr(args, 'code_init', None) or 'search (nid-field default)'}; "
             "the seconds it takes count on the training clock (search: the mean code, the encoder's prediction "
             "and every pretraining code render 1024 training rays, the lowest error wins)",
             "- PSNR / SSIM over the 5 test views (white background); curves on "
             f"{args.eval_images} test views", ""]
    for collection in collections:
        name = collection.name
        objects = sorted({r.scene for r in runs if r.collection == name})
        lines += [f"## {name} ({len(objects)} held-out objects: {', '.join(objects)})", "",
                  "PSNR (dB) / SSIM, mean over the objects:", ""]
        lines += quality_table(runs, name, views_all, args.all_views_count) + [""]
        lines += ["Amortized code (PSNR on all test views; steps on the eval subset's curve):", ""]
        lines += encoder_table(runs, name, args.encoder_views, args.solve_steps) + [""]
        lines += ["Time to quality at 3 views: training seconds (steps) until a run first reaches scratch's final "
                  f"3-view PSNR (eval subset), {args.steps} steps:", ""]
        lines += time_to_quality_table(runs, name) + [""]
        long_name = name + SUFFIX_LONG
        if any((r.collection, r.views) == (long_name, 3) for r in runs):
            lines += ["The same against scratch's converged 3-view PSNR (its final PSNR after "
                      f"{args.long_steps} steps), both runs {args.long_steps} steps:", ""]
            lines += time_to_quality_table(runs, long_name) + [""]
        for views in sorted({r.views for r in runs if r.collection == long_name}):
            shown = f"all {views} views" if views >= args.all_views_count else f"{views} views"
            lines += [f"Long budget, {shown}, {args.long_steps} steps:", ""]
            lines += long_table(runs, name, views) + [""]
    return "\n".join(lines) + "\n"


COLORS = {"nid": "tab:red", "scratch": "tab:blue", "solve": "tab:orange", "start": "tab:green"}


def plot_views(runs: Sequence[Run], args, collections: Sequence[Collection], path: Path) -> None:
    plt = pyplot()
    fig, axes = plt.subplots(1, len(collections), figsize=(5 * len(collections), 4), squeeze=False)
    views_all = [*args.views, args.all_views_count]
    for ax, collection in zip(axes[0], collections):
        for label, method, stage, color in (("NID solve + refine", "nid", "final", "tab:red"),
                                            ("NID solve", "nid", "solve", "tab:orange"),
                                            ("start code, 0 steps", "nid", "start", "tab:green"),
                                            ("scratch", "scratch", "final", "tab:blue")):
            pts = [(v, finite_mean([s.psnr for s in pick(runs, collection.name, v, method, stage)])) for v in views_all]
            pts = [(v, p) for v, p in pts if math.isfinite(p)]
            if pts:
                ax.plot(*zip(*pts), "o-", label=label, color=color)
        ax.set_xscale("log")
        ax.set_xticks(views_all, [str(v) for v in views_all])
        ax.set_xlabel("training views")
        ax.set_ylabel("test PSNR (dB)")
        ax.set_title(f"{collection.name}: held-out objects (mean)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(path, fig, dpi=120)


def plot_time(runs: Sequence[Run], collections: Sequence[Collection], path: Path, views: int = 3) -> None:
    """PSNR against training seconds at ``views`` views, one line per object and method; a second row for the
    long budget's runs at those views when there are any (scratch converged)."""
    plt = pyplot()
    groups = [("", "")] + ([(SUFFIX_LONG, ", long budget")] if any(r.collection.endswith(SUFFIX_LONG) and
                                                                  r.views == views for r in runs) else [])
    fig, axes = plt.subplots(len(groups), len(collections), figsize=(5 * len(collections), 3.8 * len(groups)),
                             squeeze=False)
    for row, (suffix, title) in zip(axes, groups):
        for ax, collection in zip(row, collections):
            for r in runs:
                if (r.collection, r.views) != (collection.name + suffix, views) or r.method not in COLORS \
                        or not r.curve:
                    continue
                _, t, p = zip(*r.curve)
                ax.plot(t, p, "-", color=COLORS[r.method], alpha=0.6, label={"nid": "NID"}.get(r.method, r.method))
            handles, labels = ax.get_legend_handles_labels()
            unique = dict(zip(labels, handles))
            ax.legend(unique.values(), unique.keys(), fontsize=8)
            ax.set_xlabel("training seconds (1 thread)")
            ax.set_ylabel("PSNR, eval subset (dB)")
            ax.set_title(f"{collection.name}, {views} views{title} (each line an object)")
            ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(path, fig, dpi=120)


def crop_to_objects(arrays: List[np.ndarray], pad: int = 6) -> List[np.ndarray]:
    """The objects fill about 15 % of a ShapeNet view: crop every picture (inputs strip first, then test views of
    one size) to the rows where any of them is not white, and the test views also to those columns."""
    def span(mask: np.ndarray, n: int) -> Tuple[int, int]:
        idx = np.nonzero(mask)[0]
        return (0, n) if len(idx) == 0 else (max(0, idx[0] - pad), min(n, idx[-1] + 1 + pad))

    ink = [(a < 242).any(-1) for a in arrays]
    height = min(a.shape[0] for a in arrays)
    r0, r1 = span(np.any([m[:height].any(1) for m in ink], axis=0), height)
    views = [m for m, a in zip(ink, arrays) if a.shape == arrays[-1].shape]
    c0, c1 = span(np.any([m.any(0) for m in views], axis=0), arrays[-1].shape[1])
    return [a[r0:r1] if a.shape != arrays[-1].shape else a[r0:r1, c0:c1] for a in arrays]


def objects_figure(work: Path, collections: Sequence[Collection], args, path: Path, meshes: bool) -> bool:
    """Rows of held-out objects at 3 views: inputs | truth | NID | scratch (or the two meshes). False if none."""
    from PIL import Image

    folder = work / "pictures"
    rows = []
    for collection in collections:
        for scene in evaluated_objects(collection, args.held_out, args.figure_objects):
            stem = folder / f"{collection.name}_{scene}_3"
            names = (["nid_mesh", "scratch_mesh"] if meshes else ["inputs", "truth", "nid", "scratch"])
            files = [Path(f"{stem}_{n}.png") for n in names]
            if all(f.is_file() for f in files):
                arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
                rows.append((scene, arrays if meshes else crop_to_objects(arrays), names))
    if not rows:
        return False
    plt = pyplot()
    widths = [a.shape[1] / a.shape[0] for a in rows[0][1]]
    fig, axes = plt.subplots(len(rows), len(widths), figsize=(2.0 * sum(widths), 2.1 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    for i, (scene, arrays, names) in enumerate(rows):
        for j, (array, label) in enumerate(zip(arrays, names)):
            axes[i][j].imshow(array)
            axes[i][j].set_title(f"{scene}: {label.replace('_', ' ')}" if j == 0 else label.replace("_", " "),
                                 fontsize=8)
            axes[i][j].axis("off")
    fig.tight_layout()
    save_figure(path, fig, dpi=110)
    return True


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------


def nid_overrides(args, method: str) -> Optional[Dict[str, object]]:
    """Config overrides of a run from ``--refine-anneal-steps`` (``nid``) and ``--code-init`` (``nid`` and
    ``nid-fixed``; ``nid-mean`` always starts from the mean code); None: nid-field's own."""
    extra: Dict[str, object] = {}
    if args.refine_anneal_steps is not None and method == "nid":
        extra["pipeline.model.refine_anneal_steps"] = args.refine_anneal_steps
    if getattr(args, "code_init", None) is not None and method in ("nid", "nid-fixed"):
        extra["pipeline.model.code_init"] = args.code_init
    return extra or None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--category", action="append", required=True, help="NAME=FOLDER:DICTIONARY (repeat)")
    parser.add_argument("--held-out", type=int, default=20, help="the last N objects, left out of pretraining")
    parser.add_argument("--objects", type=int, default=20, help="evaluate the first N held-out objects")
    parser.add_argument("--views", type=int, nargs="*", default=[1, 2, 3, 5])
    parser.add_argument("--all-views-count", type=int, default=15)
    parser.add_argument("--no-all-views", action="store_true",
                        help="leave out the runs from all training views (a partial run, e.g. 3 views only)")
    parser.add_argument("--encoder-views", type=int, nargs="*", default=[1, 3])
    parser.add_argument("--first-object", type=int, default=0,
                        help="start at this held-out object (0: the first); for a second process sharing the work "
                             "dir; the report then uses --first-object 0 and every object")
    parser.add_argument("--long-objects", type=int, default=2)
    parser.add_argument("--long-views", type=int, nargs="*", default=None,
                        help="view counts of the long budget (default: all views); 3 gives the converged 3-view "
                             "scratch PSNR that the time to quality is measured against")
    parser.add_argument("--methods", nargs="*", choices=METHODS, default=None,
                        help="run only these methods (default: all); e.g. scratch while the dictionary pretrains")
    parser.add_argument("--long-steps", type=int, default=1500)
    parser.add_argument("--long-eval-every", type=int, default=150)
    parser.add_argument("--figure-objects", type=int, default=3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--solve-steps", type=int, default=100)
    parser.add_argument("--rays", type=int, default=512)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--eval-images", type=int, default=2)
    parser.add_argument("--mesh-resolution", type=int, default=96)
    parser.add_argument("--resume", action="store_true", help="reuse finished runs from the work dir's JSONs")
    parser.add_argument("--refine-anneal-steps", type=int, default=None,
                        help="the nid runs' refine_anneal_steps (default: nid-field's own); for a schedule study, "
                             "in its own --work-dir")
    parser.add_argument("--code-init", choices=["search", "encoder", "mean"], default=None,
                        help="the nid runs' code_init (default: nid-field's own), e.g. to compare where the solve "
                             "starts, each in its own --work-dir")
    parser.add_argument("--report-only", action="store_true",
                        help="with --resume: write the report from the finished runs only, running none")
    parser.add_argument("--notes", type=Path, default=None,
                        help="a markdown file of hand-written reading of the run, appended to the report")
    fewview.add_output_arguments(parser, "categories", "categories.md", plot_views="categories_psnr_vs_views.png",
                                 plot_time="categories_psnr_vs_time.png", figure="categories_objects.png",
                                 mesh_figure="categories_meshes.png")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark (``scripts/benchmark_categories.py``)."""
    args, command = fewview.parse_run_arguments(build_parser(), argv, "benchmark_categories.py")
    if args.report_only and not args.resume:
        raise NIDInputError("--report-only reads the finished runs of --resume; pass both")
    if args.notes is not None and not args.notes.is_file():
        raise NIDInputError(f"--notes {args.notes} does not exist; pass a markdown file or leave the option out")
    collections = [Collection.parse(text) for text in args.category]
    started = time.strftime("%Y-%m-%d %H:%M")
    runs_by: Dict[str, List[Run]] = {}
    done: Dict[str, Run] = {}
    if args.resume:
        for c in collections:
            done.update(load_done(runs_path(args.work_dir, c.name)))
    bar = tqdm(plan_runs(collections, args), desc="category runs", unit="run")
    for collection, name, scene, views, method in bar:
        run = Run(name, scene, views, method)
        bar.set_postfix_str(run.key)
        if run.key not in done and args.report_only:
            continue
        if run.key not in done:
            figure = (views == 3 and method in ("nid", "scratch") and not name.endswith(SUFFIX_LONG)
                      and scene in evaluated_objects(collection, args.held_out, args.figure_objects))
            extra = nid_overrides(args, method)
            train_run(run, collection.root / scene, run_settings(args, name.endswith(SUFFIX_LONG)),
                      collection.dictionary, args.work_dir / "runs", extra_overrides=extra,
                      after=figure_hook(run, args.work_dir, args) if figure else None)
            final = run.scores["final"]
            tqdm.write(f"{run.key}: PSNR {final.psnr:.2f} SSIM {final.ssim:.3f} ({run.median_iteration_ms:.0f} ms/it)")
            done[run.key] = run
        runs_by.setdefault(collection.name, []).append(done[run.key])
        save_category(runs_path(args.work_dir, collection.name), command, runs_by[collection.name])
    runs = [r for c in collections for r in runs_by.get(c.name, [])]
    report = markdown(runs, args, collections, command, started)
    if args.notes is not None:
        report += "\n" + args.notes.read_text()
    write_text(args.output, report)
    plot_views(runs, args, collections, args.plot_views)
    plot_time(runs, collections, args.plot_time)
    objects_figure(args.work_dir, collections, args, args.figure, meshes=False)
    objects_figure(args.work_dir, collections, args, args.mesh_figure, meshes=True)
    print(f"wrote {args.output} and its figures")
