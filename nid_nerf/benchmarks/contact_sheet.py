"""Contact sheet of rendered collections: one row per source, a few scenes each, plus depth/normals/mask.

    python scripts/make_contact_sheet.py blobs=COLL_A classic=COLL_B chairs=COLL_C ... \
--output docs/collections_contact_sheet.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List

import numpy as np
from PIL import Image, ImageDraw

from nid_nerf.errors import NIDInputError
from nid_nerf.io import save_image
from nid_nerf.synthetic.scene_writer import decode_depth

TILE = 128
LABEL_W = 90


def on_white(rgba: np.ndarray) -> np.ndarray:
    """uint8 RGBA composited onto white."""
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    return (rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)


def depth_image(png: np.ndarray) -> np.ndarray:
    """A stored depth PNG as grey levels: near is bright, background black."""
    d = decode_depth(png)
    valid = d > 0
    out = np.zeros(d.shape + (3,), dtype=np.uint8)
    if valid.any():
        lo, hi = d[valid].min(), d[valid].max()
        out[valid] = (255 * (1 - (d[valid] - lo) / max(hi - lo, 1e-9)) * 0.85 + 30).astype(np.uint8)[:, None]
    return out


def tile(array: np.ndarray) -> Image.Image:
    """One cell of the sheet (nearest-neighbour, so pixels stay visible)."""
    return Image.fromarray(array).resize((TILE, TILE), Image.NEAREST)


def scene_view(scene: Path, k: int) -> dict:
    """RGB, depth, normals and mask of frame ``k`` of a rendered scene, as displayable uint8 images."""
    meta = json.loads((scene / "transforms.json").read_text())
    frame = meta["frames"][k % len(meta["frames"])]
    return {
        "rgb": on_white(np.asarray(Image.open(scene / frame["file_path"]))),
        "depth": depth_image(np.asarray(Image.open(scene / frame["depth_file_path"]))),
        "normals": np.asarray(Image.open(scene / frame["normal_file_path"])),
        "mask": np.repeat(np.asarray(Image.open(scene / frame["object_mask_path"]))[..., None], 3, 2),
    }


def source_row(name: str, folder: Path, per_row: int, view: int) -> Image.Image:
    """One row: the label, ``per_row`` scenes spread over the collection, then the first one's depth, normals, mask."""
    scenes = sorted(p.parent for p in Path(folder).glob("*/nid_scene.json"))
    if not scenes:
        raise NIDInputError(f"{folder} holds no rendered scenes (no */nid_scene.json); pass NAME=COLLECTION_DIR")
    picks = [scenes[round(i * (len(scenes) - 1) / max(per_row - 1, 1))] for i in range(per_row)]
    views = [scene_view(s, view) for s in picks]
    cells = [tile(v["rgb"]) for v in views] + [tile(views[0][k]) for k in ("depth", "normals", "mask")]
    row = Image.new("RGB", (LABEL_W + TILE * len(cells), TILE + 14), "white")
    draw = ImageDraw.Draw(row)
    draw.text((6, TILE // 2 - 6), name, fill="black")
    for i, cell in enumerate(cells):
        row.paste(cell, (LABEL_W + i * TILE, 0))
    draw.text((LABEL_W + 4, TILE + 1), ", ".join(p.name for p in picks), fill=(90, 90, 90))
    return row


def contact_sheet(sources: List[str], per_row: int, view: int) -> Image.Image:
    """The header line over one :func:`source_row` per ``NAME=COLLECTION_DIR``."""
    rows: List[Image.Image] = []
    for source in sources:
        name, sep, folder = source.partition("=")
        if not sep:
            raise NIDInputError(f"source '{source}' is not NAME=COLLECTION_DIR; e.g. blobs=data/blobs")
        rows.append(source_row(name, Path(folder), per_row, view))
    header = [f"scene {i + 1}" for i in range(per_row)] + ["depth", "normals", "mask"]
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
    return sheet


def main(argv=None) -> None:
    """Write the sheet (``scripts/make_contact_sheet.py``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sources", nargs="+", help="NAME=COLLECTION_DIR")
    parser.add_argument("--per-row", type=int, default=5)
    parser.add_argument("--view", type=int, default=7, help="frame index shown for each scene")
    parser.add_argument("--output", type=Path, default=Path("docs/collections_contact_sheet.png"))
    args = parser.parse_args(argv)
    sheet = contact_sheet(args.sources, args.per_row, args.view)
    save_image(args.output, np.asarray(sheet))
    print(f"wrote {args.output} ({sheet.width}x{sheet.height})")
