"""Load a trained SDF pipeline from an ns-train ``config.yml`` for mesh export, with one-line errors.

Wraps nerfstudio's ``eval_setup`` (``test_mode="inference"``: no images are read) and checks, before any heavy
work, everything it would otherwise fail on with an assertion, a ``sys.exit`` or a traceback.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional, Tuple

import yaml

from nid_nerf.errors import NIDInputError

_CKPT = re.compile(r"^step-(\d+)\.ckpt$")


def read_trainer_config(config_path: Path):
    """Parse an ns-train ``config.yml`` into its ``TrainerConfig``.

    Raises:
        NIDInputError: missing file, unreadable YAML, or not a TrainerConfig.
    """
    from nerfstudio.engine.trainer import TrainerConfig

    config_path = Path(config_path).expanduser()
    if not config_path.is_file():
        raise NIDInputError(
            f"config {config_path} does not exist; pass --load-config outputs/<experiment>/<method>/<timestamp>/"
            "config.yml as written by ns-train"
        )
    try:
        config = yaml.load(config_path.read_text(), Loader=yaml.Loader)
    except (yaml.YAMLError, ImportError, AttributeError, TypeError, UnicodeDecodeError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NIDInputError(
            f"config {config_path} cannot be read ({first}); pass the config.yml written by ns-train with "
            "nid-nerf installed"
        ) from None
    if not isinstance(config, TrainerConfig):
        raise NIDInputError(
            f"config {config_path} is not an ns-train TrainerConfig; pass the config.yml written by ns-train"
        )
    return config


def check_sdf_method(config, config_path: Path) -> None:
    """The config's model class must declare ``is_sdf_model = True`` (nid-field and nid-dict do)."""
    model_cls = getattr(config.pipeline.model, "_target", None)
    if not getattr(model_cls, "is_sdf_model", False):
        name = getattr(model_cls, "__name__", str(model_cls))
        raise NIDInputError(
            f"config {config_path} is from method '{config.method_name}' whose model {name} has no SDF, so it has "
            "no surface to export; pass a config from `ns-train nid-field` or `ns-train nid-dict`"
        )


def relocate_outputs(config, config_path: Path) -> None:
    """Point ``config.output_dir`` at the folder that holds ``config_path`` when the run was moved or ns-train was
    started from another working directory (its checkpoints live next to config.yml)."""
    if config.get_checkpoint_dir().is_dir():
        return
    base = Path(config_path).expanduser().resolve().parent
    tail = Path(str(config.experiment_name)) / str(config.method_name) / str(config.timestamp)
    n = len(tail.parts)
    if len(base.parts) > n and base.parts[-n:] == tail.parts and (base / config.relative_model_dir).is_dir():
        config.output_dir = base.parents[n - 1]


def find_checkpoint(config, config_path: Path) -> Path:
    """The checkpoint eval_setup will load (``load_step`` or the latest ``step-*.ckpt``)."""
    ckpt_dir = Path(config.get_checkpoint_dir())
    steps = sorted(int(m.group(1)) for p in ckpt_dir.glob("step-*.ckpt") if (m := _CKPT.match(p.name)))
    if not steps:
        raise NIDInputError(
            f"no checkpoint (step-*.ckpt) in {ckpt_dir} for config {config_path}; train longer than "
            "--steps-per-save or pass the config of a run that saved a checkpoint"
        )
    step = config.load_step if config.load_step is not None else steps[-1]
    path = ckpt_dir / f"step-{step:09d}.ckpt"
    if not path.is_file():
        raise NIDInputError(f"checkpoint {path} (load_step in config {config_path}) does not exist; remove load_step")
    return path


def check_data(config, config_path: Path, data: Optional[Path]) -> None:
    """eval_setup re-runs the dataparser (for the scene box), so the training data folder must be reachable."""
    dm = config.pipeline.datamanager
    if data is not None:
        dm.data = Path(data)
        if hasattr(dm, "dataparser"):
            dm.dataparser.data = Path(data)
    path = dm.data if getattr(dm, "data", None) is not None else getattr(getattr(dm, "dataparser", None), "data", None)
    if path is not None and not Path(path).exists():
        raise NIDInputError(
            f"training data {path} does not exist (named in config {config_path}; the scene box is read from it); "
            "run from the folder where ns-train ran, or pass --data <training data folder>"
        )


def load_sdf_pipeline(config_path: Path, data: Optional[Path] = None) -> Tuple[object, object, Path]:
    """Checks, then ``eval_setup(test_mode="inference")``.

    Returns:
        (TrainerConfig, Pipeline in eval mode on cuda-or-cpu, checkpoint path).
    """
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.utils.eval_utils import eval_setup

    config_path = Path(config_path).expanduser()
    config = read_trainer_config(config_path)
    if config.method_name not in all_methods:
        raise NIDInputError(
            f"config {config_path} is from method '{config.method_name}', which is not installed; "
            "install nid-nerf (pip install -e .) or pass a config from ns-train nid-field / nid-dict"
        )
    check_sdf_method(config, config_path)
    relocate_outputs(config, config_path)
    checkpoint = find_checkpoint(config, config_path)
    check_data(config, config_path, data)

    def _apply_checks(loaded):
        # eval_setup re-reads the YAML; carry over what the checks resolved.
        loaded.output_dir = config.output_dir
        loaded.pipeline.datamanager.data = config.pipeline.datamanager.data
        if hasattr(loaded.pipeline.datamanager, "dataparser"):
            loaded.pipeline.datamanager.dataparser.data = config.pipeline.datamanager.dataparser.data
        return loaded

    try:
        config, pipeline, checkpoint, _ = eval_setup(
            config_path, test_mode="inference", update_config_callback=_apply_checks
        )
    except SystemExit:
        raise NIDInputError(
            f"no checkpoint could be loaded for config {config_path}; check {checkpoint.parent}"
        ) from None
    except RuntimeError as err:
        msg = str(err)
        if "state_dict" in msg or "size mismatch" in msg:
            raise NIDInputError(
                f"checkpoint {checkpoint} does not match config {config_path} ({msg.splitlines()[0]}); "
                "pass the config.yml saved next to that checkpoint"
            ) from None
        raise
    model = pipeline.model
    field = getattr(model, "field", None)
    if not getattr(model, "is_sdf_model", False) or not callable(getattr(field, "sdf", None)):
        raise NIDInputError(
            f"the model loaded from config {config_path} exposes no field.sdf; pass a config from ns-train nid-field "
            "or nid-dict"
        )
    return config, pipeline, Path(checkpoint)
