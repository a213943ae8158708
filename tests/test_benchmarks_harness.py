"""The one training loop of the benchmarks (nid_nerf.benchmarks.harness.train): stopping rules, hooks, and the
order in which interleaved runs step (their numbers depend on it: they share the global random generators)."""

from __future__ import annotations

from nid_nerf.benchmarks.harness import EveryTrainSeconds, Stop, TrainRun, train


class FakeRun(TrainRun):
    """A TrainRun without a trainer: each step takes `seconds_per_step` of training clock and is logged."""

    def __init__(self, name: str, seconds_per_step: float, log: list) -> None:
        self.name, self.seconds_per_step, self.log = name, seconds_per_step, log
        self.start_clock()

    def iterate(self, step: int) -> float:
        self.log.append(("step", self.name, step + 1))
        return self.seconds_per_step

    def evaluate(self):
        self.log.append(("eval", self.name, self.steps))
        return (self.steps, self.train_seconds)


def test_interleaved_runs_step_in_turn_and_hooks_follow_each_iteration():
    log: list = []
    runs = [FakeRun("a", 1.0, log), FakeRun("b", 1.0, log)]
    train(runs, Stop(steps=2), [lambda run: log.append(("hook", run.name, run.steps))])
    assert log == [("step", "a", 1), ("hook", "a", 1), ("step", "b", 1), ("hook", "b", 1),
                   ("step", "a", 2), ("hook", "a", 2), ("step", "b", 2), ("hook", "b", 2)]
    train(runs, Stop(steps=2))  # already there: nothing more
    assert [r.steps for r in runs] == [2, 2]


def test_stop_on_seconds_or_steps_whichever_comes_first():
    log: list = []
    slow, fast = FakeRun("slow", 3.0, log), FakeRun("fast", 1.0, log)
    train([slow, fast], Stop(seconds=5.0))
    assert (slow.steps, fast.steps) == (2, 5)  # 6 s >= 5 s after two steps; the fast one goes on alone
    capped = FakeRun("capped", 1.0, log)
    train(capped, Stop(steps=3, seconds=100.0))
    assert capped.steps == 3


def test_every_train_seconds_evaluates_once_per_mark_passed():
    log: list = []
    run = FakeRun("r", 0.375, log)
    marks = EveryTrainSeconds(1.0)
    train(run, Stop(steps=10), [marks])
    assert [steps for steps, _ in marks.points] == [3, 6, 8]  # clock 1.125, 2.25, 3.0 s (3.75 s at the end)
    long_steps = FakeRun("long", 2.5, log)
    skipped = EveryTrainSeconds(1.0)
    train(long_steps, Stop(steps=2), [skipped])
    assert len(skipped.points) == 2  # one evaluation per iteration, however many marks it passed
