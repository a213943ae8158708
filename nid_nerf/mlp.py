"""A small MLP that also pushes tangent vectors forward (forward-mode derivatives).

Given input features and their Jacobian with respect to the 3D position, it returns the output and
the output's Jacobian. This gives the SDF gradient (the normal) with one ordinary backward pass for
the eikonal loss, instead of a double backward through autograd.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


class TangentMLP(nn.Module):
    """Linear layers with softplus(beta) activations; the last layer is linear."""

    def __init__(self, in_dim: int, hidden: Sequence[int], out_dim: int, beta: float = 100.0) -> None:
        super().__init__()
        dims = [in_dim, *hidden, out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.beta = beta

    def forward(
        self, x: Float[Tensor, "N din"], tangents: Optional[Float[Tensor, "N din 3"]] = None
    ) -> Tuple[Float[Tensor, "N dout"], Optional[Float[Tensor, "N dout 3"]]]:
        for i, layer in enumerate(self.layers):
            pre = layer(x)
            if tangents is not None:
                tangents = torch.einsum("oi,nid->nod", layer.weight, tangents)
            if i == len(self.layers) - 1:
                return pre, tangents
            x = F.softplus(pre, beta=self.beta)
            if tangents is not None:
                tangents = tangents * torch.sigmoid(self.beta * pre)[..., None]
        raise AssertionError("unreachable")


def plain_mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    """ReLU MLP without tangents (the colour head)."""
    dims = [in_dim, *hidden]
    layers: list[nn.Module] = []
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(dims[-1], out_dim))
    return nn.Sequential(*layers)
