"""The main job: pretrain a dictionary on a procedural collection, solve a held-out scene from 3 views.

Every step is the command a user would type (printed before it runs), so the demo doubles as a tutorial:

1. ``nid-render-collection --family vases``: a procedural collection (no downloads);
2. ``ns-train nid-dict``: pretrain the dictionary on all scenes but the last (held out);
3. ``ns-train nid-field --pipeline.model.dictionary-path ... nid-scene --num-train-views 3``: solve the held-out
   scene's code against the dictionary, then refine;
4. the same field from scratch on the same 3 views, for comparison;
5. ``ns-eval`` on both, ``nid-export-mesh`` + ``nid-eval-mesh`` against the scene's ground-truth mesh;
6. a results page (``results.md``) with a figure (``results.png``: the 3 training views, then test views:
   ground truth, NID, scratch).

    python scripts/fewview_demo.py                  # defaults: about 10 minutes on 2 CPU cores
    python scripts/fewview_demo.py --dict-steps 3000 --count 40   # a better dictionary, longer
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

from nid_nerf.benchmarks.report import REPO_ROOT as REPO
from nid_nerf.io import save_figure, write_text

BIN = Path(sys.executable).parent


def run(cmd: List[str], log: Path) -> float:
    """Run one command, its output to ``log``; one-line failure naming the log."""
    print("$ " + " ".join(shlex.quote(str(c)) for c in cmd), flush=True)
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, cwd=REPO).returncode
    seconds = time.perf_counter() - start
    if code != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        sys.exit(f"demo step failed (exit {code}): {tail[0]}; full log: {log}")
    print(f"  done in {seconds:.0f} s (log: {log})", flush=True)
    return seconds


def train_flags(steps: int, out: Path, name: str) -> List[str]:
    """``ns-train`` flags of every demo run: a fixed folder, one checkpoint at the end, no viewer."""
    return ["--output-dir", out, "--experiment-name", name, "--timestamp", "demo", "--max-num-iterations", str(steps),
            "--steps-per-save", str(steps), "--steps-per-eval-all-images", str(10 * steps), "--vis", "tensorboard",
            "--viewer.quit-on-train-completion", "True", "--logging.steps-per-log", "50"]


def evaluate(run_dir: Path, scene: Path, logs: Path, tag: str, mesh_resolution: int) -> Dict[str, float]:
    """``ns-eval``, ``nid-export-mesh`` and ``nid-eval-mesh`` on one finished run; its test and mesh scores."""
    config = run_dir / "config.yml"
    run([BIN / "ns-eval", "--load-config", config, "--output-path", run_dir / "eval.json",
         "--render-output-path", run_dir / "eval_renders"], logs / f"{tag}_eval.log")
    metrics = json.loads((run_dir / "eval.json").read_text())["results"]
    mesh = run_dir / "mesh.ply"
    run([BIN / "nid-export-mesh", "--load-config", config, "--output", mesh, "--resolution", str(mesh_resolution)],
        logs / f"{tag}_mesh.log")
    run([BIN / "nid-eval-mesh", "--pred", mesh, "--gt", scene / "gt_mesh.ply",
         "--output", run_dir / "mesh_metrics.json"],
        logs / f"{tag}_mesh_eval.log")
    mesh_metrics = json.loads((run_dir / "mesh_metrics.json").read_text())
    return {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "chamfer": mesh_metrics["chamfer_l1"],
            "f_score_1pct": mesh_metrics["f_score_1pct"], "mesh": str(mesh)}


def figure(scene: Path, runs: Dict[str, Path], train_views: List[str], output: Path, num_test: int = 4) -> None:
    """Training views on top; then per test view: ground truth and each method's render (from ns-eval)."""
    import imageio.v2 as imageio
    import numpy as np

    from nid_nerf.benchmarks.report import pyplot

    plt = pyplot()

    def on_white(image: np.ndarray) -> np.ndarray:
        image = image.astype(np.float32) / 255.0
        if image.shape[-1] == 4:
            image = image[..., :3] * image[..., 3:] + (1.0 - image[..., 3:])
        return image

    renders = {name: sorted((d / "eval_renders").glob("*img*")) for name, d in runs.items()}
    count = min([num_test] + [len(v) for v in renders.values()])
    rows = 1 + len(runs) + 1
    cols = max(count, len(train_views))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for j, name in enumerate(train_views):
        axes[0, j].imshow(on_white(imageio.imread(name)))
        axes[0, j].set_title(f"train view {j + 1}", fontsize=8)
    for j in range(count):
        for i, (name, files) in enumerate(renders.items()):
            both = on_white(imageio.imread(files[j]))  # ns-eval's "img": ground truth | prediction
            half = both.shape[1] // 2
            if i == 0:
                axes[1, j].imshow(both[:, :half])
                axes[1, j].set_title(f"test view {j + 1}: truth", fontsize=8)
            axes[2 + i, j].imshow(both[:, half:])
            axes[2 + i, j].set_title(name, fontsize=8)
    fig.tight_layout()
    save_figure(output, fig, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/fewview_demo.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO / "data" / "demo_collection")
    parser.add_argument("--output", type=Path, default=REPO / "outputs" / "demo")
    parser.add_argument("--family", default="vases")
    parser.add_argument("--count", type=int, default=12, help="scenes in the collection; the last is held out")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--dict-steps", type=int, default=600)
    parser.add_argument("--dense-warmup", type=int, default=150)
    parser.add_argument("--views", type=int, default=3, help="training views of the held-out scene")
    parser.add_argument("--steps", type=int, default=300, help="steps of the solve + refine run (and of scratch)")
    parser.add_argument("--solve-steps", type=int, default=100)
    parser.add_argument("--no-scratch", action="store_true", help="skip the from-scratch comparison")
    parser.add_argument("--mesh-resolution", type=int, default=128)
    return parser


def collection_scenes(args, logs: Path, timings: Dict[str, float]) -> List[str]:
    """The collection's scenes, rendered first with ``nid-render-collection`` when it has fewer than ``--count``."""
    collection = args.data
    scenes = sorted(p.name for p in collection.glob(f"{args.family}_*") if (p / "transforms.json").is_file())
    if len(scenes) < args.count:
        timings["render"] = run([BIN / "nid-render-collection", "--family", args.family, "--count", args.count,
                                 "--resolution", args.resolution, "--views-train", 50, "--views-test", 10, "--seed", 0,
                                 "--output", collection, "--quiet"], logs / "render.log")
        scenes = sorted(p.name for p in collection.glob(f"{args.family}_*") if (p / "transforms.json").is_file())
    return scenes


def train_runs(args, train_scenes: List[str], scene: Path, logs: Path, timings: Dict[str, float]):
    """``ns-train nid-dict`` on the training scenes, then nid-field solved against it and from scratch (each
    skipped when its outputs are already there); returns the dictionary and the run folders."""
    collection = args.data
    dict_run = args.output / "dictionary" / "nid-dict" / "demo"
    dictionary = dict_run / "dictionary.pt"
    if not dictionary.is_file():
        timings["pretrain"] = run([BIN / "ns-train", "nid-dict", "--data", collection,
                                   *train_flags(args.dict_steps, args.output, "dictionary"),
                                   "--pipeline.model.dense-warmup-steps", args.dense_warmup,
                                   "nid-collection", "--scenes", *train_scenes], logs / "pretrain.log")
    runs = {}
    for name, extra in (("NID", ["--pipeline.model.dictionary-path", dictionary,
                                 "--pipeline.model.solve-steps", args.solve_steps]), ("scratch", [])):
        if name == "scratch" and args.no_scratch:
            continue
        tag = name.lower()
        run_dir = args.output / tag / "nid-field" / "demo"
        if not (run_dir / "nerfstudio_models").is_dir():
            timings[f"train {name}"] = run([BIN / "ns-train", "nid-field", "--data", scene,
                                            *train_flags(args.steps, args.output, tag), *extra,
                                            "nid-scene", "--num-train-views", args.views], logs / f"{tag}.log")
        runs[name] = run_dir
    return dictionary, runs


def results_page(args, held_out: str, train_scenes: List[str], results: Dict, runs: Dict[str, Path],
                 dictionary: Path, timings: Dict[str, float], total: float) -> List[str]:
    """The lines of ``results.md``."""
    lines = [
        f"# Few-view demo: {held_out} from {args.views} views", "",
        f"Dictionary: `ns-train nid-dict` on {len(train_scenes)} procedural {args.family} ({args.dict_steps} steps); "
        f"the held-out scene {held_out} was solved from {args.views} views ({args.solve_steps} solve + "
        f"{args.steps - args.solve_steps} refine steps) and trained from scratch on the same views and budget.", "",
        "| method | test PSNR | SSIM | Chamfer | F@1% |", "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['chamfer']:.4f} | {r['f_score_1pct']:.3f} |")
    lines += ["", "![results](results.png)", "", "Timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
              + f"; total {total:.0f} s.", "", f"Dictionary: `{dictionary}`", ""]
    for name, r in results.items():
        lines.append(f"- {name}: config `{runs[name] / 'config.yml'}`, mesh `{r['mesh']}`")
    return lines


def main(argv: Optional[List[str]] = None) -> None:
    """Run the demo (``scripts/fewview_demo.py``)."""
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    logs = args.output / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    timings: Dict[str, float] = {}
    scenes = collection_scenes(args, logs, timings)
    train_scenes, held_out = scenes[: args.count - 1], scenes[args.count - 1]
    scene = args.data / held_out
    dictionary, runs = train_runs(args, train_scenes, scene, logs, timings)
    results = {name: evaluate(d, scene, logs, name.lower(), args.mesh_resolution) for name, d in runs.items()}

    # the training views nid-scene picks (the parser is deterministic), for the figure
    from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig

    outputs = NIDSceneDataParserConfig(data=scene, num_train_views=args.views).setup().get_dataparser_outputs("train")
    picked = [str(f) for f in outputs.image_filenames]
    figure(scene, runs, picked[: args.views], args.output / "results.png")

    total = time.perf_counter() - start
    lines = results_page(args, held_out, train_scenes, results, runs, dictionary, timings, total)
    page = args.output / "results.md"
    write_text(page, "\n".join(lines) + "\n")
    print("\n" + "\n".join(lines[:8 + len(results)]))
    print(f"\nresults page: {page}\nfigure:       {args.output / 'results.png'}\n"
          f"viewer:       ns-viewer --load-config {runs['NID'] / 'config.yml'}")

