"""Unit tests of the residual (INT) ray sampler on synthetic image batches (no model, no files)."""

from __future__ import annotations

import math

import pytest
import torch
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig

from nid_nerf.errors import NIDInputError
from nid_nerf.sampling.residual_map import ResidualMap, map_stride
from nid_nerf.sampling.residual_sampler import ResidualPixelSamplerConfig
from nid_nerf.sampling.schedules import ratio_schedule, refresh_interval

torch.set_num_threads(1)


def image_batch(num_images=4, height=16, width=20, mask=None, shuffled=True):
    """A CacheDataloader-like batch: images in a shuffled order, image_idx = absolute indices."""
    order = torch.randperm(num_images) if shuffled else torch.arange(num_images)
    images = torch.rand(num_images, height, width, 3)
    batch = {"image": images[order], "image_idx": order}
    if mask is not None:
        batch["mask"] = mask[order]
    return batch


def make_sampler(num_images=4, height=16, width=20, rays=256, **overrides):
    overrides.setdefault("map_stride", 1)  # per-pixel map, overwrite: exact expectations
    overrides.setdefault("update_weight", 1.0)
    config = ResidualPixelSamplerConfig(num_rays_per_batch=rays, **overrides)
    return config.setup(image_sizes=[(height, width)] * num_images)


def all_indices(num_images, height, width):
    img, y, x = torch.meshgrid(torch.arange(num_images), torch.arange(height), torch.arange(width), indexing="ij")
    return torch.stack([img.flatten(), y.flatten(), x.flatten()], -1)


def visit_all(sampler, num_images, height, width, value=0.01):
    idx = all_indices(num_images, height, width)
    sampler.observe(idx, torch.full((idx.shape[0],), value))
    return idx


# ---------------------------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------------------------


def test_step_schedule_rises_in_stairs_from_start_to_end():
    values = [ratio_schedule("step", s, 1000, 0.2, 0.9, num_stages=10) for s in range(0, 1001, 50)]
    assert values[0] == pytest.approx(0.2)
    assert values[-1] == pytest.approx(0.9)
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert len(set(round(v, 6) for v in values)) == 11  # 10 stairs + the end value
    assert ratio_schedule("step", 5000, 1000, 0.2, 0.9) == pytest.approx(0.9)
    assert ratio_schedule("constant", 500, 1000, 0.3, 0.9) == pytest.approx(0.3)
    assert ratio_schedule("linear", 500, 1000, 0.2, 0.8) == pytest.approx(0.5)
    assert ratio_schedule("cosine", 500, 1000, 0.2, 0.8) == pytest.approx(0.5)


def test_keep_target_is_int_ratio_of_the_pool():
    sampler = make_sampler(ratio_target="keep", ratio_schedule="step", ratio_start=0.2, ratio_end=1.0, ratio_steps=100)
    assert sampler.share(0) == pytest.approx(0.9) and sampler.pool_factor(0) == pytest.approx(5.0)
    assert sampler.pool_factor(100) == pytest.approx(1.0)  # keeps the whole pool: uniform, like INT at ratio 1
    with pytest.raises(NIDInputError, match="ratio-target"):
        make_sampler(ratio_target="keep", rule="power")


def test_refresh_interval_every_step_then_every_n():
    assert [refresh_interval(s, 100, 20) for s in (0, 50, 99, 100, 5000)] == [1, 1, 1, 20, 20]


def test_ratio_never_exceeds_one_minus_floor():
    sampler = make_sampler(ratio_schedule="constant", ratio_start=1.0, uniform_floor=0.1)
    assert sampler.share() == pytest.approx(0.9)
    picks, uniform = sampler.split(1000)
    assert uniform >= 100 and picks + uniform == 1000


# ---------------------------------------------------------------------------------------------
# the map: NaN, memory bound, layout
# ---------------------------------------------------------------------------------------------


def test_nan_residual_never_poisons_the_map():
    sampler = make_sampler()
    idx = torch.tensor([[0, 1, 1], [0, 1, 2], [1, 3, 4], [2, 5, 6]])
    sampler.observe(idx, torch.tensor([0.5, float("nan"), float("inf"), 0.25]))
    rmap = sampler.residual_map
    assert not torch.isnan(rmap.values).any()
    r = rmap.lookup(idx)
    assert r[0] == pytest.approx(0.5, rel=1e-3)
    assert math.isinf(r[1]) and math.isinf(r[2])  # still unvisited, not NaN, not "visited with inf"
    assert r[3] == pytest.approx(0.25, rel=1e-3)
    # a NaN later does not overwrite a good value, and sampling still works on the map
    sampler.observe(idx[:1], torch.tensor([float("nan")]))
    assert rmap.lookup(idx[:1])[0] == pytest.approx(0.5, rel=1e-3)
    batch = sampler.sample(image_batch())
    assert batch["indices"].shape == (256, 3)
    # a batch of only NaNs writes nothing
    assert sampler.observe(idx, torch.full((4,), float("nan"))) == 0


def test_out_of_range_indices_and_huge_values_are_ignored_or_clamped():
    sampler = make_sampler(num_images=2, height=8, width=8)
    indices = torch.tensor([[5, 0, 0], [0, 9, 0], [0, 0, -1], [1, 2, 2]])
    written = sampler.observe(indices, torch.tensor([1.0, 1.0, 1.0, 1e9]))
    assert written == 1
    assert sampler.residual_map.lookup(torch.tensor([[1, 2, 2]]))[0] == pytest.approx(65504.0)


def test_memory_bound_drops_to_reduced_resolution():
    # 20,000 images of 4000 x 3000 = 240 G pixels: a full-resolution float16 map would need 480 GB.
    sizes = [(3000, 4000)] * 20_000
    rmap = ResidualMap(sizes, max_map_pixels=50_000_000)
    assert rmap.stride > 1
    assert rmap.values.numel() <= 50_000_000
    assert rmap.values.dtype == torch.float16
    assert rmap.values.numel() * 2 <= 100 * 2**20  # <= 100 MiB
    assert map_stride(sizes, 50_000_000) == rmap.stride
    assert map_stride(sizes, 50_000_000) - 1 < 1 or ResidualMap(sizes[:1], 10**12).stride == 1
    # the stride is the smallest that fits
    s = rmap.stride
    over = sum(math.ceil(h / (s - 1)) * math.ceil(w / (s - 1)) for h, w in sizes)
    assert over > 50_000_000


def test_reduced_resolution_sampler_still_samples_and_observes():
    sampler = make_sampler(num_images=3, height=32, width=32, rays=128, max_map_pixels=3 * 8 * 8)
    rmap = sampler.residual_map
    assert rmap.stride == 4 and rmap.values.numel() == 3 * 8 * 8
    sampler.observe(torch.tensor([[1, 5, 6], [1, 6, 7]]), torch.tensor([0.2, 0.4]))  # same 4x4 cell: mean
    assert rmap.image(1)[1, 1] == pytest.approx(0.3, rel=1e-3)
    batch = sampler.sample(image_batch(3, 32, 32))
    assert batch["image"].shape == (128, 3)
    assert (batch["indices"][:, 1] < 32).all() and (batch["indices"][:, 2] < 32).all()


def test_map_stride_and_running_average_options():
    sampler = make_sampler(num_images=2, height=16, width=16, map_stride=4, update_weight=0.5)
    rmap = sampler.residual_map
    assert rmap.stride == 4 and rmap.values.numel() == 2 * 4 * 4
    pixel = torch.tensor([[0, 5, 5]])
    sampler.observe(pixel, torch.tensor([0.8]))  # unvisited: takes the value
    sampler.observe(pixel, torch.tensor([0.4]))  # then a running average
    assert rmap.lookup(pixel)[0] == pytest.approx(0.6, rel=1e-3)
    sampler.observe(pixel, torch.tensor([float("nan")]))
    assert rmap.lookup(pixel)[0] == pytest.approx(0.6, rel=1e-3)
    with pytest.raises(NIDInputError, match="update-weight"):
        make_sampler(update_weight=0.0)


def test_variable_resolution_map_layout():
    rmap = ResidualMap([(4, 6), (10, 3)], max_map_pixels=10**6)
    assert rmap.values.numel() == 4 * 6 + 10 * 3
    rmap.update(torch.tensor([[1, 9, 2], [0, 3, 5]]), torch.tensor([0.7, 0.1]))
    assert rmap.image(1)[9, 2] == pytest.approx(0.7, rel=1e-3)
    assert rmap.image(0)[3, 5] == pytest.approx(0.1, rel=1e-3)
    assert torch.isinf(rmap.image(0)).sum() == 23


# ---------------------------------------------------------------------------------------------
# picking
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["topk", "power"])
def test_floor_at_least_ten_percent_uniform(rule):
    """Even at the highest ratio, >= 10% of each batch is uniform: pixels of zero residual still get rays."""
    n, h, w = 2, 16, 16
    sampler = make_sampler(n, h, w, rays=400, rule=rule, ratio_schedule="constant", ratio_start=1.0)
    visit_all(sampler, n, h, w, value=0.0)
    hot = torch.tensor([[0, 0, 0]])
    sampler.observe(hot, torch.tensor([1.0]))  # one hot pixel soaks up every residual pick
    torch.manual_seed(0)
    batch = sampler.sample(image_batch(n, h, w))
    is_hot = (batch["indices"] == hot).all(-1)
    assert (~is_hot).sum() >= 40 - 1  # the uniform floor (40 rays) may hit the hot pixel by chance
    assert sampler.split(400)[1] >= 40
    # the floor covers the whole dataset over time: every pixel gets some ray
    seen = torch.zeros(n, h, w, dtype=torch.bool)
    for _ in range(300):
        b = sampler.sample(image_batch(n, h, w))
        seen[b["indices"][:, 0], b["indices"][:, 1], b["indices"][:, 2]] = True
    assert seen.all()


def test_uniform_floor_below_ten_percent_is_rejected():
    with pytest.raises(NIDInputError, match="uniform-floor"):
        make_sampler(uniform_floor=0.05)


@pytest.mark.parametrize("rule,pool_factor,expected", [("topk", 4.0, 0.05), ("topk", 16.0, 0.17), ("power", 4.0, 0.27)])
def test_high_residual_pixels_get_picked_more(rule, pool_factor, expected):
    """Share of rays on a 2 % hot region; uniform sampling gives 0.02.

    topk keeps the top 1/F of a pool of F x picks: hot share of residual picks = min(F * 0.02, 1);
    power (alpha 1): hot mass = 16 * 0.5 / (16 * 0.5 + 752 * 0.01) = 0.52; half the batch is residual.
    """
    n, h, w = 3, 16, 16
    sampler = make_sampler(
        n, h, w, rays=256, rule=rule, pool_factor=pool_factor, ratio_schedule="constant", ratio_start=0.5
    )
    visit_all(sampler, n, h, w, value=0.01)
    hot = torch.zeros(n, h, w, dtype=torch.bool)
    hot[1, 4:8, 4:8] = True  # 16 of 768 pixels (2 %)
    hot_idx = hot.nonzero()
    sampler.observe(hot_idx, torch.full((hot_idx.shape[0],), 0.5))
    torch.manual_seed(0)
    hits, total = 0, 0
    for _ in range(20):
        b = sampler.sample(image_batch(n, h, w))
        i = b["indices"]
        hits += int(hot[i[:, 0], i[:, 1], i[:, 2]].sum())
        total += i.shape[0]
    share = hits / total
    assert 0.75 * expected < share < 1.25 * expected, share
    # the rays carry the right pixels of the right images
    for key in ("image",):
        assert b[key].shape == (256, 3)


def test_batch_pixels_match_their_indices_with_shuffled_image_order():
    n, h, w = 4, 8, 10
    sampler = make_sampler(n, h, w, rays=64, ratio_schedule="constant", ratio_start=0.5)
    batch_in = image_batch(n, h, w, shuffled=True)
    full = torch.empty(n, h, w, 3)
    full[batch_in["image_idx"]] = batch_in["image"]
    b = sampler.sample(batch_in)
    i = b["indices"]
    assert torch.equal(b["image"], full[i[:, 0], i[:, 1], i[:, 2]])


@pytest.mark.parametrize("rule", ["topk", "power"])
def test_unvisited_pixels_get_picked(rule):
    n, h, w = 2, 16, 16
    sampler = make_sampler(n, h, w, rays=128, rule=rule, ratio_schedule="constant", ratio_start=0.9, alpha=1.0)
    idx = visit_all(sampler, n, h, w, value=0.3)
    unvisited = torch.zeros(n, h, w, dtype=torch.bool)
    unvisited[0, :, :2] = True  # 32 of 512 pixels (6 %) never seen
    sampler.residual_map.values[sampler.residual_map.cells(unvisited.nonzero())] = float("inf")
    assert math.isinf(sampler.residual_map.lookup(idx[:1])[0])
    torch.manual_seed(0)
    b = sampler.sample(image_batch(n, h, w))
    i = b["indices"]
    share = unvisited[i[:, 0], i[:, 1], i[:, 2]].float().mean()
    assert share > 0.15, share  # uniform would give ~0.06


def test_fresh_sampler_prefers_unvisited_and_visits_everything_quickly():
    """A fresh map is all unvisited; observing what was trained moves picks to the remaining pixels."""
    n, h, w = 2, 16, 16
    sampler = make_sampler(n, h, w, rays=128, ratio_schedule="constant", ratio_start=0.9)
    seen = torch.zeros(n, h, w, dtype=torch.bool)
    for _ in range(12):
        b = sampler.sample(image_batch(n, h, w))
        sampler.observe(b["indices"], torch.full((128,), 0.1))
        seen[b["indices"][:, 0], b["indices"][:, 1], b["indices"][:, 2]] = True
    # 12 x 128 = 1536 draws over 512 pixels: uniform would leave ~5 % unseen (e^-3)
    assert seen.float().mean() > 0.97


@pytest.mark.parametrize("rule", ["topk", "power"])
def test_ray_weights_are_finite_with_mean_one(rule):
    n, h, w = 2, 16, 16
    sampler = make_sampler(n, h, w, rays=200, rule=rule, unbiased=True, ratio_schedule="constant", ratio_start=0.7)
    b = sampler.sample(image_batch(n, h, w))  # all unvisited
    assert torch.isfinite(b["ray_weights"]).all() and b["ray_weights"].mean() == pytest.approx(1.0, rel=1e-5)
    visit_all(sampler, n, h, w, value=0.0)  # zero residuals everywhere: p of residual picks undefined
    b = sampler.sample(image_batch(n, h, w))
    assert torch.isfinite(b["ray_weights"]).all() and b["ray_weights"].mean() == pytest.approx(1.0, rel=1e-5)
    idx = all_indices(n, h, w)
    sampler.observe(idx, torch.rand(idx.shape[0]) ** 4)
    sampler.observe(idx[:5], torch.tensor([float("nan")] * 5))
    b = sampler.sample(image_batch(n, h, w))
    wts = b["ray_weights"]
    assert wts.shape == (200,) and torch.isfinite(wts).all() and (wts > 0).all()
    assert wts.mean() == pytest.approx(1.0, rel=1e-5)
    r = sampler.residual_map.lookup(b["indices"])
    # low-residual rays are up-weighted relative to high-residual ones (1/p)
    lo, hi = r < r.median(), r > r.median()
    assert wts[lo].mean() > wts[hi].mean()


def test_no_ray_weights_unless_unbiased():
    sampler = make_sampler()
    assert "ray_weights" not in sampler.sample(image_batch())


def test_refresh_interval_queues_picks_and_reranks():
    n, h, w = 2, 16, 16
    sampler = make_sampler(n, h, w, rays=100, refresh_warmup=2, refresh_every=5, ratio_schedule="constant",
                           ratio_start=0.5)
    batch = image_batch(n, h, w)
    for step in range(12):
        sampler.set_step(step)
        sampler.sample(batch)
    # steps 0, 1 rank every step; then one ranking serves 5 steps: 2, 7 -> 4 rankings
    assert sampler.counts["refresh"] == 4
    # a new set of images (train_num_images_to_sample_from) invalidates the queue
    sampler.set_step(12)
    sampler.sample(image_batch(n, h, w, shuffled=False) | {"image_idx": torch.tensor([1, 0])})
    assert sampler.counts["refresh"] == 5


def test_masks_are_honoured_like_the_base_sampler():
    n, h, w = 2, 16, 16
    mask = torch.zeros(n, h, w, 1, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    sampler = make_sampler(n, h, w, rays=128, ratio_schedule="constant", ratio_start=0.9)
    for _ in range(5):
        b = sampler.sample(image_batch(n, h, w, mask=mask))
        i = b["indices"]
        assert mask[i[:, 0], i[:, 1], i[:, 2], 0].all()
        assert b["mask"].all()
        sampler.observe(i, torch.rand(128))


def test_variable_resolution_list_batches():
    sizes = [(8, 12), (16, 6), (10, 10)]
    sampler = ResidualPixelSamplerConfig(
        num_rays_per_batch=90, ratio_schedule="constant", ratio_start=0.5, map_stride=1
    ).setup(image_sizes=sizes)
    images = [torch.rand(h, w, 3) for h, w in sizes]
    order = [2, 0, 1]
    batch = {"image": [images[i] for i in order], "image_idx": torch.tensor(order)}
    for _ in range(3):
        b = sampler.sample(batch)
        i = b["indices"]
        assert b["image"].shape == (90, 3)
        for k in range(90):
            img, y, x = (int(v) for v in i[k])
            assert y < sizes[img][0] and x < sizes[img][1]
            assert torch.equal(b["image"][k], images[img][y, x])
        sampler.observe(i, torch.rand(90))


def test_map_built_from_first_batch_without_sizes():
    sampler = ResidualPixelSamplerConfig(num_rays_per_batch=32).setup()
    b = sampler.sample(image_batch(3, 8, 8))
    assert sampler.residual_map.stride == 4 and sampler.residual_map.values.numel() == 3 * 2 * 2  # default stride 4
    assert sampler.observe(b["indices"], torch.rand(32)) == 32


def test_residual_images_are_rgb_in_unit_range():
    n, h, w = 3, 12, 14
    sampler = make_sampler(n, h, w, rays=64)
    for _ in range(3):
        b = sampler.sample(image_batch(n, h, w))
        sampler.observe(b["indices"], torch.rand(64))
    images = sampler.residual_images()
    assert set(images) == {"residual_map", "chosen_pixels"}
    for im in images.values():
        assert im.dim() == 3 and im.shape[-1] == 3 and im.shape[0] == h
        assert im.shape[1] == 3 * w + 2 * 2
        assert torch.isfinite(im).all() and im.min() >= 0 and im.max() <= 1
    assert (images["chosen_pixels"] == 1.0).all(-1).any()  # some white (residual) picks


def test_previews_of_huge_images_stay_small():
    sampler = ResidualPixelSamplerConfig(num_rays_per_batch=16, max_map_pixels=10_000).setup(
        image_sizes=[(3000, 4000)] * 2
    )
    sampler.observe(torch.tensor([[0, 1500, 2000], [1, 2999, 3999]]), torch.tensor([0.5, 0.25]))
    images = sampler.residual_images()
    for image in images.values():
        assert image.shape[0] <= 256 and image.shape[1] <= 2 * 256 + 2
    assert torch.isfinite(images["residual_map"]).all()


def test_zero_ratio_draws_like_the_base_sampler():
    """With the residual share at 0 the draws are the base class' draws (same RNG stream)."""
    n, h, w = 3, 16, 16
    batch = image_batch(n, h, w)
    sampler = make_sampler(n, h, w, rays=64, ratio_schedule="constant", ratio_start=0.0)
    base = PixelSampler(PixelSamplerConfig(num_rays_per_batch=64))
    torch.manual_seed(3)
    a = sampler.sample(batch)
    torch.manual_seed(3)
    b = base.sample(batch)
    assert torch.equal(a["indices"], b["indices"]) and torch.equal(a["image"], b["image"])
