"""Micro-benchmark of the NID field's cost per sample against the number of experts K and the gate's k.

The field is built by the model itself (``NIDModelConfig(...).setup()`` runs ``NIDModel.populate_modules``)
with the model's default hash grid (8 levels, 2^15 entries, 2 features, resolutions 16..256) and decoder,
for every K in ``--experts`` and k in ``--top-k`` (k <= K). Three cases:

- ``dict``: nid-dict pretraining. ``--scenes`` scenes with their own (random, already sparse) codes; each
  step's rays are spread over all of them; tables, decoder and codes are trained.
- ``solve``: nid-field with ``--pipeline.model.dictionary-path``, solve stage. The dictionary is exported
  from the ``dict`` model with ``export_dictionary`` and loaded back through the model's own
  ``dictionary_path`` code path: tables and decoder frozen, one code learned (it starts at the mean code).
- ``scratch``: the from-scratch reference, K = 1 with the constant code (``NIDModelConfig()`` as is).

One model is built per (case, K); k is set on its gate (``gate.top_k``) before each measurement, so all
k of one K share one set of tables and one Adam state. Per configuration it times, on the same rays:

- ``step``: one training step's field work, as ``NIDModel.get_outputs`` does it: inside
  ``field.mixing_once()``, ``field.forward_rays`` on R rays x S samples plus ``field.gradient`` (analytic SDF
  gradients on a share of the samples plus random points, drawn as the model draws them), then backward of a
  scalar loss;
- ``adam``: the optimiser step (nerfstudio ``Optimizers`` with the method configs' Adam groups) + zero_grad;
- ``mix``: ``field.mixed_tables`` for all scenes of the step, forward + backward, alone;
- ``lookup``: the hash-grid lookups of the step alone (``field.lookup``, forward + backward, into the step's
  already mixed tables); ``rest`` = step - mix - lookup is the decoder and glue.

Per-sample cost = time / (R x S). Configurations are measured round-robin (one of each in turn, the start
rotated every repetition) after one untimed warm-up round; medians over ``--reps`` are reported.

Two what-ifs, timed in the same round-robin (neither is what the model does today): ``--allocator both``
measures every configuration also with glibc malloc keeping freed memory (``mallopt``), and the ``dict``
case also times mixing + Adam with the experts held as K separate parameters (lazy Adam).

    python scripts/benchmark_field_cost.py --threads 1 --allocator both --reps 3   # docs/field_cost.{md,json,png}
    python scripts/benchmark_field_cost.py --quick --output /tmp/fc.md             # smoke run (under a minute)
    python scripts/benchmark_field_cost.py --render-only docs/field_cost.json --notes notes.md  # re-write the report
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from jaxtyping import Float, Int
from nerfstudio.data.scene_box import SceneBox
from nerfstudio.engine.optimizers import Optimizers
from torch import Tensor
from tqdm import tqdm

from nid_nerf.benchmarks.report import REPO_ROOT, command_line, machine_summary, pyplot
from nid_nerf.configs.method_configs import optimizers as method_optimizers
from nid_nerf.errors import NIDInputError, install_excepthook
from nid_nerf.fields.dictionary import export_dictionary
from nid_nerf.io import save_figure, write_text
from nid_nerf.model_components.rendering import ray_aabb, stratified_midpoints
from nid_nerf.models.nid_model import NIDModel, NIDModelConfig

TARGET_RATIO = 1.3
"""issue #4: per-sample cost at k=16 within 1.3x of k=1, and at K=256 within 1.3x of K=16"""
PARTS = ("step", "adam", "mix", "lookup")


# ----------------------------------------------------------------------------------------------
# the field as the model builds it
# ----------------------------------------------------------------------------------------------
def build_model(num_scenes: int, grid: Dict[str, int], **config) -> NIDModel:
    """A NIDModel made by its own config (``populate_modules``), on the box [-1, 1]^3."""
    cfg = NIDModelConfig(**grid, **config)
    scene_box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    model = cfg.setup(scene_box=scene_box, num_train_data=1, metadata={"num_scenes": num_scenes})
    assert isinstance(model, NIDModel)
    return model.train()


def dict_model(num_experts: int, top_k: int, num_scenes: int, grid: Dict[str, int], seed: int) -> NIDModel:
    """nid-dict after the dense warm-up: learned codes, sparse top-k gate; codes random so scenes differ."""
    model = build_model(num_scenes, grid, num_experts=num_experts, top_k=top_k, learn_codes=True)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.field.gate.codes.copy_(torch.randn(num_scenes, num_experts, generator=gen) / max(1, top_k))
        model.field.gate.sparse.fill_(True)
    return model


def solve_model(source: NIDModel, grid: Dict[str, int], workdir: Path) -> NIDModel:
    """nid-field solving one scene against ``source``'s dictionary, loaded through ``dictionary_path``.

    The gate is the dictionary's top-k (``solve_gate="top-k"``): the per-sample cost the targets are about. The
    default dense solve gate adds one mixing of all K tables per step (docs/dictionary_sweep.md measures it).
    """
    path = export_dictionary(source, workdir / "dictionary.pt")
    try:
        return build_model(1, grid, dictionary_path=path, solve_gate="top-k")
    finally:
        path.unlink()


def set_top_k(model: NIDModel, top_k: int) -> None:
    model.config.top_k = top_k
    model.field.gate.top_k = min(top_k, model.field.experts.num_experts)


def make_optimizers(model: NIDModel) -> Optimizers:
    """The method configs' Adam groups (experts, decoder, beta, codes) over the model's param groups."""
    return Optimizers(method_optimizers(max_steps=10_000), model.get_param_groups())


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------
@dataclass
class Batch:
    """R rays x S samples through the box, as the model places its importance samples."""

    positions: Float[Tensor, "R S 3"]
    directions: Float[Tensor, "R 3"]
    scene: Optional[Int[Tensor, " R"]]
    """scene of each ray, None for one scene"""
    eik_points: Float[Tensor, "E 3"]
    """the eikonal points of the step: a share of the samples plus random points in the box, as the model picks"""
    eik_scene: Optional[Int[Tensor, " E"]]

    @property
    def num_samples(self) -> int:
        return self.positions.shape[0] * self.positions.shape[1]


def make_batch(model: NIDModel, rays: int, samples: int, num_scenes: int, seed: int) -> Batch:
    """Rays from a sphere of radius 3 toward the box centre region, S stratified samples inside the box.

    The eikonal points are drawn as ``NIDModel.get_outputs`` draws them (a ``eikonal_sample_fraction`` share of
    the samples, plus ``eikonal_points`` random points in the box, each given the scene of a random ray), once,
    so that every configuration is timed on the same points.
    """
    gen = torch.Generator().manual_seed(seed)
    aabb = model.field.aabb
    origins = torch.nn.functional.normalize(torch.randn(rays, 3, generator=gen), dim=-1) * 3.0
    targets = (torch.rand(rays, 3, generator=gen) - 0.5)
    directions = torch.nn.functional.normalize(targets - origins, dim=-1)
    near, far, _ = ray_aabb(origins, directions, aabb)
    _, t = stratified_midpoints(near, far, samples, jitter=False)
    positions = origins[:, None] + directions[:, None] * t[..., None]
    scene = torch.randint(0, num_scenes, (rays,), generator=gen) if num_scenes > 1 else None
    cfg = model.config
    n_pick = int(cfg.eikonal_sample_fraction * rays * samples)
    pick = torch.randint(0, rays * samples, (n_pick,), generator=gen)
    lo, hi = aabb
    eik = [positions.reshape(-1, 3)[pick], lo + torch.rand(cfg.eikonal_points, 3, generator=gen) * (hi - lo)]
    eik_scene = None
    if scene is not None:
        eik_scene = torch.cat([scene[pick // samples],
                               scene[torch.randint(0, rays, (cfg.eikonal_points,), generator=gen)]])
    return Batch(positions, directions, scene, torch.cat(eik), eik_scene)


# ----------------------------------------------------------------------------------------------
# the timed work
# ----------------------------------------------------------------------------------------------
def field_step(model: NIDModel, batch: Batch) -> torch.Tensor:
    """One training step's field work (``get_outputs`` minus sampling and compositing) and its backward.

    Inside one ``mixing_once`` block, as the model's step: the samples' SDF and colour, then the analytic SDF
    gradients at the batch's eikonal points.
    """
    field_ = model.field
    with field_.mixing_once():
        out = field_.forward_rays(batch.positions, batch.directions, batch.scene)
        grads = field_.gradient(batch.eik_points, batch.eik_scene)
    loss = out["rgb"].mean() + out["sdf"].mean() + ((grads.norm(dim=-1) - 1.0) ** 2).mean()
    loss.backward()
    return loss.detach()


def optimiser_step(opt: Optimizers) -> None:
    opt.optimizer_step_all()
    opt.zero_grad_all()


def scenes_of(batch: Batch) -> List[int]:
    return [0] if batch.scene is None else torch.unique(batch.scene).tolist()


def mixing_only(model: NIDModel, scenes: Sequence[int], upstream: torch.Tensor) -> None:
    """``field.mixed_tables`` of every scene of the step, forward + backward (into tables and codes)."""
    tables = model.field.mixed_tables(scenes)
    if tables.requires_grad:
        (tables * upstream).sum().backward()


def lookup_only(model: NIDModel, batch: Batch, mixed: Sequence[torch.Tensor]) -> None:
    """The step's two lookups (all samples without, eikonal points with the analytic derivative), fwd + bwd.

    Through ``NIDField.lookup``, the lookup ``geometry_forward`` does, into leaf copies of the step's mixed tables.
    """
    samples = batch.positions.reshape(-1, 3)
    scene = None if batch.scene is None else batch.scene[:, None].expand(-1, batch.positions.shape[1]).reshape(-1)
    z, _ = model.field.lookup(samples, scene, with_grad=False, tables=mixed)
    z_eik, dz = model.field.lookup(batch.eik_points, batch.eik_scene, with_grad=True, tables=mixed)
    (z.sum() + z_eik.sum() + dz.square().sum()).backward()


class PerExpertTables:
    """What-if for the ``dict`` case: the same K tables as K separate parameters (not what the model does).

    Mixing stacks only the k chosen parameters, so its backward writes gradients for those k alone (no dense
    all-K gradient per scene), and Adam skips every expert that got no gradient this step (lazy Adam, as
    for sparse embeddings). Timed next to the model's own mixing + Adam to show what a per-expert layout buys.
    """

    def __init__(self, model: NIDModel, lr: float = 1e-2) -> None:
        tables = model.field.experts.tables.detach()
        self.params = [torch.nn.Parameter(t.clone()) for t in tables]
        self.adam = torch.optim.Adam(self.params, lr=lr, eps=1e-15)

    def mix(self, model: NIDModel, scenes: Sequence[int], upstream: torch.Tensor) -> None:
        mixed = []
        for s in scenes:
            index, gate = model.field.gate(s)
            chosen = torch.stack([self.params[i] for i in index.tolist()])
            mixed.append(torch.einsum("k,klsf->lsf", gate, chosen).reshape(-1, chosen.shape[-1]))
        (torch.stack(mixed) * upstream).sum().backward()

    def step(self) -> None:
        self.adam.step()
        self.adam.zero_grad()


def clear_grads(model: NIDModel, mixed: Sequence[torch.Tensor] = ()) -> None:
    for p in model.parameters():
        p.grad = None
    for t in mixed:
        t.grad = None


# ----------------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------------
@dataclass
class Setup:
    """One model of a case and K, its optimisers and its inputs per sample count."""

    case: str
    num_experts: int
    model: NIDModel
    opt: Optimizers
    batches: Dict[int, Batch]  # keyed by number of samples
    upstream: torch.Tensor
    mixed_leaves: List[torch.Tensor]
    num_scenes: int
    per_expert: Optional[PerExpertTables] = None


@dataclass
class Config:
    case: str
    num_experts: int
    top_k: int
    allocator: str = "glibc"

    @property
    def key(self) -> str:
        tail = "" if self.allocator == "glibc" else f"+{self.allocator}"
        return f"{self.case}/K{self.num_experts}/k{self.top_k}{tail}"


ALLOCATORS = ("glibc", "keep")
"""glibc: the C allocator as configured by default; keep: it keeps freed memory for reuse (``mallopt``)."""


def set_allocator(name: str, explicit: bool) -> None:
    """Switch glibc malloc between its default thresholds and keeping freed memory (no page faults on reuse).

    glibc serves allocations above its mmap threshold (raised dynamically up to 32 MiB) with fresh mmap'd
    pages and unmaps them on free, so every large temporary of a step (gathered tables, a dense table
    gradient, Adam's temporaries) is page-faulted in again, step after step. ``keep`` raises the mmap and
    trim thresholds so freed blocks stay in the heap. With ``explicit`` False and ``glibc`` nothing is touched;
    otherwise ``glibc`` sets the thresholds the dynamic rule converges to (32 MiB / 64 MiB) and trims the heap.
    """
    if name == "glibc" and not explicit:
        return
    import ctypes

    from nid_nerf.engine.allocator import GLIBC_CONVERGED, KEEP, set_malloc_thresholds

    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        raise NIDInputError("--allocator keep needs glibc's mallopt (Linux); run with --allocator glibc") from None
    ok = set_malloc_thresholds(*(KEEP if name == "keep" else GLIBC_CONVERGED))
    if name != "keep":
        trim(ctypes.c_size_t(0))
    if not ok:
        raise NIDInputError(f"glibc refused the '{name}' malloc thresholds; run with --allocator glibc")


def memory_of(setup: Setup, top_k: int) -> Dict[str, float]:
    """MiB of the tables, the table gradient, the Adam state (measured) and the step's mixed tables."""
    mib = 2.0**-20
    field_ = setup.model.field
    tables = field_.experts.tables
    trainable = sum(p.numel() * p.element_size() for p in setup.model.parameters() if p.requires_grad)
    adam = 0
    for optimizer in setup.opt.optimizers.values():
        for state in optimizer.state.values():
            adam += sum(v.numel() * v.element_size() for v in state.values() if torch.is_tensor(v))
    per_table = field_.spec.num_levels * field_.spec.table_size * field_.spec.features_per_level * tables.element_size()
    return {
        "tables_mib": tables.numel() * tables.element_size() * mib,
        "table_grad_mib": (tables.numel() * tables.element_size() * mib) if tables.requires_grad else 0.0,
        "trainable_mib": trainable * mib,
        "adam_state_mib": adam * mib,
        "mixed_per_step_mib": setup.num_scenes * per_table * mib,
        "selected_tables_mib": setup.num_scenes * min(top_k, field_.experts.num_experts) * per_table * mib,
        # each scene's index_select/einsum backward materialises a gradient for all K tables
        "mix_backward_per_scene_mib": (tables.numel() * tables.element_size() * mib) if tables.requires_grad else 0.0,
    }


def build_setups(args, grid: Dict[str, int], workdir: Path) -> Tuple[List[Setup], List[Config]]:
    setups: List[Setup] = []
    configs: List[Config] = []
    sizes = [(r, s) for r, s in args.sizes]

    def add(case: str, model: NIDModel, num_scenes: int) -> Setup:
        seed = args.seed
        batches = {}
        for rays, samples in sizes:
            batch = make_batch(model, rays, samples, num_scenes, seed)
            batches[batch.num_samples] = batch
        field_ = model.field
        rows = field_.spec.num_levels * field_.spec.table_size
        upstream = torch.randn(num_scenes, rows, field_.spec.features_per_level,
                               generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            leaves = [t.detach().clone().requires_grad_(True) for t in field_.mixed_tables(list(range(num_scenes)))]
        setup = Setup(case, field_.experts.num_experts, model, make_optimizers(model), batches, upstream, leaves,
                      num_scenes)
        setups.append(setup)
        return setup

    if "scratch" in args.cases:
        add("scratch", build_model(1, grid), 1)
        configs.append(Config("scratch", 1, 1))
    for num_experts in args.experts:
        ks = [k for k in args.top_k if k <= num_experts]
        if not ks:
            continue
        source = dict_model(num_experts, ks[0], args.scenes, grid, args.seed)
        if "solve" in args.cases:
            add("solve", solve_model(source, grid, workdir), 1)
            configs += [Config("solve", num_experts, k) for k in ks]
        if "dict" in args.cases:
            setup = add("dict", source, args.scenes)
            if args.what_if and num_experts > 1:
                setup.per_expert = PerExpertTables(source)
            configs += [Config("dict", num_experts, k) for k in ks]
        del source
    return setups, configs


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(args, grid: Dict[str, int]) -> Dict:
    torch.manual_seed(args.seed)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="field_cost_") as tmp:
        setups, configs = build_setups(args, grid, Path(tmp))
    by_key = {(s.case, s.num_experts): s for s in setups}
    allocators = list(ALLOCATORS) if args.allocator == "both" else [args.allocator]
    configs = [Config(c.case, c.num_experts, c.top_k, a) for a in allocators for c in configs]
    explicit = allocators != ["glibc"]
    sample_counts = sorted(next(iter(setups)).batches)
    times: Dict[str, Dict[str, List[float]]] = {c.key: {} for c in configs}
    memory: Dict[str, Dict[str, float]] = {}
    loads: List[Tuple[float, float, float]] = []

    def run_config(config: Config, record: bool) -> None:
        setup = by_key[(config.case, config.num_experts)]
        set_allocator(config.allocator, explicit)
        set_top_k(setup.model, config.top_k)
        scenes = list(range(setup.num_scenes))
        out = times[config.key]
        for n in sample_counts:
            batch = setup.batches[n]
            t_step = timed(lambda batch=batch: field_step(setup.model, batch))
            t_adam = timed(lambda: optimiser_step(setup.opt))
            clear_grads(setup.model, setup.mixed_leaves)
            t_lookup = timed(lambda batch=batch: lookup_only(setup.model, batch, setup.mixed_leaves))
            clear_grads(setup.model, setup.mixed_leaves)
            if record:
                for name, value in (("step", t_step), ("adam", t_adam), ("lookup", t_lookup)):
                    out.setdefault(f"{name}@{n}", []).append(value)
        t_mix = timed(lambda: mixing_only(setup.model, scenes, setup.upstream))
        clear_grads(setup.model)
        if setup.per_expert is not None:
            t_mix_pe = timed(lambda: setup.per_expert.mix(setup.model, scenes, setup.upstream))
            clear_grads(setup.model)  # the codes' gradient of the what-if mixing
            t_adam_pe = timed(setup.per_expert.step)
            if record:
                out.setdefault("mix_per_expert", []).append(t_mix_pe)
                out.setdefault("adam_tables_per_expert", []).append(t_adam_pe)
        if record:
            out.setdefault("mix", []).append(t_mix)
            memory.setdefault(config.key, memory_of(setup, config.top_k))

    total = (args.reps + 1) * len(configs)
    with tqdm(total=total, desc="field cost", unit="config") as bar:
        for rep in range(args.reps + 1):  # rep 0 is the warm-up round
            shift = rep % len(configs)
            for config in configs[shift:] + configs[:shift]:
                bar.set_postfix_str(config.key)
                run_config(config, record=rep > 0)
                bar.update(1)
            loads.append(os.getloadavg())
    results = []
    for config in configs:
        setup = by_key[(config.case, config.num_experts)]
        raw = times[config.key]
        row = {**asdict(config), "num_scenes": setup.num_scenes, "mix_s": statistics.median(raw["mix"]),
               "memory": memory[config.key], "per_n": {}}
        for n in sample_counts:
            med = {part: statistics.median(raw[f"{part}@{n}"]) for part in ("step", "adam", "lookup")}
            med["mix"] = row["mix_s"]
            med["rest"] = med["step"] - med["mix"] - med["lookup"]
            row["per_n"][str(n)] = {
                "seconds": med,
                "us_per_sample": {part: 1e6 * value / n for part, value in med.items()},
                "us_per_sample_with_adam": 1e6 * (med["step"] + med["adam"]) / n,
            }
        if "mix_per_expert" in raw:
            row["what_if_per_expert"] = {"mix_s": statistics.median(raw["mix_per_expert"]),
                                         "adam_tables_s": statistics.median(raw["adam_tables_per_expert"])}
        row["raw"] = raw
        results.append(row)
    return {
        "sample_counts": sample_counts,
        "sizes": [list(s) for s in args.sizes],
        "results": results,
        "load_before": list(load_before),
        "load_per_round": [list(x) for x in loads],
    }


# ----------------------------------------------------------------------------------------------
# ratios and report
# ----------------------------------------------------------------------------------------------
def find(results: List[Dict], case: str, num_experts: int, top_k: int, allocator: str = "glibc") -> Optional[Dict]:
    for row in results:
        if (row["case"], row["num_experts"], row["top_k"], row.get("allocator", "glibc")) == (
                case, num_experts, top_k, allocator):
            return row
    return None


def allocators_of(data: Dict) -> List[str]:
    present = {row.get("allocator", "glibc") for row in data["results"]}
    return [a for a in ALLOCATORS if a in present]


def ratios(data: Dict, with_adam: bool = False) -> List[Dict]:
    """Per-sample step cost at k=16 over k=1 (each K) and at K=256 over K=16 (each k), per case and N."""
    out = []

    def cost(row: Dict, n: int) -> float:
        entry = row["per_n"][str(n)]
        return entry["us_per_sample_with_adam"] if with_adam else entry["us_per_sample"]["step"]

    cases = sorted({row["case"] for row in data["results"] if row["case"] != "scratch"})
    ks = sorted({row["top_k"] for row in data["results"]})
    big_k = sorted({row["num_experts"] for row in data["results"]})
    res = data["results"]
    for alloc in allocators_of(data):
        for case in cases:
            for n in data["sample_counts"]:
                for num_experts in big_k:
                    hi, lo = find(res, case, num_experts, 16, alloc), find(res, case, num_experts, 1, alloc)
                    if hi and lo:
                        out.append({"case": case, "allocator": alloc, "n": n, "what": f"k=16 / k=1 at K={num_experts}",
                                    "ratio": cost(hi, n) / cost(lo, n)})
                for top_k in ks:
                    hi, lo = find(res, case, 256, top_k, alloc), find(res, case, 16, top_k, alloc)
                    if hi and lo:
                        out.append({"case": case, "allocator": alloc, "n": n, "what": f"K=256 / K=16 at k={top_k}",
                                    "ratio": cost(hi, n) / cost(lo, n)})
    return out


def amortising_samples(
    data: Dict, case: str, num_experts: int, top_k: int, base_k: int = 1, allocator: str = "glibc"
) -> Optional[float]:
    """Samples per step at which the extra mixing of k over base_k costs (TARGET_RATIO - 1) of base_k's step.

    base per-sample cost c = (step - mix) / N at the largest N (no mixing); the extra is the difference
    of the two mixing times, a per-step constant: N* = extra / ((TARGET_RATIO - 1) c) - mix_base / c.
    """
    hi = find(data["results"], case, num_experts, top_k, allocator)
    lo = find(data["results"], case, num_experts, base_k, allocator)
    if not hi or not lo:
        return None
    n = max(data["sample_counts"])
    sec = lo["per_n"][str(n)]["seconds"]
    per_sample = (sec["step"] - sec["mix"]) / n
    extra = hi["mix_s"] - lo["mix_s"]
    # (c N + m_hi) <= r (c N + m_lo)  <=>  N >= (m_hi - r m_lo) / ((r - 1) c)
    need = (hi["mix_s"] - TARGET_RATIO * lo["mix_s"]) / ((TARGET_RATIO - 1.0) * per_sample)
    return max(0.0, need) if extra > 0 else 0.0


def label(row: Dict) -> str:
    tail = "" if row.get("allocator", "glibc") == "glibc" else f" [{row['allocator']}]"
    if row["case"] == "scratch":
        return f"scratch (K=1, fixed code){tail}"
    return f"{row['case']} K={row['num_experts']} k={row['top_k']}{tail}"


def markdown(data: Dict, meta: Dict) -> str:
    results = data["results"]
    counts = data["sample_counts"]
    n_big = max(counts)
    lines = [
        "# NID field: cost per sample against K experts and top-k",
        "",
        "```",
        meta["command"],
        "```",
        "",
        f"Measured {meta['date']} on {meta['machine']}. Load average (1/5/15 min) before the run "
        f"{_load(data['load_before'])}, after {_load(data['load_per_round'][-1])}; per round (1 min): "
        f"{', '.join(f'{x[0]:.2f}' for x in data['load_per_round'])}. "
        f"{meta['rounds']} timed rounds after one warm-up round, configurations interleaved round-robin; "
        "medians. Wall-clock for the whole run: "
        f"{meta['wall_s']:.0f} s.",
        "",
        f"Field: `NIDModelConfig(...).setup()` (the model's own `populate_modules`), hash grid {meta['grid']}, "
        "geometry MLP 64, colour MLP 64x2, SH degree 4. Samples per step N = rays x samples-per-ray: "
        + ", ".join(f"{r} x {s} = {r * s:,}" for r, s in data["sizes"])
        + f". Every step also takes analytic SDF gradients (eikonal) at "
        f"{meta['eikonal_fraction']:.0%} of the samples + {meta['eikonal_points']} random points, as the model does. "
        f"`dict`: nid-dict, {meta['scenes']} scenes per step, tables + decoder + codes trained. `solve`: nid-field "
        "solve stage against an exported dictionary (tables and decoder frozen, one code learned). "
        "Per-sample cost = time / N.",
        "",
        "Columns: `step` = field forward (incl. mixing and eikonal gradients) + backward, what the cost targets are "
        "about; `mix` = `field.mixed_tables` for the step's scenes, fwd + bwd, alone (a per-step constant, shown "
        "divided by N); `lookup` = the step's hash-grid lookups alone, fwd + bwd; `rest` = step - mix - lookup "
        "(decoder, encodings, glue); `+adam` = step + the Adam update of the trained parameters.",
        "",
    ]
    if len(allocators_of(data)) > 1:
        lines += ["Allocator: `glibc` = glibc malloc with the thresholds its dynamic rule settles on (blocks over "
                  "32 MiB are mmap'd fresh and unmapped on free, so they are page-faulted in again every step); "
                  "`keep` = `mallopt` raises the mmap and trim thresholds (1 GiB, 2 GiB) so freed blocks are reused. "
                  "Both are measured in the same round-robin, switched before each configuration.", ""]
    if meta.get("notes"):
        lines += ["## Reading", "", meta["notes"].strip(), ""]
    # --- targets
    lines += ["## Targets (issue #4)", "",
              f"Target: each ratio <= {TARGET_RATIO}. Ratio of per-sample `step` cost (and with the Adam update).", "",
              "| case | allocator | N | ratio | step | step + adam | target (step) |",
              "|---|---|---:|---|---:|---:|---|"]
    plain, adam = ratios(data), ratios(data, with_adam=True)
    for r, ra in zip(plain, adam):
        ok = "met" if r["ratio"] <= TARGET_RATIO else "**missed**"
        lines.append(f"| {r['case']} | {r.get('allocator', 'glibc')} | {r['n']:,} | {r['what']} | {r['ratio']:.2f}x "
                     f"| {ra['ratio']:.2f}x | {ok} |")
    lines.append("")
    # --- amortisation
    amort = []
    for alloc in allocators_of(data):
        for case in ("dict", "solve"):
            for num_experts in sorted({row["num_experts"] for row in results}):
                for top_k in (4, 16, 64):
                    need = amortising_samples(data, case, num_experts, top_k, allocator=alloc)
                    if need is not None and find(results, case, num_experts, top_k, alloc):
                        amort.append((alloc, case, num_experts, top_k, need))
    if amort:
        lines += ["Samples per step at which k's extra mixing (over k=1) fits the 1.3x target, from the measured "
                  f"mixing times and the k=1 per-sample cost without mixing at N = {n_big:,}:", "",
                  "| case | allocator | K | k | mix k=1 (ms) | mix k (ms) | N needed for <= 1.3x |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for alloc, case, num_experts, top_k, need in amort:
            lo, hi = find(results, case, num_experts, 1, alloc), find(results, case, num_experts, top_k, alloc)
            lines.append(f"| {case} | {alloc} | {num_experts} | {top_k} | {1e3 * lo['mix_s']:.1f} | "
                         f"{1e3 * hi['mix_s']:.1f} | {need:,.0f} |")
        lines.append("")
    # --- full grid per N
    for n in counts:
        lines += [f"## Grid at N = {n:,} samples per step (us per sample, medians)", "",
                  "| configuration | step | mix | lookup | rest | +adam | step (ms) | mix (ms) | adam (ms) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for row in results:
            e = row["per_n"][str(n)]
            us, sec = e["us_per_sample"], e["seconds"]
            lines.append(
                f"| {label(row)} | {us['step']:.2f} | {us['mix']:.2f} | {us['lookup']:.2f} | {us['rest']:.2f} | "
                f"{e['us_per_sample_with_adam']:.2f} | {1e3 * sec['step']:.0f} | {1e3 * sec['mix']:.1f} | "
                f"{1e3 * sec['adam']:.1f} |")
        lines.append("")
    # --- what-if
    what_if = [row for row in results if "what_if_per_expert" in row]
    if what_if:
        lines += ["## What-if: experts as separate parameters (dict case, not the model's code)", "",
                  "The model's mixing and Adam against the same tables held as K parameters (mixing stacks the k "
                  "chosen ones; Adam updates only experts that got a gradient). Per step, ms; `adam` here is the "
                  "whole optimiser step (tables, decoder, codes) for the model and the tables alone for the what-if.",
                  "", "| configuration | mix (model) | mix (per-expert) | adam (model) | adam tables (per-expert) |"
                  " mix + adam (model) | mix + adam (per-expert) |", "|---|---:|---:|---:|---:|---:|---:|"]
        for row in what_if:
            w = row["what_if_per_expert"]
            adam_model = row["per_n"][str(n_big)]["seconds"]["adam"]
            lines.append(f"| {label(row)} | {1e3 * row['mix_s']:.1f} | {1e3 * w['mix_s']:.1f} | {1e3 * adam_model:.1f} "
                         f"| {1e3 * w['adam_tables_s']:.1f} | {1e3 * (row['mix_s'] + adam_model):.0f} "
                         f"| {1e3 * (w['mix_s'] + w['adam_tables_s']):.0f} |")
        lines.append("")
    # --- memory
    lines += ["## Memory (MiB)", "",
              "Tables = all K experts (float32); table grad = their dense gradient in a trained step; Adam = "
              "measured optimiser state (exp_avg + exp_avg_sq of every parameter that got a gradient); mixed = the "
              "step's mixed tables (one per scene); selected = the copies of the k chosen tables per scene that the "
              "mixing keeps for its backward; mix bwd = the dense all-K table gradient each scene's mixing backward "
              "allocates (transient, summed into the table grad).", "",
              "| configuration | tables | table grad | Adam state | mixed / step | selected / step | mix bwd / scene |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for row in results:
        if row.get("allocator", "glibc") != allocators_of(data)[0]:
            continue  # the same tensors under either allocator
        m = row["memory"]
        lines.append(f"| {label(row)} | {m['tables_mib']:.1f} | {m['table_grad_mib']:.1f} | {m['adam_state_mib']:.1f} "
                     f"| {m['mixed_per_step_mib']:.1f} | {m['selected_tables_mib']:.1f} "
                     f"| {m['mix_backward_per_scene_mib']:.1f} |")
    lines += ["", f"Peak resident memory of the whole benchmark process: {meta['peak_rss_mib']:,.0f} MiB.", ""]
    lines += ["![per-sample cost against k, and where the time goes](field_cost.png)", ""]
    return "\n".join(lines)


def _load(x: Sequence[float]) -> str:
    return "/".join(f"{v:.2f}" for v in x)


def plot(data: Dict, path: Path) -> None:
    plt = pyplot()
    results = data["results"]
    cases = [c for c in ("dict", "solve") if any(r["case"] == c for r in results)]
    counts = data["sample_counts"]
    n_big = max(counts)
    fig, axes = plt.subplots(len(cases), 2, figsize=(11, 3.6 * len(cases)), squeeze=False)
    allocs = allocators_of(data)
    scratch = find(results, "scratch", 1, 1)
    # curves: (N, allocator) pairs; with two allocators only the largest N, allocator by line style
    curves = ([(n, allocs[0]) for n in sorted(counts, reverse=True)] if len(allocs) == 1
              else [(n_big, a) for a in allocs])
    for i, case in enumerate(cases):
        ax = axes[i][0]
        rows = [r for r in results if r["case"] == case and r.get("allocator", "glibc") == allocs[0]]
        for j, num_experts in enumerate(sorted({r["num_experts"] for r in rows})):
            color = f"C{j}"
            for (n, alloc), style in zip(curves, ("-", "--", ":")):
                sub = sorted((r for r in results if r["case"] == case and r["num_experts"] == num_experts
                              and r.get("allocator", "glibc") == alloc), key=lambda r: r["top_k"])
                tag = f"N={n:,}" if len(allocs) == 1 else alloc
                ax.plot([r["top_k"] for r in sub], [r["per_n"][str(n)]["us_per_sample"]["step"] for r in sub],
                        style, marker="o", color=color, label=f"K={num_experts}, {tag}")
        if scratch:
            ax.axhline(scratch["per_n"][str(n_big)]["us_per_sample"]["step"], color="k", lw=0.8, ls=":",
                       label=f"scratch K=1, N={n_big:,}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("top-k")
        ax.set_ylabel("us per sample (field step)")
        ax.set_title(f"{case}: per-sample cost of a training step")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=6, ncol=2)
        ax = axes[i][1]
        names = [f"K{r['num_experts']}\nk{r['top_k']}" for r in rows]
        bottom = [0.0] * len(rows)
        for part, color in (("lookup", "#4c72b0"), ("rest", "#55a868"), ("mix", "#c44e52"), ("adam", "#bbbbbb")):
            vals = [max(0.0, r["per_n"][str(n_big)]["us_per_sample"][part]) for r in rows]
            ax.bar(range(len(rows)), vals, bottom=bottom, color=color, label=part if part != "adam" else "Adam update")
            bottom = [b + v for b, v in zip(bottom, vals)]
        if len(allocs) > 1:
            other = [find(results, r["case"], r["num_experts"], r["top_k"], allocs[1]) for r in rows]
            ax.plot(range(len(rows)), [o["per_n"][str(n_big)]["us_per_sample_with_adam"] for o in other], "kx",
                    label=f"step + Adam, {allocs[1]}")
        ax.set_xticks(range(len(rows)))
        ax.set_xticklabels(names, fontsize=7)
        ax.set_ylabel("us per sample")
        ax.set_title(f"{case}: where the time goes, N={n_big:,}" + (f" ({allocs[0]})" if len(allocs) > 1 else ""))
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(path, fig, dpi=90)


# ----------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------
def parse_size(text: str) -> Tuple[int, int]:
    try:
        rays, samples = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise NIDInputError(f"--sizes entry '{text}' is not RAYSxSAMPLES; write it like 1024x96") from None
    if rays < 1 or samples < 1:
        raise NIDInputError(f"--sizes entry '{text}' has a zero count; use positive numbers like 1024x96")
    return rays, samples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experts", type=int, nargs="+", default=[1, 16, 64, 256], help="K values")
    parser.add_argument("--top-k", type=int, nargs="+", default=[1, 4, 16, 64], help="k values (k <= K kept)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(1024, 96), (1024, 32)],
                        help="RAYSxSAMPLES per step (default 1024x96 and the model's own 1024x32)")
    parser.add_argument("--scenes", type=int, default=8, help="scenes per nid-dict step (each with its code)")
    parser.add_argument("--cases", nargs="+", default=["dict", "solve", "scratch"],
                        choices=["dict", "solve", "scratch"])
    parser.add_argument("--reps", type=int, default=5, help="timed round-robin rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log2-table-size", type=int, default=None, help="override the model default (2^15)")
    parser.add_argument("--num-levels", type=int, default=None, help="override the model default (8)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: K 1 16, k 1 4 16, 256x32 and 64x32 samples, 4 scenes, 2 rounds")
    parser.add_argument("--allocator", choices=["glibc", "keep", "both"], default="glibc",
                        help="glibc malloc as is, with freed memory kept for reuse (mallopt), or both interleaved")
    parser.add_argument("--what-if", action=argparse.BooleanOptionalAction, default=True,
                        help="also time mixing + Adam with the experts as separate parameters (dict case)")
    parser.add_argument("--render-only", type=Path, default=None,
                        help="re-write the markdown and figure from this JSON of an earlier run (e.g. with --notes)")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "field_cost.md")
    parser.add_argument("--notes", type=Path, default=None, help="markdown file appended as the 'Reading' section")
    return parser


def grid_overrides(args) -> Dict[str, int]:
    grid = {}
    if args.log2_table_size is not None:
        grid["log2_table_size"] = args.log2_table_size
    if args.num_levels is not None:
        grid["num_levels"] = args.num_levels
    return grid


def run(args, command: str) -> Dict:
    """Measure, then write the markdown, the JSON (same stem) and the figure (same stem, .png)."""
    if args.quick:
        args.experts, args.top_k = [1, 16], [1, 4, 16]
        args.sizes, args.scenes, args.reps = [(256, 32), (64, 32)], 4, 2
    bad = [k for k in args.top_k if k < 1] + [e for e in args.experts if e < 1]
    if bad or args.scenes < 1 or args.reps < 1:
        raise NIDInputError("--experts, --top-k, --scenes and --reps must be positive; e.g. --experts 1 16 --top-k 1 4")
    torch.set_num_threads(args.threads)
    grid = grid_overrides(args)
    defaults = NIDModelConfig()
    spec = {name: grid.get(name, getattr(defaults, name)) for name in
            ("num_levels", "log2_table_size", "features_per_level", "base_resolution", "max_resolution")}
    start = time.perf_counter()
    data = measure(args, grid)
    meta = {
        "command": command,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_summary(),
        "rounds": args.reps,
        "wall_s": time.perf_counter() - start,
        "grid": ", ".join(f"{k}={v}" for k, v in spec.items()),
        "scenes": args.scenes,
        "eikonal_fraction": defaults.eikonal_sample_fraction,
        "eikonal_points": defaults.eikonal_points,
        "notes": args.notes.read_text() if args.notes else "",
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
    }
    data["meta"] = meta
    data["ratios"] = ratios(data)
    data["ratios_with_adam"] = ratios(data, with_adam=True)
    out = args.output
    write_text(out.with_suffix(".json"), json.dumps(data, indent=1))
    plot(data, out.with_suffix(".png"))
    write_text(out, markdown(data, meta))
    return data


def render_only(args) -> Dict:
    """Report of an earlier run's JSON (its own command and date stay); only the notes are replaced."""
    if not args.render_only.is_file():
        raise NIDInputError(f"--render-only file {args.render_only} does not exist; pass the .json of a finished run")
    data = json.loads(args.render_only.read_text())
    meta = data["meta"]
    if args.notes is not None:
        meta["notes"] = args.notes.read_text()
    out = args.output
    write_text(out.with_suffix(".json"), json.dumps(data, indent=1))  # the notes travel with the numbers
    plot(data, out.with_suffix(".png"))
    write_text(out, markdown(data, meta))
    return data


def main(argv: Optional[List[str]] = None) -> None:
    install_excepthook()
    args = build_parser().parse_args(argv)
    if args.notes is not None and not args.notes.is_file():
        raise NIDInputError(f"--notes file {args.notes} does not exist; pass an existing markdown file or drop --notes")
    command = command_line("benchmark_field_cost.py", argv)
    if args.render_only is not None:
        data = render_only(args)
    else:
        data = run(args, command)
    for r in data["ratios"]:
        print(f"{r['case']:6s} N={r['n']:>7,}  {r['what']:24s} {r['ratio']:.2f}x")
    print(f"wrote {args.output}, {args.output.with_suffix('.json')}, {args.output.with_suffix('.png')}")

