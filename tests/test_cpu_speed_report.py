"""The training-speed report's time to quality: interpolated crossings against hand-computed values."""

import math

from nid_nerf.benchmarks.cpu_speed import seconds_to, train_markdown


def _row(name, evals, step_seconds=0.1, samples=1000.0):
    return {"variant": name, "steps": evals[-1][1], "train_seconds": evals[-1][0], "median_step_seconds": step_seconds,
            "rays_per_second": 1.0 / step_seconds, "field_samples_per_second": samples, "first_step_seconds": 0.2,
            "evals": [{"seconds": s, "step": k, "psnr": p} for s, k, p in evals]}


def test_seconds_to_interpolates_between_evaluations():
    row = _row("a", [(30.0, 100, 18.0), (60.0, 200, 20.0), (90.0, 300, 21.0)])
    # 19 dB is halfway from 18 (30 s, step 100) to 20 (60 s, step 200)
    assert seconds_to(row, 19.0) == 45.0
    assert seconds_to(row, 19.0, "step") == 150.0
    assert seconds_to(row, 20.5) == 75.0
    assert seconds_to(row, 17.0) == 30.0  # already there at the first evaluation
    assert math.isnan(seconds_to(row, 22.0))


def test_seconds_to_takes_the_first_crossing_of_a_curve_that_dips():
    row = _row("a", [(30.0, 1, 18.0), (60.0, 2, 22.0), (90.0, 3, 19.0), (120.0, 4, 23.0)])
    assert seconds_to(row, 20.0) == 45.0


def test_train_markdown_reports_ratios_against_the_baseline():
    base = _row("before", [(60.0, 100, 18.0), (120.0, 200, 20.0), (240.0, 400, 22.0)], step_seconds=0.4)
    fast = _row("fast", [(60.0, 400, 20.0), (120.0, 800, 22.0), (240.0, 1600, 23.0)], step_seconds=0.1,
                samples=2500.0)
    text = "\n".join(train_markdown([base, fast], None))
    # the baseline reaches its final 22 dB at 240 s, the fast variant at 120 s: 2.00x
    assert "fast, 2.00x sooner to equal quality (target 2x): **met**" in text
    assert "- fast: 2.50x field samples/s, 4.00x steps/s" in text
