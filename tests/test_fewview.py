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


def test_sweep_budget_steps_fill_the_wall_clock_dense_phase_first():
    # 100 dense steps at 0.5 s take 50 s; the other 550 s at 0.25 s a step are 2200 steps
    assert sweep.budget_steps(100, 600.0, 0.5, 0.25) == 2300
    # a budget the dense phase alone overruns still runs the dense phase (the run reports its real seconds)
    assert sweep.budget_steps(100, 10.0, 0.5, 0.25) == 100
    # equal seconds give a costlier K proportionally fewer steps
    assert sweep.budget_steps(0, 600.0, 1.0, 1.0) * 4 == sweep.budget_steps(0, 600.0, 0.25, 0.25)


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


def test_nid_method_variants_differ_only_in_their_start_and_refine():
    import argparse

    args = argparse.Namespace(solve_steps=50, solve_gate="dense")
    _, nid = bench.method_overrides("nid", 3, args, Path("d.pt"))
    _, mean = bench.method_overrides("nid-mean", 3, args, Path("d.pt"))
    _, fixed = bench.method_overrides("nid-fixed", 3, args, Path("d.pt"))
    assert "pipeline.model.code_init" not in nid and "pipeline.model.refine_anneal_steps" not in nid
    assert mean["pipeline.model.code_init"] == "mean" and mean["pipeline.model.refine"] is False
    assert fixed["pipeline.model.refine_anneal_steps"] is None and fixed["pipeline.model.refine"] is True


def test_category_tables_from_hand_made_runs():
    from nid_nerf.benchmarks import categories as cat

    def run(scene, views, method, curve, **psnr):
        r = bench.Run("chair", scene, views, method, curve=curve)
        r.scores = {stage: bench.Score(0, 0.0, value, 0.5) for stage, value in psnr.items()}
        return r

    runs = [
        run("a", 3, "nid", [(0, 0.0, 14.0), (50, 5.0, 18.0), (100, 10.0, 20.0)], start=15.0, start_mean=12.0,
            solve=19.0, final=21.0),
        run("a", 3, "scratch", [(50, 4.0, 12.0), (100, 8.0, 16.0)], final=16.5),
        run("a", 3, "nid-mean", [(0, 0.0, 12.0), (25, 2.5, 15.0), (50, 5.0, 18.0)], final=18.5),
        run("b", 3, "nid", [(0, 0.0, 13.0), (100, 10.0, 15.0)], start=13.0, start_mean=13.0, solve=15.0, final=15.0),
        run("b", 3, "scratch", [(100, 8.0, 16.0)], final=17.0),
    ]
    # per-object NID - scratch: +4.5 (a) and -2.0 (b)
    assert cat.paired(runs, "chair", 3, ("nid", "final"), ("scratch", "final")) == [4.5, -2.0]
    quality = "\n".join(cat.quality_table(runs, "chair", [3], 15))
    assert "**+1.25** (-2.00)" in quality
    runs[0].scores["start"].seconds = 6.5  # the code search's seconds before the first step
    encoder = cat.encoder_table(runs, "chair", [3], solve_steps=100)[-1]
    # object a: start 15.0 - solved 18.5; the mean start reaches its own final 18.0 at step 50, the searched
    # start at step 50 too (its curve passes 18.0 at 50)
    assert "| 3 | 1 | 12.00 | 15.00 | 6.5 | 18.50 | -3.50 | 50 / 50 (1/1 reached) |" == encoder
    ttq = cat.time_to_quality_table(runs, "chair")
    # scratch a reaches its final 16.0 at 8 s (step 100); nid passes 16.0 between (0 s, 14) and (5 s, 18): 2.5 s
    assert "| a | 16.00 | 8.0 s (100) | 2.5 s (25) | 20.00 | 3.2x (4.0x) |" in ttq


def test_time_to_quality_of_a_start_code_already_there_counts_its_search_seconds():
    from nid_nerf.benchmarks import categories as cat

    scratch = bench.Run("chair", "c", 3, "scratch", curve=[(50, 4.0, 15.0), (100, 8.0, 16.0)])
    nid = bench.Run("chair", "c", 3, "nid", curve=[(0, 12.0, 17.0), (100, 20.0, 18.0)])
    row = cat.time_to_quality_table([scratch, nid], "chair")[-1]
    # scratch reaches its final 16.0 at 8 s (step 100); the searched start code is above it at step 0, after 12 s
    assert row == "| c | 16.00 | 8.0 s (100) | 12.0 s (0) | 18.00 | 0.7x (at step 0) |"


def test_category_time_plot_adds_a_long_budget_row(tmp_path):
    from PIL import Image

    from nid_nerf.benchmarks import categories as cat

    curve = [(0, 0.0, 14.0), (100, 10.0, 20.0)]
    main = [bench.Run("chair", "a", 3, m, curve=curve) for m in ("nid", "scratch")]
    long = [bench.Run("chair" + cat.SUFFIX_LONG, "a", 3, m, curve=curve) for m in ("nid", "scratch")]
    collection = bench.Collection("chair", tmp_path, tmp_path / "dictionary.pt")
    cat.plot_time(main, [collection], tmp_path / "one.png")
    cat.plot_time(main + long, [collection], tmp_path / "two.png")
    one, two = Image.open(tmp_path / "one.png"), Image.open(tmp_path / "two.png")
    assert one.width == two.width and two.height > 1.8 * one.height  # a second row of panels


def test_category_runs_of_two_processes_share_one_file(tmp_path):
    from nid_nerf.benchmarks import categories as cat

    path = tmp_path / "runs_chair.json"
    scratch = bench.Run("chair", "a", 3, "scratch", curve=[(1, 0.1, 12.0)])
    nid = bench.Run("chair", "a", 3, "nid", curve=[(1, 0.1, 14.0)])
    cat.save_category(path, "scratch only", [scratch])
    cat.save_category(path, "nid only", [nid])  # a second process, started with --methods nid
    done = fewview_load(path)
    assert sorted(done) == sorted([scratch.key, nid.key]) and done[scratch.key].curve == [(1, 0.1, 12.0)]
    nid.curve = [(1, 0.1, 15.0)]
    cat.save_category(path, "nid again", [nid])  # a redone run replaces its old record
    assert fewview_load(path)[nid.key].curve == [(1, 0.1, 15.0)] and len(fewview_load(path)) == 2


def fewview_load(path):
    return bench.load_done(path)


def test_category_plan_long_views_and_methods(tmp_path):
    import argparse

    from nid_nerf.benchmarks import categories as cat

    root = tmp_path / "chair"
    for i in range(4):
        (root / f"chair_{i:04d}").mkdir(parents=True)
        (root / f"chair_{i:04d}" / "transforms.json").write_text("{}")
    (tmp_path / "dictionary.pt").write_bytes(b"")
    collection = bench.Collection.parse(f"chair={root}:{tmp_path / 'dictionary.pt'}")
    args = argparse.Namespace(held_out=2, objects=2, views=[3], all_views_count=15, encoder_views=[3],
                              long_objects=1, long_views=[3, 15], methods=None)
    plan = [(name, scene, views, method) for _, name, scene, views, method in cat.plan_runs([collection], args)]
    long = [p for p in plan if p[0] == "chair-long"]
    # the long budget at 3 views has no fixed-penalty run; with all views it has
    assert long == [("chair-long", "chair_0002", 3, "nid"), ("chair-long", "chair_0002", 3, "scratch"),
                    ("chair-long", "chair_0002", 15, "nid"), ("chair-long", "chair_0002", 15, "nid-fixed"),
                    ("chair-long", "chair_0002", 15, "scratch")]
    assert len(plan) == 2 * (2 * 2 + 1) + 5
    args.methods = ["scratch"]
    assert {p[4] for p in cat.plan_runs([collection], args)} == {"scratch"}
    args.long_views = None  # all views only, as before
    assert {p[3] for p in cat.plan_runs([collection], args) if p[1] == "chair-long"} == {15}
    args.first_object, args.objects = 1, 5  # a second process: the held-out objects from the second on
    assert {p[2] for p in cat.plan_runs([collection], args)} == {"chair_0003"}
    args.no_all_views, args.long_objects = True, 0  # a partial run: 3 views only
    assert {p[3] for p in cat.plan_runs([collection], args)} == {3}


def test_category_notes_file_is_checked_before_any_run(tmp_path):
    from nid_nerf.benchmarks import categories as cat
    from nid_nerf.errors import NIDInputError

    with pytest.raises(NIDInputError, match="--notes"):
        cat.main(["--category", f"chair={tmp_path}:{tmp_path / 'dictionary.pt'}", "--notes",
                  str(tmp_path / "missing.md"), "--work-dir", str(tmp_path / "work")])
    assert not (tmp_path / "work" / "runs").exists()


def test_category_report_only_needs_resume(tmp_path):
    from nid_nerf.benchmarks import categories as cat
    from nid_nerf.errors import NIDInputError

    with pytest.raises(NIDInputError, match="--resume"):
        cat.main(["--category", f"chair={tmp_path}:{tmp_path / 'dictionary.pt'}", "--report-only",
                  "--work-dir", str(tmp_path / "work")])
