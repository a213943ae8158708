"""Per-image appearance (model.appearance affine): the transform against hand-computed colours, and in the model."""

from __future__ import annotations

import pytest
import torch
from test_masks_and_background import _masked_scene, _pipeline

from nid_nerf.model_components.appearance import ImageAppearance, affine_colour


def test_affine_colour_by_hand():
    rgb = torch.tensor([[0.5, 0.5, 0.5], [0.2, 0.4, 0.6]])
    acc = torch.tensor([[0.5], [0.0]])
    delta = torch.zeros(2, 3, 4)
    assert torch.equal(affine_colour(rgb, acc, delta), rgb)  # zero transform: identity
    delta[:, 0, 0] = 0.1      # red gain 1.1
    delta[:, 1, 2] = 0.5      # green picks up half the blue
    delta[:, 0, 3] = 0.2      # red offset, scaled by the accumulation
    out = affine_colour(rgb, acc, delta)
    assert out[0].tolist() == pytest.approx([0.55 + 0.1, 0.5 + 0.25, 0.5])
    assert out[1].tolist() == pytest.approx([0.22, 0.4 + 0.3, 0.6])  # empty ray: no offset


def test_each_ray_uses_its_own_image():
    appearance = ImageAppearance(3)
    with torch.no_grad():
        appearance.delta[1, :, 3] = 0.1
    out = appearance(torch.zeros(2, 3), torch.ones(2, 1), torch.tensor([0, 1]))
    assert out[0].tolist() == [0.0, 0.0, 0.0] and out[1].tolist() == pytest.approx([0.1, 0.1, 0.1])
    assert float(appearance.penalty()) == pytest.approx(3 * 0.01 / 36)


def test_model_trains_the_transforms_of_the_batch_images_and_evaluates_without_them(tmp_path):
    torch.manual_seed(0)
    pipeline = _pipeline(_masked_scene(tmp_path / "scene"), appearance="affine", background_model="none")
    model = pipeline.model
    assert model.appearance is not None and model.appearance.delta.shape == (4, 3, 4)
    assert "appearance" in model.get_param_groups()
    ray_bundle, batch = pipeline.datamanager.next_train(0)
    with torch.no_grad():
        model.appearance.delta[:, 0, 3] = 0.3  # a red cast on every training image
    outputs = model(ray_bundle)
    terms = model.get_training_terms(outputs, batch)
    assert terms.losses["appearance_penalty"] > 0
    # the residual is against the transformed colour: the object's red channel moved by 0.3 x accumulation
    gt = batch["image"] * batch["mask"].float() + (1 - batch["mask"].float())
    shifted = outputs["rgb"].clone()
    shifted[:, 0] += 0.3 * outputs["accumulation"][:, 0]
    assert torch.allclose(terms.per_ray_residual, (shifted - gt).abs().mean(-1), atol=1e-6)
    sum(terms.losses.values()).backward()
    used = torch.unique(ray_bundle.camera_indices.reshape(-1))
    grads = model.appearance.delta.grad.abs().sum((1, 2))
    assert all(grads[i] > 0 for i in used.tolist())
    # evaluation renders the canonical appearance: the transforms are not applied
    model.eval()
    camera, _ = pipeline.datamanager.next_eval_image(0)
    with torch.no_grad():
        with_cast = model.get_outputs_for_camera(camera)["rgb"]
        model.appearance.delta.zero_()
        without = model.get_outputs_for_camera(camera)["rgb"]
    assert torch.equal(with_cast, without)


def test_off_by_default(tmp_path):
    pipeline = _pipeline(_masked_scene(tmp_path / "scene"))
    assert pipeline.model.appearance is None and "appearance" not in pipeline.model.get_param_groups()
