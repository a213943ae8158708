"""Code search (``code_init search``): candidates, ranking and the rendered error, against hand-computed values."""

import math

import pytest
import torch
from torch import nn

from nid_nerf.model_components.code_search import (
    best_candidate,
    candidate_codes,
    gated_codes,
    render_error,
    search_code,
)


def test_gated_codes_keep_the_largest_magnitudes_of_each_row():
    codes = torch.tensor([[0.1, -0.5, 0.3, 0.05], [2.0, 0.0, -3.0, 1.0]])
    assert torch.equal(gated_codes(codes, 2), torch.tensor([[0.0, -0.5, 0.3, 0.0], [2.0, 0.0, -3.0, 0.0]]))
    assert torch.equal(gated_codes(codes, 9), codes), "top_k above K keeps every entry"


def test_candidates_are_the_mean_the_encoder_then_every_pretraining_scene():
    mean = torch.zeros(3)
    encoder = torch.ones(3)
    pretrained = torch.tensor([[1.0, 2.0, 3.0], [-4.0, 0.5, 0.1]])
    names, codes = candidate_codes(pretrained, 1, mean, encoder)
    assert names == ["mean", "encoder", "scene 0", "scene 1"]
    assert torch.equal(codes, torch.tensor([[0.0, 0, 0], [1, 1, 1], [0, 0, 3], [-4, 0, 0]]))
    names, codes = candidate_codes(None, 1, mean)
    assert names == ["mean"] and codes.shape == (1, 3), "a dictionary without codes or encoder: the mean code alone"


def test_best_candidate_skips_non_finite_errors_and_breaks_ties_early():
    assert best_candidate([0.3, 0.1, 0.2]) == 1
    assert best_candidate([math.nan, 0.5, math.inf, 0.4]) == 3
    assert best_candidate([0.2, 0.2]) == 0, "a tie goes to the earlier candidate (the mean code comes first)"
    assert best_candidate([math.nan, math.nan]) == 0


def test_search_returns_the_candidate_nearest_the_target_with_every_error():
    target = torch.tensor([0.9, 0.0, 0.1])
    names, codes = candidate_codes(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), 3, torch.full((3,), 1 / 3))
    found = search_code(names, codes, lambda code: float(((code - target) ** 2).sum()))
    assert found.name == "scene 0" and torch.equal(found.code, torch.tensor([1.0, 0.0, 0.0]))
    assert found.errors["scene 0"] == pytest.approx(0.02)
    assert found.errors["mean"] == pytest.approx((0.9 - 1 / 3) ** 2 + (1 / 3) ** 2 + (0.1 - 1 / 3) ** 2)
    assert found.seconds >= 0


class _ConstantModel(nn.Module):
    """Renders every ray the colour ``rgb``; composites like NIDModel._targets with no mask (RGB targets)."""

    def __init__(self, rgb):
        super().__init__()
        self.rgb = torch.tensor(rgb)
        self.calls = []

    def forward(self, rays):
        self.calls.append((len(rays), self.training))
        return {"rgb": self.rgb.expand(len(rays), 3)}

    def _targets(self, outputs, image, mask):
        assert mask is None
        return outputs["rgb"], image[..., :3]


def test_render_error_is_the_mean_squared_error_over_all_rays_in_eval_mode():
    model = _ConstantModel([0.5, 0.5, 0.5]).train()
    image = torch.zeros(5, 3)
    image[:2] = 1.0  # two white rays, three black ones: every squared error is 0.25
    image[4, 0] = 0.5  # one channel exact: that ray's mean squared error is 0.25 * 2 / 3
    expected = (4 * 0.25 + 0.25 * 2 / 3) / 5
    rays = torch.zeros(5, 6)  # stands in for the RayBundle: only its length and slices are used
    assert render_error(model, rays, {"image": image, "indices": torch.zeros(5, 3)}, chunk=2) == pytest.approx(
        expected)
    assert [n for n, _ in model.calls] == [2, 2, 1] and not any(t for _, t in model.calls), "chunks, in eval mode"
    assert model.training, "the model's mode is restored"


def test_settings_benchmark_parses_settings_ranks_and_tabulates():
    from nid_nerf.benchmarks import code_search as bench
    from nid_nerf.errors import NIDInputError

    assert bench.parse_setting("full/1024") == (None, 1024) and bench.parse_setting("24/512") == (24, 512)
    with pytest.raises(NIDInputError, match="GRID/RAYS"):
        bench.parse_setting("24x512")
    assert bench.rank_of([0.3, 0.1, 0.2], 0) == 2 and bench.rank_of([0.3, 0.1, 0.2], 1) == 0
    row = {"full/1024": {"pick": "scene 2", "seconds": 30.0, "test_psnr": 17.2, "reference_rank": 0},
           "24/512": {"pick": "scene 5", "seconds": 5.0, "test_psnr": 16.2, "reference_rank": 3}}
    page = bench.markdown({"a": row, "b": row}, ["full/1024", "24/512"], "python scripts/x.py", 3)
    assert "| a | scene 2: 17.20 dB, rank 0, 30.0 s | scene 5: 16.20 dB, rank 3, 5.0 s |" in page
    assert "| mean | 17.20 dB, 2/2 same pick, 30.0 s | 16.20 dB, 0/2 same pick, 5.0 s |" in page
