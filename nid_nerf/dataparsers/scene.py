"""``nid-scene``: one scene in nerfstudio (transforms.json) or Blender (transforms_{split}.json) format.

It checks the input first, so bad data gives one line that names the file and the fix. A transforms file with a
'scene_box' (nid-render-collection's scenes) keeps its frame and box; one without (a photo capture, in any units) is
centred and scaled from its cameras and sparse points so the object fills [-1, 1]^3 (``--normalize``, see
:mod:`nid_nerf.dataparsers.normalisation`), and the similarity is kept in the metadata (``model_from_input``) for
nid-export-mesh to undo. Either way one line warns when most cameras' optical axes miss the scene box. It can keep
only ``num_train_views`` spread-out training views (farthest-point sampling on the camera centres).

Training masks (see :mod:`nid_nerf.dataparsers.training_masks`): frames' ``mask_path`` (``--masks auto``) or the
renderer's object masks (``--masks object``), a ``--mask-dir``, and synthetic ``--occlusion`` are ANDed into
one mask per training image; masked pixels are never drawn, so they never reach the loss. Eval images keep
only the scene's own masks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Dict, List, Literal, Optional, Tuple, Type

import numpy as np
import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.dataparsers.nerfstudio_dataparser import Nerfstudio, NerfstudioDataParserConfig
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.utils.colors import get_color
from nerfstudio.utils.rich_utils import CONSOLE

from nid_nerf.dataparsers.few_view import select_train_views
from nid_nerf.dataparsers.frames import (
    fill_masks,
    frame_value,
    mirrored_transforms,
    push_down_intrinsics,
    strip_masks,
    unmirror,
)
from nid_nerf.dataparsers.image_info import read_image_info
from nid_nerf.dataparsers.images import conform_images, scene_channels
from nid_nerf.dataparsers.normalisation import MISS_FRACTION, Normalisation, axes_missing_box, fit_normalisation
from nid_nerf.dataparsers.occlusion import check_fraction
from nid_nerf.dataparsers.outputs import (
    INPUT_FRAME_KEY,
    NIDDataparserOutputs,
    as_nid_outputs,
    subset_outputs,
    tag_scene,
)
from nid_nerf.dataparsers.training_masks import (
    TrainingMaskOptions,
    apply_training_masks,
    cache_root,
    mark_mask_roles,
)
from nid_nerf.dataparsers.validation import (
    check_data_path,
    check_frames,
    check_images,
    check_masks,
    check_split_lists,
    detect_format,
    read_json,
)
from nid_nerf.errors import NIDInputError

DEFAULT_BOX_HALF = {"nerfstudio": 1.0, "blender": 1.5}


@dataclass
class NIDSceneDataParserConfig(DataParserConfig):
    """One scene; nerfstudio or Blender format, detected from the files."""

    _target: Type = field(default_factory=lambda: NIDSceneDataParser)
    data: Path = Path()
    """Scene folder (or a nerfstudio transforms .json file)."""
    format: Literal["auto", "nerfstudio", "blender"] = "auto"
    """auto: transforms.json -> nerfstudio, transforms_train.json -> blender."""
    num_train_views: Optional[int] = None
    """Keep this many training views, picked by farthest-point sampling on the camera centres (None: all). More
    than the train split has is an error."""
    train_view_indices: Optional[Tuple[int, ...]] = None
    """Explicit training views (indices into the train split, in file order); wins over num_train_views."""
    scene_scale: Optional[float] = None
    """Half-size of the scene box. None: the transforms file's 'scene_box', else 1.0 (nerfstudio; in normalised units
    when --normalize centres and scales the poses) / 1.5 (Blender)."""
    alpha_color: Optional[Literal["white", "black"]] = None
    """Blend RGBA images onto this colour when loading. None keeps RGBA, so the model blends with its own background."""
    masks: Literal["auto", "ignore", "object"] = "auto"
    """auto: frames' mask_path are object masks (rays are drawn inside and outside; the rendered opacity is fitted
    to the mask, the colour outside it to the eval background); with --mask-dir / --occlusion, or on some frames
    only, they are train-only masks (nerfstudio: train only inside); ignore: drop masks; object: train only inside
    the renderer's object masks (object_mask_path, else mask_path)."""
    normalize: Literal["auto", "cameras", "none"] = "auto"
    """nerfstudio format: centre and scale the poses from the cameras (and the sparse points of ply_file_path), so
    the object fills the box [-1, 1]^3 (see nid_nerf.dataparsers.normalisation). auto: only when the transforms
    file has no 'scene_box' and no nerfstudio pose option below is set (nid-render-collection's scenes keep their
    frame); cameras: always; none: keep the file's frame. Exported meshes come back in the file's frame."""
    up_stretch: bool = True
    """With --normalize: let an upright object framed in portrait reach farther along the cameras' shared up vector
    than across it (the model frame is squeezed along it; nid_nerf.dataparsers.normalisation). False keeps the
    sphere every camera sees whole."""
    orientation_method: Literal["pca", "up", "vertical", "none"] = "none"
    """nerfstudio format only: how to re-orient the poses (none keeps the file's frame)."""
    center_method: Literal["poses", "focus", "none"] = "none"
    """nerfstudio format only: how to re-centre the poses (none keeps the file's frame)."""
    auto_scale_poses: bool = False
    """nerfstudio format only: rescale the poses into [-1, 1]."""
    scale_factor: float = 1.0
    """Multiply camera positions by this."""
    downscale_factor: Optional[int] = 1
    """nerfstudio format only: read images from images_N/ (None: nerfstudio's automatic choice)."""
    eval_mode: Literal["fraction", "filename", "interval", "all"] = "fraction"
    """nerfstudio format without split lists in the file: how to split train and eval."""
    train_split_fraction: float = 0.9
    """nerfstudio format, eval_mode fraction: share of the frames used for training (the rest for evaluation)."""
    eval_interval: int = 8
    """nerfstudio format, eval_mode interval: every eval_interval-th frame is an evaluation frame."""
    check_images: bool = True
    """Open and verify every image once (catches missing, corrupt or mis-sized files with a clear message)."""
    mask_dir: Optional[Path] = None
    """Training masks: a folder with one single-channel mask per training image, named like the image
    (nonzero = train on the pixel). Relative paths are looked up in the scene folder first. ANDed with the
    masks of --masks; eval images are not masked."""
    occlusion: float = 0.0
    """Synthetic occlusion (inpainting): hide about this fraction (0..0.9) of each training image's object
    pixels behind a random occluder, left out of the loss. 0 = off; eval images are untouched."""
    occlusion_seed: int = 0
    """Seed of the synthetic occluders (each image's occluder depends only on the seed and the image)."""
    occlusion_shape: Literal["rectangle", "blobs"] = "rectangle"
    """Occluder: one random rectangle, or the union of 2-4 random ellipses."""


@dataclass
class NIDSceneDataParser(DataParser):
    config: NIDSceneDataParserConfig

    def __init__(self, config: NIDSceneDataParserConfig):
        super().__init__(config=config)
        self._checked: Dict[str, Optional[List[Tuple[int, int]]]] = {}
        """transforms file -> its images' (width, height) once checked (None: --check-images False)."""
        self._object_masks: Dict[Path, Path] = {}
        self._source: Path = Path(config.data)
        """The transforms file of the split being read (named in error messages)."""
        self._channels: int = 4
        """Channel count of the scene's images (4 if any frame has alpha): odd frames are converted to it."""
        self._normalisations: Dict[str, Normalisation] = {}
        """transforms file -> its normalisation, fitted once for all splits."""

    @property
    def source(self) -> Path:
        """The transforms file of the split read last (named in error messages)."""
        return self._source

    @property
    def scene_root(self) -> Path:
        data = Path(self.config.data)
        return data.parent if data.suffix.lower() == ".json" else data

    @property
    def scene_name(self) -> str:
        data = Path(self.config.data)
        return data.parent.name if data.suffix.lower() == ".json" else data.name

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> NIDDataparserOutputs:
        check_data_path(self.config.data)
        check_fraction(self.config.occlusion)
        fmt = self.config.format if self.config.format != "auto" else detect_format(self.config.data)
        if fmt == "nerfstudio":
            outputs, file_box = self._nerfstudio_outputs(split)
        else:
            outputs, file_box = self._blender_outputs(split), None
            scale = float(self.config.scale_factor)
            outputs = _with_input_frame(outputs, np.diag([scale, scale, scale, 1.0]))
        outputs = self._apply_masks_policy(outputs)
        if split == "train":
            outputs = self._select_train_views(outputs)
            outputs = apply_training_masks(
                outputs, self.scene_root, self.scene_name, self._object_masks, self._mask_options()
            )
            hidden = outputs.metadata.get("occlusion_hidden_fractions")
            if hidden:
                CONSOLE.log(
                    f"{self.scene_name}: --occlusion {self.config.occlusion:g} hides {np.mean(hidden):.1%} of the "
                    f"object pixels of {len(hidden)} training images "
                    f"(masks in {Path(outputs.mask_filenames[0]).parent.parent})"
                )
        outputs = conform_images(outputs, self.scene_root, self.scene_name, self._channels)
        outputs = mark_mask_roles(outputs, self.config.masks, self._mask_options(), self._channels)
        outputs = replace(outputs, scene_box=self._scene_box(fmt, file_box))
        self._warn_if_cameras_miss_box(outputs)
        return as_nid_outputs(tag_scene(outputs, 0, self.scene_name))

    def _warn_if_cameras_miss_box(self, outputs: DataparserOutputs) -> None:
        """One line when most optical axes miss the scene box: the cameras do not look at what the field models
        (poses in other units, or a box that is not around the object)."""
        miss = axes_missing_box(outputs.cameras.camera_to_worlds.numpy(), outputs.scene_box.aabb.numpy())
        key = f"{self._source}:box-warning"
        if miss.mean() <= MISS_FRACTION or key in self._checked:
            return
        self._checked[key] = None
        lo, hi = outputs.scene_box.aabb.tolist()
        hint = "pass --normalize cameras" if self.config.normalize != "cameras" else "check the poses' convention"
        CONSOLE.log(
            f"[yellow]{self._source}: {int(miss.sum())} of {len(miss)} cameras look away from the scene box "
            f"{[round(v, 3) for v in lo]}..{[round(v, 3) for v in hi]}; {hint} to centre and scale the poses on "
            "the object, or set the box with --scene-scale"
        )

    def _mask_options(self) -> TrainingMaskOptions:
        c = self.config
        return TrainingMaskOptions(c.mask_dir, c.occlusion, c.occlusion_seed, c.occlusion_shape)

    # ---------------------------------------------------------------- nerfstudio format
    def _nerfstudio_outputs(self, split: str) -> Tuple[DataparserOutputs, Optional[List]]:
        data = Path(self.config.data)
        path = data if data.suffix.lower() == ".json" else data / "transforms.json"
        meta = read_json(path)
        self._source = path
        sizes = self._check_nerfstudio(meta, path)
        self._channels = scene_channels([read_image_info(path.parent / f["file_path"]) for f in meta["frames"]])
        derived = self._derived_meta(meta, path, sizes)
        ns_kwargs = dict(
            data=data,
            scale_factor=self.config.scale_factor,
            downscale_factor=self.config.downscale_factor,
            orientation_method=self.config.orientation_method,
            center_method=self.config.center_method,
            auto_scale_poses=self.config.auto_scale_poses,
            eval_mode=self.config.eval_mode,
            train_split_fraction=self.config.train_split_fraction,
            eval_interval=self.config.eval_interval,
            depth_unit_scale_factor=float(meta.get("depth_unit_scale_factor", 1e-3)),
        )
        if derived is None:
            outputs = Nerfstudio(NerfstudioDataParserConfig(**ns_kwargs)).get_dataparser_outputs(split)
        else:
            with mirrored_transforms(path, derived) as mirrored:
                ns_kwargs["data"] = mirrored
                outputs = Nerfstudio(NerfstudioDataParserConfig(**ns_kwargs)).get_dataparser_outputs(split)
            outputs = unmirror(outputs, mirrored.parent, path.parent)
        self._object_masks = self._frame_paths(meta, path.parent, ("object_mask_path", "mask_path"))
        normals = self._frame_paths(meta, path.parent, ("normal_file_path",))
        metadata = dict(outputs.metadata)
        normal_files = [normals.get(Path(f)) for f in outputs.image_filenames]
        metadata["normal_filenames"] = normal_files if normal_files and None not in normal_files else None
        outputs = replace(outputs, metadata=metadata)
        keeps_frame = (
            self.config.orientation_method == "none"
            and self.config.center_method == "none"
            and not self.config.auto_scale_poses
            and self.config.scale_factor == 1.0
        )
        normalise = self.config.normalize == "cameras" or (
            self.config.normalize == "auto" and keeps_frame and "scene_box" not in meta
        )
        outputs = _with_input_frame(outputs, self._nerfstudio_input_frame(meta, path, outputs))
        if normalise:
            return self._normalised(outputs, meta, path), None
        return outputs, meta.get("scene_box") if keeps_frame else None

    def _nerfstudio_input_frame(self, meta: Dict, path: Path, outputs: DataparserOutputs) -> np.ndarray:
        """4x4 from the transforms file's frame to nerfstudio's output frame (``p = scale * T p_file``).

        nerfstudio's ``dataparser_transform`` starts from COLMAP's frame when the file has ``applied_transform``
        (or a colmap/ folder), and its ``dataparser_scale`` includes ``applied_scale``, which the poses never got;
        both are taken out so meshes land on the file's own cameras and sparse points.
        """
        applied = np.eye(4)
        if "applied_transform" in meta:
            applied[:3] = np.asarray(meta["applied_transform"], dtype=np.float64)[:3]
        elif (path.parent / "colmap" / "sparse" / "0").exists():
            applied[:3] = [[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, 0]]
        transform = np.eye(4)
        transform[:3] = outputs.dataparser_transform.double().numpy()
        pose_scale = float(outputs.dataparser_scale) / float(meta.get("applied_scale", 1.0))
        to_file = transform @ np.linalg.inv(applied)
        to_file[:3] *= pose_scale
        to_file[3] = [0, 0, 0, 1]
        return to_file

    def _normalised(self, outputs: DataparserOutputs, meta: Dict, path: Path) -> DataparserOutputs:
        """The outputs in the frame of :func:`fit_normalisation`, fitted on every frame of the file (so train and
        eval splits share it) and the sparse points; the input frame is kept in the metadata for mesh export."""
        key = f"{path}:normalisation"
        if key not in self._normalisations:
            first = np.asarray(outputs.metadata[INPUT_FRAME_KEY])
            poses = np.tile(np.eye(4), (len(meta["frames"]), 1, 1))
            poses[:, :3] = np.array([f["transform_matrix"] for f in meta["frames"]], dtype=np.float64)[:, :3, :4]
            poses = np.einsum("ij,njk->nik", first, poses)  # into nerfstudio's frame (identity by default)
            fovs = np.array([_half_fovs(f, meta) for f in meta["frames"]])
            points = _sparse_points(path, meta)
            if points is not None:
                points = points @ first[:3, :3].T + first[:3, 3]
            fit = fit_normalisation(poses[:, :3, :4], fovs.min(1), points,
                                    vertical_half_fovs=fovs[:, 1] if self.config.up_stretch else None)
            self._normalisations[key] = fit
            source = f"the cameras and {fit.num_points} sparse points" if fit.num_points else "the cameras"
            stretched = (f", {fit.stretch:.3g} times farther along the cameras' up {np.round(fit.up, 3).tolist()}"
                         " (--up-stretch False: a sphere)") if fit.up is not None else ""
            CONSOLE.log(
                f"{path}: centred on {np.round(fit.centre, 4).tolist()} and scaled by {fit.scale:.4g} (from {source}"
                f"{stretched}), so the object fits the box [-1, 1]^3; meshes are exported in the file's frame"
            )
        fit = self._normalisations[key]
        affine = torch.tensor(fit.matrix(), dtype=torch.float64)
        linear, shift = affine[:3, :3], affine[:3, 3]

        def moved(points: torch.Tensor) -> torch.Tensor:
            return (points.double() @ linear.T + shift).to(points.dtype)

        squeeze = torch.tensor(fit.squeeze(), dtype=torch.float64)  # exactly I without an up stretch
        c2w = outputs.cameras.camera_to_worlds.clone()
        # rays o + t R d map to A o + b + t s S R d: the rotation block becomes S R (directions are normalised)
        c2w[:, :3, 3] = moved(c2w[:, :3, 3])
        c2w[:, :3, :3] = squeeze.to(c2w.dtype) @ c2w[:, :3, :3]
        outputs.cameras.camera_to_worlds = c2w
        metadata = dict(outputs.metadata)
        metadata[INPUT_FRAME_KEY] = affine @ torch.as_tensor(metadata[INPUT_FRAME_KEY], dtype=torch.float64)
        if metadata.get("points3D_xyz") is not None:
            metadata["points3D_xyz"] = moved(metadata["points3D_xyz"])
        # nerfstudio's convention (dataparser_transforms.json): p_out = scale * (transform @ p_original)
        scale = float(outputs.dataparser_scale)
        transform = outputs.dataparser_transform.clone()
        transform[:, 3] -= torch.tensor(fit.centre, dtype=transform.dtype) / scale
        transform = squeeze.to(transform.dtype) @ transform
        return replace(outputs, cameras=outputs.cameras, metadata=metadata, dataparser_transform=transform,
                       dataparser_scale=scale * fit.scale)

    def _check_nerfstudio(self, meta: Dict, path: Path) -> Optional[List[Tuple[int, int]]]:
        """Validate the file and its images once; returns each frame's image (width, height), EXIF applied
        (None with --check-images False).

        A frame's own intrinsics win over the global ones, here and when loading (:meth:`_derived_meta`).
        """
        if str(path) in self._checked:
            return self._checked[str(path)]
        frames = check_frames(meta, path, need_intrinsics=True)
        check_split_lists(meta, path, [f["file_path"] for f in frames])
        sizes = None
        if self.config.check_images:
            images = [path.parent / f["file_path"] for f in frames]
            declared = [(int(frame_value(f, meta, "w")), int(frame_value(f, meta, "h"))) for f in frames]
            shared = ["w" not in f and "h" not in f for f in frames]
            sizes = check_images(images, path, declared, shared_size=shared)
            if self.config.downscale_factor and self.config.downscale_factor > 1:
                folder = f"images_{self.config.downscale_factor}"
                check_images([path.parent / folder / Path(f["file_path"]).name for f in frames], path)
        self._checked[str(path)] = sizes
        return sizes

    def _derived_meta(self, meta: Dict, path: Path, sizes: Optional[List[Tuple[int, int]]]) -> Optional[Dict]:
        """The transforms nerfstudio must read instead of ``meta`` (see nid_nerf.dataparsers.frames), or None.

        Per-frame intrinsics are pushed into every frame. With masks on some frames only, ``--masks auto``
        gives the other frames an all-ones mask (they train on every pixel, logged once per file), and
        ``--masks ignore`` / ``object`` drop the masks, which they do not read.
        """
        derived = push_down_intrinsics(meta)
        frames = meta["frames"]
        with_masks = sum("mask_path" in f for f in frames)
        if not with_masks or with_masks == len(frames):
            return derived
        if self.config.masks != "auto":
            return strip_masks(derived or meta)
        if self.config.downscale_factor != 1:
            raise NIDInputError(
                f"{path}: {with_masks} of {len(frames)} frames have 'mask_path', which nid-scene supports at "
                "--downscale-factor 1 only; give every frame a mask_path or pass --downscale-factor 1"
            )
        if sizes is None:
            sizes = [read_image_info(path.parent / f["file_path"]).size for f in frames]
        key = f"{path}:partial-masks"
        if key not in self._checked:
            self._checked[key] = None
            CONSOLE.log(
                f"{path}: {len(frames) - with_masks} of {len(frames)} frames have no mask_path; those frames train "
                "on every pixel (no mask)"
            )
        return fill_masks(derived or meta, sizes, cache_root(self.scene_root) / "full_masks")

    @staticmethod
    def _frame_paths(meta: Dict, root: Path, keys: Tuple[str, ...]) -> Dict[Path, Path]:
        """image file -> the first of ``keys`` that the frame has."""
        out = {}
        for frame in meta["frames"]:
            for key in keys:
                if key in frame:
                    out[root / frame["file_path"]] = root / frame[key]
                    break
        return out

    # ---------------------------------------------------------------- Blender format
    def _blender_outputs(self, split: str) -> DataparserOutputs:
        data = Path(self.config.data)
        path = data / f"transforms_{split}.json"
        if not path.is_file() and split in ("val", "test"):
            other = data / f"transforms_{'test' if split == 'val' else 'val'}.json"
            if not other.is_file():
                raise NIDInputError(
                    f"{data} has no transforms_val.json or transforms_test.json; add one (Blender format) for "
                    "evaluation"
                )
            path = other
        meta = read_json(path)
        self._source = path
        frames = check_frames(meta, path, need_intrinsics=False)
        angle = meta.get("camera_angle_x")
        if isinstance(angle, bool) or not isinstance(angle, (int, float)) or not 0 < angle < np.pi:
            raise NIDInputError(f"{path}: 'camera_angle_x' is missing or not an angle in radians; add it")
        images = [data / (f["file_path"] if Path(f["file_path"]).suffix else f["file_path"] + ".png") for f in frames]
        sizes = check_images(images, path) if self.config.check_images else [_image_size(p) for p in images]
        self._channels = scene_channels([read_image_info(p) for p in images])
        width = torch.tensor([s[0] for s in sizes], dtype=torch.float32)[:, None]
        height = torch.tensor([s[1] for s in sizes], dtype=torch.float32)[:, None]
        focal = 0.5 * width / float(np.tan(0.5 * angle))
        poses = torch.tensor(np.array([f["transform_matrix"] for f in frames], dtype=np.float32))[:, :3, :4]
        poses[:, :3, 3] *= self.config.scale_factor
        cameras = Cameras(
            camera_to_worlds=poses,
            fx=focal,
            fy=focal.clone(),
            cx=width / 2.0,
            cy=height / 2.0,
            width=width.long(),
            height=height.long(),
            camera_type=CameraType.PERSPECTIVE,
        )
        return DataparserOutputs(
            image_filenames=images,
            cameras=cameras,
            alpha_color=None,
            dataparser_scale=self.config.scale_factor,
            metadata={"depth_filenames": None, "depth_unit_scale_factor": 1e-3, "mask_color": None},
        )

    # ---------------------------------------------------------------- shared post-processing
    def _apply_masks_policy(self, outputs: DataparserOutputs) -> DataparserOutputs:
        alpha = None if self.config.alpha_color is None else get_color(self.config.alpha_color)
        masks = outputs.mask_filenames
        if self.config.masks == "ignore":
            masks = None
        elif self.config.masks == "object":
            lookup = self._object_masks
            missing = [f for f in outputs.image_filenames if Path(f) not in lookup]
            if missing:
                raise NIDInputError(
                    f"--masks object needs a mask for every frame, but {missing[0]} has none in {self.config.data}; "
                    "use --masks auto or ignore"
                )
            masks = [lookup[Path(f)] for f in outputs.image_filenames]
        if masks is not None and self.config.check_images:
            # against the images as loaded (EXIF applied, images_N/ when downscaled): nerfstudio would assert
            check_masks(masks, self._source, [read_image_info(f).size for f in outputs.image_filenames])
        return replace(outputs, mask_filenames=masks, alpha_color=alpha)

    def _select_train_views(self, outputs: DataparserOutputs) -> DataparserOutputs:
        indices, num = self.config.train_view_indices, self.config.num_train_views
        n = len(outputs.image_filenames)
        if num is not None and num > n and not indices:
            raise NIDInputError(
                f"{self._source}: --num-train-views {num} asks for more training views than the {n} it has; pass "
                f"at most {n}, or leave --num-train-views out to use all"
            )
        try:
            keep = select_train_views(outputs.cameras.camera_to_worlds[:, :3, 3], num, indices)
        except ValueError as err:
            raise NIDInputError(f"{self.config.data}: {err}; pick views that exist") from None
        if keep is None:
            return outputs
        return subset_outputs(outputs, keep)

    def _scene_box(self, fmt: str, file_box: Optional[List]) -> SceneBox:
        if self.config.scene_scale is not None:
            half = float(self.config.scene_scale)
            return SceneBox(aabb=torch.tensor([[-half] * 3, [half] * 3], dtype=torch.float32))
        if file_box is not None:
            try:
                aabb = torch.tensor(file_box, dtype=torch.float32).reshape(2, 3)
                if bool(torch.all(aabb[1] > aabb[0])):
                    return SceneBox(aabb=aabb)
            except (TypeError, ValueError, RuntimeError):
                pass
            CONSOLE.log(f"[yellow]{self.config.data}: ignoring malformed 'scene_box' {file_box}")
        half = DEFAULT_BOX_HALF[fmt]
        return SceneBox(aabb=torch.tensor([[-half] * 3, [half] * 3], dtype=torch.float32))


def _image_size(path: Path) -> Tuple[int, int]:
    return read_image_info(path).size


def _with_input_frame(outputs: DataparserOutputs, model_from_input: np.ndarray) -> DataparserOutputs:
    metadata = dict(outputs.metadata)
    metadata[INPUT_FRAME_KEY] = torch.tensor(np.asarray(model_from_input, dtype=np.float64))
    return replace(outputs, metadata=metadata)


def _half_fovs(frame: Dict, meta: Dict) -> Tuple[float, float]:
    """Half the field of view across the image's width and its height, in radians."""
    w, h = float(frame_value(frame, meta, "w")), float(frame_value(frame, meta, "h"))
    fx, fy = float(frame_value(frame, meta, "fl_x")), float(frame_value(frame, meta, "fl_y") or frame_value(
        frame, meta, "fl_x"))
    return float(np.arctan(0.5 * w / fx)), float(np.arctan(0.5 * h / fy))


def _sparse_points(path: Path, meta: Dict) -> Optional[np.ndarray]:
    """The file's sparse points (``ply_file_path``), in its frame, or None."""
    name = meta.get("ply_file_path")
    if not name:
        return None
    ply = path.parent / name
    if not ply.is_file():
        raise NIDInputError(f"{path}: 'ply_file_path' names {ply}, which does not exist; fix or remove the entry")
    import trimesh

    try:
        cloud = trimesh.load(str(ply), process=False)
        points = np.asarray(getattr(cloud, "vertices", np.empty((0, 3))), dtype=np.float64).reshape(-1, 3)
    except Exception as err:  # noqa: BLE001 - any parse failure means a bad file
        raise NIDInputError(f"{ply} (ply_file_path of {path}) cannot be read ({type(err).__name__}); re-export "
                            "it as a PLY point cloud or remove the entry") from None
    return points if len(points) else None
