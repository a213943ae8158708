"""The field-cost benchmark (nid_nerf.benchmarks.field_cost) on a tiny hash grid: the field it times is the
model's, the per-sample work does not grow with k, and the report is whole."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from nid_nerf.benchmarks import field_cost
from nid_nerf.fields.encoding import corner_lookup, interpolate

TINY = {"num_levels": 2, "log2_table_size": 8}


@pytest.fixture(scope="module")
def bench():
    torch.set_num_threads(1)
    return field_cost


def test_dict_step_trains_only_the_selected_experts(bench):
    model = bench.dict_model(num_experts=8, top_k=2, num_scenes=3, grid=TINY, seed=1)
    bench.set_top_k(model, 2)
    batch = bench.make_batch(model, rays=16, samples=4, num_scenes=3, seed=1)
    used = sorted(set(batch.scene.tolist()))
    bench.field_step(model, batch)
    tables = model.field.experts.tables
    touched = {i for i in range(8) if tables.grad[i].abs().sum() > 0}
    selected = set()
    for s in used:
        selected |= set(model.field.gate(s)[0].tolist())
    assert touched == selected and len(selected) > 2  # the scenes' own top-2 experts, no others
    grads = model.field.gate.codes.grad
    for s in range(3):
        assert (grads[s].abs() > 0).sum() == (2 if s in used else 0)
    # the per-expert what-if gives the same mixed tables and gradients to the chosen experts only
    what_if = bench.PerExpertTables(model)
    upstream = torch.randn(len(used), 2 * 256, 2)
    what_if.mix(model, used, upstream)
    assert {i for i, p in enumerate(what_if.params) if p.grad is not None} == selected
    model.field.experts.tables.grad = None
    (model.field.mixed_tables(used) * upstream).sum().backward()
    for i in selected:
        torch.testing.assert_close(what_if.params[i].grad, model.field.experts.tables.grad[i])


def test_solve_model_loads_the_dictionary_frozen(bench, tmp_path):
    source = bench.dict_model(num_experts=4, top_k=2, num_scenes=3, grid=TINY, seed=2)
    model = bench.solve_model(source, TINY, tmp_path)
    assert not list(tmp_path.iterdir())  # the exported dictionary is removed again
    assert torch.equal(model.field.experts.tables, source.field.experts.tables)
    assert not model.field.experts.tables.requires_grad
    torch.testing.assert_close(model.field.gate.codes[0], source.field.gate.codes.mean(0))
    batch = bench.make_batch(model, rays=8, samples=4, num_scenes=1, seed=2)
    bench.field_step(model, batch)
    assert model.field.experts.tables.grad is None
    assert (model.field.gate.codes.grad.abs() > 0).sum() == 2  # top-k solve: the code's 2 picked entries


def test_dense_solve_gate_gives_every_code_entry_a_gradient(bench, tmp_path):
    from nid_nerf.fields.dictionary import export_dictionary

    source = bench.dict_model(num_experts=4, top_k=2, num_scenes=3, grid=TINY, seed=2)
    model = bench.build_model(1, TINY, dictionary_path=export_dictionary(source, tmp_path / "d.pt"))
    assert model.config.solve_gate == "dense" and not bool(model.field.gate.sparse)
    bench.field_step(model, bench.make_batch(model, rays=8, samples=4, num_scenes=1, seed=2))
    assert model.field.experts.tables.grad is None
    assert (model.field.gate.codes.grad.abs() > 0).sum() == 4


class Work(TorchDispatchMode):
    """Counts, for every torch op run inside the block (forward and backward), the elements it outputs, and apart
    from them the elements gathered from tables (index_select and friends): a deterministic measure of work."""

    GATHERS = (torch.ops.aten.index_select, torch.ops.aten.index, torch.ops.aten.gather, torch.ops.aten.embedding)

    def __init__(self) -> None:
        super().__init__()
        self.elements = self.gathered = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        count = sum(t.numel() for t in (out if isinstance(out, (tuple, list)) else [out])
                    if isinstance(t, torch.Tensor))
        self.elements += count
        if func.overloadpacket in self.GATHERS:
            self.gathered += count
        return out


def per_sample(work, small: int, large: int) -> tuple:
    """(elements, gathered) per extra sample between a step of `small` and one of `large` samples: what a
    per-step cost such as the mixing (the same at both sizes) leaves out."""
    a, b = work(small), work(large)
    return ((b.elements - a.elements) / (large - small), (b.gathered - a.gathered) / (large - small))


def test_field_cost_per_sample_does_not_depend_on_k(bench):
    """Per sample, a training step does the same work for k = 1 and k = 16 (one lookup into the mixed table);
    the per-expert form, k lookups per sample mixed afterwards, would gather k times as much."""
    model = bench.dict_model(num_experts=16, top_k=16, num_scenes=3, grid=TINY, seed=1)
    field_ = model.field
    field_.fused_lookup = False  # the counter sees torch ops; the fused kernel's gathers happen inside one C++ op
    batches = {4 * rays: bench.make_batch(model, rays=rays, samples=4, num_scenes=3, seed=1) for rays in (32, 96)}
    assert len({tuple(sorted(set(b.scene.tolist()))) for b in batches.values()}) == 1  # the same scenes mixed

    def step(samples: int) -> Work:
        with Work() as work:
            bench.field_step(model, batches[samples])
        bench.clear_grads(model)
        return work

    def lookups(per_expert: bool):
        def run(n: int) -> Work:
            x = torch.rand(n, 3, generator=torch.Generator().manual_seed(n)) * 2 - 1
            with Work() as work, torch.no_grad():
                if not per_expert:
                    field_.lookup(x, 0)
                    return work
                idx, weights = corner_lookup((x + 1) / 2, field_.spec)
                index, gate = field_.gate(0)
                sum(g * interpolate(field_.experts.expert(int(i)), idx, weights)[0] for i, g in zip(index, gate))
            return work

        return run

    steps, mixed, experts = {}, {}, {}
    for k in (1, 16):
        bench.set_top_k(model, k)
        steps[k] = per_sample(step, 32 * 4, 96 * 4)
        mixed[k] = per_sample(lookups(per_expert=False), 64, 192)
        experts[k] = per_sample(lookups(per_expert=True), 64, 192)
    assert steps[1] == steps[16] and steps[1][1] > 0  # the whole step: forward, eikonal gradients and backward
    assert mixed[1] == mixed[16]
    per_lookup = field_.spec.num_levels * 8 * field_.spec.features_per_level  # 8 corners per level
    assert mixed[16][1] == per_lookup
    assert experts[1][1] == per_lookup and experts[16][1] == 16 * per_lookup


def test_quick_run_writes_a_complete_report(bench, tmp_path):
    out = tmp_path / "fc.md"
    argv = ["--experts", "1", "16", "--top-k", "1", "16", "--sizes", "32x8", "16x8", "--scenes", "2", "--reps", "1",
            "--threads", "1", "--log2-table-size", "8", "--num-levels", "2", "--output", str(out)]
    bench.main(argv)
    text = out.read_text()
    assert text.splitlines()[3] == "python scripts/benchmark_field_cost.py " + " ".join(argv)
    assert out.with_suffix(".png").stat().st_size > 1000
    data = json.loads(out.with_suffix(".json").read_text())
    keys = {(r["case"], r["num_experts"], r["top_k"]) for r in data["results"]}
    assert keys == {("scratch", 1, 1), ("dict", 1, 1), ("solve", 1, 1),
                    ("dict", 16, 1), ("dict", 16, 16), ("solve", 16, 1), ("solve", 16, 16)}
    whats = {(r["case"], r["n"], r["what"]) for r in data["ratios"]}
    assert whats == {(c, n, "k=16 / k=1 at K=16") for c in ("dict", "solve") for n in (128, 256)}
    assert all(math.isfinite(r["ratio"]) and r["ratio"] > 0 for r in data["ratios"])
    table_bytes = 2 * 256 * 2 * 4  # L * S * F float32 per expert
    for row in data["results"]:
        mem, n_exp = row["memory"], row["num_experts"]
        assert mem["tables_mib"] * 2**20 == pytest.approx(n_exp * table_bytes)
        adam = mem["adam_state_mib"] * 2**20
        if row["case"] == "solve":  # only the code is optimised: exp_avg + exp_avg_sq of [1, K] + the step count
            assert adam == pytest.approx(2 * n_exp * 4 + 4, abs=8)
        else:  # everything trained: at least both moments of the tables
            assert adam >= 2 * n_exp * table_bytes
        for n in ("128", "256"):
            assert row["per_n"][n]["seconds"]["step"] > 0
    assert all(("what_if_per_expert" in r) == (r["case"] == "dict" and r["num_experts"] > 1) for r in data["results"])
    assert "k=16 / k=1 at K=16" in text and "## Memory (MiB)" in text


def test_allocator_both_measures_each_configuration_twice(bench, tmp_path):
    out = tmp_path / "alloc.md"
    bench.main(["--cases", "solve", "--experts", "4", "--top-k", "1", "--sizes", "16x4", "--reps", "1",
                "--threads", "1", "--log2-table-size", "8", "--num-levels", "2", "--allocator", "both",
                "--output", str(out)])
    data = json.loads(out.with_suffix(".json").read_text())
    assert sorted(r["allocator"] for r in data["results"]) == ["glibc", "keep"]
    assert "solve K=4 k=1 [keep]" in out.read_text()
