"""A small MLP that also pushes tangent vectors forward (forward-mode derivatives).

Given input features and their Jacobian with respect to the 3D position, it returns the output and
the output's Jacobian. This gives the SDF gradient (the normal) with one ordinary backward pass for
the eikonal loss, instead of a double backward through autograd.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nid_nerf.fields import fused_softplus


class TangentMLP(nn.Module):
    """Linear layers with softplus(beta) activations; the last layer is linear.

    ``fused``: the softplus and its slope from one C++ pass on the CPU (:mod:`nid_nerf.fields.fused_softplus`).
    """

    def __init__(
        self, in_dim: int, hidden: Sequence[int], out_dim: int, beta: float = 100.0, fused: bool = True
    ) -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.beta = beta
        self.fused = fused

    def forward(
        self, x: Float[Tensor, "N din"], tangents: Optional[Float[Tensor, "3 N din"]] = None
    ) -> Tuple[Float[Tensor, "N dout"], Optional[Float[Tensor, "3 N dout"]]]:
        """Output and, for direction-major input tangents dx/dp_d, the output tangents dy/dp_d."""
        for i, layer in enumerate(self.layers):
            pre = layer(x)
            if tangents is not None:
                tangents = tangents @ layer.weight.t()
            if i == len(self.layers) - 1:
                return pre, tangents
            x, slope = fused_softplus.softplus(pre, self.beta, need_slope=tangents is not None, fused=self.fused)
            if tangents is not None:
                tangents = tangents * slope
        raise AssertionError("unreachable")


class ColorHead(nn.Module):
    """ReLU MLP on [per-sample features, per-ray features] -> rgb in [0, 1].

    The first layer is split so that the per-ray part (the view-direction encoding) is multiplied
    once per ray and broadcast over that ray's samples, instead of once per sample. The layers after it run on
    [R * S, width] matrices with out-of-place ReLUs: an in-place ReLU on the view of a 3-D linear layer's output
    costs its backward a zero-filled copy of the whole activation (about 2 ms of 25 for a [1024, 16] batch's
    forward and backward at 1 thread).
    """

    def __init__(self, sample_dim: int, ray_dim: int, hidden: Sequence[int], out_dim: int = 3) -> None:
        super().__init__()
        self.sample_in = nn.Linear(sample_dim, hidden[0])
        self.ray_in = nn.Linear(ray_dim, hidden[0], bias=False)
        dims = list(hidden)
        layers: list[nn.Module] = [nn.ReLU()]
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], out_dim))
        self.rest = nn.Sequential(*layers)

    def forward(
        self, sample_feats: Float[Tensor, "R S ds"], ray_feats: Float[Tensor, "R dr"]
    ) -> Float[Tensor, "R S 3"]:
        r, s = sample_feats.shape[:2]
        hidden = self.sample_in(sample_feats.reshape(r * s, -1)).view(r, s, -1) + self.ray_in(ray_feats)[:, None, :]
        return torch.sigmoid(self.rest(hidden.view(r * s, -1))).view(r, s, -1)
