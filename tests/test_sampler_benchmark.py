"""The sampler benchmark (nid_nerf.benchmarks.sampler_variants): variant parsing, time to target, and an
end-to-end smoke run on a tiny rendered sphere (slow: trains nid-field)."""

from __future__ import annotations

import json

import pytest

from nid_nerf.benchmarks import sampler_variants
from nid_nerf.errors import NIDInputError


def load_benchmark():
    return sampler_variants


def test_parse_variant_presets_and_overrides():
    bench = load_benchmark()
    assert bench.parse_variant("uniform") == ("uniform", {"sampler": "uniform"})
    name, overrides = bench.parse_variant("unbiased:weight-alpha=0.5,map_stride=4")
    assert name == "unbiased"
    assert overrides == {"sampler": "residual", "rule": "power", "unbiased": True, "weight_alpha": 0.5, "map_stride": 4}
    assert bench.parse_variant("mine:rule=topk")[1] == {"sampler": "residual", "rule": "topk"}
    with pytest.raises(NIDInputError, match="key=value"):
        bench.parse_variant("mine:rule")


def test_reach_interpolates_between_evaluations():
    bench = load_benchmark()
    run = bench.RunResult("s", "v", {})
    run.evals = [bench.EvalPoint(10, 1.0, 10.0), bench.EvalPoint(20, 3.0, 20.0)]
    assert run.reach(15.0) == pytest.approx((2.0, 15.0))
    assert run.reach(5.0) == pytest.approx((1.0, 10.0))
    seconds, steps = run.reach(25.0)
    assert seconds != seconds and steps != steps  # NaN: never reached


@pytest.mark.slow
def test_benchmark_smoke_run(tmp_path, capsys):
    trimesh = pytest.importorskip("trimesh")
    mesh = tmp_path / "sphere.obj"
    trimesh.creation.icosphere(subdivisions=2, radius=1.0).export(mesh)
    bench = load_benchmark()
    out = tmp_path / "bench.md"
    argv = [
        "--scenes", str(mesh), "--steps", "4", "--eval-every", "2", "--eval-images", "1", "--resolution", "24",
        "--views-train", "6", "--views-test", "2", "--variants", "uniform", "residual", "unbiased",
        "--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "runs"), "--output", str(out),
        "--plot", str(tmp_path / "psnr.png"), "--figure", str(tmp_path / "sel.png"), "--threads", "1",
    ]
    bench.main(argv)
    text = out.read_text()
    assert "| sphere | residual |" in text and "| sphere | unbiased |" in text
    assert (tmp_path / "psnr.png").stat().st_size > 0 and (tmp_path / "sel.png").stat().st_size > 0
    runs = json.loads((tmp_path / "runs" / "bench.json").read_text())["runs"]
    assert [r["variant"] for r in runs] == ["uniform", "residual", "unbiased"]
    assert all(len(r["evals"]) == 2 and len(r["iteration_seconds"]) == 4 for r in runs)
    # an interrupted run resumes: finished runs (and the figure's snapshots) are reused, not retrained
    (tmp_path / "sel.png").unlink()
    capsys.readouterr()
    bench.main(argv + ["--resume"])
    assert capsys.readouterr().out.count("reused from") == 3
    assert (tmp_path / "sel.png").is_file()
