"""Thread policy under load: use the cores other processes leave free, re-checked while training.

torch's OpenMP threads spin while they wait for each other. With two busy processes on 2 cores, each
with 2 threads, a thread that loses its core stalls its partners, and both runs were measured 5-10x
slower than alone (docs/cpu_speed.md, threads section). ``OMP_WAIT_POLICY=PASSIVE`` would stop the
spinning, but OpenMP reads it once, when torch loads, before nerfstudio loads this plugin; the number
of threads, though, can change at any time (``torch.set_num_threads``).

:class:`AdaptiveThreads` counts, between two checks, the CPU time the whole machine spent busy
(``/proc/stat``) and the CPU time this process spent (``/proc/self/stat``): the difference, over the
wall-clock between the checks, is how many cores the other processes kept busy. It then uses the cores
they left, at least one. Nothing sleeps: a check is two small file reads.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Tuple

import torch

TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_ticks(stat_text: Optional[str] = None) -> Optional[int]:
    """Busy clock ticks of all cores since boot (user, nice, system, irq, softirq, steal), or None off Linux."""
    try:
        text = stat_text if stat_text is not None else open("/proc/stat").read()
    except OSError:
        return None
    fields = text.splitlines()[0].split()
    if fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return user + nice + system + irq + softirq + steal


def own_busy_ticks(stat_text: Optional[str] = None) -> Optional[int]:
    """Clock ticks this process (all its threads) has run, user + system, or None off Linux."""
    try:
        text = stat_text if stat_text is not None else open("/proc/self/stat").read()
    except OSError:
        return None
    after_name = text.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return int(after_name[11]) + int(after_name[12])  # utime, stime (fields 14 and 15)


def threads_to_use(cores: int, others_busy: float, cap: Optional[int] = None) -> int:
    """Cores the other processes leave free (rounded to the nearest core), at least 1, at most ``cap``."""
    free = cores - int(others_busy + 0.5)
    return max(1, min(free, cap if cap is not None else cores))


@dataclass
class AdaptiveThreads:
    """Call :meth:`check` now and then (a training callback); it sets torch's threads to the free cores.

    ``cap``: never more threads than this (default: ``OMP_NUM_THREADS`` when set, else the cores).
    """

    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                       else (os.cpu_count() or 1))
    cap: Optional[int] = field(default_factory=lambda: int(os.environ["OMP_NUM_THREADS"])
                               if os.environ.get("OMP_NUM_THREADS", "").isdigit() else None)
    log: Optional[Callable[[str], None]] = None
    _last: Optional[Tuple[float, int, int]] = None

    def others_busy(self) -> Optional[float]:
        """Cores the other processes kept busy since the previous call (None on the first call, or off Linux)."""
        machine, own = machine_busy_ticks(), own_busy_ticks()
        if machine is None or own is None:
            return None
        now = time.monotonic()
        last, self._last = self._last, (now, machine, own)
        if last is None or now - last[0] < 0.2:
            return None
        return max(0.0, ((machine - last[1]) - (own - last[2])) / TICKS_PER_SECOND / (now - last[0]))

    def check(self, step: int = 0) -> int:
        """Re-measure and set the threads; returns the threads in use (``step``: nerfstudio passes the step)."""
        busy = self.others_busy()
        current = torch.get_num_threads()
        if busy is None:
            return current
        wanted = threads_to_use(self.cores, busy, self.cap)
        if wanted != current:
            torch.set_num_threads(wanted)
            if self.log is not None:
                self.log(f"nid: other processes keep {busy:.1f} of {self.cores} cores busy; "
                         f"torch threads {current} -> {wanted}")
        return wanted
