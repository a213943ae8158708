"""nid-scene and nid-collection: scene indices, few-view selection, mixed resolutions, both file formats."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from render_helpers import FAST

from nid_nerf.dataparsers import SCENE_INDEX, NIDCollectionDataParserConfig, NIDSceneDataParserConfig
from nid_nerf.dataparsers.few_view import farthest_point_sampling
from nid_nerf.errors import NIDInputError
from nid_nerf.synthetic.collection_renderer import family_jobs, render_collection

torch.set_num_threads(1)

RES = {"chairs_0000": 32, "mugs_0000": 32, "vases_0000": 24}


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    """Three scenes; vases_0000 is rendered at 24 px and the others at 32 px."""
    root = tmp_path_factory.mktemp("collection")
    render_collection(family_jobs("chairs", 1) + family_jobs("mugs", 1), root, FAST, workers=1, progress=False)
    render_collection(family_jobs("vases", 1), root, replace(FAST, resolution=24), workers=1, progress=False)
    return root


def _outputs(config, split="train"):
    return config.setup().get_dataparser_outputs(split=split)


def test_collection_tags_every_image_with_its_scene(collection):
    out = _outputs(NIDCollectionDataParserConfig(data=collection))
    names = out.metadata["scene_names"]
    assert names == sorted(RES) and out.metadata["num_scenes"] == 3
    assert len(out.image_filenames) == 3 * FAST.views_train
    tags = out.cameras.metadata[SCENE_INDEX].reshape(-1)
    assert torch.equal(tags, out.metadata[SCENE_INDEX])
    for k, path in enumerate(out.image_filenames):
        assert names[int(tags[k])] == Path(path).parent.parent.name
        res = RES[Path(path).parent.parent.name]
        assert int(out.cameras.width[k]) == res and int(out.cameras.height[k]) == res  # mixed resolutions
    # rays carry the scene index of their camera
    cams = torch.tensor([[0], [FAST.views_train], [3 * FAST.views_train - 1]])
    rays = out.cameras.generate_rays(camera_indices=cams, coords=torch.tensor([[5.0, 5.0], [6.0, 7.0], [1.0, 2.0]]))
    assert rays.metadata[SCENE_INDEX].reshape(-1).tolist() == [0, 1, 2]
    val = _outputs(NIDCollectionDataParserConfig(data=collection), "val")
    assert len(val.image_filenames) == 3 * FAST.views_test
    assert sorted(set(val.metadata[SCENE_INDEX].tolist())) == [0, 1, 2]
    assert out.metadata["depth_filenames"][0].name == Path(out.image_filenames[0]).name


def test_collection_filters(collection):
    out = _outputs(NIDCollectionDataParserConfig(data=collection, exclude_scenes=("mugs_0000",)))
    assert out.metadata["scene_names"] == ["chairs_0000", "vases_0000"]
    assert out.metadata[SCENE_INDEX].unique().tolist() == [0, 1]  # indices are renumbered densely
    out = _outputs(NIDCollectionDataParserConfig(data=collection, scenes=("vases_0000",)))
    assert out.metadata["scene_names"] == ["vases_0000"]
    out = _outputs(NIDCollectionDataParserConfig(data=collection, max_scenes=2))
    assert out.metadata["num_scenes"] == 2
    with pytest.raises(NIDInputError, match="no scene folder named 'nope'"):
        _outputs(NIDCollectionDataParserConfig(data=collection, scenes=("nope",)))


def test_few_view_is_farthest_point_sampling(collection):
    full = _outputs(NIDSceneDataParserConfig(data=collection / "mugs_0000"))
    centres = full.cameras.camera_to_worlds[:, :3, 3].double()
    for n in (1, 3, 5):
        few = _outputs(NIDSceneDataParserConfig(data=collection / "mugs_0000", num_train_views=n))
        kept = [full.image_filenames.index(f) for f in few.image_filenames]
        assert len(kept) == n and kept == sorted(kept)
        assert kept == sorted(farthest_point_sampling(centres, n))
        assert torch.allclose(few.cameras.camera_to_worlds, full.cameras.camera_to_worlds[kept])
    # eval views are untouched
    val = _outputs(NIDSceneDataParserConfig(data=collection / "mugs_0000", num_train_views=2), "val")
    assert len(val.image_filenames) == FAST.views_test
    # per scene in a collection, deterministic
    a = _outputs(NIDCollectionDataParserConfig(data=collection, num_train_views=2))
    b = _outputs(NIDCollectionDataParserConfig(data=collection, num_train_views=2))
    assert a.image_filenames == b.image_filenames and a.metadata[SCENE_INDEX].tolist() == [0, 0, 1, 1, 2, 2]


def test_fps_greedy_property_and_spread():
    gen = torch.Generator().manual_seed(0)
    points = torch.randn(200, 3, generator=gen, dtype=torch.float64)
    picked = farthest_point_sampling(points, 12)
    assert len(set(picked)) == 12 and picked[0] == 0
    for k in range(1, 12):
        dist_to_chosen = torch.cdist(points, points[picked[:k]]).min(1).values
        assert torch.isclose(dist_to_chosen[picked[k]], dist_to_chosen.max())
    assert farthest_point_sampling(points, 5) == picked[:5]  # nested: 5 views are inside 12 views
    fps_spread = torch.pdist(points[picked]).min()
    random_spread = torch.stack([torch.pdist(points[torch.randperm(200, generator=gen)[:12]]).min() for _ in range(50)])
    assert fps_spread > random_spread.median()
    assert sorted(farthest_point_sampling(points[:3], 10)) == [0, 1, 2]  # asking for more than there are: all of them


def test_explicit_train_views(collection):
    few = _outputs(NIDSceneDataParserConfig(data=collection / "chairs_0000", train_view_indices=(4, 1)))
    assert [Path(f).name for f in few.image_filenames] == ["train_0001.png", "train_0004.png"]
    with pytest.raises(NIDInputError, match="out of range"):
        _outputs(NIDSceneDataParserConfig(data=collection / "chairs_0000", train_view_indices=(0, 99)))


def test_scene_box_and_frame_are_kept(collection):
    out = _outputs(NIDSceneDataParserConfig(data=collection / "chairs_0000"))
    meta = json.loads((collection / "chairs_0000" / "transforms.json").read_text())
    assert torch.allclose(out.scene_box.aabb, torch.tensor(meta["scene_box"], dtype=torch.float32))
    first = next(f for f in meta["frames"] if f["file_path"] == meta["train_filenames"][0])
    assert torch.allclose(out.cameras.camera_to_worlds[0], torch.tensor(first["transform_matrix"])[:3], atol=1e-6)
    assert out.alpha_color is None and out.mask_filenames is None  # RGBA kept; no mask-restricted sampling
    masked = _outputs(NIDSceneDataParserConfig(data=collection / "chairs_0000", masks="object"))
    assert [p.parent.name for p in masked.mask_filenames] == ["masks"] * FAST.views_train
    scaled = _outputs(NIDSceneDataParserConfig(data=collection / "chairs_0000", scene_scale=1.5))
    assert scaled.scene_box.aabb[1, 0] == 1.5


def _to_blender(scene: Path, out: Path) -> Path:
    """Rewrite a rendered scene in Blender format (transforms_{split}.json, file paths without extension)."""
    shutil.copytree(scene / "images", out / "images")
    meta = json.loads((scene / "transforms.json").read_text())
    angle = 2 * np.arctan(0.5 * meta["w"] / meta["fl_x"])
    for split in ("train", "test"):
        names = meta[f"{split}_filenames"]
        frames = [{"file_path": "./" + f["file_path"][:-4], "transform_matrix": f["transform_matrix"]}
                  for f in meta["frames"] if f["file_path"] in names]
        (out / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": angle, "frames": frames}))
    return out


def test_blender_format_matches_nerfstudio_format(collection, tmp_path):
    blender = _to_blender(collection / "vases_0000", tmp_path / "vase_blender")
    ns = _outputs(NIDSceneDataParserConfig(data=collection / "vases_0000"))
    bl = _outputs(NIDSceneDataParserConfig(data=blender, scene_scale=1.0))
    assert [Path(f).name for f in ns.image_filenames] == [Path(f).name for f in bl.image_filenames]
    assert torch.allclose(ns.cameras.camera_to_worlds, bl.cameras.camera_to_worlds, atol=1e-6)
    for key in ("fx", "fy", "cx", "cy", "width", "height"):
        assert torch.allclose(getattr(ns.cameras, key).float(), getattr(bl.cameras, key).float(), atol=1e-4), key
    val = _outputs(NIDSceneDataParserConfig(data=blender), "val")  # no transforms_val.json: falls back to test
    assert len(val.image_filenames) == FAST.views_test
    assert _outputs(NIDSceneDataParserConfig(data=blender)).scene_box.aabb[1, 0] == 1.5  # nerfstudio's Blender box
    few = _outputs(NIDSceneDataParserConfig(data=blender, num_train_views=2))
    assert len(few.image_filenames) == 2
    # a collection may mix formats
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    shutil.copytree(blender, mixed / "a_blender")
    shutil.copytree(collection / "chairs_0000", mixed / "b_nerfstudio")
    out = _outputs(NIDCollectionDataParserConfig(data=mixed))
    assert out.metadata["scene_names"] == ["a_blender", "b_nerfstudio"]


@pytest.mark.parametrize("manager_kind", ["vanilla", "nid"])
def test_mixed_resolutions_through_a_datamanager(collection, manager_kind):
    """nerfstudio's datamanager (it switches to variable_res_collate by itself) and ours draw rays from 32 px and
    24 px scenes, each ray tagged with its scene."""
    from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig

    config_type = VanillaDataManagerConfig
    if manager_kind == "nid":
        config_type = pytest.importorskip("nid_nerf.engine.datamanager").NIDDataManagerConfig
    config = config_type(
        dataparser=NIDCollectionDataParserConfig(data=collection),
        train_num_rays_per_batch=512,
        eval_num_rays_per_batch=512,
    )
    manager = config.setup(device="cpu", test_mode="val")
    ray_bundle, batch = manager.next_train(0)
    image_of_ray = batch["indices"][:, 0]
    expected = manager.train_dataset.metadata[SCENE_INDEX][image_of_ray]
    assert torch.equal(ray_bundle.metadata[SCENE_INDEX].reshape(-1), expected)
    assert set(expected.tolist()) == {0, 1, 2}
    vase = expected == 2
    assert batch["indices"][vase, 1:].max() < 24 and batch["indices"][~vase, 1:].max() >= 24  # per-image sizes
    assert batch["image"].shape == (512, 4)  # RGBA reaches the model, which blends with its background
    _, camera_batch = manager.next_eval_image(0)
    assert camera_batch["image"].shape[-1] == 4


def test_entry_points_are_registered():
    from nerfstudio.plugins.registry_dataparser import discover_dataparsers

    parsers, descriptions = discover_dataparsers()
    assert isinstance(parsers["nid-scene"], NIDSceneDataParserConfig)
    assert isinstance(parsers["nid-collection"], NIDCollectionDataParserConfig)
