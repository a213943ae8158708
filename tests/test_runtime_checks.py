"""The jaxtyping shape checks that tests/conftest.py installs are really on for nid_nerf (and only for nid_nerf)."""

from __future__ import annotations

import os

import pytest
import torch
from jaxtyping import TypeCheckError

from nid_nerf.fields.encoding import HashGridSpec, corner_lookup, interpolate
from nid_nerf.model_components.rendering import composite_weights, laplace_density, ray_aabb

RUNTIME_CHECKS = os.environ.get("NID_NO_RUNTIME_CHECKS", "") in ("", "0")  # as in conftest.py
pytestmark = pytest.mark.skipif(not RUNTIME_CHECKS, reason="runtime checks turned off (NID_NO_RUNTIME_CHECKS)")

AABB = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])


def test_well_shaped_calls_pass():
    near, far, hit = ray_aabb(torch.zeros(4, 3), torch.tensor([[0.0, 0.0, 1.0]]).expand(4, 3), AABB)
    assert near.shape == far.shape == hit.shape == (4,)
    w = composite_weights(laplace_density(torch.zeros(4, 8), torch.tensor(0.1)), torch.full((4, 8), 0.1))
    assert w.shape == (4, 8)


def test_wrong_trailing_dim_raises():
    with pytest.raises(TypeCheckError):
        ray_aabb(torch.zeros(4, 2), torch.ones(4, 2), AABB)


def test_inconsistent_named_dims_raise():
    # R differs between origins (4) and directions (5): each argument alone is well formed.
    with pytest.raises(TypeCheckError):
        ray_aabb(torch.zeros(4, 3), torch.ones(5, 3), AABB)
    with pytest.raises(TypeCheckError):
        composite_weights(torch.ones(4, 8), torch.ones(4, 7))


def test_wrong_dtype_raises():
    with pytest.raises(TypeCheckError):
        composite_weights(torch.ones(4, 8, dtype=torch.int64), torch.ones(4, 8, dtype=torch.int64))


def test_encoding_checks():
    spec = HashGridSpec(num_levels=2, log2_table_size=8, base_resolution=4, max_resolution=16, features_per_level=2)
    idx, weights = corner_lookup(torch.rand(5, 3), spec)
    assert idx.shape[:2] == (5, 2) and idx.shape[-1] == 8
    with pytest.raises(TypeCheckError):
        corner_lookup(torch.rand(5, 2), spec)
    table = torch.zeros(spec.num_levels * spec.table_size, spec.features_per_level)
    with pytest.raises(TypeCheckError):  # N of idx (5) and of weights (4) disagree
        interpolate(table, idx, weights[:4])


def test_only_nid_nerf_is_instrumented():
    import nerfstudio.model_components.renderers as renderers

    assert not hasattr(renderers.RGBRenderer.combine_rgb, "__wrapped__")
    assert hasattr(ray_aabb, "__wrapped__")  # jaxtyped + beartype wrap the function
