"""Checks on scene folders that turn bad input into one-line :class:`NIDInputError` messages.

Each message names the file and says how to fix it. The nerfstudio parsers that we call afterwards would
otherwise fail with asserts or bare tracebacks.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
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
        if _is_pose(frame.get("transform_matrix"), finite=False) and not _is_pose(frame["transform_matrix"]):
            raise NIDInputError(
                f"{path}: frame {k} ({frame['file_path']}) has NaN or infinite values in its 'transform_matrix' "
                "(a failed pose estimate); re-run the pose estimation (e.g. ns-process-data) or remove the frame"
            )
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
    check_poses_differ(frames, path)
    return frames


def check_poses_differ(frames: Sequence[Dict[str, Any]], path: Path) -> None:
    """More than one frame, all with the same pose: placeholder poses (a pose estimation that did not run or
    failed), from which no 3D shape can be recovered."""
    if len(frames) < 2:
        return
    poses = np.array([np.array(f["transform_matrix"], dtype=np.float64)[:3] for f in frames])
    if np.allclose(poses, poses[:1], rtol=0.0, atol=1e-9):
        raise NIDInputError(
            f"{path}: all {len(frames)} frames have the same 'transform_matrix', so there is no parallax to "
            "reconstruct from (placeholder poses?); write each frame's own camera-to-world pose (e.g. from "
            "ns-process-data / COLMAP)"
        )


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
    shared_size: Optional[Sequence[bool]] = None,
) -> List[Tuple[int, int]]:
    """Each image exists, decodes, is not fully transparent and (when given) has the (width, height) the
    transforms file declares, as displayed: with its EXIF orientation applied (which is how nid-scene loads it).

    ``shared_size`` marks the images that take the file's one global w/h: those must all have one size
    (:func:`check_one_size`), checked before each image against its declared size, for the clearer message.

    Returns the (width, height) of every image, EXIF orientation applied.
    """
    images = [Path(image) for image in images]
    infos = [_decoded_info(image, source) for image in images]
    for k, (image, info) in enumerate(zip(images, infos)):  # first: the clearest reason of a size mismatch
        expected = expected_sizes[k] if expected_sizes is not None else None
        if expected is not None and tuple(info.size) != tuple(expected) and tuple(info.stored_size) == tuple(expected):
            raise NIDInputError(
                f"image {image} has EXIF orientation {info.orientation}, so it is {info.size[0]}x{info.size[1]} "
                f"as displayed (and as nid-scene loads it), but {source.name} gives the stored "
                f"{expected[0]}x{expected[1]}: its intrinsics and poses were made from the unrotated pixels; "
                "re-save the image without the EXIF orientation tag (e.g. exiftool -Orientation= -n) or give "
                "the displayed w/h and intrinsics"
            )
    if shared_size is not None:
        check_one_size(shared_size, [info.size for info in infos], images, source)
    sizes = []
    for k, (image, info) in enumerate(zip(images, infos)):
        expected = expected_sizes[k] if expected_sizes is not None else None
        if expected is not None and tuple(info.size) != tuple(expected):
            raise NIDInputError(
                f"image {image} is {info.size[0]}x{info.size[1]} but {source.name} says {expected[0]}x{expected[1]}; "
                "frames and images disagree, so fix w/h in the transforms file or re-export the image"
            )
        sizes.append(info.size)
    for image, info in zip(images, infos):
        if info.has_alpha:
            check_not_transparent(image, source)
    return sizes


def check_one_size(shared_size: Sequence[bool], sizes: Sequence[Tuple[int, int]], images: Sequence[Path],
                   path: Path) -> None:
    """Images that take the global w/h (``shared_size``) must all have one size (else each needs its own
    intrinsics: a global focal length and principal point cannot fit images of different sizes)."""
    shared = [k for k, flag in enumerate(shared_size) if flag]
    found = {tuple(sizes[k]) for k in shared}
    if len(found) < 2:
        return
    first = shared[0]
    other = next(k for k in shared if tuple(sizes[k]) != tuple(sizes[first]))
    raise NIDInputError(
        f"{path}: images differ in size ({images[first].name} is {sizes[first][0]}x{sizes[first][1]}, "
        f"{images[other].name} is {sizes[other][0]}x{sizes[other][1]}) but the file gives one global w/h and "
        "intrinsics for them; give each frame its own w, h, fl_x, fl_y, cx, cy, or resize the images to one size"
    )


def _decoded_info(image: Path, source: Path):
    """The header info of an image that exists and decodes (one-line errors otherwise)."""
    from nid_nerf.dataparsers.image_info import read_image_info

    if not image.is_file():
        raise NIDInputError(
            f"image {image} is missing (listed in {source}); restore it or remove its frame from {source.name}"
        )
    try:
        info = read_image_info(image)
        with Image.open(image) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise NIDInputError(
            f"image {image} is corrupt or not an image ({type(err).__name__}: {err}); re-export it or remove its "
            f"frame from {source.name}"
        ) from None
    return info


def check_not_transparent(image: Path, source: Path) -> None:
    """An image with alpha must have some pixel with alpha > 0 (an all-zero alpha shows nothing to train on;
    typically an export that lost its alpha)."""
    try:
        with Image.open(image) as im:
            alpha = im.getchannel("A") if "A" in im.getbands() else im.convert("RGBA").getchannel("A")
            transparent = alpha.getextrema()[1] == 0
    except (OSError, SyntaxError, ValueError) as err:
        raise NIDInputError(
            f"image {image} is corrupt ({type(err).__name__}: {err}); re-export it or remove its frame from "
            f"{source.name}"
        ) from None
    if transparent:
        raise NIDInputError(
            f"image {image} is fully transparent (its alpha is 0 everywhere), so it shows nothing to train on; "
            f"re-export it with its real alpha (or as RGB without alpha), or remove its frame from {source.name}"
        )


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


def _is_pose(value: Any, finite: bool = True) -> bool:
    """A 3x4 or 4x4 list of numbers (finite ones, unless ``finite`` is False)."""
    if not isinstance(value, list) or len(value) not in (3, 4):
        return False
    for row in value:
        if not isinstance(row, list) or len(row) != 4:
            return False
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) and (math.isfinite(x) or not finite)
                   for x in row):
            return False
    return True


def _is_positive_number(value: Any, allow_zero: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return value >= 0 if allow_zero else value > 0
