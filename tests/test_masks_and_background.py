"""Real photo captures: object masks (mask loss, rays drawn outside the mask, masked metrics) and the inverted-sphere
background model for captures without masks.

Scenes are 16 x 16 px frames written here (a grey object in a disk mask), models are tiny (grid 12, 4 levels), so
each test takes a few seconds on one core.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import List

import numpy as np
import pytest
import torch
from cli_helpers import plane_rays
from nerfstudio.cameras.rays import RayBundle
from nerfstudio.data.scene_box import SceneBox
from PIL import Image

from nid_nerf.dataparsers.training_masks import IMAGE_CHANNELS, OBJECT_MASKS
from nid_nerf.errors import NIDInputError
from nid_nerf.fields.background import (
    BackgroundFieldConfig,
    HashGridBackground,
    InvertedSphereBackground,
    background_field,
    background_samples,
    contract,
    inside_samples,
    inverted_sphere_coordinates,
)
from nid_nerf.model_components.image_metrics import masked_psnr, psnr
from nid_nerf.model_components.rendering import ray_aabb

SIZE = 16
FOCAL = 20.0
DISTANCE = 2.5
MASK_RADIUS_PX = 2.0
"""The object's disk in every image. The untrained SDF is a sphere of radius 0.5, which from 2.5 away covers a
disk of FOCAL * tan(asin(0.5 / 2.5)) = 4.1 px: the ring between 2 and 4 px starts opaque but is outside the mask."""


def _pose(k: int, n: int) -> List[List[float]]:
    """Camera-to-world (OpenGL) on a circle of radius DISTANCE around the origin, looking at it."""
    angle = 2 * math.pi * k / n
    eye = np.array([DISTANCE * math.cos(angle), DISTANCE * math.sin(angle), 0.3])
    back = eye / np.linalg.norm(eye)
    right = np.cross([0.0, 0.0, 1.0], back)
    right /= np.linalg.norm(right)
    up = np.cross(back, right)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, up, back, eye
    return c2w.tolist()


def _disk() -> np.ndarray:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    return np.hypot(xx - SIZE / 2, yy - SIZE / 2) <= MASK_RADIUS_PX


def _masked_scene(root: Path, n: int = 4, masks: bool = True) -> Path:
    """RGB frames: a grey object (0.3) inside the disk, a dark red wall outside; with masks, mask_path = the disk."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    frames = []
    for k in range(n):
        image = np.zeros((SIZE, SIZE, 3), np.uint8)
        image[...] = (120, 20, 20)
        image[_disk()] = 77
        Image.fromarray(image).save(root / f"images/f{k}.png")
        frame = {"file_path": f"images/f{k}.png", "transform_matrix": _pose(k, n)}
        if masks:
            Image.fromarray((_disk() * 255).astype(np.uint8)).save(root / f"masks/f{k}.png")
            frame["mask_path"] = f"masks/f{k}.png"
        frames.append(frame)
    meta = {"fl_x": FOCAL, "fl_y": FOCAL, "cx": SIZE / 2, "cy": SIZE / 2, "w": SIZE, "h": SIZE, "frames": frames,
            "train_filenames": [f["file_path"] for f in frames], "val_filenames": [frames[0]["file_path"]],
            "scene_box": [[-1, -1, -1], [1, 1, 1]]}
    (root / "transforms.json").write_text(json.dumps(meta))
    return root


def _pipeline(scene: Path, **model_overrides):
    from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig
    from nid_nerf.engine.datamanager import NIDDataManagerConfig
    from nid_nerf.engine.pipeline import NIDPipelineConfig
    from nid_nerf.models.nid_model import NIDModelConfig

    config = NIDPipelineConfig(
        datamanager=NIDDataManagerConfig(dataparser=NIDSceneDataParserConfig(data=scene), sampler="uniform",
                                         train_num_rays_per_batch=256, eval_num_rays_per_batch=256),
        model=NIDModelConfig(grid_resolution=12, log2_table_size=10, num_levels=4, max_resolution=32,
                             num_fine_samples=8, eikonal_points=16, thread_policy="fixed", **model_overrides),
    )
    return config.setup(device="cpu", test_mode="val")


def _tiny_model(**overrides):
    from nid_nerf.models.nid_model import NIDModelConfig

    metadata = overrides.pop("metadata", None)
    config = NIDModelConfig(grid_resolution=16, log2_table_size=10, num_levels=4, max_resolution=32, **overrides)
    torch.manual_seed(0)
    model = config.setup(scene_box=SceneBox(torch.tensor([[-1.0, -1, -1], [1, 1, 1]])), num_train_data=1,
                         metadata=metadata)
    model.update_coarse_grid(0)
    return model


def _rays(n: int = 256) -> RayBundle:
    """Rays from z = -3 through a grid on the z = 0 plane, half of them past the box (|x| or |y| up to 2.5)."""
    return plane_rays(n, 2.5, (0.05, -0.1, -3.0))


# ------------------------------------------------------------------------------------------------- masked metrics
def test_masked_psnr_matches_a_hand_computed_oracle():
    gt = torch.zeros(2, 2, 3)
    pred = torch.zeros(2, 2, 3)
    pred[0, 0] = 0.5  # inside the mask: squared error 0.25 in each channel
    pred[1, 1] = 1.0  # outside: ignored (black in both)
    mask = torch.zeros(2, 2, 1)
    mask[0, 0] = 1
    # MSE over the whole image: 3 x 0.25 / (4 pixels x 3 channels) = 0.0625 -> 12.041 dB
    assert float(masked_psnr(pred, gt, mask)) == pytest.approx(-10 * math.log10(0.0625), abs=1e-4)
    # the full-image PSNR sees the outside error too: (0.75 + 3) / 12 = 0.3125 -> 5.05 dB
    assert float(psnr(pred, gt)) == pytest.approx(-10 * math.log10(0.3125), abs=1e-4)
    # an all-ones mask is the plain PSNR
    assert float(masked_psnr(pred, gt, torch.ones(2, 2, 1))) == pytest.approx(float(psnr(pred, gt)))


# ------------------------------------------------------------------------------------------------- object masks
def test_object_masks_are_sampled_everywhere_with_a_mask_loss_that_empties_the_background(tmp_path):
    """Rays outside the mask are drawn (6% of a batch falls in the 13-pixel disk) and 15 Adam steps take the mean
    opacity outside the mask from 0.65 (the initial sphere) to 0.003 (measured; asserted: below half)."""
    scene = _masked_scene(tmp_path / "scene")
    torch.manual_seed(0)
    pipeline = _pipeline(scene, mask_loss_mult=1.0)
    dm, model = pipeline.datamanager, pipeline.model
    assert dm.train_dataset.metadata[OBJECT_MASKS] and dm.train_dataset.metadata[IMAGE_CHANNELS] == 3
    assert model.object_masks and model.background is not None  # auto: masked photos get the background field
    assert dm.train_pixel_sampler.config.ignore_mask
    _, batch = dm.next_train(0)
    inside = batch["mask"].float().mean()
    # the disk is 13 of 256 pixels: drawn uniformly, about 5% of the rays are inside, not 100%
    assert 0.0 < float(inside) < 0.2

    camera = dm.train_dataset.cameras[0:1]
    outside = torch.from_numpy(~_disk())

    def background_opacity() -> float:
        model.eval()
        model.update_coarse_grid(0)
        with torch.no_grad():
            acc = model.get_outputs_for_camera(camera)["accumulation"][..., 0]
        model.train()
        return float(acc[outside].mean())

    before = background_opacity()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = {}
    for step in range(15):
        model.update_coarse_grid(0)
        _, losses, _ = pipeline.get_train_loss_dict(step)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    assert "mask_loss" in losses
    after = background_opacity()
    assert before > 0.1 and after < 0.5 * before, (before, after)


def test_masked_rgb_target_is_the_eval_background_outside_the_mask(tmp_path):
    """Without a background model (``background-model none``; auto gives masked photos the background field)."""
    torch.manual_seed(0)
    pipeline = _pipeline(_masked_scene(tmp_path / "scene"), background_model="none")
    model = pipeline.model
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    outputs = model(ray_bundle)
    terms = model.get_training_terms(outputs, batch)
    m = batch["mask"].float()
    gt = batch["image"] * m + torch.ones(3) * (1 - m)  # white eval background outside
    assert torch.allclose(terms.per_ray_residual, (outputs["rgb"] - gt).abs().mean(-1).detach())
    acc = outputs["accumulation"].clamp(0, 1)
    bce = -(m * torch.log(acc + 1e-4) + (1 - m) * torch.log(1 - acc + 1e-4)).mean()
    assert torch.allclose(terms.losses["mask_loss"], model.config.mask_loss_mult * bce)


def test_eval_metrics_report_masked_and_full_psnr(tmp_path):
    torch.manual_seed(0)
    pipeline = _pipeline(_masked_scene(tmp_path / "scene"))
    model = pipeline.model
    model.eval()
    camera, batch = pipeline.datamanager.next_eval_image(0)
    with torch.no_grad():
        outputs = model.get_outputs_for_camera(camera)
    metrics, _ = model.get_image_metrics_and_images(outputs, batch)
    assert {"psnr", "ssim", "psnr_masked", "ssim_masked"} <= set(metrics)
    mask = batch["mask"].float()
    expected = masked_psnr(outputs["rgb"].clamp(0, 1), batch["image"], mask)
    assert metrics["psnr_masked"] == pytest.approx(float(expected), abs=1e-5)


def test_unmasked_rgb_scene_gets_the_background_model(tmp_path):
    pipeline = _pipeline(_masked_scene(tmp_path / "scene", masks=False))
    assert not pipeline.datamanager.train_dataset.metadata[OBJECT_MASKS]
    # no masks: the hash grid, from the inscribed sphere (a wall close behind the object is background)
    assert isinstance(pipeline.model.background, HashGridBackground) and pipeline.model.background.inscribed
    assert pipeline.model.background.radius == pytest.approx(1.0)
    assert "background" in pipeline.model.get_param_groups()


def test_masked_rgb_scene_gets_the_frequency_background(tmp_path):
    pipeline = _pipeline(_masked_scene(tmp_path / "scene", masks=True))
    assert isinstance(pipeline.model.background, InvertedSphereBackground) and not pipeline.model.background.inscribed


# ------------------------------------------------------------------------------------------------- background
def test_inverted_sphere_coordinates_oracle():
    centre = torch.tensor([1.0, 0.0, 0.0])
    # 8 along z from the centre, sphere radius 2: r = 4 -> (0, 0, 1, 1/4)
    out = inverted_sphere_coordinates(torch.tensor([[1.0, 0.0, 8.0], [1.0, -6.0, 0.0]]), centre, 2.0)
    assert torch.allclose(out, torch.tensor([[0.0, 0.0, 1.0, 0.25], [0.0, -1.0, 0.0, 1.0 / 3.0]]))
    # 1/r for r from 1.5 to 100 radii; the first three stay a unit vector
    r = torch.tensor([1.5, 3.0, 10.0, 100.0])
    d = torch.nn.functional.normalize(torch.tensor([[1.0, 2.0, -2.0]]), dim=-1)
    out = inverted_sphere_coordinates(centre + 2.0 * r[:, None] * d, centre, 2.0)
    assert torch.allclose(out[:, 3], 1.0 / r) and torch.allclose(out[:, :3].norm(dim=-1), torch.ones(4))


def test_background_samples_start_where_the_ray_leaves_the_sphere():
    # through the centre from z = -5: leaves the unit sphere at t = 6; a sample at inverse distance s is at t = 5 + 1/s
    origins = torch.tensor([[0.0, 0.0, -5.0], [0.0, 3.0, -5.0]])  # the second ray misses the sphere (3 from the axis)
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    t, s, edges = background_samples(origins, directions, torch.zeros(3), 1.0, 8, jitter=False)
    assert t.shape == s.shape == (2, 8) and edges.shape == (2, 9)
    assert edges[0, 0] == pytest.approx(1.0) and edges[1, 0] == pytest.approx(1.0 / 3.0) and (edges[:, -1] == 0).all()
    assert torch.allclose(t[0], 5.0 + 1.0 / s[0])
    points = origins[:, None] + directions[:, None] * t[..., None]
    assert torch.allclose(points.norm(dim=-1), 1.0 / s, rtol=1e-4)  # every sample at distance 1/s
    assert (t[1] >= 5.0).all() and (t[:, 1:] > t[:, :-1]).all()


def test_background_shapes():
    field = InvertedSphereBackground(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), BackgroundFieldConfig(num_samples=12))
    rays = _rays(64)
    out = field(rays.origins, rays.directions, torch.ones(3), jitter=True)
    assert out["rgb"].shape == (64, 3) and out["accumulation"].shape == (64, 1) and out["depth"].shape == (64, 1)
    assert ((out["rgb"] >= 0) & (out["rgb"] <= 1)).all()
    assert ((out["accumulation"] > 0) & (out["accumulation"] < 1)).all()
    assert field.radius == pytest.approx(math.sqrt(3.0))
    out["rgb"].sum().backward()
    assert all(p.grad is not None for p in field.parameters())


def test_inside_samples_cover_the_chord_in_front_of_the_camera():
    """Radius 2 about the origin. A ray from (0, 0, -5) along +z: chord t in [3, 7], 4 radii long. A ray from the
    centre: t in [0, 2] (the part behind the camera is dropped). A ray that passes 3 from the centre: no chord."""
    origins = torch.tensor([[0.0, 0, -5], [0, 0, 0], [3, 0, -5]])
    directions = torch.tensor([[0.0, 0, 1], [0, 0, 1], [0, 0, 1]])
    t, x, deltas = inside_samples(origins, directions, torch.zeros(3), 2.0, 4, jitter=False)
    assert torch.allclose(t[0], torch.tensor([3.5, 4.5, 5.5, 6.5])) and torch.allclose(t[1], torch.tensor(
        [0.25, 0.75, 1.25, 1.75]))
    assert torch.allclose(deltas.sum(1), torch.tensor([2.0, 1.0, 0.0]))  # in sphere radii
    assert torch.allclose(x[0, :, 2], (t[0] - 5.0) / 2.0) and (x[:2].norm(dim=-1) <= 1.0 + 1e-6).all()


def test_contraction_maps_the_outside_into_the_shell():
    u = torch.nn.functional.normalize(torch.randn(100, 3), dim=-1)
    s = torch.rand(100)
    y = contract(u, s)
    assert torch.allclose(y.norm(dim=-1), 2.0 - s)  # r = 1 -> |y| = 1, r -> infinity -> |y| -> 2
    assert torch.allclose(torch.nn.functional.normalize(y, dim=-1), u, atol=1e-6)


@pytest.mark.parametrize("inside", [0, 6])
def test_hash_grid_background(inside):
    config = BackgroundFieldConfig(encoding="hash-grid", num_samples=8, inside_samples=inside, grid_levels=4,
                                   grid_max_resolution=64, grid_log2_table_size=12)
    field = background_field(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), config)
    assert isinstance(field, HashGridBackground)
    rays = _rays(64)
    out = field(rays.origins, rays.directions, torch.ones(3), jitter=True)
    assert out["rgb"].shape == (64, 3) and ((out["accumulation"] > 0) & (out["accumulation"] < 1)).all()
    out["rgb"].sum().backward()
    assert field.table.grad is not None and field.table.grad.abs().sum() > 0
    # the fused kernel (where it builds) and torch's lookup give the same features
    x01 = torch.rand(500, 3)
    torch_path = HashGridBackground(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), config, use_fused=False)
    torch_path.load_state_dict(field.state_dict())
    with torch.no_grad():
        field.table.normal_()
        torch_path.table.copy_(field.table)
    assert torch.allclose(field.features(x01), torch_path.features(x01), atol=1e-5)
    with pytest.raises(NotImplementedError, match="hash-grid"):
        InvertedSphereBackground(torch.tensor([[-1.0, -1, -1], [1, 1, 1]]), BackgroundFieldConfig(
            inside_samples=2))(rays.origins, rays.directions, torch.ones(3), jitter=False)


@pytest.mark.parametrize("encoding", ["frequencies", "hash-grid"])
@pytest.mark.parametrize("mode", ["train", "surface", "volume"])
def test_composite_equals_the_sdf_render_when_the_background_is_empty(mode, encoding):
    """A background of zero density shows its fill colour (the eval background): exactly the render without one."""
    plain = _tiny_model(background_model="none", beta_init=0.01)
    with_bg = _tiny_model(background_model="inverted-sphere", beta_init=0.01,
                          background=BackgroundFieldConfig(encoding=encoding, sphere="corners"))
    assert plain.background is None and with_bg.background is not None
    with torch.no_grad():
        with_bg.background.mlp[-1].bias[0].fill_(-60.0)  # softplus(-60) ~ 1e-26: transparent
    rays = _rays()
    outputs = []
    for model in (plain, with_bg):
        if mode == "train":
            model.train()
        else:
            model.eval()
            model.config.eval_render = mode
        torch.manual_seed(3)
        with torch.no_grad():
            outputs.append(model.get_outputs(rays))
    assert torch.allclose(outputs[0]["rgb"], outputs[1]["rgb"], atol=1e-6)
    assert torch.equal(outputs[0]["accumulation"], outputs[1]["accumulation"])


def test_the_inscribed_sphere_bounds_the_sdf_render():
    """Rays through the box that miss its inscribed sphere: the SDF (a sphere of radius 0.5 at the start) leaves
    a Laplace tail of density there in the plain render, and nothing at all when the background starts at the
    inscribed sphere."""
    plain = _tiny_model(background_model="none")
    inscribed = _tiny_model(background_model="inverted-sphere", background=BackgroundFieldConfig(sphere="inscribed"))
    assert inscribed.background.inscribed and inscribed.background.radius == pytest.approx(1.0)
    rays = _rays()
    origins, directions = rays.origins.reshape(-1, 3), rays.directions.reshape(-1, 3)
    closest = torch.linalg.cross(origins, torch.nn.functional.normalize(directions, dim=-1)).norm(dim=-1)
    for model in (plain, inscribed):
        model.train()
    torch.manual_seed(3)
    with torch.no_grad():
        a = plain.get_outputs(rays)["accumulation"][:, 0]
        b = inscribed.get_outputs(rays)["accumulation"][:, 0]
    _, _, through_box = ray_aabb(origins, directions, torch.tensor([[-1.0, -1, -1], [1, 1, 1]]))
    corner = through_box & (closest > 1.0)  # through the box's corners, past the sphere
    assert corner.sum() > 5 and (a[corner] > 0).all() and (b[corner] == 0).all()


def test_the_background_shows_only_where_the_sdf_is_transparent():
    plain = _tiny_model(background_model="none", beta_init=0.005)
    with_bg = _tiny_model(background_model="inverted-sphere", beta_init=0.005,
                          background=BackgroundFieldConfig(encoding="frequencies", sphere="corners"))
    rays = _rays()
    with torch.no_grad():
        with_bg.background.mlp[-1].bias.copy_(torch.tensor([5.0, 3.0, -3.0, -3.0]))  # opaque and red
        for model in (plain, with_bg):
            model.eval()
        a, b = plain.get_outputs(rays), with_bg.get_outputs(rays)
    surface = with_bg.last_render["surface_rays"]
    assert surface.any() and torch.equal(a["rgb"][surface], b["rgb"][surface])  # accumulation 1: untouched
    empty = a["accumulation"][:, 0] == 0
    assert empty.sum() > 50 and (b["rgb"][empty, 0] > 0.8).all() and (b["rgb"][empty, 1:] < 0.2).all()


def test_auto_background_follows_the_data():
    assert _tiny_model().background is None  # no metadata (tests, collections): as before
    assert _tiny_model(metadata={IMAGE_CHANNELS: 4}).background is None  # RGBA: synthetic scenes unchanged
    masked = _tiny_model(metadata={IMAGE_CHANNELS: 3, OBJECT_MASKS: True})  # masked photos: the mask keeps the SDF
    assert masked.background is not None and masked.object_masks  # on the object, the field renders the rest
    assert _tiny_model(metadata={IMAGE_CHANNELS: 3}).background is not None  # photos with their background
    # eval render: volume for photos (a soft surface after minutes of training), surface for synthetic scenes
    assert _tiny_model(metadata={IMAGE_CHANNELS: 3}).config.eval_render == "volume"
    assert _tiny_model(metadata={IMAGE_CHANNELS: 4}).config.eval_render == "surface"
    assert _tiny_model().config.eval_render == "surface"
    assert _tiny_model(metadata={IMAGE_CHANNELS: 3}, eval_render="surface").config.eval_render == "surface"
    with pytest.raises(NIDInputError, match="RGBA") as err:
        _tiny_model(background_model="inverted-sphere", metadata={IMAGE_CHANNELS: 4})
    assert "\n" not in str(err.value)


def test_which_masks_are_object_masks(tmp_path):
    """Frames' mask_path under --masks auto are object masks; ANDed with --mask-dir / --occlusion, or on some frames
    only (the others get an all-ones placeholder), they stay train-only masks as before."""
    from nid_nerf.dataparsers import NIDSceneDataParserConfig

    def metadata(scene: Path, **kwargs):
        outputs = NIDSceneDataParserConfig(data=scene, **kwargs).setup().get_dataparser_outputs(split="train")
        return outputs.metadata[OBJECT_MASKS], outputs.metadata[IMAGE_CHANNELS]

    scene = _masked_scene(tmp_path / "scene")
    assert metadata(scene) == (True, 3)
    assert metadata(scene, mask_dir=Path("masks")) == (False, 3)
    assert metadata(scene, occlusion=0.2) == (False, 3)
    assert metadata(scene, masks="ignore") == (False, 3)
    meta = json.loads((scene / "transforms.json").read_text())
    del meta["frames"][1]["mask_path"]
    (scene / "transforms.json").write_text(json.dumps(meta))
    assert metadata(scene) == (False, 3)
    rgba = _masked_scene(tmp_path / "rgba", masks=False)
    Image.open(rgba / "images/f0.png").convert("RGBA").save(rgba / "images/f0.png")
    assert metadata(rgba) == (False, 4)


def test_distortion_loss_matches_its_definition():
    """Hand-computed: one bin of weight 1 over [0, 0.3] costs 0.3 / 3 = 0.1; two bins of 0.5 over [0, 0.5, 1]:
    pairs 2 x 0.25 x 0.5 = 0.25, plus (0.25 x 0.5 + 0.25 x 0.5) / 3. Random rays: the O(S^2) double sum, with the
    edges in either order."""
    from nid_nerf.model_components.rendering import distortion_loss

    one = distortion_loss(torch.tensor([[1.0]]), torch.tensor([[0.0, 0.3]]))
    two = distortion_loss(torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 0.5, 1.0]]))
    assert one.item() == pytest.approx(0.1) and two.item() == pytest.approx(0.25 + 0.25 / 3)
    torch.manual_seed(0)
    weights = torch.rand(5, 7) / 7
    edges = torch.sort(torch.rand(5, 8), dim=-1).values
    mids = 0.5 * (edges[:, 1:] + edges[:, :-1])
    brute = (weights[:, :, None] * weights[:, None, :] * (mids[:, :, None] - mids[:, None, :]).abs()).sum((1, 2))
    brute = brute + (weights ** 2 * (edges[:, 1:] - edges[:, :-1])).sum(-1) / 3
    assert torch.allclose(distortion_loss(weights, edges), brute, atol=1e-6)
    assert torch.allclose(distortion_loss(weights.flip(-1), (1 - edges).flip(-1)), brute, atol=1e-6)


def test_background_distortion_is_computed_only_when_weighted():
    rays = _rays(64)
    for mult in (0.0, 0.1):
        model = _tiny_model(background_model="inverted-sphere", background_distortion_mult=mult)
        model.train()
        outputs = model.get_outputs(rays)
        assert ("background_distortion" in outputs) == (mult > 0)
        if mult > 0:
            assert torch.isfinite(outputs["background_distortion"]) and outputs["background_distortion"] > 0
