"""Code-search settings benchmark: which code each way of ranking the candidates picks, what it costs, and how the
pick renders the test views.

For each held-out object of a collection (from ``--views`` training views), every candidate code of
``nid_nerf.model_components.code_search`` (the mean code, the encoder's prediction, the pretraining codes) is
rendered on a fixed sample of training rays under each setting ``GRID/RAYS`` (the cached SDF grid's resolution per
candidate, ``full`` for the model's own, and the ray count). Reported per setting: the pick, its rank under the
first setting (the reference), the search seconds and the pick's PSNR on every test view (ns-eval's path).

    python scripts/benchmark_code_search.py \\
        --collection ../shared/data/collections/shapenet_views/chair \\
        --dictionary outputs/shapenet/dict/chair/nid-dict/k16_12k/dictionary.pt --objects 5 --views 3
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from nid_nerf.benchmarks.fewview import Collection, final_score
from nid_nerf.benchmarks.harness import TrainRun
from nid_nerf.benchmarks.method_config import make_trainer_config
from nid_nerf.benchmarks.report import command_line, finite_mean, fmt
from nid_nerf.errors import NIDInputError
from nid_nerf.io import write_text
from nid_nerf.model_components.code_search import candidate_codes, search_model_code

DEFAULT_SETTINGS = ("full/1024", "24/1024", "24/512", "16/512")


def parse_setting(text: str) -> Tuple[Optional[int], int]:
    """``GRID/RAYS`` (``full/1024``, ``24/512``) -> (grid resolution or None for the model's own, rays)."""
    try:
        grid, rays = text.split("/")
        return (None if grid == "full" else int(grid)), int(rays)
    except ValueError:
        raise NIDInputError(f"--settings {text!r}: write GRID/RAYS, e.g. full/1024 or 24/1024") from None


def rank_of(errors: Sequence[float], index: int) -> int:
    """Position of candidate ``index`` when ``errors`` are sorted ascending (0: the best)."""
    order = torch.as_tensor(list(errors), dtype=torch.float64).argsort()
    return int((order == index).nonzero()[0, 0])


def search_object(scene_dir: Path, dictionary: Path, views: int, settings: Sequence[str], work: Path,
                  seed: int) -> Dict[str, Any]:
    """Every setting's pick on one object, its seconds and the pick's test PSNR."""
    config = make_trainer_config("nid-field", scene_dir, work / scene_dir.name, rays_per_batch=512,
                                 dataparser="nid-scene", seed=seed, max_num_iterations=1,
                                 overrides={"pipeline.datamanager.dataparser.num_train_views": views,
                                            "pipeline.model.dictionary_path": dictionary,
                                            "pipeline.model.code_init": "mean"})
    with TrainRun(config) as trained:
        pipeline, model = trained.pipeline, trained.pipeline.model
        predicted = pipeline._encoder_code()
        names, candidates = candidate_codes(model.dictionary_codes, model.field.gate.top_k, model.code_mean,
                                            predicted)
        found: Dict[str, Tuple[int, float, List[float]]] = {}
        for setting in settings:
            grid, rays = parse_setting(setting)
            result = search_model_code(model, pipeline.datamanager, names, candidates, rays, grid)
            found[setting] = (names.index(result.name), result.seconds, [result.errors[n] for n in names])
        test_psnr = {}
        for index in sorted({pick for pick, _, _ in found.values()}):
            model.start_code(candidates[index])
            test_psnr[index] = final_score(pipeline, 0, 0.0, scene_dir, False, 32).psnr
        reference = found[settings[0]][0]
        return {setting: {"pick": names[pick], "seconds": seconds, "test_psnr": test_psnr[pick],
                          "reference_rank": rank_of(errors, reference), "candidates": len(names)}
                for setting, (pick, seconds, errors) in found.items()}


def markdown(results: Dict[str, Dict[str, Any]], settings: Sequence[str], command: str, views: int) -> str:
    lines = ["# Code search: grid resolution and ray count per candidate", "", f"Command: `{command}`", "",
             f"- {views} training views per object; the reference is the first setting ({settings[0]}); 'rank' is "
             "the reference's pick's rank under each setting (0: the same pick); seconds: the whole search, all "
             "candidates", "", "| object | " + " | ".join(settings) + " |", "|---|" + "---|" * len(settings)]
    for scene, row in results.items():
        lines.append(f"| {scene} | " + " | ".join(
            f"{row[s]['pick']}: {row[s]['test_psnr']:.2f} dB, rank {row[s]['reference_rank']}, "
            f"{row[s]['seconds']:.1f} s" for s in settings) + " |")
    lines.append("| mean | " + " | ".join(
        f"{fmt(finite_mean([r[s]['test_psnr'] for r in results.values()]), '.2f')} dB, "
        f"{sum(r[s]['reference_rank'] == 0 for r in results.values())}/{len(results)} same pick, "
        f"{fmt(finite_mean([r[s]['seconds'] for r in results.values()]), '.1f')} s" for s in settings) + " |")
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--collection", type=Path, required=True)
    parser.add_argument("--dictionary", type=Path, required=True)
    parser.add_argument("--held-out", type=int, default=20, help="the last N objects, left out of pretraining")
    parser.add_argument("--objects", type=int, default=5, help="the first N held-out objects")
    parser.add_argument("--views", type=int, default=3)
    parser.add_argument("--settings", nargs="+", default=list(DEFAULT_SETTINGS), help="GRID/RAYS, the first is "
                        "the reference")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--work-dir", type=Path, default=Path("outputs/code_search"))
    parser.add_argument("--output", type=Path, default=Path("docs/code_search.md"))
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Run the benchmark (``scripts/benchmark_code_search.py``)."""
    args = build_parser().parse_args(argv)
    for setting in args.settings:
        parse_setting(setting)
    torch.set_num_threads(args.threads)
    collection = Collection(name=args.collection.name, root=args.collection, dictionary=args.dictionary)
    scenes = collection.scenes()[-args.held_out:][: args.objects]
    results = {}
    for scene in scenes:
        results[scene] = search_object(args.collection / scene, args.dictionary, args.views, args.settings,
                                       args.work_dir / "runs", args.seed)
        print(f"{scene}: " + "; ".join(f"{s} {r['pick']} {r['test_psnr']:.2f} dB {r['seconds']:.1f} s"
                                       for s, r in results[scene].items()), flush=True)
    command = command_line("benchmark_code_search.py", argv)
    write_text(args.output.with_suffix(".json"), json.dumps({"command": command, "results": results}, indent=1))
    write_text(args.output, markdown(results, args.settings, command, args.views))
    print(f"wrote {args.output}")
