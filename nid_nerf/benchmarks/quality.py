"""PSNR / SSIM of nid-field on held-out views after fixed step budgets.

Scenes: the built-in demo scene (procedural vase) and meshes from ../shared/data/meshes/classic, rendered
with nid-render-collection (50 train + 10 test views at 64 px by default). Every test view is scored with
the model's own eval path (the one ns-eval uses), on a white background. Each scene is one
:class:`~nid_nerf.benchmarks.harness.TrainRun`, trained up to each budget in turn and scored there.

    python scripts/benchmark_quality.py --budgets 250 1000 --output docs/quality.md
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import torch

from nid_nerf.benchmarks.harness import Stop, TrainRun, train
from nid_nerf.benchmarks.method_config import make_trainer_config
from nid_nerf.benchmarks.report import REPO_ROOT, command_line
from nid_nerf.io import write_text

CLASSIC = REPO_ROOT.parent / "shared" / "data" / "meshes" / "classic"
VIEWS = ["--views-train", "50", "--views-test", "10"]
"""the split every scene of this benchmark is rendered with (nid-render-collection flags)"""


def render_scenes(work: Path, classic: List[str], resolution: int) -> Dict[str, Path]:
    """Render (once) the demo vase and the classic meshes with ``nid-render-collection``; label -> scene folder."""
    render = Path(sys.executable).parent / "nid-render-collection"
    scenes = {}
    demo = work / "demo"
    if not (demo / "vases_0000" / "transforms.json").exists():
        subprocess.run([render, "--family", "vases", "--count", "1", "--seed", "0", "--resolution", str(resolution),
                        *VIEWS, "--output", demo, "--quiet"], check=True)
    scenes["demo vase (built-in)"] = demo / "vases_0000"
    if classic:
        if not CLASSIC.is_dir():
            print(f"skipping classic meshes: {CLASSIC} not found")
        else:
            meshes = work / "classic_meshes"
            meshes.mkdir(parents=True, exist_ok=True)
            for name in classic:
                target = meshes / f"{name}.obj"
                if not target.exists():
                    target.symlink_to(CLASSIC / f"{name}.obj")
            out = work / "classic"
            subprocess.run([render, "--meshes", meshes, "--resolution", str(resolution), *VIEWS,
                            "--output", out, "--quiet"], check=True)
            for name in classic:
                scenes[f"{name} (classic)"] = out / name
    return scenes


def evaluate_all(pipeline) -> Dict[str, float]:
    """Mean PSNR and SSIM over every test view, through the model's own image metrics (``ns-eval``'s)."""
    pipeline.eval()
    dataset = pipeline.datamanager.eval_dataset
    psnrs, ssims = [], []
    with torch.no_grad():
        for i in range(len(dataset)):
            outputs = pipeline.model.get_outputs_for_camera(dataset.cameras[i : i + 1].to(pipeline.device))
            metrics, _ = pipeline.model.get_image_metrics_and_images(outputs, dataset[i])
            psnrs.append(metrics["psnr"])
            ssims.append(metrics["ssim"])
    pipeline.train()
    return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(ssims) / len(ssims), "views": len(psnrs)}


def report(rows: List[tuple], command: str, resolution: int) -> str:
    """The quality page: one row per (scene, budget)."""
    lines = [
        "| scene | steps | PSNR (dB) | SSIM | test views | training s |",
        "|---|---:|---:|---:|---:|---:|",
        *[f"| {r[0]} | {r[1]} | {r[2]:.2f} | {r[3]:.3f} | {r[4]} | {r[5]:.0f} |" for r in rows],
    ]
    return (f"# nid-field quality after fixed step budgets\n\nCommand: `{command}`  \nDate: "
            f"{time.strftime('%Y-%m-%d')}; {resolution} px, 50 train / 10 test views, 1024 rays per step, "
            "white background, all test views. Training seconds were measured on a 2-core machine shared with "
            "other jobs, so they are inflated.\n\n" + "\n".join(lines) + "\n")


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_quality.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budgets", type=int, nargs="+", default=[250, 1000])
    parser.add_argument("--classic", nargs="*", default=["spot", "bunny"])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--work", type=Path, default=REPO_ROOT / "data" / "quality")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "quality.md")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark (``scripts/benchmark_quality.py``); the page is rewritten after every budget."""
    args = build_parser().parse_args(argv)
    names = {"bunny": "stanford-bunny"}
    scenes = render_scenes(args.work, [names.get(n, n) for n in args.classic], args.resolution)
    rows: List[tuple] = []
    command = command_line("benchmark_quality.py", argv)
    for label, scene in scenes.items():
        config = make_trainer_config("nid-field", scene, args.work / "runs", max_num_iterations=max(args.budgets))
        with TrainRun(config) as run:
            for budget in sorted(args.budgets):
                train(run, Stop(steps=budget), progress=f"{label} -> {budget} steps")
                metrics = evaluate_all(run.pipeline)
                rows.append((label, budget, metrics["psnr"], metrics["ssim"], metrics["views"], run.train_seconds))
                print(f"{label:28s} {budget:5d} steps  PSNR {metrics['psnr']:.2f}  SSIM {metrics['ssim']:.3f}  "
                      f"({run.train_seconds:.0f} s training)", flush=True)
                write_text(args.output, report(rows, command, args.resolution))  # partial results survive
    print(report(rows, command, args.resolution))
