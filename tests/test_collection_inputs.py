"""Bad collection and scene input gives one clear NIDInputError line naming the file and the fix (issue #13).

Tiny collections are rendered once into a temporary folder; the ShapeNet chair tests read ../shared (and skip
without it: its files must never be copied into the repository).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from render_helpers import FAST

from nid_nerf.dataparsers import NIDCollectionDataParserConfig, NIDSceneDataParserConfig
from nid_nerf.errors import NIDInputError
from nid_nerf.synthetic.collection_renderer import family_jobs, render_collection

torch.set_num_threads(1)

TINY = replace(FAST, views_train=3, views_test=1, resolution=16)
CHAIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "collections" / "shapenet_views" / "chair"
needs_chair = pytest.mark.skipif(not (CHAIR / "chair_0119" / "transforms.json").is_file(),
                                 reason="needs ../shared/data/collections/shapenet_views/chair")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """mugs_0000 and mugs_0001 at 16 px, vases_0000 at 12 px; 3 train and 1 test views each."""
    root = tmp_path_factory.mktemp("inputs")
    render_collection(family_jobs("mugs", 2), root, TINY, workers=1, progress=False)
    render_collection(family_jobs("vases", 1), root, replace(TINY, resolution=12), workers=1, progress=False)
    return root


@pytest.fixture
def collection(rendered, tmp_path) -> Path:
    """A fresh copy of the two 16 px mugs: a collection whose scenes agree."""
    root = tmp_path / "collection"
    for name in ("mugs_0000", "mugs_0001"):
        shutil.copytree(rendered / name, root / name)
    return root


def _load(config, split: str = "train"):
    return config.setup().get_dataparser_outputs(split=split)


def _edit(scene: Path, change) -> None:
    meta = json.loads((scene / "transforms.json").read_text())
    change(meta)
    (scene / "transforms.json").write_text(json.dumps(meta))


def _one_line(err: pytest.ExceptionInfo, names: str) -> str:
    """The message is one line with a fix after '; ', and names ``names`` (a path)."""
    message = str(err.value)
    assert "\n" not in message and "; " in message, message
    assert names in message, message
    return message


def test_the_collection_loads(collection):
    out = _load(NIDCollectionDataParserConfig(data=collection))
    assert out.metadata["scene_names"] == ["mugs_0000", "mugs_0001"] and len(out.image_filenames) == 6


# ------------------------------------------------------------------------------ 1: scenes that differ


def test_scenes_with_different_train_image_counts(collection):
    _edit(collection / "mugs_0001", lambda m: m["train_filenames"].pop())
    with pytest.raises(NIDInputError, match="2 training images, but the first scene's .* has 3") as err:
        _load(NIDCollectionDataParserConfig(data=collection))
    message = _one_line(err, str(collection / "mugs_0001" / "transforms.json"))
    assert str(collection / "mugs_0000" / "transforms.json") in message
    assert "--num-train-views 2" in message and "--exclude-scenes mugs_0001" in message
    # the count that matters is the one after --num-train-views: 2 views per scene agree
    out = _load(NIDCollectionDataParserConfig(data=collection, num_train_views=2))
    assert out.metadata["scene_image_counts"] == [2, 2]
    assert len(_load(NIDCollectionDataParserConfig(data=collection), "val").image_filenames) == 2  # eval: any count


def test_scenes_with_different_resolutions_load_with_one_log_line(collection, rendered, capsys):
    """Mixed resolutions stay supported (tests/test_dataparsers.py and tests/test_occlusion.py train on them)."""
    shutil.copytree(rendered / "vases_0000", collection / "vases_0000")
    capsys.readouterr()
    out = _load(NIDCollectionDataParserConfig(data=collection))
    assert sorted({int(w) for w in out.cameras.width.reshape(-1)}) == [12, 16]
    logged = " ".join(capsys.readouterr().out.split())
    assert logged.count("differ in resolution") == 1 and "mugs_0000 is 16x16" in logged, logged


# ------------------------------------------------------------------------------ 2: a fully transparent view


def test_fully_transparent_view_in_a_collection(collection):
    image = collection / "mugs_0001" / "images" / "train_0001.png"
    rgba = np.array(Image.open(image).convert("RGBA"))
    rgba[..., 3] = 0
    Image.fromarray(rgba).save(image)
    with pytest.raises(NIDInputError, match="is fully transparent") as err:
        _load(NIDCollectionDataParserConfig(data=collection))
    assert "transforms.json" in _one_line(err, str(image))


# ------------------------------------------------------------------------------ 3: split lists in some scenes only


def _drop_split_lists(meta) -> None:
    for split in ("train", "val", "test"):
        meta.pop(f"{split}_filenames")


def test_scene_without_split_lists_among_scenes_with_them(collection):
    _edit(collection / "mugs_0001", _drop_split_lists)
    with pytest.raises(NIDInputError, match="has no split lists") as err:
        _load(NIDCollectionDataParserConfig(data=collection))
    message = _one_line(err, str(collection / "mugs_0001" / "transforms.json"))
    assert "add train_filenames, val_filenames and test_filenames like the other scenes" in message
    assert "--exclude-scenes mugs_0001" in message
    kept = _load(NIDCollectionDataParserConfig(data=collection, exclude_scenes=("mugs_0001",)))
    assert len(kept.image_filenames) == 3


def test_scenes_without_split_lists_keep_nerfstudios_split(collection):
    """A single scene without split lists, or a collection where none has them: nerfstudio's fraction split."""
    for name in ("mugs_0000", "mugs_0001"):
        _edit(collection / name, _drop_split_lists)
    one = _load(NIDSceneDataParserConfig(data=collection / "mugs_0000", train_split_fraction=0.75))
    assert len(one.image_filenames) == 3  # of 4 frames
    out = _load(NIDCollectionDataParserConfig(data=collection, train_split_fraction=0.75))
    assert out.metadata["scene_image_counts"] == [3, 3]


# ------------------------------------------------------------------------------ 4: too many training views


def test_more_train_views_than_the_scene_has(collection):
    scene = collection / "mugs_0000"
    with pytest.raises(NIDInputError, match="--num-train-views 4 asks for more training views than the 3") as err:
        _load(NIDSceneDataParserConfig(data=scene, num_train_views=4))
    message = _one_line(err, str(scene / "transforms.json"))
    assert "pass at most 3, or leave --num-train-views out to use all" in message
    with pytest.raises(NIDInputError, match="pass at most 3") as err:  # per scene in a collection too
        _load(NIDCollectionDataParserConfig(data=collection, num_train_views=10))
    _one_line(err, str(scene / "transforms.json"))
    assert len(_load(NIDSceneDataParserConfig(data=scene, num_train_views=3)).image_filenames) == 3  # all: fine
    assert len(_load(NIDSceneDataParserConfig(data=scene)).image_filenames) == 3  # None: all


# ------------------------------------------------------------------------------ the ShapeNet chair collection


@needs_chair
def test_shapenet_chair_collection_without_the_held_out_scenes():
    held_out = tuple(f"chair_{i:04d}" for i in range(100, 120))
    out = _load(NIDCollectionDataParserConfig(data=CHAIR, exclude_scenes=held_out))
    assert out.metadata["num_scenes"] == 100 and len(out.image_filenames) == 1500
    assert out.metadata["scene_names"][0] == "chair_0000" and out.metadata["scene_names"][-1] == "chair_0099"
    assert torch.allclose(out.scene_box.aabb, torch.tensor([[-0.7] * 3, [0.7] * 3]))


@needs_chair
def test_shapenet_chair_few_views():
    scene = CHAIR / "chair_0119"
    few = _load(NIDSceneDataParserConfig(data=scene, num_train_views=3))
    assert [Path(f).name for f in few.image_filenames] == ["view_01.png", "view_06.png", "view_11.png"]  # SOURCE.md
    test = _load(NIDSceneDataParserConfig(data=scene, num_train_views=3), "test")
    assert [Path(f).name for f in test.image_filenames] == [f"view_{i:02d}.png" for i in (0, 4, 8, 12, 16)]
    with pytest.raises(NIDInputError, match="pass at most 15"):
        _load(NIDSceneDataParserConfig(data=scene, num_train_views=16, check_images=False))
