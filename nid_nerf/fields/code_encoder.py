"""The amortized code: a small encoder from a scene's posed views to its code in the dictionary.

NID's codes are found by optimisation (the solve). Beside the experts, ``nid-dict`` fits this encoder to the
codes it learned, so a new scene's solve can start from a predicted code instead of the collection's mean code.

Design (a permutation-invariant set encoder, as in pixelNeRF's multi-view pooling and Neural Processes):

- each view becomes a 32x32 thumbnail (RGB on white, plus alpha; 4 channels) and 9 camera numbers (the
  camera centre in scene-box units, its forward and its up axis);
- a 3-layer strided CNN and a camera MLP give one 128-d feature per view;
- the features are averaged over the scene's views, so 1 view or 15 views give the same kind of input;
- a 2-layer head maps the mean feature to the code, in units of the codes' per-entry mean and standard
  deviation (predicting all zeros is the mean code).

Training is supervised regression on the learned codes (detached), on random view subsets of 1 to all views per
scene so that a few-view scene is in distribution. A share of the scenes is held out and the state with the
lowest held-out error is kept (the untrained state, which predicts the mean code, included): with 100 scenes the
encoder overfits within a few hundred steps otherwise.

The target is the *gated* code (the entries outside a scene's top-k set to zero when the gate is sparse): that is
the code the pretrained field actually used for the scene, and a dense solve starting there reproduces it.

Everything saved is a tensor or a plain value (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn
from tqdm import tqdm

CAMERA_FEATURES = 9
"""Per-view camera input: centre (scene-box units), forward axis, up axis."""


@dataclass
class CodeEncoderSpec:
    """Shapes of a :class:`CodeEncoder` (stored in dictionary.pt beside its weights)."""

    num_experts: int
    thumbnail_size: int = 32
    width: int = 32
    feature_dim: int = 128


def view_thumbnails(images: Sequence[Tensor], size: int = 32) -> Float[Tensor, "N 4 size size"]:
    """Thumbnails of float images [H, W, 3 or 4] in [0, 1]: RGB composited on white, then alpha (1 for RGB).

    Images may differ in size; each is area-averaged to ``size`` x ``size``.
    """
    out = []
    for image in images:
        image = image.float()
        if image.shape[-1] == 4:
            alpha = image[..., 3:]
            rgb = image[..., :3] * alpha + (1.0 - alpha)
        else:
            alpha = torch.ones_like(image[..., :1])
            rgb = image[..., :3]
        chw = torch.cat([rgb, alpha], -1).permute(2, 0, 1)[None]
        out.append(F.interpolate(chw, size=(size, size), mode="area")[0])
    return torch.stack(out)


def camera_features(camera_to_worlds: Float[Tensor, "N 3 4"], aabb: Float[Tensor, "2 3"]) -> Float[Tensor, "N 9"]:
    """Camera centre relative to the scene box (centre 0, the largest half-extent 1), forward (-z) and up (+y).

    nerfstudio's camera axes are OpenGL's (x right, y up, z back).
    """
    c2w = camera_to_worlds.float()
    centre = (aabb[0] + aabb[1]).float() / 2
    half = ((aabb[1] - aabb[0]).float() / 2).max().clamp(min=1e-6)
    position = (c2w[:, :3, 3] - centre) / half
    return torch.cat([position, -c2w[:, :3, 2], c2w[:, :3, 1]], dim=-1)


class CodeEncoder(nn.Module):
    """Posed views of scenes -> their codes [G, K]; any number of views per scene."""

    def __init__(self, spec: CodeEncoderSpec):
        super().__init__()
        self.spec = spec
        w = spec.width
        self.cnn = nn.Sequential(
            nn.Conv2d(4, w // 2, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w // 2, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
        )
        cells = (spec.thumbnail_size // 8) ** 2
        self.image_proj = nn.Linear(2 * w * cells, spec.feature_dim)
        self.camera_mlp = nn.Sequential(nn.Linear(CAMERA_FEATURES, 32), nn.ReLU())
        self.view_mlp = nn.Sequential(nn.Linear(spec.feature_dim + 32, spec.feature_dim), nn.ReLU())
        self.head = nn.Sequential(nn.Linear(spec.feature_dim, spec.feature_dim), nn.ReLU(),
                                  nn.Linear(spec.feature_dim, spec.num_experts))
        nn.init.zeros_(self.head[-1].weight)  # starts at the mean code
        nn.init.zeros_(self.head[-1].bias)
        self.register_buffer("code_mean", torch.zeros(spec.num_experts))
        self.register_buffer("code_std", torch.ones(spec.num_experts))

    def forward(
        self,
        thumbnails: Float[Tensor, "N 4 s s"],
        cameras: Float[Tensor, "N 9"],
        groups: Optional[Int[Tensor, " N"]] = None,
        num_groups: int = 1,
    ) -> Float[Tensor, "G K"]:
        """Codes of ``num_groups`` scenes; ``groups[i]`` is the scene of view i (None: all views one scene)."""
        n = thumbnails.shape[0]
        if groups is None:
            groups = torch.zeros(n, dtype=torch.long, device=thumbnails.device)
        image = self.image_proj(self.cnn(thumbnails).flatten(1))
        view = self.view_mlp(torch.cat([image, self.camera_mlp(cameras)], -1))
        pooled = view.new_zeros(num_groups, view.shape[1]).index_add_(0, groups, view)
        counts = torch.bincount(groups, minlength=num_groups).clamp(min=1).to(view)
        pooled = pooled / counts[:, None]
        return self.code_mean + self.code_std * self.head(pooled)

    # --------------------------------------------------------------- saving
    def payload(self) -> Dict[str, Any]:
        """What dictionary.pt stores under ``encoder``."""
        return {"spec": asdict(self.spec), "state": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}

    @staticmethod
    def from_payload(payload: Dict[str, Any]) -> CodeEncoder:
        encoder = CodeEncoder(CodeEncoderSpec(**payload["spec"]))
        encoder.load_state_dict(payload["state"])
        return encoder.eval()


@torch.no_grad()
def predict_code(encoder: CodeEncoder, images: Sequence[Tensor], camera_to_worlds: Float[Tensor, "N 3 4"],
                 aabb: Float[Tensor, "2 3"]) -> Float[Tensor, " K"]:
    """One scene's code from its posed views (images [H, W, 3|4] in [0, 1])."""
    thumbs = view_thumbnails(images, encoder.spec.thumbnail_size)
    return encoder.eval()(thumbs, camera_features(camera_to_worlds, aabb))[0]


@dataclass
class EncoderFit:
    """What :func:`fit_code_encoder` measured: normalised mean squared code errors (1.0 = the mean code's)."""

    steps: int
    best_step: int
    train_error: float
    held_out_error: float
    """on the held-out scenes, with ``eval_views`` views each (nan without held-out scenes)"""
    held_out_scenes: int
    eval_views: int


def fit_code_encoder(
    thumbnails: Float[Tensor, "N 4 s s"],
    cameras: Float[Tensor, "N 9"],
    scene_of_view: Int[Tensor, " N"],
    codes: Float[Tensor, "S K"],
    *,
    steps: int = 1500,
    batch_scenes: int = 16,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    held_out_fraction: float = 0.1,
    eval_views: int = 3,
    eval_every: int = 50,
    seed: int = 0,
    spec: Optional[CodeEncoderSpec] = None,
    progress: bool = True,
) -> tuple[CodeEncoder, EncoderFit]:
    """Fit a :class:`CodeEncoder` to ``codes`` from each scene's views; returns it (best held-out state) and scores.

    Each step draws ``batch_scenes`` training scenes and, per scene, a random subset of 1..all of its views.
    Errors are mean squared errors in units of each code entry's variance over the scenes, so the mean code
    scores 1.0 and a perfect encoder 0.
    """
    codes = codes.detach().float()
    num_scenes, k = codes.shape
    generator = torch.Generator().manual_seed(seed)
    spec = spec or CodeEncoderSpec(num_experts=k, thumbnail_size=thumbnails.shape[-1])
    encoder = CodeEncoder(spec)
    std = codes.std(0, unbiased=False).clamp(min=1e-3) if num_scenes > 1 else torch.ones(k)
    encoder.code_mean.copy_(codes.mean(0))
    encoder.code_std.copy_(std)
    views_of: List[Tensor] = [torch.nonzero(scene_of_view == s)[:, 0] for s in range(num_scenes)]
    order = torch.randperm(num_scenes, generator=generator)
    num_held = int(round(held_out_fraction * num_scenes)) if num_scenes >= 5 else 0
    held, train_scenes = order[:num_held].tolist(), order[num_held:].tolist()
    held = [s for s in held if len(views_of[s]) > 0]
    train_scenes = [s for s in train_scenes if len(views_of[s]) > 0]

    def error(scenes: Sequence[int], views: Optional[int], gen: torch.Generator) -> float:
        if not scenes:
            return math.nan
        with torch.no_grad():
            pred = encoder(*batch(scenes, views, gen))
        return float((((pred - codes[list(scenes)]) / std) ** 2).mean())

    def batch(scenes: Sequence[int], views: Optional[int], gen: torch.Generator):
        picked, groups = [], []
        for g, s in enumerate(scenes):
            available = views_of[s]
            n = views if views is not None else int(torch.randint(1, len(available) + 1, (1,), generator=gen))
            n = min(n, len(available))
            picked.append(available[torch.randperm(len(available), generator=gen)[:n]])
            groups.append(torch.full((n,), g, dtype=torch.long))
        index = torch.cat(picked)
        return thumbnails[index], cameras[index], torch.cat(groups), len(scenes)

    optimizer = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=weight_decay)
    # step 0 is a candidate too: the untrained encoder predicts the mean code, so the kept state is never worse on
    # the held-out scenes than starting every solve from the mean code
    initial = error(held, eval_views, torch.Generator().manual_seed(seed + 1)) if held else math.inf
    best = (initial, 0, {k_: v.clone() for k_, v in encoder.state_dict().items()})
    bar = tqdm(range(1, steps + 1), desc="code encoder", unit="step", disable=not progress, leave=False)
    for step in bar:
        encoder.train()
        scenes = [train_scenes[i] for i in torch.randint(len(train_scenes), (min(batch_scenes, len(train_scenes)),),
                                                         generator=generator)]
        thumbs, cams, groups, num = batch(scenes, None, generator)
        pred = encoder(thumbs, cams, groups, num)
        loss = (((pred - codes[scenes]) / std) ** 2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if held and (step % eval_every == 0 or step == steps):
            encoder.eval()
            value = error(held, eval_views, torch.Generator().manual_seed(seed + 1))
            if value < best[0]:
                best = (value, step, {k_: v.clone() for k_, v in encoder.state_dict().items()})
            bar.set_postfix_str(f"held-out error {value:.3f} (best {best[0]:.3f})")
    if held:
        encoder.load_state_dict(best[2])
    encoder.eval()
    fixed = torch.Generator().manual_seed(seed + 1)
    fit = EncoderFit(steps=steps, best_step=best[1] if held else steps,
                     train_error=error(train_scenes, eval_views, fixed),
                     held_out_error=error(held, eval_views, torch.Generator().manual_seed(seed + 1)),
                     held_out_scenes=len(held), eval_views=eval_views)
    return encoder, fit


def dataset_views(dataset, size: int = 32, progress: bool = True,
                  indices: Optional[Sequence[int]] = None) -> tuple[Tensor, Tensor]:
    """Thumbnails [N, 4, size, size] and camera-to-worlds [N, 3, 4] of a nerfstudio ``InputDataset``'s images."""
    indices = list(range(len(dataset))) if indices is None else list(indices)
    thumbs = [view_thumbnails([dataset.get_image_float32(i)], size)[0]
              for i in tqdm(indices, desc="encoder thumbnails", unit="image", disable=not progress, leave=False)]
    return torch.stack(thumbs), dataset.cameras.camera_to_worlds[indices].float()


def fit_encoder_to_dictionary(model, dataset, steps: int, scenes: Optional[Sequence[int]], progress: bool = True,
                              log=print) -> tuple[CodeEncoder, EncoderFit]:
    """Fit a code encoder to a trained nid-dict model's gated codes from its training dataset's views.

    ``model``: a NIDModel with learned codes; ``dataset``: its nerfstudio train InputDataset; ``scenes``: each of
    its images' scene index (``nid_nerf.engine.datamanager.scene_indices``), None for a single scene.
    """
    codes = model.field.gate.gated_codes().cpu()
    scene_of_view = (torch.zeros(len(dataset), dtype=torch.long) if scenes is None
                     else torch.as_tensor(scenes, dtype=torch.long))
    thumbs, c2w = dataset_views(dataset, progress=progress)
    cameras = camera_features(c2w, model.scene_box.aabb.detach().cpu())
    encoder, fit = fit_code_encoder(thumbs, cameras, scene_of_view, codes, steps=steps, progress=progress)
    log(f"code encoder: {steps} steps on {codes.shape[0]} scenes' codes (best at step {fit.best_step}); code error "
        f"from {fit.eval_views} views, in units of the mean code's: {fit.train_error:.3f} on training scenes, "
        f"{fit.held_out_error:.3f} on {fit.held_out_scenes} held-out scenes")
    return encoder, fit
