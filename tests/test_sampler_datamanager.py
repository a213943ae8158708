"""The NID datamanager over a tiny synthetic Blender scene: uniform/residual switch, residual feedback,
image subsets, several ranks, tensorboard previews."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.dataparsers.blender_dataparser import BlenderDataParserConfig
from nerfstudio.engine.callbacks import TrainingCallbackAttributes
from PIL import Image

from nid_nerf.engine.datamanager import NIDDataManager, NIDDataManagerConfig
from nid_nerf.errors import NIDInputError
from nid_nerf.sampling.masked_sampler import MaskedPixelSampler
from nid_nerf.sampling.residual_sampler import ResidualPixelSampler

torch.set_num_threads(1)


def look_at(position: np.ndarray) -> list:
    """camera-to-world (OpenGL: camera looks down -z) looking at the origin."""
    forward = -position / np.linalg.norm(position)
    right = np.cross(forward, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, -forward, position
    return c2w.tolist()


def write_blender_scene(root: Path, num_train=6, num_val=2, size=16, seed=0) -> Path:
    rng = np.random.default_rng(seed)
    for split, count in (("train", num_train), ("val", num_val), ("test", num_val)):
        (root / split).mkdir(parents=True, exist_ok=True)
        frames = []
        for i in range(count):
            angle = 2 * math.pi * i / count + (0.3 if split != "train" else 0.0)
            pos = np.array([3 * math.cos(angle), 3 * math.sin(angle), 1.0])
            rgba = rng.integers(0, 256, (size, size, 4), dtype=np.uint8)
            rgba[..., 3] = 255
            Image.fromarray(rgba, "RGBA").save(root / split / f"r_{i}.png")
            frames.append({"file_path": f"./{split}/r_{i}", "transform_matrix": look_at(pos)})
        (root / f"transforms_{split}.json").write_text(json.dumps({"camera_angle_x": 0.69, "frames": frames}))
    return root


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> Path:
    return write_blender_scene(tmp_path_factory.mktemp("blender_scene"))


def make_dm(scene: Path, sampler="residual", rays=64, world_size=1, local_rank=0, **kwargs) -> NIDDataManager:
    pixel_sampler = kwargs.pop("pixel_sampler", None)
    config = NIDDataManagerConfig(
        dataparser=BlenderDataParserConfig(data=scene), sampler=sampler, train_num_rays_per_batch=rays,
        eval_num_rays_per_batch=rays, **kwargs,
    )
    if pixel_sampler is not None:
        config.pixel_sampler = pixel_sampler
    return config.setup(device="cpu", test_mode="val", world_size=world_size, local_rank=local_rank)


def dataset_pixels(dm: NIDDataManager, indices: torch.Tensor) -> torch.Tensor:
    return torch.stack([dm.train_dataset[int(i)]["image"][int(y), int(x)] for i, y, x in indices])


def test_default_residual_map_is_four_pixel_cells(scene):
    dm = make_dm(scene)
    rmap = dm.train_pixel_sampler.residual_map
    assert rmap.stride == 4 and rmap.values.numel() == 6 * 4 * 4
    _, batch = dm.next_train(0)
    dm.observe_residuals(batch, torch.rand(64))
    for image in dm.residual_images().values():  # previews at pixel resolution, 4 tiles of 16 x 16
        assert image.shape == (16, 4 * 16 + 3 * 2, 3)


def test_residual_datamanager_samples_observes_and_previews(scene):
    from nid_nerf.sampling.residual_sampler import ResidualPixelSamplerConfig

    dm = make_dm(scene, pixel_sampler=ResidualPixelSamplerConfig(map_stride=1, update_weight=1.0))
    assert isinstance(dm.train_pixel_sampler, ResidualPixelSampler)
    assert type(dm.eval_pixel_sampler) is MaskedPixelSampler  # evaluation stays uniform
    rmap = dm.train_pixel_sampler.residual_map
    assert rmap.num_images == 6 and rmap.values.numel() == 6 * 16 * 16 and rmap.stride == 1
    callbacks = dm.get_training_callbacks(TrainingCallbackAttributes(None, None, None, None))
    assert len(callbacks) == 1  # the tensorboard previews
    for step in range(5):
        ray_bundle, batch = dm.next_train(step)
        assert ray_bundle.origins.shape == (64, 3) and batch["image"].shape == (64, 3)
        assert torch.allclose(batch["image"], dataset_pixels(dm, batch["indices"]))
        residual = (batch["image"] - 0.5).abs().mean(-1)
        residual[0] = float("nan")
        dm.observe_residuals(batch, residual)
        expected: dict = {}
        for k, pixel in enumerate(map(tuple, batch["indices"].tolist())):
            if k > 0:  # ray 0 is NaN: dropped; duplicate rays of a pixel are averaged
                expected.setdefault(pixel, []).append(float(residual[k]))
        pixels = torch.tensor(list(expected))
        means = torch.tensor([sum(v) / len(v) for v in expected.values()])
        assert torch.allclose(rmap.lookup(pixels), means, atol=2e-3)
    assert not torch.isnan(rmap.values).any()
    assert 0 < rmap.visited_fraction() < 1
    assert dm.train_pixel_sampler.step == 5
    images = dm.residual_images()
    assert set(images) == {"residual_map", "chosen_pixels"}
    for image in images.values():
        assert image.shape[-1] == 3 and image.shape[0] == 16 and torch.isfinite(image).all()
    # the callback logs through nerfstudio's writer without raising
    callbacks[0].run_callback_at_location(step=0, location=callbacks[0].where_to_run[0])


def test_uniform_switch_is_nerfstudio_pixel_sampler(scene):
    dm = make_dm(scene, sampler="uniform")
    assert type(dm.train_pixel_sampler) is MaskedPixelSampler
    assert dm.train_pixel_sampler.num_rays_per_batch == 64
    assert dm.residual_images() == {}
    assert dm.get_training_callbacks(TrainingCallbackAttributes(None, None, None, None)) == []
    _, batch = dm.next_train(0)
    assert torch.allclose(batch["image"], dataset_pixels(dm, batch["indices"]))
    dm.observe_residuals(batch, torch.rand(64))  # a no-op


def test_uniform_switch_draws_identical_pixels_to_vanilla(scene):
    """Given the same image batch and seed, the uniform switch returns exactly the vanilla batch."""
    dm = make_dm(scene, sampler="uniform")
    vanilla = VanillaDataManagerConfig(
        dataparser=BlenderDataParserConfig(data=scene), train_num_rays_per_batch=64
    ).setup(device="cpu", test_mode="val")
    image_batch = next(dm.iter_train_image_dataloader)
    torch.manual_seed(5)
    a = dm.train_pixel_sampler.sample(image_batch)
    torch.manual_seed(5)
    b = vanilla.train_pixel_sampler.sample(image_batch)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_unbiased_weights_reach_the_batch(scene):
    from nid_nerf.sampling.residual_sampler import ResidualPixelSamplerConfig

    dm = make_dm(scene, pixel_sampler=ResidualPixelSamplerConfig(rule="power", unbiased=True))
    for step in range(3):
        _, batch = dm.next_train(step)
        assert batch["ray_weights"].shape == (64,)
        assert torch.isfinite(batch["ray_weights"]).all()
        assert batch["ray_weights"].mean() == pytest.approx(1.0, rel=1e-5)
        dm.observe_residuals(batch, torch.rand(64))


def test_image_subsets_keep_absolute_indices(scene):
    dm = make_dm(scene, train_num_images_to_sample_from=3, train_num_times_to_repeat_images=1)
    seen_images = set()
    for step in range(8):
        _, batch = dm.next_train(step)
        assert torch.allclose(batch["image"], dataset_pixels(dm, batch["indices"]))
        seen_images |= set(batch["indices"][:, 0].tolist())
        dm.observe_residuals(batch, torch.rand(64))
    assert len(seen_images) > 3  # subsets changed and the map covers all training images


def test_each_rank_has_its_own_sampler(scene):
    ranks = [make_dm(scene, world_size=2, local_rank=r) for r in range(2)]
    s0, s1 = (dm.train_pixel_sampler for dm in ranks)
    assert s0 is not s1 and s0.residual_map is not s1.residual_map
    _, batch = ranks[0].next_train(0)
    ranks[0].observe_residuals(batch, torch.full((64,), 0.25))
    assert torch.isfinite(s0.residual_map.values).any()
    assert torch.isinf(s1.residual_map.values).all()  # rank 1 untouched
    _, batch1 = ranks[1].next_train(0)
    assert batch1["image"].shape == (64, 3)


def test_patches_with_residual_sampler_are_rejected(scene):
    with pytest.raises(NIDInputError, match="patch-size"):
        make_dm(scene, patch_size=4)


def test_schedule_length_follows_the_trainer(scene):
    dm = make_dm(scene)

    class FakeTrainer:
        class config:  # noqa: N801
            max_num_iterations = 321

    dm.get_training_callbacks(TrainingCallbackAttributes(None, None, None, FakeTrainer()))
    assert dm.train_pixel_sampler.schedule_steps == 321


# ------------------------------------------------------------------------------------------- through the pipeline


def make_pipeline(scene: Path, sampler="residual"):
    from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig
    from nid_nerf.engine.pipeline import NIDPipelineConfig
    from nid_nerf.models.nid_model import NIDModelConfig

    config = NIDPipelineConfig(  # nid-scene keeps RGBA images: the model composites them on its own background
        datamanager=NIDDataManagerConfig(dataparser=NIDSceneDataParserConfig(data=scene), sampler=sampler,
                                         train_num_rays_per_batch=64, eval_num_rays_per_batch=64),
        model=NIDModelConfig(grid_resolution=12, log2_table_size=10, num_levels=4, max_resolution=32,
                             num_fine_samples=8, eikonal_points=16),
    )
    return config.setup(device="cpu", test_mode="val")


def test_a_training_step_feeds_its_residuals_to_the_sampler_without_touching_the_outputs(scene):
    torch.manual_seed(0)
    pipeline = make_pipeline(scene)
    pipeline.train()
    rmap = pipeline.datamanager.residual_sampler.residual_map
    assert rmap.visited_fraction() == 0.0
    outputs, losses, metrics = pipeline.get_train_loss_dict(0)
    assert 0.0 < rmap.visited_fraction() and set(losses) >= {"rgb_loss", "eikonal_loss", "alpha_loss"}
    assert not {"per_ray_residual", "_pred_gt"} & set(outputs), "no side channel through the outputs"
    assert set(metrics) == {"psnr", "beta"}
    # nerfstudio's evaluation path: get_eval_loss_dict -> get_metrics_dict -> get_loss_dict
    pipeline.eval()
    _, eval_losses, eval_metrics = pipeline.get_eval_loss_dict(0)
    assert set(eval_losses) == {"rgb_loss", "alpha_loss"} and torch.isfinite(eval_metrics["psnr"])


def test_training_terms_composite_once_and_agree_with_nerfstudio_hooks_at_eval(scene):
    torch.manual_seed(0)
    pipeline = make_pipeline(scene)
    model = pipeline.model
    model.train()
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    outputs = model(ray_bundle)
    assert batch["image"].shape[-1] == 4  # RGBA: a random training background
    torch.manual_seed(1)
    terms = model.get_training_terms(outputs, batch)
    after = torch.rand(8)
    torch.manual_seed(1)
    background = torch.rand_like(batch["image"][..., :3])  # the one draw of the step
    assert torch.equal(after, torch.rand(8)), "one random background per training step"
    rgb, alpha = batch["image"][..., :3], batch["image"][..., 3:]
    pred = outputs["rgb_raw"] + background * (1 - outputs["accumulation"])
    gt = rgb * alpha + background * (1 - alpha)
    assert torch.allclose(terms.per_ray_residual, (pred - gt).abs().mean(-1))
    assert not terms.per_ray_residual.requires_grad
    assert torch.allclose(terms.losses["rgb_loss"], (pred - gt).abs().mean())
    # at eval the background is fixed: nerfstudio's two hooks give the same numbers as the one-pass API
    model.eval()
    with torch.no_grad():
        outputs = model(ray_bundle)
        terms = model.get_training_terms(outputs, batch)
        assert {k: float(v) for k, v in model.get_metrics_dict(outputs, batch).items()} == {
            k: float(v) for k, v in terms.metrics.items()}
        assert {k: float(v) for k, v in model.get_loss_dict(outputs, batch).items()} == {
            k: float(v) for k, v in terms.losses.items()}
