"""Inpainting benchmark (issue #4, occlusion): how well the dictionary fills pixels hidden in training.

Each held-out scene is trained from ``--views`` views with ``nid-scene --occlusion F`` (a random occluder
hides about F of each training image's object pixels, which are left out of the loss), once solved
against a dictionary (the few-view benchmark's ``nid`` run: solve, then refine) and once from scratch,
with the same budget. Then every training view is rendered and scored against its full, unoccluded image:

- **hidden**: PSNR over the object pixels that were hidden (what the field had to inpaint);
- **visible**: PSNR over the object pixels that were seen;
- **test**: PSNR and SSIM over all test views (as in the few-view benchmark), and the mesh's Chamfer distance.

    python scripts/benchmark_inpainting.py --collection vases=data/fewview/vases:outputs/fewview/dict_vases_k16.pt \\
        --held-out 5 --views 10 --occlusion 0.3 --resume

Writes a markdown page, a JSON of every run and a figure of one view (full image, occluded training image,
both renders).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
from tqdm import tqdm

from nid_nerf.benchmarks.fewview import (
    Collection,
    Run,
    add_output_arguments,
    add_run_arguments,
    load_done,
    parse_run_arguments,
    save_runs,
    single_run_settings,
    train_run,
)
from nid_nerf.benchmarks.harness import composite_rgb
from nid_nerf.benchmarks.report import finite_mean, pyplot, torch_line
from nid_nerf.dataparsers.hidden_regions import hidden_mask
from nid_nerf.io import save_figure, save_npz, write_text

METHODS = ("nid", "scratch")


def masked_psnr(prediction: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, images in [0, 1]) over the pixels where ``mask`` is True; NaN on an empty mask."""
    if not mask.any():
        return math.nan
    mse = float(((prediction[mask] - target[mask]) ** 2).mean())
    return -10.0 * math.log10(max(mse, 1e-10))


def inpainting_scores(pipeline, keep_views: Optional[List[int]] = None) -> Dict:
    """Render every training view; PSNR of the hidden and of the visible object pixels against the full image.

    For the views in ``keep_views`` the result also holds ``views[i]``: the full image (``target``), what training
    saw (``occluded``: the occluder in grey) and the ``render``.
    """
    datamanager = pipeline.datamanager
    outputs, dataset = datamanager.train_dataparser_outputs, datamanager.train_dataset
    hidden_psnr, visible_psnr, hidden_share, views = [], [], [], {}
    pipeline.eval()
    try:
        for i in range(len(dataset)):
            image = dataset.get_image_float32(i)
            target = composite_rgb(image).numpy()
            obj = image[..., 3].numpy() > 0.5 if image.shape[-1] == 4 else np.ones(target.shape[:2], bool)
            occluder = hidden_mask(outputs, i)
            hidden = occluder & obj
            camera = dataset.cameras[i: i + 1].to(pipeline.device)
            with torch.no_grad():
                rgb = pipeline.model.get_outputs_for_camera(camera)["rgb"].clamp(0, 1).cpu().numpy()
            hidden_psnr.append(masked_psnr(rgb, target, hidden))
            visible_psnr.append(masked_psnr(rgb, target, obj & ~hidden))
            hidden_share.append(float(hidden.sum() / max(1, obj.sum())))
            if keep_views is not None and i in keep_views:
                views[i] = {"target": target, "occluded": np.where(occluder[..., None], 0.5, target), "render": rgb}
    finally:
        pipeline.train()
    result = {"hidden_psnr": float(np.nanmean(hidden_psnr)), "visible_psnr": float(np.nanmean(visible_psnr)),
              "hidden_share": float(np.mean(hidden_share))}
    return result | ({"views": views} if views else {})


def markdown(runs: List[Run], args, command: str) -> str:
    """The benchmark page: one table per collection, and the per-scene hidden-region gain."""
    lines = [
        "# Inpainting benchmark: occluded training views",
        "",
        f"Command: `{command}`",
        "",
        torch_line(),
        f"- {args.views} training views per scene, `--occlusion {args.occlusion:g}` ({args.occlusion_shape}); "
        f"{args.steps} steps, {args.rays} rays (nid: {args.solve_steps} solve with a {args.solve_gate} gate, "
        "then refine)",
        "- hidden / visible: PSNR of the training views' object pixels that were hidden / seen, against the full "
        "image; test: all test views; Chamfer of the 96^3 mesh",
    ]
    for name in sorted({r.collection for r in runs}):
        lines += ["", "| collection | method | scenes | hidden share | hidden PSNR | visible PSNR | test PSNR | "
                  "test SSIM | Chamfer |", "|---|---|---|---|---|---|---|---|---|"]
        for method in METHODS:
            rs = [r for r in runs if r.collection == name and r.method == method]
            if not rs:
                continue
            lines.append(
                f"| {name} | {method} | {len(rs)} | {finite_mean(r.extra['hidden_share'] for r in rs):.2f} | "
                f"{finite_mean(r.extra['hidden_psnr'] for r in rs):.2f} | "
                f"{finite_mean(r.extra['visible_psnr'] for r in rs):.2f} | "
                f"{finite_mean(r.scores['final'].psnr for r in rs):.2f} | "
                f"{finite_mean(r.scores['final'].ssim for r in rs):.3f} | "
                f"{finite_mean(r.scores['final'].chamfer for r in rs):.4f} |"
            )
        per_scene = []
        for scene in sorted({r.scene for r in runs if r.collection == name}):
            by = {r.method: r for r in runs if r.collection == name and r.scene == scene}
            if set(METHODS) <= set(by):
                per_scene.append(f"{by['nid'].extra['hidden_psnr'] - by['scratch'].extra['hidden_psnr']:+.2f}")
        if per_scene:
            lines += ["", f"{name}: hidden-region PSNR, nid - scratch, per scene: {', '.join(per_scene)} dB"]
    return "\n".join(lines) + "\n"


def figure(example: Dict, path: Path) -> None:
    """One training view: the full image, what training saw, and each method's render."""
    plt = pyplot()
    panels = [("full training image", example["target"]), ("what training saw", example["occluded"])]
    panels += [(f"{m} render", example[m]) for m in METHODS if m in example]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(np.clip(image, 0, 1))
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.suptitle(example["title"], fontsize=9)
    fig.tight_layout()
    save_figure(path, fig, dpi=110)


def load_example(path: Path) -> Dict:
    """The figure's arrays saved by an earlier invocation (``--resume``)."""
    if not path.is_file():
        return {}
    with np.load(path) as saved:
        return {k: (str(v) if v.dtype.kind == "U" else v) for k, v in saved.items()}


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_inpainting.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", action="append", required=True, help="NAME=FOLDER:DICTIONARY (repeat)")
    parser.add_argument("--held-out", type=int, default=5, help="last N scenes of each collection")
    parser.add_argument("--views", type=int, default=10)
    parser.add_argument("--occlusion", type=float, default=0.3)
    parser.add_argument("--occlusion-shape", choices=["rectangle", "blobs"], default="rectangle")
    add_run_arguments(parser, steps=150, solve_steps=50, rays=512, threads=1)
    add_output_arguments(parser, "inpainting_bench", "inpainting_benchmark.md", figure="inpainting_example.png")
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark (``scripts/benchmark_inpainting.py``)."""
    args, command = parse_run_arguments(build_parser(), argv, "benchmark_inpainting.py")
    collections = [Collection.parse(text) for text in args.collection]
    json_path = args.work_dir / "inpainting.json"
    done = load_done(json_path) if args.resume else {}
    run_args = single_run_settings(args, mesh_resolution=96)
    overrides = {"pipeline.datamanager.dataparser.occlusion": args.occlusion,
                 "pipeline.datamanager.dataparser.occlusion_shape": args.occlusion_shape}
    plan = [(c, scene, m) for c in collections for scene in c.scenes()[-args.held_out:] for m in METHODS]
    runs: List[Run] = []
    example_path = args.work_dir / "example.npz"
    example: Dict = load_example(example_path) if args.resume else {}
    for collection, scene, method in tqdm(plan, desc="inpainting runs", unit="run"):
        run = Run(collection.name, scene, args.views, method)
        first = collection is collections[0] and scene == collections[0].scenes()[-args.held_out]
        if run.key in done and not (first and method not in example):
            runs.append(done[run.key])
            continue

        def after(pipeline, first=first, method=method, scene=scene):
            scores = inpainting_scores(pipeline, keep_views=[0] if first else None)
            views = scores.pop("views", {})
            if first:
                example.update(target=views[0]["target"], occluded=views[0]["occluded"],
                               title=f"{scene}, training view 0, --occlusion {args.occlusion:g}")
                example[method] = views[0]["render"]
                save_npz(example_path, **example)
            return scores

        runs.append(train_run(run, collection.root / scene, run_args, collection.dictionary, args.work_dir / "runs",
                              extra_overrides=overrides, after=after))
        tqdm.write(f"{run.key}: hidden {run.extra['hidden_psnr']:.2f} dB, visible {run.extra['visible_psnr']:.2f} dB, "
                   f"test {run.scores['final'].psnr:.2f} dB")
        save_runs(json_path, command, runs, done)
    write_text(args.output, markdown(runs, args, command))
    if {"target", *METHODS} <= set(example):
        figure(example, args.figure)
    print(f"inpainting -> {args.output}")

