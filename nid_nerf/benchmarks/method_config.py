"""Build a benchmark TrainerConfig for any registered nerfstudio method (built-in or plugin).

The config is what ``ns-train METHOD --data DIR`` would build, with the benchmark's overrides:
the same rays per batch for every method, a CPU device, no viewer, a private output folder, and
the single-process datamanager (nerfacto's default ParallelDataManager forks a worker process that
would compete with training for the same cores and hide part of its cost from the clock).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, Optional

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.data.datamanagers.parallel_datamanager import ParallelDataManagerConfig
from nerfstudio.engine.trainer import TrainerConfig

from nid_nerf.errors import NIDInputError


def registered_methods() -> dict[str, TrainerConfig]:
    """Every method `ns-train` knows that is installed (built-ins plus `nerfstudio.method_configs` entry points)."""
    from nerfstudio.configs.method_configs import all_methods

    return {name: config for name, config in all_methods.items() if isinstance(config, TrainerConfig)}


def registered_dataparsers() -> dict:
    """Every dataparser `ns-train` knows (built-ins plus `nerfstudio.dataparser_configs` entry points)."""
    from nerfstudio.configs.dataparser_configs import all_dataparsers

    return dict(all_dataparsers)


def default_dataparser(data: Path) -> str:
    """`nid-scene` when the plugin's parser is installed, else nerfstudio's parser for the data's layout."""
    if "nid-scene" in registered_dataparsers():
        return "nid-scene"
    return "blender-data" if (data / "transforms_train.json").exists() else "nerfstudio-data"


def _convert(datamanager, config_class):
    """A `config_class` datamanager config carrying every setting the two classes share."""
    shared = {f.name for f in dataclasses.fields(config_class) if f.init and f.name != "_target"}
    return config_class(**{name: getattr(datamanager, name) for name in shared if hasattr(datamanager, name)})


def _single_process(datamanager):
    """A VanillaDataManagerConfig with the same settings as a ParallelDataManagerConfig."""
    if type(datamanager) is not ParallelDataManagerConfig:
        return datamanager
    return _convert(datamanager, VanillaDataManagerConfig)


def loadable_config(config: TrainerConfig) -> TrainerConfig:
    """A copy whose datamanager has the registered method's config class again.

    `ns-viewer` and `ns-eval` (nerfstudio's `eval_setup`) reset the datamanager's `_target` to the
    registered method's, so a saved config must carry that class's fields (e.g. `queue_size`).
    """
    registered = registered_methods().get(config.method_name or "")
    config = copy.deepcopy(config)
    if registered is not None and type(registered.pipeline.datamanager) is not type(config.pipeline.datamanager):
        config.pipeline.datamanager = _convert(config.pipeline.datamanager, type(registered.pipeline.datamanager))
    return config


def apply_overrides(config: TrainerConfig, overrides: dict[str, Any]) -> TrainerConfig:
    """Set dotted config attributes, e.g. {"pipeline.model.background_color": "random"} (in place)."""
    for path, value in overrides.items():
        *parents, name = path.split(".")
        target = config
        for parent in parents:
            target = getattr(target, parent)
        if not hasattr(target, name):
            raise NIDInputError(
                f"{config.method_name} has no config option '{path}'; check `ns-train {config.method_name} --help`"
            )
        setattr(target, name, value)
    return config


def override_flags(overrides: dict[str, Any]) -> str:
    """The `ns-train` flags that set `overrides` (for reports)."""
    return " ".join(f"--{path.replace('_', '-')} {value}" for path, value in overrides.items())


def make_trainer_config(
    method: str,
    data: Path,
    output_dir: Path,
    *,
    rays_per_batch: int = 1024,
    dataparser: Optional[str] = None,
    device: str = "cpu",
    max_num_iterations: int = 1_000_000,
    seed: int = 42,
    single_process: bool = True,
    overrides: Optional[dict[str, Any]] = None,
) -> TrainerConfig:
    """The TrainerConfig `ns-train METHOD` would use, with the benchmark's overrides.

    Args:
        method: a name listed by `ns-train --help` (e.g. "nerfacto", "nid-field").
        data: the scene folder.
        output_dir: where the run writes its config, logs and checkpoints.
        rays_per_batch: training and eval rays per batch, the same for every method.
        dataparser: a registered dataparser name; None keeps the method's own dataparser type
            unless it cannot read the data (see :func:`default_dataparser`).
        device: torch device type.
        max_num_iterations: the trainer's nominal iteration count (schedules may read it).
        seed: `--machine.seed`.
        single_process: swap a ParallelDataManager for the equivalent VanillaDataManager.
        overrides: further dotted config attributes to set (see :func:`apply_overrides`), applied last.
    """
    methods = registered_methods()
    if method not in methods:
        raise NIDInputError(
            f"unknown method '{method}'; pick one of: {', '.join(sorted(methods))} "
            "(plugin methods appear after `pip install -e .`)"
        )
    data = Path(data)
    if not data.is_dir():
        raise NIDInputError(f"data directory '{data}' does not exist; pass a scene folder with --data")

    config = copy.deepcopy(methods[method])
    config.data = data
    config.output_dir = Path(output_dir)
    config.experiment_name = data.name
    config.timestamp = "bench"
    config.vis = "tensorboard"
    config.logging.local_writer.enable = False
    config.machine.device_type = device  # type: ignore[assignment]
    config.machine.seed = seed
    config.mixed_precision = False
    if hasattr(config, "schedules_follow_iterations"):
        config.schedules_follow_iterations = False  # the nominal count is no budget: keep the method's schedules
    config.max_num_iterations = max_num_iterations
    config.load_dir = None

    pipeline = config.pipeline
    if single_process:
        pipeline.datamanager = _single_process(pipeline.datamanager)
    datamanager = pipeline.datamanager
    datamanager.data = data
    if hasattr(datamanager, "train_num_rays_per_batch"):
        datamanager.train_num_rays_per_batch = rays_per_batch
        datamanager.eval_num_rays_per_batch = rays_per_batch

    parsers = registered_dataparsers()
    name = dataparser
    if name is None and type(datamanager.dataparser).__name__ == "NerfstudioDataParserConfig":
        # nerfacto's default parser reads only transforms.json; use one that reads this data.
        name = default_dataparser(data)
    if name is not None:
        if name not in parsers:
            raise NIDInputError(f"unknown dataparser '{name}'; pick one of: {', '.join(sorted(parsers))}")
        datamanager.dataparser = copy.deepcopy(parsers[name])
    datamanager.dataparser.data = data

    model = pipeline.model
    if device == "cpu" and getattr(model, "implementation", None) == "tcnn":
        model.implementation = "torch"  # `--pipeline.model.implementation torch`: tiny-cuda-nn needs a GPU
    return apply_overrides(config, overrides or {})
