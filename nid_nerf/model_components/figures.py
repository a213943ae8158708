"""Small figures rendered to image tensors for tensorboard (matplotlib, Agg backend)."""

from __future__ import annotations

import io

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor


def usage_histogram(usage: Float[Tensor, " K"]) -> Float[Tensor, "H W 3"]:
    """Bar chart of the share of gate weight each expert receives, as an HxWx3 float image."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    fig, ax = plt.subplots(figsize=(5, 2.5), dpi=80)
    ax.bar(np.arange(len(usage)), usage.numpy(), color="#4c72b0")
    ax.axhline(1.0 / len(usage), color="k", lw=0.8, ls="--", label="uniform")
    ax.set_xlabel("expert")
    ax.set_ylabel("share of |gate|")
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    buf.seek(0)
    image = np.asarray(Image.open(buf).convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(image)
