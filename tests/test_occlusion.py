"""Occlusion and inpainting (issue #4, section 4): training pixels under a mask never reach the loss.

Masks come from the scene (mask_path, --masks object), from --mask-dir, and from synthetic --occlusion; they are
ANDed per training image, eval images are untouched, and the pixel samplers (uniform and residual) never draw
a masked pixel. Scenes are 32 px renders made in tmp folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from render_helpers import FAST

from nid_nerf.dataparsers import SCENE_INDEX, NIDCollectionDataParserConfig, NIDSceneDataParserConfig
from nid_nerf.dataparsers.hidden_regions import train_occlusion_mask
from nid_nerf.dataparsers.occlusion import (
    check_fraction,
    image_rng,
    occluder_mask,
)
from nid_nerf.dataparsers.training_masks import CACHE_FOLDER, _cache_root
from nid_nerf.errors import NIDInputError
from nid_nerf.synthetic.collection_renderer import family_jobs, render_collection

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Path:
    """A collection of three 32 px scenes (6 train / 2 test views each) and one 24 px scene."""
    root = tmp_path_factory.mktemp("occlusion")
    render_collection(family_jobs("mugs", 1) + family_jobs("chairs", 1), root, FAST, workers=1, progress=False)
    render_collection(family_jobs("vases", 1), root, replace(FAST, resolution=24), workers=1, progress=False)
    return root


@pytest.fixture
def scene(rendered, tmp_path) -> Path:
    copy = tmp_path / "mugs_0000"
    shutil.copytree(rendered / "mugs_0000", copy, ignore=shutil.ignore_patterns(CACHE_FOLDER))
    return copy


def _outputs(data: Path, split: str = "train", **options):
    return NIDSceneDataParserConfig(data=data, **options).setup().get_dataparser_outputs(split=split)


def _object_mask(image: Path) -> np.ndarray:
    """The renderer's object mask of an image (masks/<same name>)."""
    return np.asarray(Image.open(Path(image).parent.parent / "masks" / Path(image).name)) > 0


def _load(path) -> np.ndarray:
    return np.asarray(Image.open(path)) > 0


def _tree_digest(folder: Path) -> str:
    """Hash of every file outside the cache folder (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file() and CACHE_FOLDER not in path.parts:
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message and ";" in message  # what is wrong; how to fix it
    return message


# ------------------------------------------------------------------------------------------------------------
# the occluder itself
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["rectangle", "blobs"])
def test_occluder_covers_the_requested_share_of_the_region(shape):
    ys, xs = np.mgrid[:64, :64]
    region = (ys - 30) ** 2 + (xs - 34) ** 2 < 20**2  # a disc of ~1250 pixels
    for fraction in (0.05, 0.25, 0.5, 0.9):
        for seed in range(5):
            hidden = occluder_mask(region, fraction, image_rng("a/b.png", seed), shape)
            share = (hidden & region).sum() / region.sum()
            assert abs(share - fraction) < 0.02, (shape, fraction, seed, share)
    a = occluder_mask(region, 0.3, image_rng("a/b.png", 1), shape)
    assert np.array_equal(a, occluder_mask(region, 0.3, image_rng("a/b.png", 1), shape))  # deterministic
    assert not np.array_equal(a, occluder_mask(region, 0.3, image_rng("a/b.png", 2), shape))  # seed matters
    assert not np.array_equal(a, occluder_mask(region, 0.3, image_rng("a/c.png", 1), shape))  # image matters
    assert not occluder_mask(region, 0.0, image_rng("a/b.png", 1), shape).any()
    whole = occluder_mask(np.zeros((16, 16), bool), 0.5, image_rng("x", 0), shape)  # empty region: whole image
    assert abs(whole.mean() - 0.5) < 0.05
    if shape == "rectangle":  # one filled axis-aligned box
        rows, cols = np.nonzero(a.any(1))[0], np.nonzero(a.any(0))[0]
        assert a[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].all() and a.sum() == len(rows) * len(cols)


@pytest.mark.parametrize("bad", [-0.1, 0.95, 1.0, float("nan"), "0.3"])
def test_fraction_outside_range_is_one_line(bad, scene):
    with pytest.raises(NIDInputError, match=r"--occlusion .* outside \[0, 0.9\]") as err:
        check_fraction(bad)
    _one_line(err)
    if isinstance(bad, float):
        with pytest.raises(NIDInputError, match="--occlusion"):
            _outputs(scene, occlusion=bad)


# ------------------------------------------------------------------------------------------------------------
# dataparser: synthetic occlusion
# ------------------------------------------------------------------------------------------------------------


def test_scene_occlusion_masks(scene):
    before = _tree_digest(scene)
    out = _outputs(scene, occlusion=0.3, occlusion_seed=7)
    n = FAST.views_train
    assert len(out.mask_filenames) == n and len(out.metadata["occlusion_filenames"]) == n
    assert out.metadata["occlusion"] == {"fraction": 0.3, "seed": 7, "shape": "rectangle"}
    shares = []
    hidden_files = out.metadata["occlusion_filenames"]
    for image, mask_file, hidden_file in zip(out.image_filenames, out.mask_filenames, hidden_files):
        assert CACHE_FOLDER in Path(mask_file).parts and Path(mask_file).parent.parent.parent.parent == scene
        train, hidden, obj = _load(mask_file), _load(hidden_file), _object_mask(image)
        assert train.shape == obj.shape == (32, 32)
        assert np.array_equal(train, ~hidden)  # no other mask: train on everything not hidden
        shares.append((hidden & obj).sum() / obj.sum())  # measured against the renderer's own object mask
    assert all(0.2 <= s <= 0.4 for s in shares), shares
    assert abs(np.mean(shares) - 0.3) < 0.05, shares
    assert np.allclose(shares, out.metadata["occlusion_hidden_fractions"])
    assert _tree_digest(scene) == before  # the user's files are untouched

    # deterministic: the cache is reused, and a fresh computation gives the same bytes
    first = [Path(f).read_bytes() for f in out.mask_filenames]
    again = _outputs(scene, occlusion=0.3, occlusion_seed=7)
    assert again.mask_filenames == out.mask_filenames
    shutil.rmtree(scene / CACHE_FOLDER)
    fresh = _outputs(scene, occlusion=0.3, occlusion_seed=7)
    assert [Path(f).read_bytes() for f in fresh.mask_filenames] == first
    other = _outputs(scene, occlusion=0.3, occlusion_seed=8)
    assert [Path(f).read_bytes() for f in other.mask_filenames] != first
    assert not list((scene / CACHE_FOLDER).glob(".tmp-*"))  # atomic writes leave no temp folder

    # an image's occluder does not depend on which other views are kept
    few = _outputs(scene, occlusion=0.3, occlusion_seed=7, num_train_views=3)
    for image, mask_file in zip(few.image_filenames, few.mask_filenames):
        k = fresh.image_filenames.index(image)
        assert Path(mask_file).read_bytes() == Path(fresh.mask_filenames[k]).read_bytes()


def test_eval_split_is_untouched(scene):
    plain = _outputs(scene, split="val")
    occluded = _outputs(scene, split="val", occlusion=0.5, occlusion_seed=3, mask_dir=None)
    assert occluded.mask_filenames is None and plain.mask_filenames is None
    assert occluded.image_filenames == plain.image_filenames and len(plain.image_filenames) == FAST.views_test
    assert "occlusion_filenames" not in occluded.metadata
    # with scene masks, eval keeps exactly the scene's masks
    obj_eval = _outputs(scene, split="val", masks="object", occlusion=0.5)
    assert [Path(m).parent.name for m in obj_eval.mask_filenames] == ["masks"] * FAST.views_test


def test_occlusion_is_anded_with_existing_masks(scene):
    out = _outputs(scene, masks="object", occlusion=0.4, occlusion_seed=1)
    hidden_files = out.metadata["occlusion_filenames"]
    for image, mask_file, hidden_file in zip(out.image_filenames, out.mask_filenames, hidden_files):
        obj, hidden = _object_mask(image), _load(hidden_file)
        assert np.array_equal(_load(mask_file), obj & ~hidden)
    # nerfstudio's mask_path in transforms.json: same thing
    meta = json.loads((scene / "transforms.json").read_text())
    for frame in meta["frames"]:
        frame["mask_path"] = frame["object_mask_path"]
    (scene / "transforms.json").write_text(json.dumps(meta))
    auto = _outputs(scene, occlusion=0.4, occlusion_seed=1)
    assert [Path(f).read_bytes() for f in auto.mask_filenames] == [Path(f).read_bytes() for f in out.mask_filenames]


def test_mask_dir(scene):
    user = scene / "my_masks"
    user.mkdir()
    out0 = _outputs(scene)
    for image in out0.image_filenames:  # keep only the left half of every training image
        mask = np.zeros((32, 32), np.uint8)
        mask[:, :16] = 1
        Image.fromarray(mask).save(user / Path(image).name)
    before = _tree_digest(scene)
    only = _outputs(scene, mask_dir=Path("my_masks"))  # relative to the scene folder
    assert only.mask_filenames == [user / Path(f).name for f in out0.image_filenames]  # passed on as they are
    assert _outputs(scene, split="val", mask_dir=Path("my_masks")).mask_filenames is None  # train only
    both = _outputs(scene, mask_dir=user, masks="object", occlusion=0.3)  # absolute; three sources ANDed
    hidden_files = both.metadata["occlusion_filenames"]
    for image, mask_file, hidden_file in zip(both.image_filenames, both.mask_filenames, hidden_files):
        expected = _object_mask(image) & ~_load(hidden_file)
        expected[:, 16:] = False
        assert np.array_equal(_load(mask_file), expected)
    assert _tree_digest(scene) == before
    # editing a user mask invalidates the cache
    Image.fromarray(np.ones((32, 32), np.uint8)).save(user / Path(out0.image_filenames[0]).name)
    edited = _outputs(scene, mask_dir=user, masks="object", occlusion=0.3)
    assert edited.mask_filenames[0] != both.mask_filenames[0]
    assert _load(edited.mask_filenames[0])[:, 16:].any()


def test_read_only_scene_falls_back_to_a_temp_cache(scene):
    (scene / CACHE_FOLDER).write_text("not a folder")  # the cache folder cannot be created
    root = _cache_root(scene)
    assert scene not in root.parents and root.is_dir()
    out = _outputs(scene, occlusion=0.2)
    assert all(Path(f).is_file() and scene not in Path(f).parents for f in out.mask_filenames)


def test_train_occlusion_mask_helper(scene):
    out = _outputs(scene, occlusion=0.25, occlusion_seed=4, num_train_views=4)
    for i in range(4):
        from_outputs = train_occlusion_mask(out, i)
        from_folder = train_occlusion_mask(scene, i, 0.25, seed=4, num_train_views=4)
        assert from_outputs.dtype == bool and from_outputs.shape == (32, 32)
        assert np.array_equal(from_outputs, from_folder)
        assert np.array_equal(from_outputs, ~_load(out.mask_filenames[i]))
    assert np.array_equal(train_occlusion_mask(out, 1, 0.25, seed=4), train_occlusion_mask(out, 1))
    with pytest.raises(NIDInputError, match="seed=4, not 5"):
        train_occlusion_mask(out, 1, 0.25, seed=5)
    with pytest.raises(NIDInputError, match="no occlusion masks"):
        train_occlusion_mask(_outputs(scene), 0)
    with pytest.raises(NIDInputError, match="does not exist"):
        train_occlusion_mask(out, 4)


def test_collection_occlusion(rendered):
    config = NIDCollectionDataParserConfig(data=rendered, occlusion=0.3, occlusion_shape="blobs")
    out = config.setup().get_dataparser_outputs(split="train")
    n = len(out.image_filenames)
    assert n == 3 * FAST.views_train and len(out.mask_filenames) == n and len(out.metadata["occlusion_filenames"]) == n
    for k, (image, mask_file) in enumerate(zip(out.image_filenames, out.mask_filenames)):
        scene = Path(image).parent.parent
        assert Path(mask_file).is_relative_to(scene / CACHE_FOLDER)  # each scene caches its own masks
        assert out.metadata["scene_names"][int(out.metadata[SCENE_INDEX][k])] == scene.name
        assert _load(mask_file).shape == _object_mask(image).shape  # 24 px and 32 px scenes
        assert np.array_equal(train_occlusion_mask(out, k), ~_load(mask_file))
    assert abs(np.mean(out.metadata["occlusion_hidden_fractions"]) - 0.3) < 0.05
    single = _outputs(rendered / "chairs_0000", occlusion=0.3, occlusion_shape="blobs")  # same masks as alone
    k = out.image_filenames.index(single.image_filenames[0])
    assert Path(out.mask_filenames[k]).read_bytes() == Path(single.mask_filenames[0]).read_bytes()
    val = config.setup().get_dataparser_outputs(split="val")
    assert val.mask_filenames is None and "occlusion_filenames" not in val.metadata


# ------------------------------------------------------------------------------------------------------------
# the samplers never draw a masked pixel
# ------------------------------------------------------------------------------------------------------------


def _draw(dataparser, sampler: str, steps: int = 12, rejection: bool = True, rays: int = 256):
    """Indices of ``steps`` training batches of the NID datamanager; residuals are fed back, so the residual
    sampler ranks visited pixels against never-visited ones (which rank first, and would be picked if a
    masked pixel ever entered its candidate pool)."""
    from nid_nerf.engine.datamanager import NIDDataManagerConfig

    config = NIDDataManagerConfig(dataparser=dataparser, sampler=sampler, train_num_rays_per_batch=rays)
    config.pixel_sampler.rejection_sample_mask = rejection
    config.pixel_sampler.ratio_start = 0.9  # mostly residual picks from the first step
    manager = config.setup(device="cpu", test_mode="val")
    drawn = []
    for step in range(steps):
        _, batch = manager.next_train(step)
        drawn.append(batch["indices"].clone())
        manager.observe_residuals(batch, torch.rand(batch["indices"].shape[0]))
    return manager, torch.cat(drawn)


def _masked_hits(manager, indices) -> tuple[int, int]:
    """(drawn pixels inside an occluder, drawn pixels of the object region that the training mask keeps)."""
    files = manager.train_dataparser_outputs.metadata["occlusion_filenames"]
    hidden = [_load(f) for f in files]
    train = [_load(f) for f in manager.train_dataparser_outputs.mask_filenames]
    inside = sum(int(hidden[int(i)][int(y), int(x)]) for i, y, x in indices)
    assert all(train[int(i)][int(y), int(x)] for i, y, x in indices)
    return inside, len(indices)


@pytest.mark.parametrize("sampler", ["uniform", "residual"])
def test_samplers_never_draw_occluded_pixels(scene, sampler):
    manager, indices = _draw(NIDSceneDataParserConfig(data=scene, occlusion=0.5), sampler)
    inside, total = _masked_hits(manager, indices)
    assert inside == 0 and total == 12 * 256
    hidden_share = np.mean([_load(f).mean() for f in manager.train_dataparser_outputs.metadata["occlusion_filenames"]])
    assert hidden_share > 0.05  # the occluders are big enough that uniform draws would hit them ~100s of times
    if sampler == "residual":
        rmap = manager.residual_sampler.residual_map
        assert rmap is not None and 0.0 < rmap.visited_fraction() < 1.0  # occluded cells are never visited


@pytest.mark.parametrize("sampler", ["uniform", "residual"])
def test_samplers_with_one_view_and_mixed_resolutions(rendered, sampler):
    """One training view, and a collection of 32 px and 24 px scenes (list batches), with
    ``rejection_sample_mask=False`` (nerfstudio 1.1.5's rejection draw fails on one image: see
    tests/test_nerfstudio_patches.py). That path draws without replacement, so the residual sampler's
    candidate pool (4x its picks) must fit in the visible pixels of one 32 px view: 128 rays here."""
    one = NIDSceneDataParserConfig(data=rendered / "mugs_0000", occlusion=0.5, num_train_views=1)
    mixed = NIDCollectionDataParserConfig(data=rendered, occlusion=0.5)
    for dataparser in (one, mixed):
        manager, indices = _draw(dataparser, sampler, steps=4, rejection=False, rays=128)
        inside, _ = _masked_hits(manager, indices)
        assert inside == 0


@pytest.mark.parametrize("sampler", ["uniform", "residual"])
def test_one_masked_view_with_rejection_sampling(rendered, sampler):
    """nerfstudio 1.1.5's rejection draw squeezes away the image axis of a one-image mask batch;
    nid_nerf.sampling.masked_sampler.MaskedPixelSampler keeps it (and mixed-resolution list batches work too)."""
    one = NIDSceneDataParserConfig(data=rendered / "mugs_0000", occlusion=0.3, num_train_views=1)
    mixed = NIDCollectionDataParserConfig(data=rendered, occlusion=0.5)
    for dataparser in (one, mixed):
        manager, indices = _draw(dataparser, sampler, steps=2)
        inside, _ = _masked_hits(manager, indices)
        assert inside == 0


# ------------------------------------------------------------------------------------------------------------
# bad mask files
# ------------------------------------------------------------------------------------------------------------


def _set_mask_paths(scene: Path, folder: str = "masks") -> dict:
    meta = json.loads((scene / "transforms.json").read_text())
    for frame in meta["frames"]:
        frame["mask_path"] = f"{folder}/{Path(frame['file_path']).name}"
    (scene / "transforms.json").write_text(json.dumps(meta))
    return meta


def test_bad_mask_files(scene):
    meta = _set_mask_paths(scene)
    first = scene / meta["frames"][0]["mask_path"]
    Image.fromarray(np.ones((16, 32), np.uint8) * 255).save(first)
    with pytest.raises(NIDInputError, match="is 32x16 but transforms.json says its image is 32x32") as err:
        _outputs(scene)
    assert str(first) in _one_line(err)
    Image.fromarray(np.ones((32, 32, 3), np.uint8) * 255).save(first)
    with pytest.raises(NIDInputError, match="has 3 channels; save it as a single-channel") as err:
        _outputs(scene)
    assert str(first) in _one_line(err)
    first.unlink()
    with pytest.raises(NIDInputError, match="is missing") as err:
        _outputs(scene)
    assert str(first) in _one_line(err)


def test_bad_mask_dir(scene):
    with pytest.raises(NIDInputError, match="--mask-dir nowhere is not a folder") as err:
        _outputs(scene, mask_dir=Path("nowhere"))
    _one_line(err)
    user = scene / "my_masks"
    user.mkdir()
    images = _outputs(scene).image_filenames
    for image in images[1:]:
        Image.fromarray(np.ones((32, 32), np.uint8)).save(user / Path(image).name)
    with pytest.raises(NIDInputError, match="has no mask for training image") as err:
        _outputs(scene, mask_dir=user, occlusion=0.2)
    assert Path(images[0]).stem + ".png" in _one_line(err)
    Image.fromarray(np.ones((20, 32), np.uint8)).save(user / Path(images[0]).name)
    for occlusion in (0.0, 0.2):  # passed on as they are, or combined: checked either way
        with pytest.raises(NIDInputError, match="is 32x20 but the size of image .* is 32x32") as err:
            _outputs(scene, mask_dir=user, occlusion=occlusion)
        assert str(user / Path(images[0]).name) in _one_line(err)


# ------------------------------------------------------------------------------------------------------------
# end to end
# ------------------------------------------------------------------------------------------------------------

BIN = Path(sys.executable).parent


def _ns_train(args, tmp_path):
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run([str(BIN / "ns-train"), *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)


NS_TRAIN_FAST = [
    "--max-num-iterations", "10", "--steps-per-save", "10",
    "--steps-per-eval-batch", "1000", "--steps-per-eval-image", "1000", "--steps-per-eval-all-images", "100000",
    "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True", "--machine.device-type", "cpu",
    "--pipeline.model.grid-resolution", "24", "--pipeline.model.num-fine-samples", "16",
    "--pipeline.model.eval-num-fine-samples", "12", "--pipeline.model.log2-table-size", "12",
    "--pipeline.datamanager.train-num-rays-per-batch", "256", "--experiment-name", "e", "--timestamp", "t",
]


def test_ns_train_with_occlusion(scene, tmp_path):
    """ns-train nid-field ... nid-scene --occlusion 0.3: 10 steps of 256 rays (about 20 s on 2 idle cores)."""
    common = ["--output-dir", tmp_path / "runs", *NS_TRAIN_FAST]
    result = _ns_train(["nid-field", "--data", scene, *common, "nid-scene", "--occlusion", "0.3"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "runs" / "e" / "nid-field" / "t"
    assert (run / "nerfstudio_models" / "step-000000009.ckpt").is_file()
    assert "occlusion: 0.3" in (run / "config.yml").read_text()
    caches = list((scene / CACHE_FOLDER).glob("occlusion_0.3_seed0_rectangle_*"))
    assert len(caches) == 1 and len(list((caches[0] / "masks").glob("*.png"))) == FAST.views_train


def test_ns_train_bad_fraction_is_one_line(scene, tmp_path):
    common = ["--output-dir", tmp_path / "runs", *NS_TRAIN_FAST]
    bad = _ns_train(["nid-field", "--data", scene, *common, "nid-scene", "--occlusion", "1.5"], tmp_path)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    lines = [line for line in bad.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("nid-nerf error: --occlusion 1.5 is outside [0, 0.9]")
