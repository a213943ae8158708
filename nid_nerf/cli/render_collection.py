"""``nid-render-collection`` / ``scripts/render_collection.py``: meshes or a shape family -> posed scenes.

    nid-render-collection --meshes DIR --output OUT \
        [--views-train 50 --views-test 10 --resolution 64 --seed 0 --workers N]
    nid-render-collection --family chairs --count 100 --output OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from nid_nerf.errors import NIDInputError, install_excepthook
from nid_nerf.synthetic.collection_renderer import RenderSettings, discover_mesh_jobs, family_jobs, render_collection
from nid_nerf.synthetic.raycast import Shading


def build_parser() -> argparse.ArgumentParser:
    from nid_nerf.synthetic.families import FAMILIES

    defaults = RenderSettings()
    parser = argparse.ArgumentParser(
        prog="nid-render-collection",
        description="Render every mesh in a folder (OBJ, PLY, GLB, STL), or members of a procedural shape family, "
        "into nerfstudio-format scenes: RGBA images, depth, normals, masks, transforms.json, gt_mesh.ply.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--meshes", type=Path, help="folder of meshes (optional colors.json: name -> [r, g, b])")
    source.add_argument("--family", choices=sorted(FAMILIES), help="procedural shape family (needs no files)")
    parser.add_argument("--count", type=int, default=10, help="members to make with --family (default 10)")
    parser.add_argument("--output", type=Path, required=True, help="collection folder; one subfolder per scene")
    parser.add_argument("--views-train", type=int, default=defaults.views_train)
    parser.add_argument("--views-test", type=int, default=defaults.views_test)
    parser.add_argument("--resolution", type=int, default=defaults.resolution, help="image width = height, pixels")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=0, help="parallel processes (default: one per CPU core)")
    parser.add_argument("--fov", type=float, default=defaults.fov_deg, help="field of view in degrees")
    parser.add_argument("--camera-distance", type=float, default=defaults.camera_distance)
    parser.add_argument("--up-axis", default=defaults.up_axis, choices=["x", "y", "z", "-x", "-y", "-z"],
                        help="axis of the mesh files that points up (default y, as in OBJ/glTF)")
    parser.add_argument("--max-faces", type=int, default=defaults.max_faces, help="larger meshes are 'huge'")
    parser.add_argument("--huge", choices=["decimate", "reject"], default=defaults.huge)
    parser.add_argument("--decimate-to", type=int, default=defaults.decimate_to)
    parser.add_argument("--ambient", type=float, default=Shading().ambient)
    parser.add_argument("--overwrite", action="store_true",
                        help="re-render scenes that already exist, and remove scenes rendered earlier into --output "
                        "that this run no longer lists (e.g. after a smaller --count)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def validate(args: argparse.Namespace) -> None:
    if args.resolution < 8:
        raise NIDInputError(f"--resolution must be at least 8 pixels (got {args.resolution})")
    if args.views_train < 0 or args.views_test < 0 or args.views_train + args.views_test == 0:
        raise NIDInputError("--views-train and --views-test must be >= 0 and not both 0")
    if not 1.0 < args.fov < 170.0:
        raise NIDInputError(f"--fov must be between 1 and 170 degrees (got {args.fov})")
    if args.camera_distance <= RenderSettings().object_radius:
        raise NIDInputError(f"--camera-distance must exceed the object radius {RenderSettings().object_radius}")
    if args.decimate_to < 4 or args.max_faces < 4:
        raise NIDInputError("--max-faces and --decimate-to must be at least 4")


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    validate(args)
    settings = RenderSettings(
        views_train=args.views_train,
        views_test=args.views_test,
        resolution=args.resolution,
        seed=args.seed,
        fov_deg=args.fov,
        camera_distance=args.camera_distance,
        up_axis=args.up_axis,
        max_faces=args.max_faces,
        huge=args.huge,
        decimate_to=args.decimate_to,
        shading=Shading(ambient=args.ambient, diffuse=1.0 - args.ambient),
        overwrite=args.overwrite,
    )
    if args.meshes is not None:
        jobs, skipped_inputs = discover_mesh_jobs(args.meshes)
    else:
        jobs, skipped_inputs = family_jobs(args.family, args.count), []
    results, stats = render_collection(
        jobs, args.output, settings, workers=args.workers, skipped_inputs=skipped_inputs, progress=not args.quiet
    )
    for result in results:
        for note in result.notes:
            print(f"note: {result.name}: {note}", file=sys.stderr)
    if stats["removed"]:
        shown = ", ".join(stats["removed"][:5]) + (" ..." if len(stats["removed"]) > 5 else "")
        print(f"--overwrite: removed {len(stats['removed'])} scene(s) this run no longer lists: {shown}",
              file=sys.stderr)
    if stats["skipped"]:
        print(f"warning: skipped {len(stats['skipped'])} item(s):", file=sys.stderr)
        for item, reason in stats["skipped"]:
            print(f"  - {item}: {reason}", file=sys.stderr)
    print(
        f"{stats['rendered']} scene(s) rendered, {stats['existing']} already present, "
        f"{len(stats['skipped'])} skipped -> {args.output}\n"
        f"{stats['views']} views in {stats['seconds']:.1f} s = {stats['views_per_second']:.1f} views/s "
        f"({args.resolution}x{args.resolution}, {stats['workers']} worker(s); "
        "each view = RGBA + depth + normals + mask)\n"
        f"rendering CPU time {stats['cpu_seconds']:.1f} s = {stats['views_per_cpu_second']:.1f} views per CPU-second "
        "(excludes process start-up; compare with the wall-clock rate when the machine is busy)"
    )
    return 0


def entrypoint() -> None:
    install_excepthook()
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
