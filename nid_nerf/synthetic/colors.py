"""Colour sources for rendered meshes: a ``colors.json`` file and a deterministic palette."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
from jaxtyping import Float

RGB = Float[np.ndarray, "3"]

# Twelve well-separated, mid-saturation albedos (sRGB in [0, 1]); none is near black or white so that
# Lambertian shading stays visible on every one of them.
PALETTE: Float[np.ndarray, "12 3"] = np.array(
    [
        [0.84, 0.37, 0.30],
        [0.30, 0.55, 0.80],
        [0.40, 0.70, 0.35],
        [0.90, 0.70, 0.25],
        [0.60, 0.42, 0.75],
        [0.30, 0.72, 0.70],
        [0.85, 0.50, 0.65],
        [0.62, 0.50, 0.35],
        [0.55, 0.60, 0.25],
        [0.35, 0.40, 0.65],
        [0.80, 0.55, 0.40],
        [0.50, 0.75, 0.55],
    ],
    dtype=np.float64,
)


def palette_color(name: str) -> RGB:
    """A deterministic palette colour for ``name`` (stable across runs, machines and Python versions)."""
    return PALETTE[zlib.crc32(name.encode("utf-8")) % len(PALETTE)].copy()


def parse_color(value: Union[str, Sequence[float]]) -> RGB:
    """Parse one colour: ``[r, g, b]`` (or RGBA) in [0, 1] or in [0, 255], or a ``"#rrggbb"`` string.

    Raises:
        ValueError: the value is not a colour.
    """
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) != 6:
            raise ValueError(f"{value!r} is not a #rrggbb colour")
        return np.array([int(text[i : i + 2], 16) for i in (0, 2, 4)], dtype=np.float64) / 255.0
    if not isinstance(value, (list, tuple)) or len(value) not in (3, 4):
        raise ValueError(f"{value!r} is not an [r, g, b] list")
    rgb = np.asarray(value[:3], dtype=np.float64)
    if not np.all(np.isfinite(rgb)) or np.any(rgb < 0):
        raise ValueError(f"{value!r} has negative or non-finite entries")
    if np.any(rgb > 1.0):
        if np.any(rgb > 255.0):
            raise ValueError(f"{value!r} has entries above 255")
        rgb = rgb / 255.0
    return rgb


def load_colors_file(path: Path) -> Tuple[Optional[Dict[str, RGB]], Optional[str]]:
    """Read a ``colors.json`` that maps mesh names (file stems) to colours.

    Returns:
        ``(colours, warning)``: ``colours`` is None when the file cannot be used at all; ``warning`` says what
        was wrong (or is None). An unusable file is skipped with a warning by the caller; it never stops a run.
    """
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        return None, f"{path}: cannot be read ({err})"
    except json.JSONDecodeError as err:
        return None, f"{path}: not valid JSON ({err.msg} at line {err.lineno})"
    if not isinstance(data, dict):
        return None, f"{path}: expected a JSON object {{\"mesh_name\": [r, g, b]}}, got {type(data).__name__}"
    colours: Dict[str, RGB] = {}
    bad = []
    for key, value in data.items():
        try:
            colours[str(key)] = parse_color(value)
        except (ValueError, TypeError):
            bad.append(str(key))
    if bad and not colours:
        return None, f"{path}: no entry is a colour (e.g. {bad[0]!r}); use [r, g, b] in [0, 1]"
    if bad:
        return colours, f"{path}: ignored {len(bad)} entries that are not colours: {', '.join(bad[:5])}"
    return colours, None
