"""Code search: the dictionary code that best renders a new scene's training views, found without gradients.

A solve against a dictionary is non-convex in its code: from the collection's mean code, 100 solve steps end within
1 dB of where they start on about half of the held-out ShapeNet chairs (``docs/categories_chair_12k.md``). The
dictionary already holds a code for every scene it was pretrained on, and one of them is often a near neighbour of
the new scene. The search renders a fixed sample of the new scene's training rays with each candidate code (the
pretraining scenes' codes as the field used them, the mean code, and the encoder's prediction) and keeps the one
with the lowest photometric error. It needs no gradients and reads only the training views; by construction its
pick is never worse on those rays than the mean code or the encoder's code.

The functional core (:func:`gated_codes`, :func:`candidate_codes`, :func:`best_candidate`, :func:`search_code`)
ranks whatever errors it is given; :func:`training_rays` and :func:`render_error` render them with a real model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm import tqdm


@dataclass
class SearchResult:
    """What :func:`search_code` found."""

    code: Float[Tensor, " K"]
    name: str
    """the winning candidate's name (``scene 17``, ``mean``, ``encoder``)"""
    errors: Dict[str, float]
    """mean squared RGB error of every candidate on the searched rays"""
    seconds: float


def gated_codes(codes: Float[Tensor, "S K"], top_k: int) -> Float[Tensor, "S K"]:
    """Each row with the entries outside its ``top_k`` largest magnitudes zeroed (the code a sparse gate uses)."""
    k = min(top_k, codes.shape[1])
    index = codes.abs().topk(k, dim=1).indices
    return torch.zeros_like(codes).scatter_(1, index, codes.gather(1, index))


def candidate_codes(
    pretrained: Optional[Float[Tensor, "S K"]], top_k: int, mean: Float[Tensor, " K"],
    encoder: Optional[Float[Tensor, " K"]] = None,
) -> Tuple[List[str], Float[Tensor, "C K"]]:
    """Names and codes to search: the mean code, the encoder's prediction (if any) and every pretraining scene's
    gated code (if the dictionary stores them)."""
    names, rows = ["mean"], [mean.float()]
    if encoder is not None:
        names.append("encoder")
        rows.append(encoder.float())
    if pretrained is not None and pretrained.numel():
        gated = gated_codes(pretrained.float(), top_k)
        names += [f"scene {i}" for i in range(gated.shape[0])]
        rows += list(gated)
    return names, torch.stack(rows)


def best_candidate(errors: Sequence[float]) -> int:
    """Index of the smallest finite error (the first candidate if none is finite: the mean code)."""
    values = torch.as_tensor(list(errors), dtype=torch.float64)
    values = torch.where(torch.isfinite(values), values, torch.full_like(values, float("inf")))
    return int(values.argmin()) if bool(torch.isfinite(values).any()) else 0


def search_code(
    names: Sequence[str], candidates: Float[Tensor, "C K"], error_of: Callable[[Tensor], float],
    progress: bool = False,
) -> SearchResult:
    """Evaluate ``error_of(code)`` for every candidate and return the best (ties: the earliest, so the mean code
    wins a tie)."""
    start = time.perf_counter()
    errors = [float(error_of(code)) for code in tqdm(candidates, desc="code search", unit="code",
                                                       disable=not progress, leave=False)]
    best = best_candidate(errors)
    return SearchResult(code=candidates[best].clone(), name=names[best], errors=dict(zip(names, errors)),
                        seconds=time.perf_counter() - start)


def training_rays(datamanager, num_rays: int, seed: int = 0):
    """A fixed uniform sample of ``num_rays`` training rays and their batch (``image``, ``mask`` where the data has
    masks), drawn as the datamanager's uniform sampler draws them; the global random state is left as it was."""
    from nerfstudio.data.utils.dataloaders import nerfstudio_collate

    dataset = datamanager.train_dataset
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        image_batch = nerfstudio_collate([dataset[i] for i in range(len(dataset))])
        batch = datamanager._uniform_sampler(dataset, num_rays).sample(image_batch)
    ray_bundle = datamanager.train_ray_generator(batch["indices"].to(datamanager.device))
    return ray_bundle, batch


@torch.no_grad()
def render_error(model, ray_bundle, batch: Dict[str, Tensor], chunk: int = 1024) -> float:
    """Mean squared RGB error of ``model``'s current field on the rays, composited as its evaluation composites
    (fixed background; masks as in training)."""
    was_training = model.training
    model.eval()
    try:
        total, count = 0.0, 0
        n = len(ray_bundle)
        for s in range(0, n, chunk):
            outputs = model(ray_bundle[s:s + chunk])
            device = outputs["rgb"].device
            part = {key: batch[key][s:s + chunk].to(device) for key in ("image", "mask") if key in batch}
            pred, gt = model._targets(outputs, part["image"], part.get("mask"))
            total += float(((pred - gt) ** 2).sum(-1).mean()) * pred.shape[0] / 3.0
            count += pred.shape[0]
        return total / max(1, count)
    finally:
        model.train(was_training)


def search_model_code(model, datamanager, names: Sequence[str], candidates: Float[Tensor, "C K"], rays: int,
                      grid_resolution: Optional[int], progress: bool = False) -> SearchResult:
    """:func:`search_code` with a real model: each candidate starts the model's solve (its cached SDF grid at
    ``grid_resolution``, see ``NIDModel.start_code``) and renders the same ``rays`` training rays. The model is
    left at the last candidate; the caller starts the solve at the pick."""
    bundle, batch = training_rays(datamanager, rays)

    def error_of(code: Tensor) -> float:
        model.start_code(code, grid_resolution)
        return render_error(model, bundle, batch)

    return search_code(names, candidates, error_of, progress=progress)
