#!/usr/bin/env python
"""Photograph the nerfstudio browser viewer on a trained checkpoint with Debian's headless Chromium.

Starts ``ns-viewer --load-config CFG`` (or, with ``--train-data DIR``, ``ns-train nid-field --vis
viewer+tensorboard`` on that scene) on a free port on 127.0.0.1, opens it in headless Chromium
(fresh profile, no network, software WebGL), dollies the browser camera out to the training
cameras' distance with mouse-wheel events, waits for the full-resolution render, saves the
screenshot and checks that the 3D viewport holds a rendered scene (pixel spread), not an empty
canvas. Exits 1 when the check fails. Nothing is downloaded.

    python scripts/viewer_screenshot.py --load-config outputs/demo/nid-field/TIME/config.yml --output docs/viewer.png
    python scripts/viewer_screenshot.py --train-data data/demo/vases_0000 --output docs/viewer_training.png
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from nid_nerf.benchmarks.viewer_check import capture_viewer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--load-config", type=Path, help="config.yml written by ns-train (runs ns-viewer on it)")
    source.add_argument("--train-data", type=Path, help="scene folder: photograph `ns-train METHOD --vis "
                        "viewer+tensorboard` on it while it trains")
    parser.add_argument("--method", default="nid-field", help="ns-train method for --train-data")
    parser.add_argument("--train-args", default="", help="further ns-train arguments for --train-data (one string)")
    parser.add_argument("--output", type=Path, default=Path("docs/viewer.png"), help="screenshot PNG")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for each render stage")
    parser.add_argument("--camera-distance", type=float, default=None,
                        help="orbit radius in scene units (default: the training cameras' median distance)")
    parser.add_argument("--window", type=int, nargs=2, default=(1280, 800), metavar=("W", "H"))
    parser.add_argument("--max-res", type=int, default=512, help="the viewer's 'Max res' (final render size)")
    parser.add_argument("--chromium", default=None, help="Chromium binary (default: chromium on PATH)")
    parser.add_argument("--viewer-command", default=None,
                        help="command that starts the viewer, before --load-config (default: ns-viewer)")
    parser.add_argument("--show-train-cams", action="store_true",
                        help="draw training camera frustums (off: only the render can fill the viewport)")
    args = parser.parse_args(argv)

    capture = capture_viewer(
        args.load_config,
        args.output,
        train_data=args.train_data,
        train_method=args.method,
        train_args=shlex.split(args.train_args),
        camera_distance=args.camera_distance,
        window_size=tuple(args.window),
        max_res=args.max_res,
        timeout=args.timeout,
        viewer_command=shlex.split(args.viewer_command) if args.viewer_command else None,
        chromium=args.chromium,
        show_train_cams=args.show_train_cams,
    )
    width, height = capture.resolution
    verdict = "shows the rendered scene" if capture.ok else "FAILED: the viewport looks empty"
    print(
        f"{capture.screenshot}: {verdict} (viewport std {capture.stats.std:.1f}, "
        f"{100 * capture.stats.structured_fraction:.1f}% structured pixels, render {width}x{height}, "
        f"camera distance {capture.camera_distance:.2f}, {capture.seconds:.0f} s)"
    )
    if not capture.ok:
        print(capture.log_tail, file=sys.stderr)
    return 0 if capture.ok else 1


if __name__ == "__main__":
    sys.exit(main())
