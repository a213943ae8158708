"""Time and peak memory of mesh export at 256^3 and 512^3, on an analytic SDF and on a trained nid-field checkpoint.

Each measurement runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) is its own. The
analytic SDF (a sphere and a torus) costs almost nothing to evaluate, so it measures the export machinery (grid,
narrow band, marching cubes, memory); the checkpoint measures the real network cost.

    python scripts/benchmark_mesh_export.py                                   # analytic only
    python scripts/benchmark_mesh_export.py --load-config outputs/.../config.yml --output docs/mesh_export_benchmark.md

Prints a markdown table (and writes it with --output). Targets (issue #6): 256^3 in <= 30 s, 512^3 under 8 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from nid_nerf.io import write_text


def _rss_mib() -> float:
    """This process's resident memory now (VmRSS), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _analytic_sdf():
    """A sphere and a torus: SDF, colour and box; almost free to evaluate, so only the export machinery is timed."""
    import torch

    def sdf(p):
        sphere = p.norm(dim=-1) - 0.5
        q = p - torch.tensor([0.0, 0.0, -0.45])
        ring = torch.stack([q[:, :2].norm(dim=-1) - 0.6, q[:, 2]], dim=-1).norm(dim=-1) - 0.12
        return torch.minimum(sphere, ring)[:, None]

    def color(p, d):
        return (p.clamp(-1, 1) + 1.0) / 2.0

    return sdf, color, [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]


def child(spec: Dict) -> Dict:
    """One measurement, in this (fresh) process."""
    import torch

    from nid_nerf.io import write_mesh
    from nid_nerf.mesh.extract import extract_mesh

    torch.set_num_threads(spec["threads"])
    t0 = time.perf_counter()
    if spec["source"] == "analytic":
        sdf_fn, color_fn, bbox = _analytic_sdf()
        device = "cpu"
    else:
        from nid_nerf.mesh.load import load_sdf_pipeline

        _, pipeline, _ = load_sdf_pipeline(Path(spec["config"]))
        field = pipeline.model.field
        sdf_fn, color_fn = field.sdf, field.color
        bbox = pipeline.model.scene_box.aabb.cpu()
        device = next(pipeline.model.parameters()).device
    load_s = time.perf_counter() - t0
    rss_before = _rss_mib()
    stats: Dict = {}
    t1 = time.perf_counter()
    mesh = extract_mesh(
        sdf_fn,
        bbox,
        resolution=spec["resolution"],
        color_fn=color_fn if spec["colors"] else None,
        dense=spec["mode"] == "dense",
        device=device,
        progress=False,
        stats=stats,
    )
    with tempfile.TemporaryDirectory() as tmp:
        write_mesh(Path(tmp) / "mesh.ply", mesh)
    export_s = time.perf_counter() - t1
    return {
        **spec,
        "load_s": load_s,
        "export_s": export_s,
        "vertices": len(mesh.vertices),
        "faces": len(mesh.faces),
        "evaluated": stats.get("evaluated"),
        "total": stats.get("total"),
        "rss_before_mib": rss_before,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }


def run_child(spec: Dict) -> Dict:
    """:func:`child` in a fresh Python process (its peak RSS is then the measurement's own)."""
    cmd = [sys.executable, "-m", "nid_nerf.benchmarks.mesh_export", "--child", json.dumps(spec)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(rows: List[Dict]) -> str:
    """The measurements as a markdown table."""
    head = (
        "| SDF | grid | mode | colours | export s | load s | SDF evals | vertices | peak RSS MiB | RSS before MiB |\n"
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    for r in rows:
        evals = f"{r['evaluated'] / 1e6:.2f} M ({100.0 * r['evaluated'] / r['total']:.0f}%)"
        lines.append(
            f"| {r['label']} | {r['resolution']}^3 | {r['mode']} | {'yes' if r['colors'] else 'no'} | "
            f"{r['export_s']:.1f} | {r['load_s']:.1f} | {evals} | {r['vertices']:,} | {r['peak_rss_mib']:.0f} | "
            f"{r['rss_before_mib']:.0f} |"
        )
    return head + "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``scripts/benchmark_mesh_export.py``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--load-config", type=Path, default=None, help="a trained nid-field config.yml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dense", action="store_true", help="also time dense evaluation (every grid sample)")
    parser.add_argument("--dense-up-to", type=int, default=256, help="largest resolution timed densely (slow)")
    parser.add_argument("--output", type=Path, default=None, help="write the markdown here too")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    return parser


def measurement_specs(args) -> List[Dict]:
    """One spec per (source, resolution, mode): the analytic SDF, then the checkpoint when given."""

    def modes(resolution: int) -> List[str]:
        return ["band", "dense"] if args.dense and resolution <= args.dense_up_to else ["band"]

    specs = []
    for resolution in args.resolutions:
        for mode in modes(resolution):
            specs.append(dict(source="analytic", label="analytic sphere+torus", resolution=resolution, mode=mode,
                              colors=True, threads=args.threads))
    if args.load_config is not None:
        for resolution in args.resolutions:
            for mode in modes(resolution):
                specs.append(dict(source="checkpoint", label="nid-field checkpoint", config=str(args.load_config),
                                  resolution=resolution, mode=mode, colors=True, threads=args.threads))
    return specs


def main(argv: Optional[List[str]] = None) -> str:
    """Run the benchmark (``scripts/benchmark_mesh_export.py``); returns the markdown."""
    from nid_nerf.benchmarks.report import command_line  # not in the measuring child: it imports nerfstudio

    args = build_parser().parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return ""
    rows = []
    for spec in measurement_specs(args):
        print(f"running {spec['label']} {spec['resolution']}^3 {spec['mode']} ...", file=sys.stderr, flush=True)
        rows.append(run_child(spec))
    load = os.getloadavg()
    md = (
        "# Mesh export benchmark\n\n"
        f"Command: `{command_line('benchmark_mesh_export.py', argv)}`\n\n"
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, torch threads = "
        f"{args.threads}, no GPU used; load average during the run (1/5/15 min, other jobs share the CPU): "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}.\n\n"
        + (f"Checkpoint: `{args.load_config}`.\n\n" if args.load_config is not None else "")
        + table(rows)
        + "\n*export s*: grid evaluation + marching cubes + vertex colours + PLY write, after the model is loaded "
        "(*load s*: config, dataparser and checkpoint). *SDF evals*: network evaluations (share of the grid's "
        "samples). *peak RSS*: `ru_maxrss` of the measuring process (includes Python, torch and the model; *RSS "
        "before* is the resident size just before the export started). Targets: 256^3 <= 30 s, 512^3 < 8 GB.\n"
    )
    print(md)
    if args.output is not None:
        write_text(args.output, md)
    return md


if __name__ == "__main__":
    main()


if __name__ == "__main__":
    main()
