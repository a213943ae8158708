"""Speed benchmark of issue #2: our field against nerfacto-torch on the same data, in one run, on CPU.

Each method trains through its own `ns-train` config (1024 rays per batch for all, CPU, no viewer,
nerfacto with `--pipeline.model.implementation torch`, LPIPS patched out inside the harness) for the
same wall-clock budget; see nid_nerf/benchmarks/harness.py for exactly what is timed. Reported: seconds
per iteration (median and mean), held-out PSNR against training wall-clock (table and figure), the
rays/s of `model.get_outputs_for_camera`, and whether the method's own eval path (`ns-eval`'s) runs.

    nid-render-collection --family vases --count 1 --output data/bench
    python scripts/benchmark_speed.py --data data/bench/vases_0000 --seconds 300 --output docs/speed_benchmark.md
    python scripts/benchmark_speed.py --data DIR --seconds 20 --max-steps 5 --output /tmp/smoke.md   # smoke test
"""

from __future__ import annotations

import argparse
import ast
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

from nid_nerf.benchmarks.harness import Budget, MethodResult, run_method
from nid_nerf.benchmarks.method_config import default_dataparser, make_trainer_config, override_flags
from nid_nerf.benchmarks.report import command_line, eval_marks, markdown_report, plot_psnr, results_json
from nid_nerf.errors import NIDInputError
from nid_nerf.io import write_text

DEFAULT_OVERRIDES: dict[str, dict[str, Any]] = {
    # tiny-cuda-nn needs a GPU; nerfstudio's own recommendation for RGBA objects: learn alpha on random
    # backgrounds (as nid-field does) instead of painting the background into the field.
    "nerfacto": {"pipeline.model.implementation": "torch", "pipeline.model.background_color": "random"},
}


def parse_set(items: list[str]) -> dict[str, dict[str, Any]]:
    """`METHOD:dotted.path=value` items -> {method: {path: value}}."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        try:
            method, assignment = item.split(":", 1)
            path, text = assignment.split("=", 1)
        except ValueError:
            raise NIDInputError(
                f"--set '{item}' is not METHOD:dotted.path=value; e.g. nerfacto:pipeline.model.proposal_update_every=1"
            ) from None
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        overrides.setdefault(method, {})[path] = value
    return overrides


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_speed.py``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="scene folder (transforms.json or Blender format)")
    parser.add_argument("--methods", nargs="+", default=["nid-field", "nerfacto"], help="ns-train method names")
    parser.add_argument("--baseline", default="nerfacto", help="method the first one is compared against")
    parser.add_argument("--seconds", type=float, default=300.0, help="training wall-clock budget per method")
    parser.add_argument("--max-steps", type=int, default=None, help="also stop after this many iterations")
    parser.add_argument("--eval-every", type=float, default=None, help="seconds of training between evaluations "
                        "(default: a fifth of --seconds)")
    parser.add_argument("--eval-images", type=int, default=3, help="held-out images scored at every evaluation")
    parser.add_argument("--rays", type=int, default=1024, help="training rays per batch, every method")
    parser.add_argument("--dataparser", default=None, help="dataparser for every method (default: nid-scene)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="METHOD:PATH=VALUE",
                        help="extra config override for one method, "
                             "e.g. nerfacto:pipeline.model.num_nerf_samples_per_ray=32")
    parser.add_argument("--output", type=Path, default=Path("docs/speed_benchmark.md"))
    parser.add_argument("--plot", type=Path, default=None,
                        help="figure (default: speed_psnr_vs_time.png next to --output)")
    parser.add_argument("--keep-checkpoints", type=Path, default=None,
                        help="save each method's final checkpoint and config.yml here (for ns-viewer / ns-eval)")
    parser.add_argument("--no-native-eval", action="store_true", help="skip the method's own eval-image check")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (``scripts/benchmark_speed.py``); returns the exit status."""
    args = build_parser().parse_args(argv)

    if not args.data.is_dir():
        raise NIDInputError(f"data directory '{args.data}' does not exist; render one with "
                            "`nid-render-collection --family vases --count 1 --output data/bench`")
    if args.threads:
        torch.set_num_threads(args.threads)
    command = command_line("benchmark_speed.py", argv)
    plot = args.plot or args.output.with_name("speed_psnr_vs_time.png")
    eval_every = args.eval_every or args.seconds / 5.0
    budget = Budget(seconds=args.seconds, max_steps=args.max_steps, eval_every_seconds=eval_every,
                    num_eval_images=args.eval_images)
    dataparser = args.dataparser or default_dataparser(args.data)
    overrides = {m: dict(DEFAULT_OVERRIDES.get(m, {})) for m in args.methods}
    for method, extra in parse_set(args.overrides).items():
        overrides.setdefault(method, {}).update(extra)

    results: list[MethodResult] = []
    flags: dict[str, str] = {}
    loads: dict[str, tuple[float, float]] = {}
    scratch = Path(tempfile.mkdtemp(prefix="nid-speed-"))
    try:
        for method in args.methods:
            output_dir = (args.keep_checkpoints or scratch) / method
            config = make_trainer_config(method, args.data, output_dir, rays_per_batch=args.rays,
                                         dataparser=dataparser, seed=args.seed, overrides=overrides.get(method))
            flags[method] = (
                f"--machine.device-type cpu --pipeline.datamanager.train-num-rays-per-batch {args.rays} "
                f"{override_flags(overrides.get(method, {}))} {dataparser}"
            ).replace("  ", " ")
            print(f"== {method}: {flags[method]}", flush=True)
            load_start = os.getloadavg()[0]
            result = run_method(config, budget, check_native_eval=not args.no_native_eval,
                                keep_checkpoint=args.keep_checkpoints is not None)
            loads[method] = (load_start, os.getloadavg()[0])
            results.append(result)
            print(f"   {result.steps} iterations, {result.median_iteration_seconds:.3f} s/it (median), "
                  f"final PSNR {result.final_psnr:.2f} dB, render {result.render_rays_per_second:,.0f} rays/s"
                  + (f", checkpoint {result.config_path}" if result.config_path else ""), flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    first = results[0]
    height, width = first.image_size
    data_summary = (f"`{args.data}` via the `{dataparser}` dataparser: {first.num_train_images} training and "
                    f"{first.num_eval_images} held-out images of {width}x{height} px; "
                    f"{min(args.eval_images, first.num_eval_images)} held-out images scored at every evaluation")
    budget_summary = (f"{args.seconds:.0f} s of training per method" + (f" or {args.max_steps} iterations"
                      if args.max_steps else "") + f", {args.rays} rays per batch, evaluation every {eval_every:.0f} s")
    marks = eval_marks(eval_every, args.seconds)
    write_text(args.output.with_suffix(".json"), results_json(results, command=command, budget=budget_summary,
                                                                data=data_summary, flags=flags))
    plot_psnr(results, plot)
    text = markdown_report(results, command=command, data_summary=data_summary, budget_summary=budget_summary,
                           marks=marks, flags=flags, loads=loads, plot_name=os.path.relpath(plot, args.output.parent),
                           ours=args.methods[0], baseline=args.baseline)
    write_text(args.output, text)
    print(text)
    print(f"wrote {args.output}, {args.output.with_suffix('.json')} and {plot}")
    return 0

