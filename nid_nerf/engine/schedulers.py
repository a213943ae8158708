"""Learning-rate schedule that keeps checkpoints loadable with ``torch.load(weights_only=True)``.

nerfstudio's ExponentialDecayScheduler computes the rate with numpy, so optimizer and scheduler states
hold numpy scalars, which ``weights_only`` loading (the torch >= 2.6 default, used by ns-eval and
ns-viewer) rejects. This one computes plain Python floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Type

from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim import Optimizer, lr_scheduler


def log_linear_decay(step: int, max_steps: int, warmup_steps: int, ratio_final: float) -> float:
    """Multiplier on the initial rate: linear warm-up, then exponential decay to ``ratio_final``."""
    if step < warmup_steps:
        return float(step + 1) / float(warmup_steps)
    t = min(max((step - warmup_steps) / max(1, max_steps - warmup_steps), 0.0), 1.0)
    return float(math.exp(math.log(ratio_final) * t))


@dataclass
class LogDecaySchedulerConfig(SchedulerConfig):
    """Linear warm-up, then exponential (log-linear) decay from the optimizer's lr to ``lr_final``."""

    _target: Type = field(default_factory=lambda: LogDecayScheduler)
    lr_final: Optional[float] = None
    """Learning rate at max_steps and after (None: the optimizer's lr, no decay). nid-nerf's methods decay 10x, 30x
    for the expert tables."""
    warmup_steps: int = 0
    """Steps of linear warm-up from lr / warmup_steps to lr (0: none)."""
    max_steps: int = 100000
    """Step at which the decay reaches lr_final (nid-nerf's methods: their max_num_iterations)."""


class LogDecayScheduler(Scheduler):
    """A LambdaLR of :func:`log_linear_decay` (Python floats only: weights-only loadable state)."""

    config: LogDecaySchedulerConfig

    def get_scheduler(self, optimizer: Optimizer, lr_init: float) -> lr_scheduler.LRScheduler:
        ratio = (self.config.lr_final if self.config.lr_final is not None else lr_init) / lr_init
        cfg = self.config
        return lr_scheduler.LambdaLR(
            optimizer, lr_lambda=lambda step: log_linear_decay(step, cfg.max_steps, cfg.warmup_steps, ratio)
        )
