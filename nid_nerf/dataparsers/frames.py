"""A transforms.json that nerfstudio's parser reads the way nid-scene validates it: per-frame intrinsics that
win over global ones, and masks on some frames only.

nerfstudio 1.1.5's ``Nerfstudio`` parser takes a global ``w``, ``h``, ``fl_x``, ... for every frame as soon
as the file has it (``height_fixed = "h" in meta``) and ignores a frame's own value, and it asserts that
either every frame or none has a ``mask_path``. nid-scene reads the more specific value (a frame's own
intrinsics describe its own image), and trains frames without a mask on every pixel. So when a file needs
either, nerfstudio is given a derived copy of it: the per-frame values pushed into every frame (the global
ones removed), and each frame without a mask given an all-ones mask (cached in ``.nid_cache/``).

nerfstudio resolves every path of the file against the file's folder (``images_N/``, ``masks_N/`` and
``depths_N/`` included), so the copy is put in a temporary mirror of the scene folder (one symbolic link
per entry) and the paths nerfstudio returns are mapped back to the scene folder; the mirror is removed
right after parsing, and nothing is written into the user's scene folder except the mask cache.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

from nid_nerf.io import save_image

INTRINSIC_KEYS = ("fl_x", "fl_y", "cx", "cy", "w", "h")
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2", "distortion_params")


def frame_value(frame: Dict[str, Any], meta: Dict[str, Any], key: str) -> Any:
    """A frame's own ``key`` if it has one, else the file's global one (nid-scene's rule)."""
    return frame[key] if key in frame else meta.get(key)


def push_down_intrinsics(meta: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """A copy of ``meta`` in which nerfstudio sees every frame's own intrinsics, or None if it already does.

    A global key that some frame overrides with another value is moved into every frame that lacks it
    and dropped from the top level. Distortion keys go together (nerfstudio takes all of them from the top
    level when any one is there).
    """
    frames = meta["frames"]
    overridden = [k for k in INTRINSIC_KEYS if k in meta and any(k in f and f[k] != meta[k] for f in frames)]
    global_distortion = {k: meta[k] for k in DISTORTION_KEYS if k in meta}
    distortion: List[str] = []
    if global_distortion and any(k in f and f[k] != global_distortion.get(k) for f in frames for k in DISTORTION_KEYS):
        distortion = list(global_distortion)
    keys = overridden + distortion
    if not keys:
        return None
    derived = copy.deepcopy(meta)
    for frame in derived["frames"]:
        for key in keys:
            frame.setdefault(key, meta[key])
    for key in keys:
        derived.pop(key)
    return derived


def ones_mask(folder: Path, size: Tuple[int, int]) -> Path:
    """An all-ones single-channel mask of (width, height) ``size`` in ``folder`` (written once, atomically)."""
    path = Path(folder) / f"ones_{size[0]}x{size[1]}.png"
    if not path.is_file():
        save_image(path, np.full((size[1], size[0]), 255, dtype=np.uint8))
    return path


def fill_masks(meta: Dict[str, Any], sizes: Sequence[Tuple[int, int]], folder: Path) -> Dict[str, Any]:
    """A copy of ``meta`` in which each frame without ``mask_path`` has an all-ones mask of its image's size
    (absolute path, so it resolves from any folder): those frames train on every pixel."""
    derived = copy.deepcopy(meta)
    for frame, size in zip(derived["frames"], sizes):
        if "mask_path" not in frame:
            frame["mask_path"] = str(ones_mask(folder, size))
    return derived


def strip_masks(meta: Dict[str, Any]) -> Dict[str, Any]:
    """A copy of ``meta`` without any ``mask_path`` (for --masks ignore / object, which do not read them)."""
    derived = copy.deepcopy(meta)
    for frame in derived["frames"]:
        frame.pop("mask_path", None)
    return derived


@contextlib.contextmanager
def mirrored_transforms(path: Path, meta: Dict[str, Any]) -> Iterator[Path]:
    """A transforms file holding ``meta`` in a temporary mirror of ``path``'s folder; removed after the block.

    Every entry of the scene folder is a symbolic link in the mirror, so the relative paths of ``meta``
    resolve as they would next to ``path``. Use :func:`unmirror` on what nerfstudio returns.
    """
    path = Path(path)
    mirror = Path(tempfile.mkdtemp(prefix="nid-scene-"))
    try:
        for entry in path.parent.iterdir():
            if entry.name != path.name:
                os.symlink(entry.absolute(), mirror / entry.name)
        (mirror / path.name).write_text(json.dumps(meta), encoding="utf-8")
        yield mirror / path.name
    finally:
        shutil.rmtree(mirror, ignore_errors=True)


def unmirror(outputs: DataparserOutputs, mirror: Path, root: Path) -> DataparserOutputs:
    """The outputs with every path inside ``mirror`` (images, masks, depth maps) pointing into ``root``."""

    def back(value: Any) -> Any:
        path = Path(value)
        try:
            return Path(root) / path.relative_to(mirror)
        except ValueError:
            return value

    def back_list(values: Optional[List]) -> Optional[List]:
        return None if values is None else [back(v) for v in values]

    metadata = dict(outputs.metadata)
    if metadata.get("depth_filenames") is not None:
        metadata["depth_filenames"] = back_list(metadata["depth_filenames"])
    return replace(
        outputs,
        image_filenames=back_list(outputs.image_filenames),
        mask_filenames=back_list(outputs.mask_filenames),
        metadata=metadata,
    )
