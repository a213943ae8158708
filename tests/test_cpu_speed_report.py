"""The training-speed report's time to quality: interpolated crossings against hand-computed values."""

import math

import pytest

from nid_nerf.benchmarks.cpu_speed import seconds_to, train_markdown
from nid_nerf.errors import NIDInputError


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


def test_repeats_summary_groups_runs_by_variant_settings():
    from nid_nerf.benchmarks.cpu_speed import DEFAULT, TODAY, repeats_markdown

    def run(fast_evals):
        base = _row("before", [(60.0, 100, 18.0), (120.0, 200, 20.0), (240.0, 400, 22.0)], step_seconds=0.4)
        fast = _row("an old name", fast_evals, step_seconds=0.1, samples=2500.0)
        base["overrides"], fast["overrides"] = TODAY, DEFAULT
        return {"rows": [base, fast], "seed": 1, "seconds": 240.0}

    # run a: 22 dB at 120 s (2x); run b: at 180 s (1.33x); run c: at 60 s (4x)
    a = run([(60.0, 400, 20.0), (120.0, 800, 22.0), (240.0, 1600, 23.0)])
    b = run([(60.0, 400, 19.0), (180.0, 800, 22.0), (240.0, 1600, 23.0)])
    c = run([(60.0, 400, 22.0), (120.0, 800, 22.5), (240.0, 1600, 23.0)])
    text = "\n".join(repeats_markdown([("a", a), ("b", b), ("c", c)]))
    assert "an old name" not in text  # labelled by today's name of the same settings
    summary = [line for line in text.splitlines() if line.startswith("| 16 fine") and "| 3 |" in line]
    assert len(summary) == 1
    # to-final ratios 2.00, 1.33, 4.00: median 2.00x, two runs at 2x or more
    assert "| 2.00x |" in summary[0] and "2 /" in summary[0] and "of 3 |" in summary[0]


def test_main_with_no_sections_writes_only_the_repeats_table(tmp_path):
    import json

    from nid_nerf.benchmarks.cpu_speed import DEFAULT, TODAY, main

    base = _row("before", [(60.0, 100, 18.0), (120.0, 200, 20.0), (240.0, 400, 22.0)], step_seconds=0.4)
    fast = _row("fast", [(60.0, 400, 20.0), (120.0, 800, 22.0), (240.0, 1600, 23.0)], step_seconds=0.1)
    base["overrides"], fast["overrides"] = TODAY, DEFAULT
    run = tmp_path / "run1.json"
    run.write_text(json.dumps({"train": {"rows": [base, fast], "seed": 3, "seconds": 240.0}}))
    out = tmp_path / "speed.md"
    assert main(["--sections", "--train-runs", str(run), "--json", str(tmp_path / "speed.json"),
                 "--output", str(out)]) == 0
    text = out.read_text()
    assert "## Training throughput over repeated runs" in text and "| run1 | 3 | 240 |" in text
    assert "## Render path" not in text
    not_a_run = tmp_path / "other.json"
    not_a_run.write_text("{}")
    with pytest.raises(NIDInputError, match="not the JSON of a benchmark run"):
        main(["--sections", "--train-runs", str(not_a_run), "--json", str(tmp_path / "x.json"),
              "--output", str(tmp_path / "x.md")])


def test_rows_of_earlier_runs_keep_a_name_of_their_own():
    from nid_nerf.benchmarks.cpu_speed import _EARLIER, FORMER_VARIANTS, variant_label

    row = _row("16 fine, eikonal 0.05 + fused C++ lookup (default)", [(60.0, 1, 20.0)])
    row["overrides"] = dict(_EARLIER)
    # the default then had no fused softplus: it must not be counted as today's default
    assert variant_label(row) == next(iter(FORMER_VARIANTS))
