"""Checks on scene folders that turn bad input into one-line :class:`NIDInputError` messages.

Each message names the file and says how to fix it. The nerfstudio parsers that we call afterwards would
otherwise fail with asserts or bare tracebacks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from PIL import Image, UnidentifiedImageError

from nid_nerf.errors import NIDInputError

BLENDER_SPLITS = ("train", "val", "test")


def check_data_path(data: Path, what: str = "data directory") -> Path:
    data = Path(data).expanduser()
    if not data.exists():
        raise NIDInputError(f"{what} {data} does not exist; pass --data with the folder that holds transforms.json")
    return data


def detect_format(data: Path) -> str:
    """``nerfstudio`` (a transforms.json, or a .json file given directly) or ``blender`` (transforms_train.json).

    Raises:
        NIDInputError: neither is there.
    """
    data = check_data_path(data)
    if data.is_file():
        if data.suffix.lower() == ".json":
            return "nerfstudio"
        raise NIDInputError(f"--data {data} is a file but not a .json transforms file; pass the scene folder")
    if (data / "transforms.json").is_file():
        return "nerfstudio"
    if (data / "transforms_train.json").is_file():
        return "blender"
    if any((sub / "transforms.json").is_file() or (sub / "transforms_train.json").is_file() for sub in _subdirs(data)):
        raise NIDInputError(
            f"{data} holds scene folders, not one scene (no transforms.json in it); use the nid-collection "
            "dataparser for a collection, or pass --data with one scene folder"
        )
    raise NIDInputError(
        f"transforms file missing: {data} has neither transforms.json (nerfstudio format) nor transforms_train.json "
        "(Blender format); point --data at a scene folder or create one with scripts/render_collection.py"
    )


def read_json(path: Path) -> Dict[str, Any]:
    """Read a JSON object. Raises NIDInputError naming the file, the problem and the line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NIDInputError(f"{path} is missing; restore it or regenerate the scene") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NIDInputError(f"{path} cannot be read ({err}); check its permissions and encoding") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise NIDInputError(
            f"{path} is malformed JSON ({err.msg} at line {err.lineno}, column {err.colno}); fix the file or "
            "regenerate it"
        ) from None
    if not isinstance(data, dict):
        raise NIDInputError(
            f"{path} holds a JSON {type(data).__name__}, not an object; it must hold a JSON object with a 'frames' list"
        )
    return data


def check_frames(meta: Dict[str, Any], path: Path, need_intrinsics: bool) -> List[Dict[str, Any]]:
    """Every frame has a ``file_path`` and a finite 4x4 (or 3x4) ``transform_matrix``; with ``need_intrinsics``
    (nerfstudio format) fl_x, fl_y, cx, cy, w, h are given globally or per frame."""
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise NIDInputError(
            f"{path} has no 'frames' list (or it is empty); each frame needs file_path and transform_matrix"
        )
    for k, frame in enumerate(frames):
        if not isinstance(frame, dict):
            raise NIDInputError(
                f"{path}: frame {k} is not an object; write {{\"file_path\": ..., \"transform_matrix\": ...}}"
            )
        if not isinstance(frame.get("file_path"), str) or not frame["file_path"]:
            raise NIDInputError(f"{path}: frame {k} has no 'file_path'; add the image path relative to {path.parent}")
        if not _is_pose(frame.get("transform_matrix")):
            raise NIDInputError(
                f"{path}: frame {k} ({frame['file_path']}) has a missing or malformed 'transform_matrix'; it must be "
                "a 4x4 list of finite numbers (camera-to-world, OpenGL convention)"
            )
        if need_intrinsics:
            for key in ("fl_x", "fl_y", "cx", "cy", "w", "h"):
                value = frame.get(key, meta.get(key))
                if key == "fl_y" and value is None:
                    continue  # some writers give only fl_x; checked below
                if not _is_positive_number(value, allow_zero=key in ("cx", "cy")):
                    raise NIDInputError(
                        f"{path}: frame {k} ({frame['file_path']}) has no valid '{key}' (and there is no global one); "
                        f"add '{key}' to the file"
                    )
            if frame.get("fl_y", meta.get("fl_y")) is None:
                raise NIDInputError(f"{path}: 'fl_y' is missing; add it (equal to fl_x for square pixels)")
    return frames


def check_split_lists(meta: Dict[str, Any], path: Path, frame_files: Iterable[str]) -> None:
    """``train/val/test_filenames`` must name frames of this file, and if one list is given, train and val must be."""
    known = {_norm(f) for f in frame_files}
    lists = [s for s in ("train", "val", "test") if f"{s}_filenames" in meta]
    if not lists:
        return
    for split in lists:
        names = meta[f"{split}_filenames"]
        if not isinstance(names, list):
            raise NIDInputError(f"{path}: '{split}_filenames' must be a list of image paths")
        unknown = [n for n in names if _norm(str(n)) not in known]
        if unknown:
            raise NIDInputError(
                f"{path}: '{split}_filenames' lists {len(unknown)} image(s) that no frame has (e.g. {unknown[0]}); "
                "frames and split lists disagree, so fix the list or add the frames"
            )
    for split in ("train", "val"):
        if f"{split}_filenames" not in meta:
            other = "test" if split == "val" and "test_filenames" in meta else None
            hint = " (copy test_filenames)" if other else ""
            raise NIDInputError(f"{path}: has split lists but no '{split}_filenames'; add it{hint}")
    if not meta["train_filenames"]:
        raise NIDInputError(f"{path}: 'train_filenames' is empty; list at least one training image")


def check_images(
    images: Sequence[Path],
    source: Path,
    expected_sizes: Optional[Sequence[Optional[Tuple[int, int]]]] = None,
) -> List[Tuple[int, int]]:
    """Each image exists, decodes, and (when given) has the (width, height) the transforms file declares.

    Returns the (width, height) of every image.
    """
    sizes = []
    for k, image in enumerate(images):
        image = Path(image)
        if not image.is_file():
            raise NIDInputError(
                f"image {image} is missing (listed in {source}); restore it or remove its frame from {source.name}"
            )
        try:
            with Image.open(image) as im:
                size = im.size
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise NIDInputError(
                f"image {image} is corrupt or not an image ({type(err).__name__}: {err}); re-export it or remove its "
                f"frame from {source.name}"
            ) from None
        expected = expected_sizes[k] if expected_sizes is not None else None
        if expected is not None and tuple(size) != tuple(expected):
            raise NIDInputError(
                f"image {image} is {size[0]}x{size[1]} but {source.name} says {expected[0]}x{expected[1]}; frames and "
                "images disagree, so fix w/h in the transforms file or re-export the image"
            )
        sizes.append(size)
    return sizes


def check_masks(masks: Sequence[Path], source: Path, expected_sizes: Sequence[Tuple[int, int]]) -> None:
    """Each mask exists, decodes, has one channel and the (width, height) of its image."""
    for mask, expected in zip(masks, expected_sizes):
        mask = Path(mask)
        if not mask.is_file():
            raise NIDInputError(
                f"mask {mask} is missing (listed in {source}); restore it, fix its mask_path, or pass --masks ignore"
            )
        try:
            with Image.open(mask) as im:
                size, bands = im.size, im.getbands()
                im.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
            raise NIDInputError(
                f"mask {mask} is corrupt or not an image ({type(err).__name__}); re-export it or pass --masks ignore"
            ) from None
        if len(bands) != 1:
            raise NIDInputError(
                f"mask {mask} has {len(bands)} channels; save it as a single-channel (L) PNG, nonzero = train on the "
                "pixel (nerfstudio reads masks that way)"
            )
        if tuple(size) != tuple(expected):
            raise NIDInputError(
                f"mask {mask} is {size[0]}x{size[1]} but {source.name} says its image is {expected[0]}x{expected[1]}; "
                "resize the mask to the image (nearest neighbour) or fix its mask_path"
            )


def _subdirs(path: Path) -> List[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _norm(name: str) -> str:
    return Path(name).as_posix()  # "./images/a.png" and "images/a.png" are the same frame


def _is_pose(value: Any) -> bool:
    if not isinstance(value, list) or len(value) not in (3, 4):
        return False
    for row in value:
        if not isinstance(row, list) or len(row) != 4:
            return False
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in row):
            return False
    return True


def _is_positive_number(value: Any, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0
