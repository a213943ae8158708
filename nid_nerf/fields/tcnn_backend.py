"""Optional tiny-cuda-nn acceleration: used when ``tinycudann`` imports and a CUDA device is present.

Only the colour MLP goes through tiny-cuda-nn: the geometry MLP pushes tangents forward for the analytic
SDF gradient, which fused MLPs do not expose, and the expert tables are mixed per scene, which tcnn's
hash encoding does not support. The choice is automatic (``implementation="auto"``) and can be forced.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from jaxtyping import Float
from torch import Tensor, nn

from nid_nerf.errors import NIDInputError

Implementation = Literal["auto", "torch", "tcnn"]


def tcnn_available() -> bool:
    try:
        import tinycudann  # noqa: F401
    except (ImportError, OSError):
        return False
    return torch.cuda.is_available()


def resolve_implementation(choice: Implementation) -> Literal["torch", "tcnn"]:
    """'auto' picks tcnn when it imports and CUDA is there; an explicit 'tcnn' without them is an error."""
    if choice == "torch":
        return "torch"
    if tcnn_available():
        return "tcnn"
    if choice == "tcnn":
        raise NIDInputError(
            "implementation 'tcnn' needs tinycudann and a CUDA GPU, and this machine lacks them; "
            "use --pipeline.model.implementation torch (or auto)"
        )
    return "torch"


class TcnnColorHead(nn.Module):
    """The colour head as one fused tiny-cuda-nn MLP on [per-sample features, per-ray features]."""

    def __init__(self, sample_dim: int, ray_dim: int, hidden: Sequence[int], out_dim: int = 3) -> None:
        super().__init__()
        import tinycudann as tcnn

        self.net = tcnn.Network(
            n_input_dims=sample_dim + ray_dim,
            n_output_dims=out_dim,
            network_config={
                "otype": "FullyFusedMLP" if hidden[0] in (16, 32, 64, 128) else "CutlassMLP",
                "activation": "ReLU",
                "output_activation": "Sigmoid",
                "n_neurons": hidden[0],
                "n_hidden_layers": len(hidden),
            },
        )

    def forward(
        self, sample_feats: Float[Tensor, "R S ds"], ray_feats: Float[Tensor, "R dr"]
    ) -> Float[Tensor, "R S 3"]:
        r, s = sample_feats.shape[:2]
        x = torch.cat([sample_feats, ray_feats[:, None, :].expand(r, s, -1)], -1).reshape(r * s, -1)
        return self.net(x).float().view(r, s, -1)
