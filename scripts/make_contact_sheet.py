#!/usr/bin/env python
"""Contact sheet of rendered collections: one row per source, a few scenes each, plus depth/normals/mask.

    python scripts/make_contact_sheet.py blobs=COLL_A classic=COLL_B chairs=COLL_C ... --output docs/collections_contact_sheet.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image, ImageDraw

from nid_nerf.synthetic.scene_writer import decode_depth

TILE = 128
LABEL_W = 90


def on_white(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return (rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


def depth_image(png: np.ndarray) -> np.ndarray:
    d = decode_depth(png)
    valid = d > 0
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    if valid.any():
        lo, hi = d[valid].min(), d[valid].max()
        out[valid] = (255 * (1 - (d[valid] - lo) / max(hi - lo, 1e-9)) * 0.85 + 30).astype(np.uint8)[:, None]
    return out


def tile(array: np.ndarray) -> Image.Image:
    return Image.fromarray(array).resize((TILE, TILE), Image.NEAREST)


def scene_view(scene: Path, k: int) -> dict:
    meta = json.loads((scene / "transforms.json").read_text())
    frame = meta["frames"][k % len(meta["frames"])]
    return {
        "rgb": on_white(np.asarray(Image.open(scene / frame["file_path"]))),
        "depth": depth_image(np.asarray(Image.open(scene / frame["depth_file_path"]))),
        "normals": np.asarray(Image.open(scene / frame["normal_file_path"])),
        "mask": np.repeat(np.asarray(Image.open(scene / frame["object_mask_path"]))[..., None], 3, 2),
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="NAME=COLLECTION_DIR")
    parser.add_argument("--per-row", type=int, default=5)
    parser.add_argument("--view", type=int, default=7, help="frame index shown for each scene")
    parser.add_argument("--output", type=Path, default=Path("docs/collections_contact_sheet.png"))
    args = parser.parse_args(argv)
    rows: List[Image.Image] = []
    header = ["scene %d" % (i + 1) for i in range(args.per_row)] + ["depth", "normals", "mask"]
    for source in args.sources:
        name, folder = source.split("=", 1)
        scenes = sorted(p.parent for p in Path(folder).glob("*/nid_scene.json"))
        picks = [scenes[round(i * (len(scenes) - 1) / max(args.per_row - 1, 1))] for i in range(args.per_row)]
        views = [scene_view(s, args.view) for s in picks]
        cells = [tile(v["rgb"]) for v in views] + [tile(views[0][k]) for k in ("depth", "normals", "mask")]
        row = Image.new("RGB", (LABEL_W + TILE * len(cells), TILE + 14), "white")
        draw = ImageDraw.Draw(row)
        draw.text((6, TILE // 2 - 6), name, fill="black")
        for i, cell in enumerate(cells):
            row.paste(cell, (LABEL_W + i * TILE, 0))
        draw.text((LABEL_W + 4, TILE + 1), ", ".join(p.name for p in picks), fill=(90, 90, 90))
        rows.append(row)
    head = Image.new("RGB", (rows[0].width, 16), "white")
    draw = ImageDraw.Draw(head)
    for i, text in enumerate(header):
        draw.text((LABEL_W + i * TILE + 4, 2), text, fill="black")
    sheet = Image.new("RGB", (rows[0].width, 16 + sum(r.height for r in rows)), "white")
    sheet.paste(head, (0, 0))
    y = 16
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(f".{args.output.name}.tmp.png")
    sheet.save(tmp)
    tmp.replace(args.output)
    print(f"wrote {args.output} ({sheet.width}x{sheet.height})")


if __name__ == "__main__":
    main()
