"""Per-scene codes and the sparse top-k gate (NID's codebook gate).

Each scene s owns a code c_s in R^K. While the gate is dense every expert contributes with weight
c_s[i] and an L1 penalty pushes codes toward sparsity; once it is sparse only the k entries with the
largest |c| are kept. A load-balancing loss (squared coefficient of variation of expert usage,
Shazeer et al. 2017, as used by NID) keeps every expert in use.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn


def top_k_gate(code: Float[Tensor, " K"], k: int) -> Tuple[Int[Tensor, " k"], Float[Tensor, " k"]]:
    """Indices and values of the k entries of ``code`` with the largest magnitude."""
    k = min(k, code.shape[0])
    index = code.detach().abs().topk(k).indices.sort().values
    return index, code.index_select(0, index)


def load_balance_loss(codes: Float[Tensor, "num_scenes K"], k: int) -> Float[Tensor, ""]:
    """CV^2 of expert usage, usage_i = sum over scenes of |gated c_s[i]|."""
    if codes.shape[1] < 2:
        return codes.new_zeros(())
    magnitude = codes.abs()
    if k < codes.shape[1]:
        keep = torch.zeros_like(magnitude).scatter_(1, magnitude.detach().topk(k, dim=1).indices, 1.0)
        magnitude = magnitude * keep
    usage = magnitude.sum(0)
    return usage.var(unbiased=False) / (usage.mean() ** 2 + 1e-10)


class CodeGate(nn.Module):
    """Codes for ``num_scenes`` scenes over ``num_experts`` experts, gated to ``top_k``.

    With ``learnable=False`` and K = 1 the code is the constant 1: a plain single hash grid.
    """

    def __init__(
        self,
        num_scenes: int,
        num_experts: int,
        top_k: int,
        learnable: bool = True,
        init: Optional[Float[Tensor, " K"]] = None,
    ) -> None:
        super().__init__()
        self.top_k = min(top_k, num_experts)
        if init is None:
            init = torch.full((num_experts,), 1.0 / max(1, min(top_k, num_experts)))
        codes = init[None].repeat(num_scenes, 1).clone()
        if learnable:
            self.codes = nn.Parameter(codes)
        else:
            self.register_buffer("codes", codes)
        # the gate starts dense (warm-up with L1), the model switches it to sparse top-k
        self.register_buffer("sparse", torch.tensor(num_experts <= top_k))

    @property
    def num_experts(self) -> int:
        return self.codes.shape[1]

    def forward(self, scene: int) -> Tuple[Int[Tensor, " k"], Float[Tensor, " k"]]:
        code = self.codes[scene]
        if not bool(self.sparse):
            return torch.arange(code.shape[0], device=code.device), code
        return top_k_gate(code, self.top_k)

    def l1(self) -> Float[Tensor, ""]:
        return self.codes.abs().mean()

    def balance(self) -> Float[Tensor, ""]:
        return load_balance_loss(self.codes, self.top_k if bool(self.sparse) else self.num_experts)

    def usage(self) -> Float[Tensor, " K"]:
        """Share of gate magnitude each expert receives over all scenes (sums to 1)."""
        with torch.no_grad():
            mags = torch.stack([torch.zeros(self.num_experts, device=self.codes.device).index_add_(0, i, g.abs())
                                for i, g in (self(s) for s in range(self.codes.shape[0]))])
            total = mags.sum(0)
            return total / total.sum().clamp(min=1e-12)

    def gated_codes(self) -> Float[Tensor, "num_scenes K"]:
        """Every scene's code as the field uses it: entries outside its top-k zeroed once the gate is sparse."""
        with torch.no_grad():
            out = torch.zeros_like(self.codes)
            for s in range(self.codes.shape[0]):
                index, values = self(s)
                out[s, index] = values
            return out
