"""Few-view demo and benchmark helpers (issue #4): time-to-quality maths, and the demo end to end (slow)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from nid_nerf.benchmarks import dictionary_sweep as sweep
from nid_nerf.benchmarks import fewview as bench
from nid_nerf.benchmarks import inpainting

REPO = Path(__file__).resolve().parents[1]


def test_time_to_reach_interpolates_between_evaluations():
    curve = [(10, 5.0, 12.0), (20, 10.0, 16.0), (30, 15.0, 20.0)]
    assert bench.time_to_reach(curve, 14.0) == pytest.approx(7.5)
    assert bench.time_to_reach(curve, 14.0, column=0) == pytest.approx(15.0)
    assert bench.time_to_reach(curve, 11.0) == pytest.approx(5.0)  # reached at the first evaluation
    assert bench.time_to_reach(curve, 21.0) is None


def test_eval_steps_are_dense_early_and_hit_the_solve_end():
    marks = bench.eval_steps(150, 25, solve_steps=50)
    assert {1, 5, 10, 25, 50, 75, 150} <= marks
    assert max(marks) == 150 and 0 not in marks
    assert 33 in bench.eval_steps(100, 25, solve_steps=33)


def test_collection_argument_errors_are_one_line(tmp_path):
    from nid_nerf.errors import NIDInputError

    with pytest.raises(NIDInputError, match="NAME=FOLDER:DICTIONARY"):
        bench.Collection.parse("vases")
    with pytest.raises(NIDInputError, match="does not exist"):
        bench.Collection.parse(f"vases={tmp_path}:{tmp_path / 'missing.pt'}")


def test_time_to_quality_uses_scratch_with_all_views_as_target():
    runs = [
        bench.Run("c", "s", 50, "scratch", curve=[(10, 1.0, 15.0), (100, 10.0, 20.0)]),
        bench.Run("c", "s", 50, "nid", curve=[(5, 0.5, 19.0), (10, 1.0, 21.0), (100, 10.0, 22.0)],
                  scores={"solve": bench.Score(10, 1.0, 20.5, 0.9)}),
    ]
    ttq = bench.time_to_quality(runs, "c", "s", 50)
    assert ttq["target_psnr"] == 20.0
    assert ttq["50/scratch"] == pytest.approx(10.0)
    assert ttq["50/solve"] == pytest.approx(0.75)
    assert ttq["50/solve + refine/steps"] == pytest.approx(7.5)
    assert not math.isnan(ttq["50/solve + refine"])


@pytest.mark.slow
def test_fewview_demo_end_to_end(tmp_path):
    """Render a tiny collection, pretrain, solve from 3 views and from scratch, evaluate, write the results page."""
    cmd = [sys.executable, str(REPO / "scripts" / "fewview_demo.py"), "--data", str(tmp_path / "data"),
           "--output", str(tmp_path / "out"), "--count", "3", "--resolution", "32", "--dict-steps", "20",
           "--dense-warmup", "5", "--steps", "20", "--solve-steps", "10", "--mesh-resolution", "32"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    page = (tmp_path / "out" / "results.md").read_text()
    assert "| NID |" in page and "| scratch |" in page
    assert (tmp_path / "out" / "results.png").stat().st_size > 10_000
    assert (tmp_path / "out" / "dictionary" / "nid-dict" / "demo" / "dictionary.pt").is_file()


def test_sweep_grid_keeps_k_at_most_K_cheapest_first():
    assert sweep.grid([16, 64, 256], [4, 16, 64]) == [(16, 4), (16, 16), (64, 4), (64, 16), (64, 64), (256, 4),
                                                     (256, 16), (256, 64)]


def test_masked_psnr_scores_only_the_masked_pixels():
    import numpy as np

    target = np.zeros((4, 4, 3))
    prediction = target.copy()
    prediction[:2] = 0.1  # error 0.1 in the top half only
    top = np.zeros((4, 4), bool)
    top[:2] = True
    assert inpainting.masked_psnr(prediction, target, top) == pytest.approx(20.0)
    assert inpainting.masked_psnr(prediction, target, ~top) == pytest.approx(100.0)  # exact: clamped at 1e-10
    assert math.isnan(inpainting.masked_psnr(prediction, target, np.zeros((4, 4), bool)))
