"""Bad scene input gives one clear NIDInputError line that names the file and the fix (issue #2)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from render_helpers import FAST

from nid_nerf.dataparsers import NIDCollectionDataParserConfig, NIDSceneDataParserConfig
from nid_nerf.errors import NIDInputError
from nid_nerf.synthetic.collection_renderer import family_jobs, render_collection


@pytest.fixture(scope="module")
def good_scene(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("good")
    render_collection(family_jobs("mugs", 1), root, replace(FAST, views_train=3, views_test=1, resolution=16),
                      workers=1, progress=False)
    return root / "mugs_0000"


@pytest.fixture
def scene(good_scene, tmp_path) -> Path:
    copy = tmp_path / "scene"
    shutil.copytree(good_scene, copy)
    return copy


def _load(data, split="train", **kwargs):
    return NIDSceneDataParserConfig(data=Path(data), **kwargs).setup().get_dataparser_outputs(split=split)


def _edit(scene: Path, change) -> None:
    meta = json.loads((scene / "transforms.json").read_text())
    change(meta)
    (scene / "transforms.json").write_text(json.dumps(meta))


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and ";" in message  # what is wrong; how to fix it
    return message


def test_good_scene_loads(scene):
    assert len(_load(scene).image_filenames) == 3


def test_missing_data_directory(tmp_path):
    with pytest.raises(NIDInputError, match="does not exist") as err:
        _load(tmp_path / "nope")
    assert str(tmp_path / "nope") in _one_line(err)


def test_missing_transforms(scene):
    (scene / "transforms.json").unlink()
    with pytest.raises(NIDInputError, match="transforms file missing") as err:
        _load(scene)
    assert "transforms.json" in _one_line(err)


@pytest.mark.parametrize(
    "text, expected",
    [
        ('{"frames": [', "malformed JSON"),
        ("[1, 2, 3]", "must hold a JSON object"),
        ('{"fl_x": 10}', "no 'frames' list"),
    ],
)
def test_malformed_transforms(scene, text, expected):
    (scene / "transforms.json").write_text(text)
    with pytest.raises(NIDInputError, match=expected) as err:
        _load(scene)
    assert "transforms.json" in _one_line(err)


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda m: m["frames"][1].pop("transform_matrix"), "malformed 'transform_matrix'"),
        (lambda m: m["frames"][1].update(transform_matrix=[[1, 0], [0, 1]]), "malformed 'transform_matrix'"),
        (lambda m: m["frames"][0].pop("file_path"), "has no 'file_path'"),
        (lambda m: m.pop("fl_x"), "no valid 'fl_x'"),
        (lambda m: m.pop("w"), "no valid 'w'"),
    ],
)
def test_bad_frames(scene, change, expected):
    _edit(scene, change)
    with pytest.raises(NIDInputError, match=expected) as err:
        _load(scene)
    assert "transforms.json" in _one_line(err)


def test_missing_image(scene):
    (scene / "images" / "train_0001.png").unlink()
    with pytest.raises(NIDInputError, match="is missing") as err:
        _load(scene)
    assert "train_0001.png" in _one_line(err)


@pytest.mark.parametrize("content", [b"", b"not a png at all", None])
def test_corrupt_image(scene, content):
    path = scene / "images" / "train_0002.png"
    if content is None:
        content = path.read_bytes()[:60]  # truncated PNG
    path.write_bytes(content)
    with pytest.raises(NIDInputError, match="corrupt") as err:
        _load(scene)
    assert "train_0002.png" in _one_line(err)


def test_frames_and_images_disagree(scene, tmp_path):
    from PIL import Image

    Image.new("RGBA", (20, 16)).save(scene / "images" / "train_0000.png")  # the file says 16x16
    with pytest.raises(NIDInputError, match="images differ in size") as err:  # one global w/h, two sizes
        _load(scene)
    assert "train_0000.png" in _one_line(err)
    _edit(scene, lambda m: m["frames"][0].update(w=24))  # its own w: it must match its image
    with pytest.raises(NIDInputError, match="frames and images disagree") as err:
        _load(scene)
    assert "train_0000.png" in _one_line(err)


def test_split_list_names_an_unknown_image(scene):
    _edit(scene, lambda m: m["train_filenames"].append("images/ghost.png"))
    with pytest.raises(NIDInputError, match="no frame has") as err:
        _load(scene)
    assert "ghost.png" in _one_line(err)


def test_some_frames_with_masks(scene):
    _edit(scene, lambda m: m["frames"][0].update(mask_path=m["frames"][0]["object_mask_path"]))
    masks = _load(scene).mask_filenames  # the others train on every pixel (tests/test_input_robustness.py)
    assert len(masks) == 3 and sum("ones_" in Path(m).name for m in masks) == 2
    _edit(scene, lambda m: [f.update(mask_path=f["object_mask_path"]) for f in m["frames"]])
    assert len(_load(scene).mask_filenames) == 3  # masks on every frame: nerfstudio's mask_path semantics
    assert _load(scene, masks="ignore").mask_filenames is None


def test_blender_without_camera_angle(scene, tmp_path):
    blender = tmp_path / "blender"
    shutil.copytree(scene / "images", blender / "images")
    (blender / "transforms_train.json").write_text(json.dumps({"frames": [
        {"file_path": "images/train_0000", "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]}
    ]}))
    with pytest.raises(NIDInputError, match="camera_angle_x"):
        _load(blender)
    (blender / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.7, "frames": [
        {"file_path": "images/nothing_here",
         "transform_matrix": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]}
    ]}))
    with pytest.raises(NIDInputError, match="nothing_here.png is missing"):
        _load(blender)
    with pytest.raises(NIDInputError, match="no transforms_val.json or transforms_test.json"):
        _load(blender, split="val", check_images=False)


def test_scene_versus_collection_mixups(scene, tmp_path):
    with pytest.raises(NIDInputError, match="single scene, not a collection"):
        NIDCollectionDataParserConfig(data=scene).setup().get_dataparser_outputs()
    with pytest.raises(NIDInputError, match="holds scene folders"):
        _load(scene.parent)
    (tmp_path / "empty").mkdir()
    with pytest.raises(NIDInputError, match="has no scene folders"):
        NIDCollectionDataParserConfig(data=tmp_path / "empty").setup().get_dataparser_outputs()


def test_error_prints_one_line_without_traceback(scene, tmp_path):
    """ns-train on bad data: one line, no traceback (the printer is installed when a nid-nerf run starts)."""
    (scene / "transforms.json").write_text("{ broken")
    ns_train = Path(sys.executable).parent / "ns-train"
    proc = subprocess.run([str(ns_train), "nid-field", "--data", str(scene), "--output-dir", str(tmp_path / "out"),
                           "--vis", "tensorboard"], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr
    assert lines[-1].startswith("nid-nerf error: ") and "transforms.json is malformed JSON" in lines[-1]


def test_importing_the_plugin_has_no_side_effects():
    code = ("import sys; hook = sys.excepthook; import nid_nerf, nid_nerf.configs.method_configs; "
            "assert sys.excepthook is hook")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)
