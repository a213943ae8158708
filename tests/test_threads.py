"""The adaptive thread policy: /proc parsing and the cores it picks, against hand-computed readings."""

from __future__ import annotations

import torch

from nid_nerf import threads


def test_proc_parsing():
    stat = "cpu  100 5 20 900 7 3 2 10 0 0\ncpu0 50 2 10 450 3 1 1 5 0 0\n"
    assert threads.machine_busy_ticks(stat) == 100 + 5 + 20 + 3 + 2 + 10  # idle and iowait excluded
    own = "4242 (python my (odd) name) R 1 2 3 4 5 6 7 8 9 10 321 45 0 0 20 0 3 0 12345"
    assert threads.own_busy_ticks(own) == 321 + 45
    assert threads.machine_busy_ticks("intr 1 2 3\n") is None


def test_threads_to_use():
    assert threads.threads_to_use(2, 0.0) == 2
    assert threads.threads_to_use(2, 0.4) == 2
    assert threads.threads_to_use(2, 0.6) == 1
    assert threads.threads_to_use(2, 2.0) == 1  # never 0
    assert threads.threads_to_use(16, 3.2, cap=8) == 8
    assert threads.threads_to_use(16, 12.0, cap=8) == 4


def test_adaptive_policy_follows_the_other_processes(monkeypatch):
    readings = iter([
        # (seconds, machine busy ticks, own ticks): another process busy on 1.5 cores, then gone
        (0.0, 1000, 100), (1.0, 1000 + 250, 100 + 100), (2.0, 1250 + 100, 200 + 100),
    ])
    state = {}

    def advance():
        state["now"], state["machine"], state["own"] = next(readings)

    monkeypatch.setattr(threads, "TICKS_PER_SECOND", 100)
    monkeypatch.setattr(threads.time, "monotonic", lambda: state["now"])
    monkeypatch.setattr(threads, "machine_busy_ticks", lambda: state["machine"])
    monkeypatch.setattr(threads, "own_busy_ticks", lambda: state["own"])
    logged = []
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        policy = threads.AdaptiveThreads(cores=2, cap=None, log=logged.append)
        advance()
        assert policy.check() == 2 and not logged  # first look: nothing to compare with yet
        advance()  # 250 busy ticks in 1 s, 100 of them ours: others kept 1.5 cores busy
        assert policy.check() == 1 and torch.get_num_threads() == 1
        assert "1.5 of 2 cores" in logged[-1] and "2 -> 1" in logged[-1]
        advance()  # only our own ticks: the other process ended
        assert policy.check() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
