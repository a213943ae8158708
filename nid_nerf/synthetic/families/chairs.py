"""Chairs: four legs, a seat, a solid or slatted back and optional arms, with random proportions and colours."""

from __future__ import annotations

from typing import Dict

import numpy as np

from nid_nerf.synthetic.colored_mesh import ColoredMesh
from nid_nerf.synthetic.families.solid import box, cylinder, random_color, union_colored


def sample_params(rng: np.random.Generator) -> Dict:
    """Proportions in metres-like units (normalised later); every choice comes from ``rng``."""
    return {
        "seat_width": float(rng.uniform(0.40, 0.60)),
        "seat_depth": float(rng.uniform(0.38, 0.58)),
        "seat_height": float(rng.uniform(0.38, 0.52)),
        "seat_thickness": float(rng.uniform(0.03, 0.08)),
        "leg_thickness": float(rng.uniform(0.03, 0.065)),
        "leg_round": bool(rng.random() < 0.4),
        "leg_inset": float(rng.uniform(0.0, 0.04)),
        "back_height": float(rng.uniform(0.30, 0.60)),
        "back_thickness": float(rng.uniform(0.025, 0.06)),
        "back_slats": int(rng.choice([0, 0, 2, 3, 4])),
        "arms": bool(rng.random() < 0.3),
        "frame_color": random_color(rng),
        "seat_color": random_color(rng),
    }


def build(p: Dict) -> ColoredMesh:
    w, d, h, t = p["seat_width"], p["seat_depth"], p["seat_height"], p["seat_thickness"]
    lt, inset, bt = p["leg_thickness"], p["leg_inset"], p["back_thickness"]
    frame, seat = p["frame_color"], p["seat_color"]
    top = h + t
    solids = [(box([-w / 2, -d / 2, h], [w / 2, d / 2, top]), seat)]

    # legs reach into the seat by half its thickness so the union has no coplanar contact
    for sx in (-1, 1):
        for sy in (-1, 1):
            x = sx * (w / 2 - inset - lt / 2)
            y = sy * (d / 2 - inset - lt / 2)
            if p["leg_round"]:
                solids.append((cylinder(x, y, 0.0, h + t / 2, lt / 2), frame))
            else:
                solids.append((box([x - lt / 2, y - lt / 2, 0.0], [x + lt / 2, y + lt / 2, h + t / 2]), frame))

    back_top = top + p["back_height"]
    y0, y1 = d / 2 - bt, d / 2
    if p["back_slats"] == 0:
        solids.append((box([-w / 2, y0, top - t / 2], [w / 2, y1, back_top]), frame))
    else:
        post = min(lt, 0.2 * w)
        rail = 0.25 * p["back_height"]
        for sx in (-1, 1):
            x_in, x_out = sx * (w / 2 - post), sx * w / 2
            solids.append((box([min(x_in, x_out), y0, top - t / 2], [max(x_in, x_out), y1, back_top]), frame))
        solids.append((box([-w / 2, y0, back_top - rail], [w / 2, y1, back_top]), frame))
        n = p["back_slats"]
        slat = 0.5 * (w - 2 * post) / (n + 1)
        for k in range(n):
            cx = -w / 2 + post + (k + 1) * (w - 2 * post) / (n + 1)
            lo, hi = [cx - slat / 2, y0 + 0.2 * bt, top - t / 2], [cx + slat / 2, y1 - 0.2 * bt, back_top - rail / 2]
            slat_box = box(lo, hi)
            solids.append((slat_box, seat))

    if p["arms"]:
        arm_z = top + 0.45 * p["back_height"]
        for sx in (-1, 1):
            x_out, x_in = sx * w / 2, sx * (w / 2 - lt)
            xa, xb = min(x_in, x_out), max(x_in, x_out)
            solids.append((box([xa, -d / 2, arm_z - lt], [xb, y1, arm_z]), frame))
            solids.append((box([xa, -d / 2, top - t / 2], [xb, -d / 2 + lt, arm_z - lt / 2]), frame))
    return union_colored(solids)
