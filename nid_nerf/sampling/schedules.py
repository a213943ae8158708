"""Schedules of the residual sampler (pure functions of the step): INT's ratio schedules and the refresh cadence."""

from __future__ import annotations

import math
from typing import Literal

from nid_nerf.errors import NIDInputError

ScheduleKind = Literal["constant", "linear", "step", "cosine"]
"""Shapes of the ratio schedule: INT's mt_ratio schedules (``step`` is INT's default)."""


def ratio_schedule(
    kind: ScheduleKind, step: int, num_steps: int, start: float, end: float, num_stages: int = 10
) -> float:
    """Share of the batch picked by residual at ``step`` (INT's mt_ratio schedules, ending at ``end``).

    ``step`` rises in ``num_stages`` equal stairs from ``start`` to ``end`` over ``num_steps`` (INT's
    default); ``linear`` and ``cosine`` rise smoothly; after ``num_steps`` the value stays ``end``.
    E.g. step, 2000 steps, 0.2 -> 0.9 in 10 stairs: 0.2 for steps 0-199, 0.27 for 200-399, ..., 0.9 from 2000.
    """
    if kind == "constant" or num_steps <= 0:
        return start if kind == "constant" else end
    t = min(max(step, 0) / num_steps, 1.0)
    if kind == "linear":
        return start + t * (end - start)
    if kind == "cosine":
        return end - 0.5 * (end - start) * (1.0 + math.cos(math.pi * t))
    if kind == "step":
        stages = max(num_stages, 1)
        stage = min(math.floor(t * stages), stages)
        return start + (end - start) * stage / stages
    raise NIDInputError(f"unknown ratio schedule '{kind}'; use one of constant, linear, step, cosine")


def refresh_interval(step: int, warmup_steps: int, every: int) -> int:
    """Steps between two rankings: every step during ``warmup_steps``, then every ``every`` steps.

    INT re-ranks every step early on, when the residuals change fast, and every 10-50 steps later.
    """
    return 1 if step < warmup_steps else max(int(every), 1)
