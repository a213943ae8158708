"""The amortized code encoder: hand-computed inputs, set pooling, saving, and learning a known view -> code map."""

import io

import pytest
import torch

from nid_nerf.fields.code_encoder import (
    CodeEncoder,
    CodeEncoderSpec,
    camera_features,
    fit_code_encoder,
    predict_code,
    view_thumbnails,
)
from nid_nerf.fields.gate import CodeGate


def test_thumbnails_composite_on_white_and_average_areas():
    rgba = torch.zeros(4, 4, 4)
    rgba[:2, :, :3] = 0.2  # top half: grey, opaque
    rgba[:2, :, 3] = 1.0  # bottom half: transparent -> white
    thumb = view_thumbnails([rgba], size=2)[0]
    assert torch.allclose(thumb[:3, 0], torch.full((3, 2), 0.2))
    assert torch.allclose(thumb[:3, 1], torch.ones(3, 2))
    assert torch.allclose(thumb[3], torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    rgb = torch.full((8, 6, 3), 0.5)  # RGB images get alpha 1, any size
    expected = torch.tensor([0.5, 0.5, 0.5, 1.0])[:, None, None].expand(4, 2, 2)
    assert torch.allclose(view_thumbnails([rgb], size=2)[0], expected)


def test_camera_features_by_hand():
    c2w = torch.eye(4)[:3].clone()[None]
    c2w[0, :, 3] = torch.tensor([3.0, 1.0, 1.0])
    aabb = torch.tensor([[-1.0, -1.0, 0.0], [3.0, 3.0, 2.0]])  # centre (1, 1, 1), largest half-extent 2
    feats = camera_features(c2w, aabb)[0]
    assert torch.allclose(feats, torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 1.0, 0.0]))


def test_untrained_encoder_predicts_the_mean_code_and_pools_any_number_of_views():
    encoder = CodeEncoder(CodeEncoderSpec(num_experts=5))
    encoder.code_mean.copy_(torch.arange(5.0))
    thumbs, cams = torch.rand(7, 4, 32, 32), torch.randn(7, 9)
    assert torch.allclose(encoder(thumbs, cams), torch.arange(5.0)[None])
    torch.nn.init.normal_(encoder.head[-1].weight)
    groups = torch.tensor([0, 0, 0, 1, 1, 1, 1])
    both = encoder(thumbs, cams, groups, 2)
    assert torch.allclose(both[0], encoder(thumbs[:3], cams[:3])[0], atol=1e-5)
    assert torch.allclose(both[1], encoder(thumbs[3:], cams[3:])[0], atol=1e-5)
    perm = torch.tensor([2, 0, 1])
    assert torch.allclose(encoder(thumbs[perm], cams[perm]), encoder(thumbs[:3], cams[:3]), atol=1e-5)


def test_payload_loads_weights_only():
    encoder = CodeEncoder(CodeEncoderSpec(num_experts=3))
    torch.nn.init.normal_(encoder.head[-1].weight)
    buffer = io.BytesIO()
    torch.save({"encoder": encoder.payload()}, buffer)
    buffer.seek(0)
    loaded = CodeEncoder.from_payload(torch.load(buffer, weights_only=True)["encoder"])
    thumbs, cams = torch.rand(2, 4, 32, 32), torch.randn(2, 9)
    assert torch.allclose(loaded(thumbs, cams), encoder.eval()(thumbs, cams))


def test_gated_codes_zero_what_the_top_k_gate_drops():
    gate = CodeGate(num_scenes=2, num_experts=4, top_k=2)
    with torch.no_grad():
        gate.codes.copy_(torch.tensor([[0.1, -0.9, 0.5, 0.2], [1.0, 0.0, 0.0, -2.0]]))
    assert torch.equal(gate.gated_codes(), gate.codes.detach())  # dense gate: unchanged
    gate.sparse.fill_(True)
    assert torch.equal(gate.gated_codes(), torch.tensor([[0.0, -0.9, 0.5, 0.0], [1.0, 0.0, 0.0, -2.0]]))


def test_fit_learns_a_code_the_views_show_and_generalises_to_held_out_scenes():
    # oracle: each scene's code is its colour (code = 2 * rgb - 1); every view shows that colour on white, at a
    # random size and place, so the encoder must read the colour off the object, not a fixed pixel
    torch.manual_seed(0)
    scenes, views = 60, 6
    codes = torch.rand(scenes, 3) * 2 - 1
    thumbs, scene_of_view = [], []
    for s in range(scenes):
        for _ in range(views):
            image = torch.ones(32, 32, 4)
            image[..., 3] = 0
            r, c, size = (int(v) for v in torch.randint(0, 16, (3,)))
            size = 8 + size // 2
            image[r:r + size, c:c + size, :3] = (codes[s] + 1) / 2
            image[r:r + size, c:c + size, 3] = 1
            thumbs.append(view_thumbnails([image])[0])
            scene_of_view.append(s)
    thumbs = torch.stack(thumbs)
    box = torch.tensor([[-1.0] * 3, [1.0] * 3])
    cams = camera_features(torch.eye(4)[:3].expand(len(thumbs), 3, 4), box)
    encoder, fit = fit_code_encoder(thumbs, cams, torch.tensor(scene_of_view), codes, steps=800, eval_every=100,
                                    lr=3e-3, progress=False)
    assert fit.held_out_scenes == 6
    assert fit.held_out_error < 0.2, fit  # 1.0 is the mean code's error
    image = torch.ones(64, 64, 4)  # a new colour, at another resolution
    image[..., 3] = 0
    image[16:40, 16:40, :3] = torch.tensor([0.75, 0.25, 0.5])
    image[16:40, 16:40, 3] = 1
    pred = predict_code(encoder, [image], torch.eye(4)[:3][None], box)
    assert torch.allclose(pred, torch.tensor([0.5, -0.5, 0.0]), atol=0.3), pred


@pytest.mark.parametrize("anneal, expected", [(None, [1.0, 1.0, 1.0]), (100, [1.0, 0.5, 0.0])])
def test_refine_weight_anneals_linearly_from_the_solve_end(anneal, expected):
    from types import SimpleNamespace

    from nid_nerf.models.nid_model import NIDModel

    model = SimpleNamespace(config=SimpleNamespace(refine_anneal_steps=anneal, refine_anneal_views=3), refining=True,
                            refine_start_step=50, _step=0, num_train_data=3)
    model.refine_anneal_steps = lambda: NIDModel.refine_anneal_steps(model)
    assert [NIDModel.refine_weight(model, step) for step in (50, 100, 150)] == expected
    model.refining = False  # still solving: full weight
    assert NIDModel.refine_weight(model, 120) == 1.0


def test_solve_is_shorter_for_scenes_with_more_views():
    from types import SimpleNamespace

    from nid_nerf.models.nid_model import NIDModel

    def solve(views, steps=100, reference=3):
        model = SimpleNamespace(config=SimpleNamespace(solve_steps=steps, solve_views=reference,
                                                       many_view_solve_steps=20), num_train_data=views)
        return NIDModel.scene_solve_steps(model)

    # 100 up to 3 views, 20 above; never longer than solve_steps; None keeps solve_steps
    assert [solve(v) for v in (1, 3, 4, 5, 15)] == [100, 100, 20, 20, 20]
    assert solve(15, steps=10) == 10 and solve(15, reference=None) == 100 and solve(15, steps=0) == 0


def test_refine_anneal_is_shorter_for_scenes_with_more_views():
    from types import SimpleNamespace

    from nid_nerf.models.nid_model import NIDModel, anneal_steps

    assert [anneal_steps(500, v, 3) for v in (1, 2, 3, 5, 15)] == [500, 500, 500, 300, 100]
    assert anneal_steps(500, 15, None) == 500 and anneal_steps(None, 15, 3) is None
    assert anneal_steps(2, 100, 3) == 1  # never zero steps
    # 15 views: the 100-step anneal is half done 50 steps after the solve
    model = SimpleNamespace(config=SimpleNamespace(refine_anneal_steps=500, refine_anneal_views=3), refining=True,
                            refine_start_step=50, _step=0, num_train_data=15)
    model.refine_anneal_steps = lambda: NIDModel.refine_anneal_steps(model)
    assert [NIDModel.refine_weight(model, step) for step in (50, 100, 150)] == [1.0, 0.5, 0.0]
