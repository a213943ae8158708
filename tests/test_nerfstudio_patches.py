"""nid-nerf's assumptions about nerfstudio internals (``nid_nerf.engine.nerfstudio_patches``), each checked against
the installed nerfstudio.

Every test here reads nerfstudio's own source (its AST) or calls its code for the exact assumption one patch or
private-name hook makes, so a nerfstudio upgrade that breaks the assumption fails here, by name, instead of as a
wrong run. When one fails: re-check that patch against the new nerfstudio, fix it (or drop it when nerfstudio
fixed the bug it works around), then update ``NERFSTUDIO_VERSION``.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import json
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, List

import pytest
import torch
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager
from nerfstudio.data.pixel_samplers import PixelSampler, PixelSamplerConfig
from nerfstudio.engine.trainer import Trainer
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipeline
from nerfstudio.scripts import train as ns_train
from torch.utils.data import Dataset, TensorDataset

from nid_nerf.engine import nerfstudio_patches as patches
from nid_nerf.engine.distributed import gloo_worker

torch.set_num_threads(1)


def tree(obj) -> ast.AST:
    """The AST of a nerfstudio function, from its source."""
    return ast.parse(textwrap.dedent(inspect.getsource(obj)))


def method(cls: type, name: str) -> ast.FunctionDef:
    """The AST of method ``name`` as written in ``cls``'s class body, decorators included.

    Read from the module's source rather than from the method object: nerfstudio's ``check_main_thread``
    returns a wrapper without ``functools.wraps``, whose source would be the decorator's.
    """
    module = ast.parse(inspect.getsource(inspect.getmodule(cls)))
    (body,) = [n for n in ast.walk(module) if isinstance(n, ast.ClassDef) and n.name == cls.__name__]
    (found,) = [n for n in body.body if isinstance(n, ast.FunctionDef) and n.name == name]
    return found


def function(module, name: str) -> ast.FunctionDef:
    """The AST of module-level function ``name`` as written in ``module`` (decorators included, see :func:`method`)."""
    body = ast.parse(inspect.getsource(module)).body
    (found,) = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == name]
    return found


def calls(node: ast.AST) -> List[ast.Call]:
    return [n for n in ast.walk(node) if isinstance(n, ast.Call)]


def dotted(node: ast.AST) -> str:
    """``self.config.pixel_sampler.setup`` for the AST of that expression ('' for anything else)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def called_names(node: ast.AST) -> List[str]:
    return [dotted(c.func) for c in calls(node)]


def test_the_installed_nerfstudio_is_the_one_the_patches_target():
    assert importlib.metadata.version("nerfstudio") == patches.NERFSTUDIO_VERSION


# ------------------------------------------------------------------------------------------- launch


def test_train_main_has_no_hook_between_save_config_and_launch():
    """prepare_launch runs from save_config because nerfstudio's main calls nothing else of the config before launch."""
    body = tree(ns_train.main).body[0].body
    last_if = max(i for i, statement in enumerate(body) if isinstance(statement, ast.If))
    after = [dotted(s.value.func) if isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) else type(s).__name__
             for s in body[last_if + 1:]]
    assert after == ["config.set_timestamp", "config.print_to_terminal", "config.save_config", "launch"]


def test_launch_spawns_the_module_level_worker_that_install_gloo_worker_replaces():
    spawns = [c for c in calls(tree(ns_train.launch)) if dotted(c.func) == "mp.spawn"]
    assert len(spawns) == 1 and isinstance(spawns[0].args[0], ast.Name)
    assert spawns[0].args[0].id == "_distributed_worker", "looked up in the module at call time: the patch takes effect"
    # the replacement takes the same arguments (launch passes them positionally)
    theirs, ours = (list(inspect.signature(f).parameters) for f in (ns_train._distributed_worker, gloo_worker))
    assert theirs == ours
    # main_func's contract: gloo_worker calls it as train_loop(local_rank, world_size, config, global_rank)
    params = list(inspect.signature(ns_train.train_loop).parameters)
    assert params[:4] == ["local_rank", "world_size", "config", "global_rank"]


def test_nerfstudio_worker_still_requires_cuda():
    """The reason for the gloo worker: when this fails, nerfstudio's own worker may start CPU processes."""
    source = inspect.getsource(ns_train._distributed_worker)
    assert "assert torch.cuda.is_available()" in source
    assert "torch.cuda.device_count()" in source


def test_prepare_launch_installs_the_gloo_worker_for_cpu_processes_only(monkeypatch):
    from nerfstudio.configs.base_config import MachineConfig
    from nerfstudio.engine.trainer import TrainerConfig

    from nid_nerf import errors

    monkeypatch.setattr(ns_train, "_distributed_worker", ns_train._distributed_worker)  # restored after the test
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    patches.prepare_launch(TrainerConfig(machine=MachineConfig(num_devices=1, device_type="cpu")))
    assert sys.excepthook is errors._excepthook, "NIDInputError prints as one line"
    assert ns_train._distributed_worker is not gloo_worker, "one process: nerfstudio's worker"
    patches.prepare_launch(TrainerConfig(machine=MachineConfig(num_devices=2, device_type="cuda")))
    assert ns_train._distributed_worker is not gloo_worker, "GPU processes: nerfstudio's worker"
    patches.prepare_launch(TrainerConfig(machine=MachineConfig(num_devices=2, device_type="cpu")))
    assert ns_train._distributed_worker is gloo_worker


def test_nid_trainer_config_save_config_prepares_the_launch(monkeypatch, tmp_path):
    from nid_nerf.engine import trainer

    seen = []
    monkeypatch.setattr(trainer, "prepare_launch", lambda config: seen.append(config))
    config = trainer.NIDTrainerConfig(output_dir=tmp_path, method_name="m", experiment_name="e", timestamp="t")
    config.save_config()
    assert seen == [config] and (tmp_path / "e" / "m" / "t" / "config.yml").is_file()


# ------------------------------------------------------------------------------------------- checkpoints


def dict_keys(node: ast.AST) -> List[List[str]]:
    return [[k.value for k in d.keys if isinstance(k, ast.Constant)] for d in ast.walk(node) if isinstance(d, ast.Dict)]


def subscript_keys(node: ast.AST, name: str) -> set:
    return {
        n.slice.value for n in ast.walk(node)
        if isinstance(n, ast.Subscript) and dotted(n.value) == name and isinstance(n.slice, ast.Constant)
    }


def test_nerfstudio_saves_and_loads_checkpoints_with_these_keys():
    saved = [keys for keys in dict_keys(method(Trainer, "save_checkpoint")) if "step" in keys]
    assert saved == [list(patches.CHECKPOINT_KEYS)]
    loaded = subscript_keys(method(Trainer, "_load_checkpoint"), "loaded_state")
    assert loaded == set(patches.CHECKPOINT_KEYS)
    from nerfstudio.utils import eval_utils

    assert subscript_keys(tree(eval_utils.eval_load_checkpoint), "loaded_state") == {"step", "pipeline"}


def test_checkpoint_state_loads_back_into_nerfstudio_optimizers(tmp_path):
    from nerfstudio.engine.optimizers import AdamOptimizerConfig, Optimizers
    from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig

    def make():
        param = torch.nn.Parameter(torch.ones(3))
        config = {"g": {"optimizer": AdamOptimizerConfig(lr=1e-2), "scheduler": ExponentialDecaySchedulerConfig()}}
        return param, Optimizers(config, {"g": [param]})

    param, optimizers = make()
    param.sum().backward()
    optimizers.optimizer_step_all()
    optimizers.scheduler_step_all(0)
    scaler = torch.cuda.amp.GradScaler(enabled=False)
    state = patches.checkpoint_state(7, {"_model.w": param.detach()}, optimizers, scaler)
    assert tuple(state) == patches.CHECKPOINT_KEYS
    torch.save(state, tmp_path / "c.ckpt")
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=False)
    _, fresh = make()
    fresh.load_optimizers(loaded["optimizers"])  # what Trainer._load_checkpoint does
    fresh.load_schedulers(loaded["schedulers"])
    scaler.load_state_dict(loaded["scalers"])
    assert fresh.optimizers["g"].state_dict()["state"][0]["step"] == 1


def test_pipelines_keep_the_model_in_model_and_load_both_key_layouts():
    """NIDPipeline keeps its (DDP-wrapped) model in VanillaPipeline's ``_model``; unwrapped_state_dict drops DDP's
    prefix, and nerfstudio's loader must accept both key layouts (``_model.`` and ``_model.module.``)."""
    assert "_model" in Pipeline.__annotations__
    assert "module_wrapper(self._model)" in inspect.getsource(Pipeline.model.fget)
    assert "self._model = config.model.setup(" in inspect.getsource(VanillaPipeline.__init__)
    load = inspect.getsource(Pipeline.load_state_dict)
    assert f'"{patches.PIPELINE_MODEL_PREFIX}"' in load
    assert f'"{patches.PIPELINE_MODEL_PREFIX}{patches.DDP_PREFIX}"' in load

    class Wrapped(torch.nn.Module):  # the key layout of DDP(model) inside a pipeline
        def __init__(self):
            super().__init__()
            self.module = torch.nn.Linear(2, 1)

    pipeline = torch.nn.Module()
    pipeline._model = Wrapped()
    pipeline.other = torch.nn.Linear(1, 1)
    keys = set(patches.unwrapped_state_dict(pipeline))
    assert keys == {"_model.weight", "_model.bias", "other.weight", "other.bias"}


def test_nid_trainer_checkpoint_is_written_by_rank_0_only(monkeypatch):
    from nerfstudio.utils import comms

    from nid_nerf.engine.trainer import NIDTrainer

    assert "check_main_thread" in [dotted(d) for d in method(Trainer, "save_checkpoint").decorator_list]
    monkeypatch.setattr(comms, "is_main_process", lambda: False)
    NIDTrainer.save_checkpoint(SimpleNamespace(), 3)  # returns before touching the (empty) trainer


# ------------------------------------------------------------------------------------------- datamanager


def test_pixel_sampler_kwargs_are_what_nerfstudio_passes():
    """Call nerfstudio's _get_pixel_sampler with a config that records its setup() kwargs, and compare."""
    from nerfstudio.cameras.cameras import Cameras, CameraType

    recorded: Dict = {}

    class Recorder:
        def setup(self, **kwargs):
            recorded.update(kwargs)

    class CamerasOnly(Dataset):  # what the datamanager passes: an InputDataset or an ImageShard
        def __init__(self, cameras):
            self.cameras = cameras

    cases = ((CameraType.PERSPECTIVE, None), (CameraType.EQUIRECTANGULAR, {"fisheye_crop_radius": 0.4}))
    for camera_type, metadata in cases:
        cameras = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=10.0, fy=10.0, cx=4.0, cy=4.0, width=8, height=8,
                          camera_type=camera_type, metadata=metadata)
        dataset = CamerasOnly(cameras)
        manager = SimpleNamespace(config=SimpleNamespace(patch_size=1, pixel_sampler=Recorder()))
        recorded.clear()
        VanillaDataManager._get_pixel_sampler(manager, dataset, 123)
        ours = patches.pixel_sampler_kwargs(dataset, 123)
        assert set(ours) == set(recorded)
        assert ours == {k: (bool(v) if k == "is_equirectangular" else v) for k, v in recorded.items()}


def test_setup_train_takes_its_dataset_from_train_dataset_only():
    """train_dataset_swapped relies on setup_train reading the dataset from self.train_dataset, and nothing else."""
    body = method(VanillaDataManager, "setup_train")
    users = {dotted(c.func): [dotted(a) for a in c.args] for c in calls(body)}
    assert users["CacheDataloader"][0] == "self.train_dataset"
    assert users["self._get_pixel_sampler"][0] == "self.train_dataset"
    assert users["RayGenerator"] == [""] and "self.train_dataset.cameras.to" in users
    assigned = {dotted(t) for n in ast.walk(body) if isinstance(n, ast.Assign) for t in n.targets}
    assert "self.train_dataset" not in assigned
    assert assigned == {"self.train_image_dataloader", "self.iter_train_image_dataloader", "self.train_pixel_sampler",
                        "self.train_ray_generator"}


def test_train_dataset_swapped_always_puts_the_dataset_back():
    manager = VanillaDataManager.__new__(VanillaDataManager)  # no data: only the attribute matters
    torch.nn.Module.__init__(manager)
    full, shard = TensorDataset(torch.zeros(3)), TensorDataset(torch.zeros(1))
    manager.train_dataset = full
    with pytest.raises(RuntimeError):
        with patches.train_dataset_swapped(manager, shard):
            assert manager.train_dataset is shard
            raise RuntimeError("setup failed")
    assert manager.train_dataset is full


def test_datamanagers_build_every_pixel_sampler_through_get_pixel_sampler():
    """NIDDataManager overrides the private _get_pixel_sampler: nerfstudio must keep calling it for both samplers."""
    assert "self._get_pixel_sampler" in called_names(method(VanillaDataManager, "setup_train"))
    assert "self._get_pixel_sampler" in called_names(method(VanillaDataManager, "setup_eval"))
    params = list(inspect.signature(VanillaDataManager._get_pixel_sampler).parameters)
    assert params == ["self", "dataset", "num_rays_per_batch"]


# ------------------------------------------------------------------------------------------- pixel sampler masks


def test_nerfstudio_rejection_sampling_still_fails_on_one_masked_image():
    """The bug MaskedPixelSampler works around: a [1, H, W, 1] mask squeezes to [H, W].

    Fails once nerfstudio fixes it: then MaskedPixelSampler may go."""
    mask = torch.ones(1, 6, 5, 1, dtype=torch.bool)
    sampler = PixelSampler(PixelSamplerConfig(num_rays_per_batch=8))
    with pytest.raises(IndexError):
        sampler.rejection_sample_mask(mask, 8, 1, 6, 5, "cpu")


def test_nerfstudio_mask_fallback_still_draws_without_replacement():
    """nerfstudio's fallback fails when a batch wants more rays than the mask leaves visible. Fails once fixed."""
    mask = torch.zeros(2, 6, 5, 1, dtype=torch.bool)
    mask[0, 1, 1] = mask[1, 2, 3] = mask[1, 4, 4] = True  # 3 visible pixels, 10 rays wanted
    sampler = PixelSampler(PixelSamplerConfig(num_rays_per_batch=10, max_num_iterations=2))
    with pytest.warns(UserWarning, match="Masked sampling failed"):
        with pytest.raises(ValueError, match="larger than population"):
            sampler.rejection_sample_mask(mask, 10, 2, 6, 5, "cpu")


def test_masked_sampler_handles_both_and_draws_like_nerfstudio_otherwise():
    from nid_nerf.sampling.masked_sampler import MaskedPixelSampler, MaskedPixelSamplerConfig
    from nid_nerf.sampling.residual_sampler import ResidualPixelSampler

    ours = MaskedPixelSampler(MaskedPixelSamplerConfig(num_rays_per_batch=10, max_num_iterations=2))
    one = torch.zeros(1, 6, 5, 1, dtype=torch.bool)
    one[0, 2:4, 1:3] = True
    idx = ours.rejection_sample_mask(one, 10, 1, 6, 5, "cpu")
    assert idx.shape == (10, 3) and bool(one[idx[:, 0], idx[:, 1], idx[:, 2], 0].all())
    sparse = torch.zeros(2, 6, 5, 1, dtype=torch.bool)
    sparse[0, 1, 1] = sparse[1, 2, 3] = True
    idx = ours.rejection_sample_mask(sparse, 10, 2, 6, 5, "cpu")  # with replacement
    assert bool(sparse[idx[:, 0], idx[:, 1], idx[:, 2], 0].all())
    # where nerfstudio's draw works, ours makes the same generator calls and returns the same pixels
    dense = torch.rand(3, 6, 5, 1) > 0.3
    theirs = PixelSampler(PixelSamplerConfig(num_rays_per_batch=64))
    torch.manual_seed(0)
    expected = theirs.rejection_sample_mask(dense, 64, 3, 6, 5, "cpu")
    torch.manual_seed(0)
    drawn = MaskedPixelSampler(MaskedPixelSamplerConfig()).rejection_sample_mask(dense, 64, 3, 6, 5, "cpu")
    assert torch.equal(drawn, expected)
    # both of nid-nerf's samplers use the fix, and nerfstudio's draws still go through rejection_sample_mask
    assert issubclass(ResidualPixelSampler, MaskedPixelSampler)
    assert "self.rejection_sample_mask" in called_names(method(PixelSampler, "sample_method"))


# ------------------------------------------------------------------------------------------- trainer hooks


def test_trainer_train_reaches_the_hooks_nid_nerf_overrides():
    names = called_names(method(Trainer, "train"))
    assert "self._after_train" in names, "NIDTrainer writes shards.json in _after_train"
    assert "self.pipeline.datamanager.train_dataparser_outputs.save_dataparser_transform" in names
    assert "self.pipeline.get_train_loss_dict" in called_names(method(Trainer, "train_iteration"))
    # NIDTrainer._load_checkpoint sets load_step, which nerfstudio's loader reads instead of parsing file names
    assert "self._load_checkpoint" in called_names(method(Trainer, "setup"))
    assert "self.config.load_step" in {dotted(n) for n in ast.walk(method(Trainer, "_load_checkpoint"))
                                       if isinstance(n, ast.Attribute)}
    # NIDPipeline.get_train_loss_dict returns what the trainer unpacks: (outputs, losses, metrics)
    returned = [n.value for n in ast.walk(method(VanillaPipeline, "get_train_loss_dict")) if isinstance(n, ast.Return)]
    assert [[dotted(e) for e in r.elts] for r in returned] == [["model_outputs", "loss_dict", "metrics_dict"]]


def test_nid_dataparser_outputs_write_the_transform_once_atomically(tmp_path, monkeypatch):
    from nerfstudio.cameras.cameras import Cameras
    from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs
    from nerfstudio.utils import comms

    from nid_nerf.dataparsers.outputs import NIDDataparserOutputs, as_nid_outputs

    cameras = Cameras(camera_to_worlds=torch.eye(4)[None, :3], fx=10.0, fy=10.0, cx=4.0, cy=4.0, width=8, height=8)
    plain = DataparserOutputs(image_filenames=[Path("a.png")], cameras=cameras, dataparser_scale=0.5)
    ours = as_nid_outputs(plain)
    assert isinstance(ours, NIDDataparserOutputs)
    plain.save_dataparser_transform(tmp_path / "theirs.json")
    ours.save_dataparser_transform(tmp_path / "ours" / "dataparser_transforms.json")
    assert (tmp_path / "ours" / "dataparser_transforms.json").read_text() == (tmp_path / "theirs.json").read_text()
    assert json.loads((tmp_path / "theirs.json").read_text())["scale"] == 0.5
    assert sorted(p.name for p in (tmp_path / "ours").iterdir()) == ["dataparser_transforms.json"], "no temporary left"
    monkeypatch.setattr(comms, "is_main_process", lambda: False)
    ours.save_dataparser_transform(tmp_path / "rank1.json")
    assert not (tmp_path / "rank1.json").exists(), "only rank 0 writes"


# ------------------------------------------------------------------------------------------- benchmarks' patches


def test_event_writers_are_module_lists_that_setup_appends_to():
    from nerfstudio.utils import writer

    assert isinstance(writer.EVENT_WRITERS, list) and isinstance(writer.EVENT_STORAGE, list)
    assert "EVENT_WRITERS.append" in called_names(function(writer, "setup_event_writer"))
    before = list(writer.EVENT_WRITERS)
    with patches.isolated_event_writers():
        writer.EVENT_WRITERS.append("w")
        writer.EVENT_STORAGE.append({"step": 0})
    assert writer.EVENT_WRITERS == before and writer.EVENT_STORAGE == []


def test_nerfstudio_models_import_lpips_lazily_from_the_patched_module():
    """lpips_patched_out swaps a module attribute; nerfstudio's models must look it up when they are built."""
    from nerfstudio.models import nerfacto

    imports = [n for n in ast.walk(method(nerfacto.NerfactoModel, "populate_modules")) if isinstance(n, ast.ImportFrom)]
    assert any(n.module == "torchmetrics.image.lpip" and n.names[0].name == "LearnedPerceptualImagePatchSimilarity"
               for n in imports)
    with patches.lpips_patched_out():
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

        assert LearnedPerceptualImagePatchSimilarity is patches.OfflineLPIPS
    from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity

    assert LearnedPerceptualImagePatchSimilarity is not patches.OfflineLPIPS


def test_public_dataparser_entry_point_still_wraps_the_generate_hook():
    """nid-scene reads nerfstudio-format scenes through nerfstudio's public get_dataparser_outputs."""
    from nerfstudio.data.dataparsers.base_dataparser import DataParser

    assert "self._generate_dataparser_outputs" in called_names(method(DataParser, "get_dataparser_outputs"))
    assert getattr(DataParser._generate_dataparser_outputs, "__isabstractmethod__", False)



def test_unsupported_exporters_build_the_pipeline_before_their_assert_and_are_refused():
    """refuse_unsupported_export runs inside eval_setup (NIDPipeline.__init__), called from these exporters' main
    before the assert it pre-empts; the subcommand names in its message are ns-export's."""
    from nerfstudio.scripts import exporter
    from nerfstudio.utils import eval_utils

    from nid_nerf.engine.pipeline import NIDPipeline
    from nid_nerf.errors import NIDInputError

    assert "config.pipeline.setup" in called_names(function(eval_utils, "eval_setup"))
    init = method(NIDPipeline, "__init__")
    assert called_names(init.body[0])[0] == "refuse_unsupported_export", "refused before any data is loaded"

    preempted = {"ExportMarchingCubesMesh": "hasattr", "ExportGaussianSplat": "isinstance"}
    subcommands = {}
    for node in ast.walk(ast.parse(inspect.getsource(exporter))):
        if isinstance(node, ast.Subscript) and dotted(node.value) == "Annotated":
            cls, sub = node.slice.elts  # type: ignore[attr-defined]
            subcommands[dotted(cls)] = sub.keywords[0].value.value
    for name, (subcommand, _) in patches.UNSUPPORTED_EXPORTS.items():
        assert subcommands[name] == subcommand
        main = method(getattr(exporter, name), "main")
        setup = next(n.lineno for n in calls(main) if dotted(n.func) == "eval_setup")
        asserts = [n for n in ast.walk(main) if isinstance(n, ast.Assert)]
        (check,) = [n for n in asserts if called_names(n.test) == [preempted[name]]]
        assert setup < check.lineno

    def main(self):  # noqa: ARG001 - `self` in the frame is what the patch looks for
        patches.refuse_unsupported_export()

    for name, (subcommand, _) in patches.UNSUPPORTED_EXPORTS.items():
        with pytest.raises(NIDInputError, match=f"^ns-export {subcommand} .*nid-export-mesh --load-config c.yml"):
            main(getattr(exporter, name)(load_config=Path("c.yml"), output_dir=Path("o")))
    main(exporter.ExportPointCloud(load_config=Path("c.yml"), output_dir=Path("o")))  # passes through


def test_ns_viewer_leaves_the_step_label_at_0_and_label_viewer_step_writes_it():
    import inspect

    from nerfstudio.scripts.viewer import run_viewer
    from nerfstudio.viewer import viewer as viewer_module

    from nid_nerf.engine.nerfstudio_patches import label_viewer_step

    # what the patch relies on: ns-viewer hands the checkpoint step to update_scene, which labels it only in training
    assert "viewer_state.update_scene(step=step)" in inspect.getsource(run_viewer._start_viewer)
    source = inspect.getsource(viewer_module)  # update_scene is wrapped by a decorator without functools.wraps
    body = source[source.index("def update_scene(self, step: int"):source.index("def update_colormap_options")]
    assert "self.update_step(step)" in body and 'training_state == "training"' in body

    class FakeViewer:  # the attributes update_scene and update_step touch, without a viser server
        trainer = None
        render_statemachines: dict = {}

        def __init__(self):
            self.stats_markdown = type("Markdown", (), {"content": "Step: 0  \nResolution: 64x64px"})()

    before = viewer_module.Viewer.update_scene  # an earlier test's NIDPipeline may have installed the patch
    original = getattr(before, "_nid_original", before)
    viewer_module.Viewer.update_scene = original
    try:
        label_viewer_step()
        patched = viewer_module.Viewer.update_scene
        label_viewer_step()  # idempotent: wrapped once
        assert patched is not original and viewer_module.Viewer.update_scene is patched
        fake = FakeViewer()
        fake.make_stats_markdown = viewer_module.Viewer.make_stats_markdown.__get__(fake)
        fake.update_step = viewer_module.Viewer.update_step.__get__(fake)
        patched(fake, 999)
        assert fake.stats_markdown.content.startswith("Step: 999")
    finally:
        viewer_module.Viewer.update_scene = before
