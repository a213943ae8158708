"""Training masks: the scene's own masks, a ``--mask-dir`` and synthetic ``--occlusion``, ANDed into one mask
per training image (nerfstudio convention: nonzero = train on the pixel).

nerfstudio's pixel samplers (and our residual sampler, which draws its candidates through them) only draw
pixels whose mask is nonzero, so masked pixels never reach the loss. Eval images are never touched here.

When one file per image is enough (one mask source, no occlusion) the files are passed on as they are.
Otherwise the combined masks are written, atomically, into a cache folder next to the data,
``<scene>/.nid_cache/<recipe>/`` (or, when the scene folder is read-only, the system temp folder). The
recipe name carries a hash of everything the masks depend on (settings, file names, sizes and times of the
source files), so a cache is reused only when it would come out the same, and the user's files are never
modified. The cache also holds each image's hidden region (``occluders/``) for benchmarks and a
``summary.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

from nid_nerf.dataparsers.occlusion import (
    ALGORITHM_VERSION,
    OCCLUSION,
    OCCLUSION_FILENAMES,
    check_fraction,
    image_rng,
    object_region,
    occluder_mask,
    read_mask,
    write_mask_png,
)
from nid_nerf.errors import NIDInputError
from nid_nerf.io import atomic_folder

CACHE_FOLDER = ".nid_cache"
MASK_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class TrainingMaskOptions:
    """How the training masks of a scene are made (from nid-scene's --mask-dir and --occlusion* options)."""

    mask_dir: Optional[Path] = None
    """Folder with one mask per training image, named like the image (any image extension)."""
    occlusion: float = 0.0
    """Fraction of each training image's object pixels to hide (0 = off)."""
    seed: int = 0
    """Seed of the synthetic occluders (each image's occluder depends only on the seed and the image)."""
    shape: str = "rectangle"
    """Occluder shape: rectangle (one random rectangle) or blobs (the union of 2-4 random ellipses)."""

    @property
    def active(self) -> bool:
        return self.mask_dir is not None or self.occlusion > 0


def resolve_mask_dir(mask_dir: Path, scene_root: Path) -> Path:
    """Absolute paths as they are; a relative path is looked up in the scene folder first, then the current one."""
    mask_dir = Path(mask_dir).expanduser()
    candidates = [mask_dir] if mask_dir.is_absolute() else [scene_root / mask_dir, mask_dir]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise NIDInputError(
        f"--mask-dir {mask_dir} is not a folder (looked in {scene_root} and the current folder); pass the folder "
        "that holds one mask per training image"
    )


def mask_dir_files(mask_dir: Path, images: Sequence[Path]) -> List[Path]:
    """The mask of each image in ``mask_dir``: same file name, or same stem with an image extension."""
    out = []
    for image in images:
        image = Path(image)
        candidates = [mask_dir / image.name] + [mask_dir / (image.stem + ext) for ext in MASK_EXTENSIONS]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise NIDInputError(
                f"--mask-dir {mask_dir} has no mask for training image {image} (looked for {image.stem}.png); add "
                "one (nonzero = train on the pixel) or drop --mask-dir"
            )
        out.append(found)
    return out


def image_key(image: Path, scene_root: Path, scene_name: str) -> str:
    """``<scene name>/<image path relative to the scene>``: what the occluder of an image depends on."""
    try:
        relative = Path(image).resolve().relative_to(Path(scene_root).resolve()).as_posix()
    except ValueError:
        relative = Path(image).name
    return f"{scene_name}/{relative}"


def apply_training_masks(
    outputs: DataparserOutputs,
    scene_root: Path,
    scene_name: str,
    object_masks: Dict[Path, Path],
    options: TrainingMaskOptions,
) -> DataparserOutputs:
    """Train-split outputs with the combined masks in ``mask_filenames`` (and, with occlusion, the hidden
    regions in ``metadata['occlusion_filenames']``). Unchanged when there is no mask option."""
    fraction = check_fraction(options.occlusion)
    if not options.active:
        return outputs
    images = [Path(f) for f in outputs.image_filenames]
    sources: List[List[Path]] = [[] for _ in images]
    if outputs.mask_filenames is not None:
        for k, mask in enumerate(outputs.mask_filenames):
            sources[k].append(Path(mask))
    if options.mask_dir is not None:
        folder = resolve_mask_dir(options.mask_dir, scene_root)
        for k, mask in enumerate(mask_dir_files(folder, images)):
            sources[k].append(mask)
    sizes = [_image_size(image) for image in images]
    if fraction == 0 and all(len(s) == 1 for s in sources):
        for image, size, (mask,) in zip(images, sizes, sources):
            read_mask(mask, size, image)  # one-line errors now, not nerfstudio's assert at load time
        return replace(outputs, mask_filenames=[s[0] for s in sources])

    keys = [image_key(image, scene_root, scene_name) for image in images]
    region_masks = [object_masks.get(image) for image in images]
    recipe = {
        "version": ALGORITHM_VERSION,
        "fraction": fraction,
        "seed": int(options.seed),
        "shape": options.shape,
        "images": [
            [key, file_stamp(image), [file_stamp(m) for m in src],
             file_stamp(region) if fraction > 0 and region else None]
            for key, image, src, region in zip(keys, images, sources, region_masks)
        ],
    }
    digest = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    if fraction > 0:
        name = f"occlusion_{fraction:g}_seed{int(options.seed)}_{options.shape}_{digest}"
    else:
        name = f"masks_{digest}"
    names = [_flat_name(key) for key in keys]
    if len(set(names)) < len(names):  # e.g. a.png and a.jpg
        names = [f"{k:05d}_{n}" for k, n in enumerate(names)]
    folder = _cached(cache_root(scene_root) / name, names, lambda tmp: _write_masks(
        tmp, names, images, sizes, sources, region_masks, keys, fraction, options
    ))
    metadata = dict(outputs.metadata)
    if fraction > 0:
        summary = json.loads((folder / "summary.json").read_text())
        metadata[OCCLUSION_FILENAMES] = [folder / "occluders" / n for n in names]
        metadata[OCCLUSION] = {"fraction": fraction, "seed": int(options.seed), "shape": options.shape}
        metadata["occlusion_hidden_fractions"] = [summary["hidden_fraction"][n] for n in names]
    return replace(outputs, mask_filenames=[folder / "masks" / n for n in names], metadata=metadata)


def _write_masks(
    tmp: Path,
    names: Sequence[str],
    images: Sequence[Path],
    sizes: Sequence[Tuple[int, int]],
    sources: Sequence[Sequence[Path]],
    region_masks: Sequence[Optional[Path]],
    keys: Sequence[str],
    fraction: float,
    options: TrainingMaskOptions,
) -> None:
    (tmp / "masks").mkdir(parents=True)
    if fraction > 0:
        (tmp / "occluders").mkdir()
    hidden_fraction: Dict[str, float] = {}
    for name, image, size, src, region_mask, key in zip(names, images, sizes, sources, region_masks, keys):
        use = np.ones((size[1], size[0]), dtype=bool)
        for mask in src:
            use &= read_mask(mask, size, image)
        if fraction > 0:
            region = object_region(image, region_mask)
            hidden = occluder_mask(region, fraction, image_rng(key, options.seed), options.shape)  # type: ignore[arg-type]
            use &= ~hidden
            write_mask_png(hidden, tmp / "occluders" / name)
            region = region if region.any() else np.ones_like(region)
            hidden_fraction[name] = float((hidden & region).sum() / region.sum())
        write_mask_png(use, tmp / "masks" / name)
    summary = {"fraction": fraction, "seed": int(options.seed), "shape": options.shape, "images": list(keys),
               "hidden_fraction": hidden_fraction}
    (tmp / "summary.json").write_text(json.dumps(summary, indent=1))


def _cached(final: Path, names: Sequence[str], write) -> Path:
    return cached_folder(final, [f"masks/{n}" for n in names], write)


def cached_folder(final: Path, files: Sequence[str], write) -> Path:
    """``final`` if it holds every one of ``files`` (relative paths); else ``write(tmp)`` fills a temp folder next
    to it that is renamed into place (another process that got there first wins; its content is the same)."""

    def complete(folder: Path) -> bool:
        return all((folder / n).is_file() for n in files)

    if complete(final):
        return final
    with atomic_folder(final, if_exists="keep", complete=complete) as tmp:
        write(tmp)
    return final


def cache_root(scene_root: Path) -> Path:
    """``<scene>/.nid_cache`` if it can be written, else a per-scene folder in the system temp folder."""
    local = Path(scene_root) / CACHE_FOLDER
    try:
        local.mkdir(exist_ok=True)
        probe = local / f".probe-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
        return local
    except OSError:
        tag = hashlib.sha256(str(Path(scene_root).resolve()).encode("utf-8")).hexdigest()[:12]
        fallback = Path(tempfile.gettempdir()) / "nid_nerf_cache" / f"{Path(scene_root).name}-{tag}"
        fallback.mkdir(parents=True, exist_ok=True)
        return fallback


_cache_root = cache_root  # the name the tests know


def file_stamp(path: Path) -> List:
    """What a cached mask depends on in a file: its path, size and modification time."""
    try:
        stat = Path(path).stat()
    except OSError:
        raise NIDInputError(f"{path} is missing; restore it or fix the path that names it") from None
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def _flat_name(key: str) -> str:
    """A cache file name for an image key (its relative path without folders or extension)."""
    relative = key.split("/", 1)[1] if "/" in key else key
    return Path(relative).with_suffix("").as_posix().replace("/", "__") + ".png"


def _image_size(image: Path) -> Tuple[int, int]:
    """(width, height) as the image is loaded: EXIF orientation applied (nid_nerf.dataparsers.images)."""
    from nid_nerf.dataparsers.image_info import read_image_info

    return read_image_info(image).size


OBJECT_MASKS = "object_masks"
"""Metadata key (bool): the outputs' ``mask_filenames`` are object masks (255 = object), to be matched by the
rendered opacity (``NIDModelConfig.mask_loss_mult``) and sampled inside and outside, not train-only masks."""
IMAGE_CHANNELS = "image_channels"
"""Metadata key (int): 3 for RGB scenes, 4 for RGBA (picks ``NIDModelConfig.background_model`` auto)."""


def mark_mask_roles(outputs: DataparserOutputs, policy: str, options: TrainingMaskOptions,
                    channels: int) -> DataparserOutputs:
    """``metadata[OBJECT_MASKS]`` and ``metadata[IMAGE_CHANNELS]`` of a split.

    Frames' own ``mask_path`` under ``--masks auto`` are object masks (the photo-capture convention: DTU,
    NeRD, ... ship 255 = object silhouettes). They stay train-only masks, as before, when they are ANDed with
    ``--mask-dir`` / ``--occlusion`` masks (the combined file no longer tells object from hidden pixels), when
    only some frames have one (the others carry an all-ones placeholder, ``frames.ones_mask``, that is not a
    silhouette), and under ``--masks object`` (the renderer's masks of RGBA scenes, whose alpha already is one).
    """
    masks = outputs.mask_filenames
    placeholder = masks is not None and any(Path(m).name.startswith("ones_") and Path(m).parent.name == "full_masks"
                                            for m in masks)
    object_masks = policy == "auto" and masks is not None and not options.active and not placeholder
    metadata = dict(outputs.metadata)
    metadata.update({OBJECT_MASKS: bool(object_masks), IMAGE_CHANNELS: int(channels)})
    return replace(outputs, metadata=metadata)
