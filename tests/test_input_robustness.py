"""Odd but valid input just works; input that cannot work gets one clear line naming the file and the fix.

Every scene here is a handful of 8 x 8 px frames written by :func:`_scene` (no rendering), so each test takes
well under a second or two.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import pytest
import torch
from nerfstudio.data.datasets.base_dataset import InputDataset
from PIL import Image

from nid_nerf.dataparsers import NIDSceneDataParserConfig
from nid_nerf.errors import NIDInputError

SIZE = 8


@pytest.fixture
def wide_console(monkeypatch):
    """nerfstudio's console, wide enough that a log line is not wrapped (so a test can read it whole)."""
    from nerfstudio.utils.rich_utils import CONSOLE

    monkeypatch.setattr(CONSOLE, "width", 1000)


def _pose(k: int, n: int) -> List[List[float]]:
    """Camera-to-world (OpenGL) on a circle of radius 2 around the origin, looking at it."""
    angle = 2 * math.pi * k / n
    eye = np.array([2 * math.cos(angle), 2 * math.sin(angle), 0.5])
    back = eye / np.linalg.norm(eye)  # the camera looks along -z
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w.tolist()


def _rgba(k: int, size=(SIZE, SIZE)) -> Image.Image:
    array = np.zeros((size[1], size[0], 4), dtype=np.uint8)
    array[..., 0] = 40 * k + 20
    array[..., 1] = 100
    array[..., 3] = 255
    array[: size[1] // 4] = 0  # a transparent band: the alpha is real
    return Image.fromarray(array, "RGBA")


def _scene(root: Path, images: Sequence[Image.Image], frame_extra: Optional[Dict[int, Dict]] = None,
           suffix: str = ".png", save_kwargs: Optional[Dict[int, Dict]] = None, **meta_extra) -> Path:
    """A nerfstudio scene: one frame per image (global 8 x 8 intrinsics), poses on a circle; returns the folder."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    frames = []
    for k, image in enumerate(images):
        name = f"images/frame_{k:02d}{suffix}"
        image.save(root / name, **(save_kwargs or {}).get(k, {}))
        frames.append({"file_path": name, "transform_matrix": _pose(k, len(images)), **(frame_extra or {}).get(k, {})})
    meta = {"fl_x": 10.0, "fl_y": 10.0, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE, "frames": frames,
            "train_filenames": [f["file_path"] for f in frames], "val_filenames": [frames[-1]["file_path"]],
            **meta_extra}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def _load(scene: Path, split: str = "train", **kwargs):
    return NIDSceneDataParserConfig(data=scene, **kwargs).setup().get_dataparser_outputs(split=split)


def _one_line(err: pytest.ExceptionInfo, *names: str) -> str:
    message = str(err.value)
    assert "\n" not in message and ";" in message, message  # what is wrong; how to fix it
    for name in names:
        assert name in message, message
    return message


def _images(outputs) -> List[torch.Tensor]:
    """The images as nerfstudio's InputDataset loads them (uint8 H x W x C)."""
    dataset = InputDataset(outputs)
    return [dataset.get_image_uint8(k) for k in range(len(dataset))]


# ------------------------------------------------------------------------------------ 1, 2: grayscale, 16-bit
def test_gray_and_16bit_frames_among_rgba_get_the_scenes_channels(tmp_path):
    gray = Image.new("L", (SIZE, SIZE), 90)
    deep = Image.fromarray(np.full((SIZE, SIZE), 40000, dtype=np.uint16))  # 16-bit gray (I;16)
    scene = _scene(tmp_path / "s", [_rgba(0), _rgba(1), gray, deep])
    before = {p.name: p.read_bytes() for p in (scene / "images").iterdir()}
    outputs = _load(scene)
    images = _images(outputs)
    assert {tuple(im.shape) for im in images} == {(SIZE, SIZE, 4)}
    torch.stack(images)  # what nerfstudio's image batch does: it used to fail with "stack expects ... equal size"
    by_name = {Path(f).name: im for f, im in zip(outputs.image_filenames, images)}
    gray_loaded = next(im for name, im in by_name.items() if "frame_02" in name)
    deep_loaded = next(im for name, im in by_name.items() if "frame_03" in name)
    assert torch.all(gray_loaded[..., :3] == 90) and torch.all(gray_loaded[..., 3] == 255)  # opaque
    assert torch.all(deep_loaded[..., :3] == round(40000 * 255 / 65535))
    assert {p.name: p.read_bytes() for p in (scene / "images").iterdir()} == before  # originals untouched
    assert [Path(f).parent for f in outputs.image_filenames[:2]] == [scene / "images"] * 2  # RGBA frames: as they are


def test_all_16bit_frames_are_scaled_not_wrapped(tmp_path):
    values = [300, 32768, 65535]  # low bytes 44, 0, 255: what nerfstudio's uint8 cast used to train on
    frames = [Image.fromarray(np.full((SIZE, SIZE), v, dtype=np.uint16)) for v in values]
    assert {im.mode for im in frames} == {"I;16"}
    outputs = _load(_scene(tmp_path / "s", frames))
    images = _images(outputs)
    assert {tuple(im.shape) for im in images} == {(SIZE, SIZE, 3)}  # no frame has alpha: RGB
    got = sorted(int(im[0, 0, 0]) for im in images)
    assert got == [1, 128, 255]
    again = _load(tmp_path / "s")  # the converted copies are cached, not rewritten
    assert again.image_filenames == outputs.image_filenames


# ------------------------------------------------------------------------------------ 3, 8: per-frame w/h
def test_a_frames_own_w_h_win_over_the_global_ones(tmp_path):
    big = _rgba(2, size=(12, 10))
    own = {2: {"w": 12, "h": 10, "cx": 6.0, "cy": 5.0, "fl_x": 15.0, "fl_y": 15.0}}
    scene = _scene(tmp_path / "s", [_rgba(0), _rgba(1), big], frame_extra=own)
    outputs = _load(scene)
    index = [Path(f).name for f in outputs.image_filenames].index("frame_02.png")
    cameras = outputs.cameras
    assert (int(cameras.width[index]), int(cameras.height[index])) == (12, 10)
    assert float(cameras.fx[index]) == 15.0 and float(cameras.cx[index]) == 6.0
    assert (int(cameras.width[0]), int(cameras.height[0]), float(cameras.fx[0])) == (SIZE, SIZE, 10.0)
    assert outputs.image_filenames[index] == scene / "images" / "frame_02.png"  # the scene's files, not a copy
    for k, image in enumerate(_images(outputs)):  # every camera matches its image as loaded
        assert tuple(image.shape[:2]) == (int(cameras.height[k]), int(cameras.width[k]))


def test_mixed_image_sizes_without_their_own_intrinsics_are_refused(tmp_path):
    scene = _scene(tmp_path / "s", [_rgba(0), _rgba(1), _rgba(2, size=(12, 10))])
    with pytest.raises(NIDInputError, match="images differ in size") as err:
        _load(scene)
    _one_line(err, "transforms.json", "frame_02.png", "its own w, h")


# ------------------------------------------------------------------------------------ 4: EXIF orientation
def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _portrait() -> Image.Image:
    """Stored 8 wide x 12 high, top half red, bottom half blue."""
    array = np.zeros((12, SIZE, 3), dtype=np.uint8)
    array[:6, :, 0] = 255
    array[6:, :, 2] = 255
    return Image.fromarray(array, "RGB")


def test_exif_rotated_jpeg_loads_as_displayed(tmp_path):
    # orientation 6: shown rotated 90 degrees clockwise, so 12 wide x 8 high; red on the right, blue on the left
    images = [Image.new("RGB", (12, SIZE), (0, 200, 0)) for _ in range(2)] + [_portrait()]
    scene = _scene(tmp_path / "s", images, suffix=".jpg", save_kwargs={2: {"exif": _exif(6), "quality": 100}},
                   w=12, h=SIZE)
    outputs = _load(scene)
    (index,) = [k for k, f in enumerate(outputs.image_filenames) if "frame_02" in Path(f).name]
    assert outputs.image_filenames[index].suffix == ".png"  # a converted copy, the orientation applied
    image = _images(outputs)[index].numpy().astype(int)
    assert image.shape == (SIZE, 12, 3)
    assert image[4, 10, 0] > 200 and image[4, 10, 2] < 60  # right: red
    assert image[4, 1, 2] > 200 and image[4, 1, 0] < 60  # left: blue


def test_exif_rotated_jpeg_whose_intrinsics_fit_the_stored_pixels_is_refused(tmp_path):
    images = [Image.new("RGB", (SIZE, 12), (0, 200, 0)) for _ in range(2)] + [_portrait()]
    scene = _scene(tmp_path / "s", images, suffix=".jpg", save_kwargs={2: {"exif": _exif(6)}}, w=SIZE, h=12)
    with pytest.raises(NIDInputError, match="EXIF orientation 6") as err:
        _load(scene)
    _one_line(err, "frame_02.jpg", "transforms.json", "without the EXIF orientation tag")


# ------------------------------------------------------------------------------------ 5, 7: masks
def _mask(path: Path, size=(SIZE, SIZE), value: int = 255) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.full((size[1], size[0]), value, dtype=np.uint8)
    array[:2] = 0
    Image.fromarray(array, "L").save(path)
    return str(path.relative_to(path.parent.parent))


def test_masks_on_some_frames_only_train_the_others_on_every_pixel(tmp_path, capsys, wide_console):
    root = tmp_path / "s"
    mask = _mask(root / "masks" / "frame_00.png")
    scene = _scene(root, [_rgba(k) for k in range(3)], frame_extra={0: {"mask_path": mask}})
    outputs = _load(scene)
    assert "2 of 3 frames have no mask_path; those frames train on every pixel" in capsys.readouterr().out
    dataset = InputDataset(outputs)
    masks = {Path(outputs.image_filenames[k]).name: dataset.get_data(k)["mask"] for k in range(len(dataset))}
    assert not masks["frame_00.png"].all() and masks["frame_00.png"].any()  # its own mask
    assert masks["frame_01.png"].all() and masks["frame_02.png"].all()  # no mask: every pixel
    assert _load(scene, masks="ignore").mask_filenames is None


def test_a_mask_of_another_size_than_its_image_is_refused(tmp_path):
    root = tmp_path / "s"
    extra = {k: {"mask_path": _mask(root / "masks" / f"frame_{k:02d}.png", size=(6, 6) if k == 1 else (SIZE, SIZE))}
             for k in range(3)}
    scene = _scene(root, [_rgba(k) for k in range(3)], frame_extra=extra)
    with pytest.raises(NIDInputError, match="is 6x6 but") as err:
        _load(scene)
    _one_line(err, "masks/frame_01.png", "resize the mask")


def test_an_object_mask_of_another_size_is_refused(tmp_path):
    root = tmp_path / "s"
    extra = {k: {"object_mask_path": _mask(root / "objects" / f"frame_{k:02d}.png", size=(SIZE, 5 if k == 2 else SIZE))}
             for k in range(3)}
    scene = _scene(root, [_rgba(k) for k in range(3)], frame_extra=extra)
    with pytest.raises(NIDInputError, match="is 8x5 but") as err:
        _load(scene, masks="object")  # nerfstudio used to assert "Mask and image have different shapes" later
    _one_line(err, "objects/frame_02.png")


# ------------------------------------------------------------------------------------ 6: transparent frames
def test_an_rgba_frame_with_zero_alpha_everywhere_is_refused(tmp_path):
    empty = Image.new("RGBA", (SIZE, SIZE), (200, 10, 10, 0))
    scene = _scene(tmp_path / "s", [_rgba(0), empty, _rgba(2)])
    with pytest.raises(NIDInputError, match="fully transparent") as err:
        _load(scene)
    _one_line(err, "frame_01.png", "transforms.json")


# ------------------------------------------------------------------------------------ 9: poses
def test_identical_poses_are_refused(tmp_path):
    scene = _scene(tmp_path / "s", [_rgba(k) for k in range(3)])
    meta = json.loads((scene / "transforms.json").read_text())
    for frame in meta["frames"]:
        frame["transform_matrix"] = meta["frames"][0]["transform_matrix"]
    (scene / "transforms.json").write_text(json.dumps(meta))
    with pytest.raises(NIDInputError, match="all 3 frames have the same 'transform_matrix'") as err:
        _load(scene)
    _one_line(err, "transforms.json")


def test_nan_in_a_pose_is_refused(tmp_path):
    scene = _scene(tmp_path / "s", [_rgba(k) for k in range(3)])
    meta = json.loads((scene / "transforms.json").read_text())
    meta["frames"][1]["transform_matrix"][0][3] = float("nan")
    (scene / "transforms.json").write_text(json.dumps(meta))  # json writes NaN, and Python's json reads it
    with pytest.raises(NIDInputError, match="NaN or infinite") as err:
        _load(scene)
    _one_line(err, "transforms.json", "frame_01.png")


# ------------------------------------------------------------------------------------ 10: NaN mesh vertices
def test_a_mesh_with_nan_vertices_is_refused(tmp_path):
    from render_helpers import FAST

    from nid_nerf.synthetic.collection_renderer import discover_mesh_jobs, render_collection
    from nid_nerf.synthetic.mesh_loading import MeshRejected, load_mesh_file

    cube = "".join(f"v {x} {y} {z}\n" for x in (0, 1) for y in (0, 1) for z in (0, 1))
    faces = "f 1 2 4\nf 1 4 3\nf 5 7 8\nf 5 8 6\nf 1 5 6\nf 1 6 2\nf 3 4 8\nf 3 8 7\nf 1 3 7\nf 1 7 5\n"
    meshes = tmp_path / "meshes"
    meshes.mkdir()
    (meshes / "bad.obj").write_text(cube + "v nan 0 0\n" + faces + "f 2 6 9\n")
    with pytest.raises(MeshRejected, match="1 vertices with NaN") as err:
        load_mesh_file(meshes / "bad.obj")  # it used to drop the triangle silently
    assert err.value.kind == "broken"
    (tmp_path / "ok.obj").write_text(cube + "v nan 0 0\n" + faces)  # an unused NaN vertex is harmless
    assert load_mesh_file(tmp_path / "ok.obj").num_faces == 10

    jobs, skipped = discover_mesh_jobs(meshes)
    with pytest.raises(NIDInputError, match="no usable mesh: bad.obj: broken: has 1 vertices with NaN") as err:
        render_collection(jobs, tmp_path / "out", replace(FAST, resolution=8), workers=1, skipped_inputs=skipped,
                          progress=False)
    _one_line(err, "bad.obj")


# ------------------------------------------------------------------------------------ 11: dictionary options
@dataclass
class _ModelConfig:
    num_experts: int = 1
    top_k: int = 1
    num_levels: int = 8
    log2_table_size: int = 19
    features_per_level: int = 2
    base_resolution: int = 16
    max_resolution: int = 2048
    geo_hidden_dim: int = 64
    geo_num_layers: int = 2
    geo_feat_dim: int = 15
    color_hidden_dim: int = 64
    color_num_layers: int = 2
    sphere_radius: float = 0.8


def _dictionary(**changes) -> Dict:
    from nid_nerf.fields.dictionary import ARCHITECTURE_FIELDS

    config = {name: getattr(_ModelConfig(), name) for name in ARCHITECTURE_FIELDS}
    config.update(changes)
    return {"config": config}


def test_an_explicit_option_that_contradicts_the_dictionary_is_an_error_even_at_its_default():
    from nid_nerf.fields.dictionary import resolve_architecture

    argv = ["/venv/bin/ns-train", "nid-field", "--pipeline.model.num-levels", "8", "--pipeline.model.top_k=1"]
    config = _ModelConfig()  # num_levels 8 is the default, and the user typed it
    with pytest.raises(NIDInputError, match=r"num_levels=8 \(dictionary has 4\)") as err:
        resolve_architecture(config, _dictionary(num_levels=4, num_experts=16), Path("d.pt"), argv=argv)
    _one_line(err, "d.pt")
    assert config.num_levels == 8  # nothing half-applied


def test_fields_the_user_did_not_set_adopt_the_dictionarys_with_one_log_line(capsys, wide_console):
    from nid_nerf.fields.dictionary import resolve_architecture

    argv = ["/venv/bin/ns-train", "nid-dict", "--pipeline.model.dictionary-path", "d.pt"]
    config = _ModelConfig(num_experts=16)  # a method preset's value, not the user's
    adopted = resolve_architecture(config, _dictionary(num_levels=4, num_experts=8), Path("d.pt"), argv=argv)
    assert (config.num_levels, config.num_experts) == (4, 8)
    assert adopted == ["num_experts=8 (config had 16)", "num_levels=4 (config had 8)"]
    out = capsys.readouterr().out
    assert "adopted its architecture" in out and "num_levels=4" in out and "num_experts=8" in out


def test_without_a_command_line_a_non_default_value_is_the_users():
    from nid_nerf.fields.dictionary import resolve_architecture

    argv = ["/venv/bin/python", "-c", "..."]  # a config built in Python: values are all there is
    with pytest.raises(NIDInputError, match="num_experts=16"):
        resolve_architecture(_ModelConfig(num_experts=16), _dictionary(num_experts=8), Path("d.pt"), argv=argv)
    config = _ModelConfig()
    assert resolve_architecture(config, _dictionary(num_levels=4), Path("d.pt"), argv=argv) == [
        "num_levels=4 (config had 8)"
    ]


# ------------------------------------------------------------------------------------ 15: --overwrite --count
def test_overwrite_with_a_smaller_count_removes_the_scenes_it_no_longer_lists(tmp_path, capsys):
    from nid_nerf.cli.render_collection import main

    out = tmp_path / "collection"
    common = ["--family", "mugs", "--resolution", "8", "--views-train", "1", "--views-test", "0", "--output",
              str(out), "--quiet", "--workers", "1"]
    assert main(common + ["--count", "3"]) == 0
    (out / "mine").mkdir()  # not rendered by the tool: never touched
    (out / "mine" / "notes.txt").write_text("keep")
    assert main(common + ["--count", "1"]) == 0  # without --overwrite: nothing is removed
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["mine", "mugs_0000", "mugs_0001", "mugs_0002"]
    capsys.readouterr()
    assert main(common + ["--count", "1", "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["collection.json", "mine", "mugs_0000"]
    assert "removed 2 scene(s) this run no longer lists: mugs_0001, mugs_0002" in capsys.readouterr().err
    assert json.loads((out / "collection.json").read_text())["scenes"] == ["mugs_0000"]
