"""``nid-collection``: a folder of scene folders read as one dataset, each image tagged with its scene index.

Scenes are numbered by sorted folder name (after the include/exclude filters). Each scene is read by
:class:`NIDSceneDataParser` with the same options (so ``--num-train-views`` applies per scene). Every scene must
have the same number of training images (after ``--num-train-views``), and in nerfstudio format either every
scene or none has split lists (``train_filenames`` ...); otherwise one line names the first scene that differs
and the fix. Scenes may differ in intrinsics and resolution (each image keeps its own size; one line says so).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import List, Optional, Set, Tuple, Type

import torch
from nerfstudio.data.dataparsers.base_dataparser import DataParser
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.rich_utils import CONSOLE

from nid_nerf.dataparsers.outputs import (
    SCENE_INDEX,
    NIDDataparserOutputs,
    concat_cameras,
    concat_lists,
    merge_metadata,
    tag_scene,
)
from nid_nerf.dataparsers.scene import NIDSceneDataParser, NIDSceneDataParserConfig
from nid_nerf.dataparsers.validation import check_data_path, read_json
from nid_nerf.errors import NIDInputError


@dataclass
class NIDCollectionDataParserConfig(NIDSceneDataParserConfig):
    """A collection: ``data`` holds one subfolder per scene (nerfstudio or Blender format)."""

    _target: Type = field(default_factory=lambda: NIDCollectionDataParser)
    data: Path = Path()
    """Folder whose subfolders are scenes."""
    scenes: Tuple[str, ...] = ()
    """Only these scene folders (empty: all)."""
    exclude_scenes: Tuple[str, ...] = ()
    """Leave these scene folders out (e.g. held-out scenes for few-view evaluation)."""
    max_scenes: Optional[int] = None
    """Keep only the first N scenes (by sorted name) after the filters."""


def find_scene_folders(root: Path) -> Tuple[List[Path], List[str]]:
    """Sorted subfolders that hold transforms.json or transforms_train.json, and the names of the others."""
    scenes, other = [], []
    for sub in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith(".")):
        if (sub / "transforms.json").is_file() or (sub / "transforms_train.json").is_file():
            scenes.append(sub)
        else:
            other.append(sub.name)
    return scenes, other


@dataclass
class NIDCollectionDataParser(DataParser):
    config: NIDCollectionDataParserConfig

    def __init__(self, config: NIDCollectionDataParserConfig):
        super().__init__(config=config)
        self._parsers: Optional[List[NIDSceneDataParser]] = None
        self._split_lists_checked = False
        self._resolution_logged = False

    def scene_folders(self) -> List[Path]:
        root = check_data_path(self.config.data, "collection folder")
        if not root.is_dir():
            raise NIDInputError(f"collection {root} is not a folder; pass --data with the folder of scene folders")
        scenes, other = find_scene_folders(root)
        if not scenes:
            if (root / "transforms.json").is_file() or (root / "transforms_train.json").is_file():
                raise NIDInputError(
                    f"{root} is a single scene, not a collection; use the nid-scene dataparser, or pass --data with "
                    "the folder that holds the scene folders"
                )
            raise NIDInputError(
                f"collection {root} has no scene folders (subfolders with transforms.json or transforms_train.json); "
                "render one with scripts/render_collection.py"
            )
        if other:
            CONSOLE.log(f"[yellow]{root}: ignoring {len(other)} folder(s) without a transforms file: "
                        f"{', '.join(other[:5])}")
        names = [s.name for s in scenes]
        unknown = [s for s in (*self.config.scenes, *self.config.exclude_scenes) if s not in names]
        if unknown:
            raise NIDInputError(f"{root} has no scene folder named {unknown[0]!r}; check --scenes / --exclude-scenes")
        if self.config.scenes:
            scenes = [s for s in scenes if s.name in self.config.scenes]
        scenes = [s for s in scenes if s.name not in self.config.exclude_scenes]
        if self.config.max_scenes is not None:
            scenes = scenes[: self.config.max_scenes]
        if not scenes:
            raise NIDInputError(
                f"{root}: the scene filters leave no scene; loosen --scenes/--exclude-scenes/--max-scenes"
            )
        return scenes

    def _scene_parsers(self) -> List[NIDSceneDataParser]:
        if self._parsers is None:
            base = {
                f.name: getattr(self.config, f.name) for f in fields(NIDSceneDataParserConfig) if f.name != "_target"
            }
            self._parsers = [
                NIDSceneDataParser(NIDSceneDataParserConfig(**{**base, "data": folder}))
                for folder in self.scene_folders()
            ]
        return self._parsers

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> NIDDataparserOutputs:
        parsers = self._scene_parsers()
        self._check_split_lists_agree(parsers)
        names = [p.scene_name for p in parsers]
        per_scene = []
        quiet = CONSOLE.quiet
        CONSOLE.quiet = True  # nerfstudio logs a few lines per scene; with hundreds of scenes that drowns the log
        try:
            for index, parser in enumerate(parsers):
                outputs = parser.get_dataparser_outputs(split=split)
                per_scene.append(tag_scene(outputs, index, parser.scene_name))
        finally:
            CONSOLE.quiet = quiet
        if split == "train":
            self._check_scenes_agree(parsers, per_scene)
        num_images = sum(len(o.image_filenames) for o in per_scene)
        CONSOLE.log(f"nid-collection: {len(parsers)} scenes, {num_images} {split} images")
        hidden = [f for o in per_scene for f in o.metadata.get("occlusion_hidden_fractions") or []]
        if hidden:
            CONSOLE.log(f"nid-collection: --occlusion {self.config.occlusion:g} hides {sum(hidden) / len(hidden):.1%} "
                        f"of the object pixels of {len(hidden)} training images")

        masks = [o.mask_filenames for o in per_scene]
        if any(m is None for m in masks) and any(m is not None for m in masks):
            with_masks = [n for n, m in zip(names, masks) if m is not None]
            raise NIDInputError(
                f"{self.config.data}: scenes {', '.join(with_masks[:3])} have masks and others do not; give every "
                "scene masks or pass --masks ignore"
            )
        aabbs = torch.stack([o.scene_box.aabb for o in per_scene])
        scene_box = SceneBox(aabb=torch.stack([aabbs[:, 0].min(0).values, aabbs[:, 1].max(0).values]))
        transforms = torch.stack([o.dataparser_transform for o in per_scene])
        scales = torch.tensor([float(o.dataparser_scale) for o in per_scene])
        same_frame = bool(torch.allclose(transforms, transforms[0:1]) and torch.allclose(scales, scales[0:1]))
        metadata = merge_metadata([o.metadata for o in per_scene], names)
        metadata["scene_image_counts"] = [len(o.image_filenames) for o in per_scene]
        if not same_frame:
            metadata["scene_dataparser_transforms"] = transforms
            metadata["scene_dataparser_scales"] = scales
        cameras = concat_cameras([o.cameras for o in per_scene])
        assert cameras.metadata is not None and SCENE_INDEX in cameras.metadata
        return NIDDataparserOutputs(
            image_filenames=concat_lists([o.image_filenames for o in per_scene]),
            cameras=cameras,
            alpha_color=per_scene[0].alpha_color,
            scene_box=scene_box,
            mask_filenames=concat_lists(masks),
            metadata=metadata,
            dataparser_transform=per_scene[0].dataparser_transform if same_frame else torch.eye(4)[:3, :],
            dataparser_scale=float(scales[0]) if same_frame else 1.0,
        )

    def _check_split_lists_agree(self, parsers: List[NIDSceneDataParser]) -> None:
        """nerfstudio-format scenes: all or none have split lists, else the ones without would be split by
        fraction (``--train-split-fraction``) while the others use their lists: different views, silently."""
        if self._split_lists_checked or self.config.format == "blender":
            return
        with_lists, without = [], []
        for parser in parsers:
            path = Path(parser.config.data)
            path = path if path.suffix.lower() == ".json" else path / "transforms.json"
            if not path.is_file():
                continue  # Blender format: split by file
            meta = read_json(path)
            (with_lists if any(f"{s}_filenames" in meta for s in ("train", "val", "test")) else without).append(path)
        if with_lists and without:
            raise NIDInputError(
                f"{without[0]} has no split lists (train_filenames, val_filenames, test_filenames) but "
                f"{len(with_lists)} other scene(s) of {self.config.data} have them (e.g. {with_lists[0]}), so its "
                "views would be split by fraction instead; add train_filenames, val_filenames and test_filenames "
                f"like the other scenes, or pass --exclude-scenes {without[0].parent.name} to leave it out"
            )
        self._split_lists_checked = True

    def _check_scenes_agree(self, parsers: List[NIDSceneDataParser], per_scene: List[NIDDataparserOutputs]) -> None:
        """Training images: every scene has as many (after --num-train-views) as the first, else one line names
        the first scene that differs. Resolution: scenes may differ (one line says so, once)."""
        counts = [len(o.image_filenames) for o in per_scene]
        odd = next((k for k, n in enumerate(counts) if n != counts[0]), None)
        if odd is not None:
            first, other = parsers[0], parsers[odd]
            raise NIDInputError(
                f"{other.source}: {counts[odd]} training images, but the first scene's {first.source} has "
                f"{counts[0]} (every scene of a collection needs the same number); give every scene as many train "
                f"views, pass --num-train-views {min(counts)} to keep that many per scene, or pass --scenes / "
                f"--exclude-scenes {other.scene_name} to leave it out"
            )
        sizes = [_sizes(o) for o in per_scene]
        odd = next((k for k, s in enumerate(sizes) if s != sizes[0]), None)
        if odd is not None and not self._resolution_logged:
            self._resolution_logged = True
            (w0, h0), (w, h) = min(sizes[0]), min(sizes[odd] - sizes[0] or sizes[odd])
            CONSOLE.log(
                f"nid-collection: scenes differ in resolution ({parsers[0].scene_name} is {w0}x{h0}, "
                f"{parsers[odd].scene_name} is {w}x{h}); each image keeps its own size"
            )


def _sizes(outputs: NIDDataparserOutputs) -> Set[Tuple[int, int]]:
    """The (width, height) of the cameras of one scene."""
    cameras = outputs.cameras
    return {(int(w), int(h)) for w, h in zip(cameras.width.reshape(-1).tolist(), cameras.height.reshape(-1).tolist())}
