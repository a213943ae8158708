"""Report code shared by the benchmarks (command lines, number formats, machine lines, figures, notes kept on
rewrite), and the speed benchmark's report: a markdown table, a PSNR-vs-wall-clock figure and the raw numbers as
JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shlex
import sys
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np

from nid_nerf.benchmarks.harness import MethodResult
from nid_nerf.io import save_figure, write_text

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the benchmarks' default inputs and outputs (docs/, outputs/, data/) are relative to."""


def command_line(script: str, argv: Optional[Sequence[str]]) -> str:
    """``python scripts/SCRIPT ARGS`` as the user typed it (``sys.argv`` when `argv` is None), for the report."""
    args = sys.argv[1:] if argv is None else list(argv)
    return f"python scripts/{script} {shlex.join(args)}".rstrip()


def fmt(value: Optional[float], spec: str, suffix: str = "", missing: str = "n/a") -> str:
    """`value` formatted with `spec` (and `suffix`), or `missing` for None and NaN/inf."""
    if value is None or not math.isfinite(value):
        return missing
    return f"{format(value, spec)}{suffix}"


def finite_mean(values: Iterable[Optional[float]]) -> float:
    """Mean of the finite values (None and NaN skipped); NaN when there are none."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(kept)) if kept else math.nan


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (benchmarks run without a display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def torch_line() -> str:
    """``- machine: ...`` line of the solve benchmarks (dictionary sweep, inpainting)."""
    import torch

    return f"- machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), torch {torch.__version__}"


NOTES_BEGIN = "<!-- notes: kept when the benchmark rewrites this file -->"


def write_markdown_keeping_notes(path: Path, text: str) -> None:
    """Write `text` to `path`; a hand-written section after :data:`NOTES_BEGIN` in the old file is kept."""
    notes = ""
    if Path(path).is_file():
        old = Path(path).read_text()
        if NOTES_BEGIN in old:
            notes = old[old.index(NOTES_BEGIN):]
    write_text(path, text + "\n" + (notes or NOTES_BEGIN + "\n"))


RENDER_TARGET = 20_000.0
"""rays/s issue #2 asks of get_outputs_for_camera"""
SPEEDUP_TARGET = 5.0
"""how many times faster than nerfacto-torch an iteration must be (issue #2)"""


def machine_summary() -> str:
    """CPU model, cores and torch threads, for the report header."""
    import torch

    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def first_eval_after(result: MethodResult, seconds: float):
    """The evaluation that crossing `seconds` of training clock triggered (None if training ended before)."""
    for point in result.evals:
        if point.train_seconds >= seconds - 1e-9:
            return point
    return None


def eval_marks(eval_every: float, seconds: float) -> list[float]:
    count = max(1, int(math.floor(seconds / eval_every + 1e-9)))
    return [eval_every * (i + 1) for i in range(count)]


def markdown_report(
    results: Sequence[MethodResult],
    *,
    command: str,
    data_summary: str,
    budget_summary: str,
    marks: Sequence[float],
    flags: dict[str, str],
    loads: dict[str, tuple[float, float]],
    plot_name: Optional[str],
    ours: Optional[str],
    baseline: Optional[str],
) -> str:
    """The benchmark as markdown: setup, one row per method, the issue's targets with the measured numbers."""
    lines = [
        "# Speed benchmark: training and render speed on CPU",
        "",
        "Reproduce with:",
        "",
        "```",
        command,
        "```",
        "",
        f"- Machine: {machine_summary()}.",
        f"- Data: {data_summary}.",
        f"- Budget: {budget_summary}.",
        "- Every method trains in this one process, one after the other, through its own `ns-train` config "
        "(`Trainer.setup`, training callbacks and `Trainer.train_iteration`), with the flags below. An iteration "
        "is timed from before the callbacks to after the optimizer and scheduler steps, data loading included. "
        "Evaluation is off the training clock.",
        "- PSNR: mean over the fixed eval images, computed by the harness for every method alike, on a white "
        "background (RGBA ground truth composited onto white; nerfstudio renderers forced to white by their own "
        "background override). Each PSNR at a time mark is the evaluation that crossing the mark triggered, so a "
        "method with long iterations is scored up to one iteration after the mark (in its favour).",
        "- Render speed: rays per second of one `model.get_outputs_for_camera(camera)` call on an eval image "
        "(median over the eval images at the last evaluation), the call the viewer and `ns-eval` make.",
        "- Native eval: the method's own `pipeline.get_eval_image_metrics_and_images` on one eval image (the path of "
        "`ns-train`'s eval and `ns-eval`), on the background that method itself uses; nerfacto with "
        "`--pipeline.model.background-color random` scores on black there, so its native PSNR is not comparable with "
        "the white-background columns.",
        "",
        "| method | `ns-train` flags | iterations | s / iteration (median) | s / iteration (mean) | "
        + " | ".join(f"PSNR @ {m:.0f} s" for m in marks)
        + " | final PSNR | render rays/s | native eval | load avg (start, end) |",
        "|---|---|---:|---:|---:|" + "---:|" * len(marks) + "---:|---:|---|---|",
    ]
    for result in results:
        at_marks = []
        for mark in marks:
            point = first_eval_after(result, mark)
            at_marks.append("n/a" if point is None else f"{point.psnr:.2f} ({point.train_seconds:.0f} s)")
        native = result.native_eval
        if native.get("ok"):
            native_text = f"ok, PSNR {native.get('psnr', math.nan):.2f}, {native.get('seconds', math.nan):.1f} s"
        else:
            native_text = f"failed: {native.get('error', 'not run')}"
        mean = sum(result.iteration_seconds) / max(1, len(result.iteration_seconds))
        load = loads.get(result.method, (math.nan, math.nan))
        lines.append(
            f"| {result.method} | `{flags.get(result.method, '')}` | {result.steps} | "
            f"{fmt(result.median_iteration_seconds, '.3f')} | {fmt(mean, '.3f')} | "
            + " | ".join(at_marks)
            + f" | {fmt(result.final_psnr, '.2f')} | {fmt(result.render_rays_per_second, ',.0f')} | {native_text} | "
            f"{load[0]:.1f}, {load[1]:.1f} |"
        )
    lines.append("")
    busiest = max((max(pair) for pair in loads.values()), default=0.0)
    if busiest > (os.cpu_count() or 1):
        lines += [
            f"Other work shared the machine during this run (load average up to {busiest:.1f} on {os.cpu_count()} "
            "cores): absolute times are inflated; compare the methods within the run.",
            "",
        ]
    by_name = {r.method: r for r in results}
    if ours in by_name:
        lines += ["## Targets of issue #2", ""]
        mine = by_name[ours]
        if baseline in by_name:
            base = by_name[baseline]
            speedup = base.median_iteration_seconds / mine.median_iteration_seconds
            verdict = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
            lines.append(
                f"- Iteration speed: {ours} {mine.median_iteration_seconds:.3f} s vs {baseline} "
                f"{base.median_iteration_seconds:.3f} s per iteration = {speedup:.1f}x faster "
                f"(target >= {SPEEDUP_TARGET:.0f}x): **{verdict}**."
            )
            wins = []
            for mark in marks:
                a, b = first_eval_after(mine, mark), first_eval_after(base, mark)
                if a is not None and b is not None:
                    wins.append((mark, a.psnr, b.psnr))
            if wins:
                higher = sum(a > b for _, a, b in wins)
                detail = ", ".join(f"{m:.0f} s: {a:.2f} vs {b:.2f}" for m, a, b in wins)
                verdict = "met" if higher == len(wins) else "NOT met"
                lines.append(
                    f"- PSNR at equal wall-clock ({ours} vs {baseline}, dB): {detail}; higher at {higher} of "
                    f"{len(wins)} marks: **{verdict}**."
                )
        rays = mine.render_rays_per_second
        verdict = "met" if rays >= RENDER_TARGET else "NOT met"
        lines.append(
            f"- Render speed: {ours} `get_outputs_for_camera` {rays:,.0f} rays/s "
            f"(target >= {RENDER_TARGET:,.0f}): **{verdict}**."
        )
        if baseline in by_name:
            lines.append(f"- For reference, {baseline} renders {by_name[baseline].render_rays_per_second:,.0f} rays/s.")
        lines.append("")
    if plot_name:
        lines += [f"![PSNR against training wall-clock and iterations]({plot_name})", ""]
    return "\n".join(lines)


def plot_psnr(results: Sequence[MethodResult], path: Path) -> None:
    """PSNR against training wall-clock (left) and against iterations (right), one line per method."""
    plt = pyplot()
    figure, (by_time, by_step) = plt.subplots(1, 2, figsize=(10, 4))
    for result in results:
        seconds = [p.train_seconds for p in result.evals]
        steps = [p.step for p in result.evals]
        psnrs = [p.psnr for p in result.evals]
        label = f"{result.method} ({result.median_iteration_seconds:.2f} s/it)"
        by_time.plot(seconds, psnrs, marker="o", label=label)
        by_step.plot(steps, psnrs, marker="o", label=result.method)
    by_time.set_xlabel("training wall-clock (s, evaluation excluded)")
    by_step.set_xlabel("iterations (1024 rays each)")
    by_step.set_xscale("symlog", linthresh=10)
    for axis in (by_time, by_step):
        axis.set_ylabel("held-out PSNR (dB)")
        axis.grid(alpha=0.3)
    by_time.legend()
    figure.suptitle("PSNR on held-out views, same data, same rays per batch")
    figure.tight_layout()
    save_figure(path, figure, dpi=110)


def results_json(results: Sequence[MethodResult], **extra) -> str:
    """Every measured number, for re-plotting and for the tests."""
    payload = dict(extra)
    payload["methods"] = [
        {
            "method": r.method,
            "steps": r.steps,
            "train_seconds": r.train_seconds,
            "median_iteration_seconds": r.median_iteration_seconds,
            "iteration_seconds": r.iteration_seconds,
            "evals": [dataclasses.asdict(p) for p in r.evals],
            "native_eval": r.native_eval,
            "image_size": list(r.image_size),
        }
        for r in results
    ]
    return json.dumps(payload, indent=1, default=str)
