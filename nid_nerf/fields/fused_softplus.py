"""softplus(beta) with its slope sigmoid(beta x) from one vectorised C++ pass (``fused_softplus.cpp``), with autograd.

The geometry MLP's hidden layer is softplus(beta = 100) of a [samples, 64] pre-activation. torch 2.14's CPU softplus
evaluates log1p one element at a time, 10.5-16 ms for a training step's [16384, 64] layer at 1 thread on this
project's 2-core test machine, and its backward and the MLP's tangent pass (the eikonal normals) each compute
sigmoid(beta x) again. The kernel returns both the value and the slope in one pass (3.1 ms against torch's 16 ms
for that layer, side by side in one process, with AVX2 and FMA); the backward is then one product, ``grad * slope``.
It is built into the same extension as the fused hash-grid lookup (:func:`nid_nerf.fields.fused_lookup.load`); CUDA
tensors, other dtypes and machines where the extension does not build take torch's ``softplus`` and ``sigmoid``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from nid_nerf.fields import fused_lookup


def usable(x: Tensor) -> bool:
    """Whether the kernel can serve ``x`` (CPU float32) and the extension loads."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and fused_lookup.load()


class _FusedSoftplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        y, s = torch.ops.nid_fused.softplus_forward(x, beta)
        ctx.set_materialize_grads(False)  # an unused slope brings None, not a tensor of zeros
        ctx.save_for_backward(s)
        ctx.beta = beta
        return y, s

    @staticmethod
    def backward(ctx, grad_y, grad_s):
        # written in differentiable torch ops on the saved slope (an output of this function), so a double backward
        # also works: d softplus / dx = s, d s / dx = beta s (1 - s)
        (s,) = ctx.saved_tensors
        grad = None if grad_y is None else grad_y * s
        if grad_s is not None:
            through_slope = grad_s * (ctx.beta * s * (1.0 - s))
            grad = through_slope if grad is None else grad + through_slope
        return grad, None


def softplus(
    x: Float[Tensor, "*shape"], beta: float, need_slope: bool = False, fused: bool = True
) -> Tuple[Float[Tensor, "*shape"], Optional[Float[Tensor, "*shape"]]]:
    """(softplus(beta x) / beta, sigmoid(beta x)); the slope is None from the torch path unless ``need_slope``.

    ``fused`` False, or an input the kernel cannot serve, takes torch's ops (the same values within a few float32
    ulp, tests/test_fused_softplus.py).
    """
    if fused and usable(x):
        return _FusedSoftplus.apply(x, float(beta))
    y = F.softplus(x, beta=beta)
    return y, (torch.sigmoid(beta * x) if need_slope else None)
