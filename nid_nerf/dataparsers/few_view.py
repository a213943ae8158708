"""Few-view selection: spread-out training views by farthest-point sampling on the camera centres."""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from jaxtyping import Float
from torch import Tensor


def farthest_point_sampling(points: Float[Tensor, "n d"], count: int, start: int = 0) -> List[int]:
    """Greedy farthest-point sampling: start at ``points[start]``, then repeatedly take the point farthest from
    everything taken so far (ties go to the lowest index). Deterministic; each prefix of the result is itself an
    FPS selection, so the 3-view set is inside the 6-view set.

    Returns:
        ``min(count, n)`` distinct indices in the order they were picked.
    """
    n = points.shape[0]
    count = min(int(count), n)
    if count <= 0:
        return []
    points = points.to(torch.float64)
    picked = [int(start)]
    nearest = torch.linalg.norm(points - points[start], dim=-1)
    for _ in range(count - 1):
        nearest[picked] = -1.0
        nxt = int(torch.argmax(nearest))  # argmax returns the first maximum: lowest index on ties
        picked.append(nxt)
        nearest = torch.minimum(nearest, torch.linalg.norm(points - points[nxt], dim=-1))
    return picked


def select_train_views(
    camera_centres: Float[Tensor, "n 3"],
    num_views: Optional[int] = None,
    indices: Optional[Sequence[int]] = None,
) -> Optional[List[int]]:
    """Which training images to keep, in increasing order: explicit ``indices``, else ``num_views`` picked by FPS,
    else all (``None``).

    Raises:
        ValueError: an explicit index is out of range or repeated, or ``num_views`` < 1.
    """
    n = camera_centres.shape[0]
    if indices is not None and len(indices) > 0:
        bad = [i for i in indices if not 0 <= int(i) < n]
        if bad:
            raise ValueError(f"train view indices {bad} are out of range (the train split has {n} images, 0..{n - 1})")
        if len(set(int(i) for i in indices)) != len(indices):
            raise ValueError(f"train view indices {list(indices)} repeat an index")
        return sorted(int(i) for i in indices)
    if num_views is not None:
        if num_views < 1:
            raise ValueError(f"num_train_views must be at least 1 (got {num_views})")
        return sorted(farthest_point_sampling(camera_centres, num_views))
    return None
