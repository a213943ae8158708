"""Every place nid-nerf reaches into nerfstudio's internals, in one module. Targets nerfstudio 1.1.5.

Where nerfstudio offers a hook (a config ``_target``, a subclass method) nid-nerf uses it and it is not
patched here. What is here touches module state or private names that nerfstudio does not promise to
keep, or restates a layout nerfstudio's code assumes; each entry is one small function, and
``tests/test_nerfstudio_patches.py`` fails when the nerfstudio internals it relies on change (re-check the
patch against the new version, then update :data:`NERFSTUDIO_VERSION`).

Patches and restated internals (this module):

- :func:`prepare_launch` / :func:`install_gloo_worker`: replaces ``nerfstudio.scripts.train._distributed_worker``
  for multi-process CPU runs (nerfstudio's worker asserts CUDA), and installs the one-line NIDInputError printer;
- :func:`checkpoint_state` and :func:`unwrapped_state_dict`: the checkpoint layout nerfstudio's loaders read;
- :func:`pixel_sampler_kwargs`: what ``VanillaDataManager._get_pixel_sampler`` passes to a pixel sampler config;
- :func:`train_dataset_swapped`: nerfstudio's ``VanillaDataManager.setup_train`` on a shard of the training images;
- :func:`isolated_event_writers`: nerfstudio's global event writers, per trainer (benchmarks);
- :func:`lpips_patched_out`: torchmetrics' LPIPS class swapped for a stub (benchmarks of nerfstudio's models);
- :func:`refuse_unsupported_export`: ``ns-export marching-cubes`` / ``gaussian-splat`` stop with one line (read from
  the call stack: nerfstudio's exporters call ``eval_setup`` from their ``main`` before their own asserts);
- :func:`label_viewer_step`: ``ns-viewer`` labels the loaded checkpoint's step (``Viewer.update_scene``).

Subclass hooks on nerfstudio's private or undocumented methods, tested alike (not patches; they live with
their classes): ``NIDTrainer._after_train``, ``NIDTrainer._load_checkpoint`` (finds the latest
``step-<N>.ckpt`` itself and passes it as ``load_step``: nerfstudio parses every name in the folder),
``NIDDataManager._get_pixel_sampler``, ``NIDPipeline._model``
(VanillaPipeline's model attribute), ``NIDDataparserOutputs.save_dataparser_transform`` (rank 0 only, atomic;
reached through ``Trainer.train``), and ``nid_nerf.sampling.masked_sampler.MaskedPixelSampler``, which works
around nerfstudio's one-image mask bug one layer below this module (the sampler layer must not import the
engine layer).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any, Dict, Iterator, List, Tuple

import torch
from nerfstudio.cameras.cameras import CameraType
from nerfstudio.configs.base_config import MachineConfig
from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManager
from nerfstudio.engine.trainer import TrainerConfig
from torch import Tensor, nn
from torch.utils.data import Dataset

NERFSTUDIO_VERSION = "1.1.5"
"""The nerfstudio release these patches were written and tested against."""


# ----------------------------------------------------------------------------------------------
# launch (ns-train)
# ----------------------------------------------------------------------------------------------


def prepare_launch(config: TrainerConfig) -> None:
    """What a nid-nerf run needs before nerfstudio's ``launch`` starts the training processes.

    - NIDInputError (bad data, bad options) prints as one line instead of a traceback;
    - multi-process CPU runs get the gloo worker (:func:`install_gloo_worker`).

    nerfstudio's ``train.main`` offers no hook between building the config and ``launch``: it only calls
    ``config.set_timestamp()``, ``config.print_to_terminal()`` and ``config.save_config()``, in that order,
    then ``launch``. So ``NIDTrainerConfig.save_config`` calls this first thing. Importing the plugin changes
    nothing; only starting a nid-nerf method does.
    """
    from nid_nerf.errors import install_excepthook

    install_excepthook()
    install_gloo_worker(config.machine)


def _launcher_modules() -> List[Any]:
    """Loaded copies of nerfstudio's train script (``nerfstudio.scripts.train``; ``__main__`` under ``python -m``)."""
    import nerfstudio.scripts.train  # noqa: F401  (ns-train has imported it already)

    from nid_nerf.engine.distributed import gloo_worker

    modules = []
    for name in ("nerfstudio.scripts.train", "__main__"):
        module = sys.modules.get(name)
        worker = getattr(module, "_distributed_worker", None)
        if module is not None and callable(getattr(module, "launch", None)) and worker is not None:
            if worker is gloo_worker or getattr(worker, "__qualname__", "") == "_distributed_worker":
                modules.append(module)
    return modules


def install_gloo_worker(machine: MachineConfig) -> bool:
    """Let nerfstudio's launcher start CPU processes (gloo); returns whether it was needed.

    nerfstudio 1.1.5's ``launch`` spawns its module-level ``_distributed_worker``, which asserts that CUDA
    is available (and that ``num_devices`` GPUs exist) before it would pick gloo for CPU, so CPU processes
    never start. For multi-process CPU runs only, that module attribute becomes
    ``nid_nerf.engine.distributed.gloo_worker`` (same arguments, no CUDA checks); GPU runs and single
    processes keep nerfstudio's worker.
    """
    from nid_nerf.engine.distributed import gloo_worker

    num_processes = int(machine.num_devices) * int(machine.num_machines)
    if machine.device_type != "cpu" or num_processes <= 1:
        return False
    for module in _launcher_modules():
        module._distributed_worker = gloo_worker
    return True


# ----------------------------------------------------------------------------------------------
# checkpoints
# ----------------------------------------------------------------------------------------------

CHECKPOINT_KEYS = ("step", "pipeline", "optimizers", "schedulers", "scalers")
"""Top-level keys of a nerfstudio checkpoint, as ``Trainer.save_checkpoint`` writes them."""

PIPELINE_MODEL_PREFIX = "_model."
"""State-dict prefix of the model inside a VanillaPipeline (its ``_model`` attribute)."""

DDP_PREFIX = "module."
"""State-dict prefix DistributedDataParallel adds to the module it wraps."""


def checkpoint_state(step: int, pipeline_state: Dict[str, Tensor], optimizers: Any, grad_scaler: Any) -> Dict[str, Any]:
    """A checkpoint in the layout nerfstudio's loaders read (``Trainer._load_checkpoint``, ``eval_utils``).

    ``optimizers`` is nerfstudio's ``Optimizers`` (its ``optimizers`` and ``schedulers`` dicts by parameter
    group); every value is a plain state dict, so the file loads with ``torch.load(weights_only=True)``.
    """
    return {
        "step": step,
        "pipeline": pipeline_state,
        "optimizers": {k: v.state_dict() for k, v in optimizers.optimizers.items()},
        "schedulers": {k: v.state_dict() for k, v in optimizers.schedulers.items()},
        "scalers": grad_scaler.state_dict(),
    }


def unwrapped_state_dict(pipeline: nn.Module) -> Dict[str, Tensor]:
    """The pipeline's state dict with DDP's ``_model.module.`` prefix dropped: the single-process key layout.

    A multi-process run's checkpoint then loads in one process (ns-eval, ns-viewer, mesh export) with the
    same keys as a single-process one. VanillaPipeline's ``load_state_dict`` accepts both layouts.
    """
    prefix = PIPELINE_MODEL_PREFIX + DDP_PREFIX
    return {(PIPELINE_MODEL_PREFIX + k[len(prefix):] if k.startswith(prefix) else k): v
            for k, v in pipeline.state_dict().items()}


# ----------------------------------------------------------------------------------------------
# datamanager
# ----------------------------------------------------------------------------------------------


def pixel_sampler_kwargs(dataset: Dataset, num_rays_per_batch: int) -> Dict[str, Any]:
    """The keyword arguments ``VanillaDataManager._get_pixel_sampler`` passes to ``pixel_sampler.setup``.

    The camera type and the fisheye crop radius come from the dataset's cameras; nid-nerf builds its
    samplers (uniform and residual) from its own configs with the same arguments. ``dataset`` is an
    InputDataset or anything with its ``cameras`` (an ``ImageShard``). ``is_equirectangular`` is a bool
    where nerfstudio passes a 0-d bool tensor: samplers only test its truth, and the config field is a bool.
    """
    cameras = dataset.cameras
    return {
        "is_equirectangular": bool((cameras.camera_type == CameraType.EQUIRECTANGULAR.value).all()),
        "num_rays_per_batch": num_rays_per_batch,
        "fisheye_crop_radius": (cameras.metadata or {}).get("fisheye_crop_radius"),
    }


@contextlib.contextmanager
def train_dataset_swapped(datamanager: VanillaDataManager, images: Dataset) -> Iterator[None]:
    """Within the block, ``datamanager.train_dataset`` is ``images``; for ``VanillaDataManager.setup_train``.

    A multi-process run's image cache must load and serve only this process' shard of the training images
    (``nid_nerf.engine.datamanager.ImageShard``, whose cameras are all of the dataset's), while everything
    else keeps the whole dataset. nerfstudio's ``setup_train`` takes its dataset from ``self.train_dataset``
    only (for the image loader, the pixel sampler and the ray generator) and has no parameter for it, so
    the attribute is swapped around the call and always put back.
    """
    full = datamanager.train_dataset
    datamanager.train_dataset = images  # type: ignore[assignment]
    try:
        yield
    finally:
        datamanager.train_dataset = full


# ----------------------------------------------------------------------------------------------
# event writers (benchmarks train several models in one process)
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def isolated_event_writers() -> Iterator[None]:
    """Within the block, writers that a trainer's setup adds to nerfstudio's global writer list stay local.

    nerfstudio keeps its event writers (tensorboard, wandb, ...) and buffered events in module globals
    (``nerfstudio.utils.writer.EVENT_WRITERS`` and ``EVENT_STORAGE``) that every ``Trainer.setup`` appends
    to. A benchmark that builds many trainers in one process would otherwise log each run into every
    earlier run's writers. On exit the writers added inside the block are dropped and the buffered
    events cleared.
    """
    from nerfstudio.utils import writer

    writers_before = len(writer.EVENT_WRITERS)
    try:
        yield
    finally:
        del writer.EVENT_WRITERS[writers_before:]
        writer.EVENT_STORAGE.clear()


# ----------------------------------------------------------------------------------------------
# LPIPS without a download (benchmarks of nerfstudio's built-in models)
# ----------------------------------------------------------------------------------------------

# Every module attribute through which nerfstudio models reach the LPIPS class.
_LPIPS_ATTRIBUTES = (
    ("torchmetrics.image.lpip", "LearnedPerceptualImagePatchSimilarity"),
    ("torchmetrics.image", "LearnedPerceptualImagePatchSimilarity"),
)


class OfflineLPIPS(nn.Module):
    """Stands in for torchmetrics' LPIPS: no weights, no download, returns NaN."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()

    def forward(self, img1: Tensor, img2: Tensor) -> Tensor:  # noqa: ARG002 - same signature as LPIPS
        return torch.tensor(float("nan"), device=img1.device)


@contextlib.contextmanager
def lpips_patched_out() -> Iterator[None]:
    """Within the block, building an LPIPS metric gives :class:`OfflineLPIPS` instead.

    nerfacto (and other built-in models) construct torchmetrics' ``LearnedPerceptualImagePatchSimilarity``
    in ``populate_modules``, which downloads AlexNet weights and crashes on a machine without network.
    Benchmarks never report LPIPS for them, so inside the harness the class is swapped for a stub.
    Nothing in site-packages is edited: the patch is a context manager on module attributes.
    """
    saved = []
    for module_name, attribute in _LPIPS_ATTRIBUTES:
        module = importlib.import_module(module_name)
        if hasattr(module, attribute):
            saved.append((module, attribute, getattr(module, attribute)))
            setattr(module, attribute, OfflineLPIPS)
    try:
        yield
    finally:
        for module, attribute, original in saved:
            setattr(module, attribute, original)


# ----------------------------------------------------------------------------------------------
# ns-export subcommands that cannot work on a NID model
# ----------------------------------------------------------------------------------------------

UNSUPPORTED_EXPORTS: Dict[str, Tuple[str, str]] = {
    "ExportMarchingCubesMesh": ("marching-cubes", "needs nerfstudio's own SDFField (and CUDA)"),
    "ExportGaussianSplat": ("gaussian-splat", "only exports splatfacto models"),
}
"""``nerfstudio.scripts.exporter`` class name -> (its ns-export subcommand, why it cannot export a nid-nerf model)."""


def refuse_unsupported_export() -> None:
    """Raise a one-line NIDInputError when an ns-export subcommand that cannot work is loading this pipeline.

    nerfstudio's ``ExportMarchingCubesMesh.main`` asserts ``hasattr(model.config, "sdf_field")`` and
    ``ExportGaussianSplat.main`` asserts ``isinstance(model, SplatfactoModel)``, both after ``eval_setup`` has
    built the pipeline, so a nid-nerf model would fail with an AssertionError traceback. nerfstudio has no hook
    there: ``NIDPipeline.__init__`` (reached through ``eval_setup``) calls this, which looks up the call stack
    for one of those exporters (``self`` in its ``main``) and stops before any data or checkpoint is loaded.
    Every other caller (ns-train, ns-eval, ns-render, the other exporters) passes through.
    """
    exporter = sys.modules.get("nerfstudio.scripts.exporter")  # never imported here: only when ns-export runs
    if exporter is None:
        return
    classes = tuple(getattr(exporter, name) for name in UNSUPPORTED_EXPORTS if hasattr(exporter, name))
    frame = sys._getframe(1)
    while frame is not None:
        command = frame.f_locals.get("self")
        if isinstance(command, classes):
            from nid_nerf.errors import NIDInputError, install_excepthook

            subcommand, reason = UNSUPPORTED_EXPORTS[type(command).__name__]
            install_excepthook()
            raise NIDInputError(
                f"ns-export {subcommand} {reason} and cannot export a nid-nerf model; for a mesh use: "
                f"nid-export-mesh --load-config {command.load_config} --output mesh.ply "
                "(or ns-export poisson / tsdf / pointcloud)"
            )
        frame = frame.f_back


# ----------------------------------------------------------------------------------------------
# ns-viewer: the step of the loaded checkpoint in the "Step:" label
# ----------------------------------------------------------------------------------------------


def label_viewer_step() -> None:
    """``ns-viewer --load-config`` shows the loaded checkpoint's step instead of "Step: 0".

    nerfstudio 1.1.5's ``run_viewer._start_viewer`` calls ``Viewer.update_scene(step=step)``, which stores the
    step but only writes the label (``Viewer.update_step``) while a trainer is training, so every screenshot of a
    trained checkpoint read "Step: 0". Installed once (idempotent) from ``NIDPipeline.__init__``; it changes
    only viewers without a trainer, i.e. ``ns-viewer``.
    """
    viewer_module = sys.modules.get("nerfstudio.viewer.viewer")  # loaded by ns-viewer / ns-train before us
    if viewer_module is None:
        return
    viewer_class = viewer_module.Viewer
    original = viewer_class.update_scene
    if getattr(original, "_nid_labels_step", False):
        return

    def update_scene(self, step: int, num_rays_per_batch=None) -> None:
        if getattr(self, "trainer", None) is None and hasattr(self, "stats_markdown"):
            self.update_step(step)
        return original(self, step, num_rays_per_batch)

    update_scene._nid_labels_step = True  # type: ignore[attr-defined]
    update_scene._nid_original = original  # type: ignore[attr-defined]
    viewer_class.update_scene = update_scene
