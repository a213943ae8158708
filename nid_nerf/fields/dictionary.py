"""The dictionary file (``dictionary.pt``): experts, decoder, code statistics and the config they fit.

Everything in it is a tensor or a plain Python value, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextvars
import sys
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import torch
from nerfstudio.utils.rich_utils import CONSOLE
from torch import Tensor

from nid_nerf.errors import NIDInputError
from nid_nerf.io import torch_save

FORMAT_VERSION = 1

# model-config fields that fix the shapes of the tables and the decoder
ARCHITECTURE_FIELDS: Tuple[str, ...] = (
    "num_experts",
    "top_k",
    "num_levels",
    "log2_table_size",
    "features_per_level",
    "base_resolution",
    "max_resolution",
    "geo_hidden_dim",
    "geo_num_layers",
    "geo_feat_dim",
    "color_hidden_dim",
    "color_num_layers",
    "sphere_radius",
)


def code_statistics(codes: Tensor) -> Tuple[Tensor, Tensor]:
    """Mean and (ridge-regularised) covariance of the scene codes, [K] and [K, K]."""
    codes = codes.detach().float()
    mean = codes.mean(0)
    centred = codes - mean
    cov = centred.t() @ centred / max(1, codes.shape[0] - 1)
    ridge = 1e-4 + 1e-2 * cov.diagonal().mean().clamp(min=0)
    return mean, cov + ridge * torch.eye(codes.shape[1])


def export_dictionary(model, path: Path, encoder=None) -> Path:
    """Write the dictionary of a trained NIDModel atomically; returns the path.

    ``encoder``: a fitted :class:`~nid_nerf.fields.code_encoder.CodeEncoder`, stored under ``encoder`` (older
    dictionaries have none; a solve against them starts from the mean code).
    """
    field = model.field
    mean, cov = code_statistics(field.gate.codes)
    payload: Dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "config": {name: getattr(model.config, name) for name in ARCHITECTURE_FIELDS},
        "tables": field.experts.tables.detach().cpu().clone(),
        "geometry": {k: v.detach().cpu().clone() for k, v in field.geometry.state_dict().items()},
        "color_head": {k: v.detach().cpu().clone() for k, v in field.color_head.state_dict().items()},
        "log_beta": model.log_beta.detach().cpu().clone(),
        "codes": field.gate.codes.detach().cpu().clone(),
        "code_mean": mean.cpu(),
        "code_cov": cov.cpu(),
        "aabb": field.aabb.detach().cpu().clone(),
    }
    if encoder is not None:
        payload["encoder"] = encoder.payload()
    path = Path(path)
    torch_save(path, payload)
    return path


_WEIGHTS_FROM_CHECKPOINT: contextvars.ContextVar[bool] = contextvars.ContextVar("nid_weights_from_checkpoint",
                                                                                default=False)


@contextmanager
def weights_from_checkpoint(active: bool = True) -> Iterator[None]:
    """Inside this block a model that is built only to receive a checkpoint may do without its dictionary file.

    A solved run's checkpoint holds everything the dictionary gave it (experts, decoder, code, refine table, and
    the ``code_mean`` / ``code_precision`` buffers), so ns-eval, ns-viewer, ns-render and nid-export-mesh
    (``NIDPipeline`` with a test mode other than ``val``) and a resumed ns-train (``--load-dir``) need only the
    layout recorded in config.yml. A fresh solve never enters this block, so a missing dictionary still stops it
    with one line.
    """
    token = _WEIGHTS_FROM_CHECKPOINT.set(bool(active) or _WEIGHTS_FROM_CHECKPOINT.get())
    try:
        yield
    finally:
        _WEIGHTS_FROM_CHECKPOINT.reset(token)


def building_for_checkpoint() -> bool:
    """True inside :func:`weights_from_checkpoint`: the model's weights come from a checkpoint, not a dictionary."""
    return _WEIGHTS_FROM_CHECKPOINT.get()


def architecture_of(model_config) -> Dict[str, Any]:
    """The model config's values of :data:`ARCHITECTURE_FIELDS` (what fixes the shapes of a checkpoint)."""
    return {name: getattr(model_config, name) for name in ARCHITECTURE_FIELDS}


def load_dictionary(path: Path) -> Dict[str, Any]:
    """Read and sanity-check a dictionary file; one-line NIDInputError on any problem."""
    path = Path(path)
    if not path.is_file():
        raise NIDInputError(
            f"dictionary file {path} does not exist; pass the dictionary.pt written by ns-train nid-dict"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a bad file
        raise NIDInputError(
            f"dictionary file {path} cannot be read ({type(err).__name__}); re-export it with "
            "scripts/export_dictionary.py --load-config <nid-dict run>/config.yml"
        ) from None
    required = ("format_version", "config", "tables", "geometry", "color_head", "code_mean", "code_cov")
    missing = [key for key in required if not isinstance(payload, dict) or key not in payload]
    if missing:
        raise NIDInputError(f"dictionary file {path} is missing {', '.join(missing)}; it is not a nid-nerf dictionary")
    if payload["format_version"] != FORMAT_VERSION:
        raise NIDInputError(
            f"dictionary file {path} has format {payload['format_version']}, this nid-nerf reads {FORMAT_VERSION}; "
            "re-export it with this version"
        )
    cfg = payload["config"]
    expected = (cfg["num_experts"], cfg["num_levels"], 2 ** cfg["log2_table_size"], cfg["features_per_level"])
    if tuple(payload["tables"].shape) != expected:
        raise NIDInputError(
            f"dictionary file {path} holds tables of shape {tuple(payload['tables'].shape)} but its config says "
            f"{expected}; the file is corrupt, re-export it"
        )
    encoder = payload.get("encoder")
    if encoder is not None and encoder.get("spec", {}).get("num_experts") != cfg["num_experts"]:
        raise NIDInputError(
            f"dictionary file {path} holds a code encoder for {encoder.get('spec', {}).get('num_experts')} experts but "
            f"{cfg['num_experts']} experts; the file is corrupt, re-export it with nid-export-dictionary"
        )
    return payload


CLI_PROGRAM_PREFIXES = ("ns-", "nid-")
"""Programs whose command line is the whole user configuration (nerfstudio's and nid-nerf's commands)."""

MODEL_OPTION_PREFIX = "--pipeline.model."


def explicit_model_options(argv: Optional[Sequence[str]] = None) -> Optional[Set[str]]:
    """Model-config fields the user set on the command line (``--pipeline.model.num-levels 8``), or None when
    this process is not one of nerfstudio's or nid-nerf's commands (Python API, tests, benchmarks).

    tyro leaves no trace of which fields came from the command line, and a value equal to the default
    may still be one the user typed, so the command line itself is the record. Spawned training processes
    inherit the parent's ``sys.argv``.
    """
    argv = list(sys.argv if argv is None else argv)
    if not argv or not Path(argv[0]).name.startswith(CLI_PROGRAM_PREFIXES):
        return None
    names = set()
    for token in argv[1:]:
        if token.startswith(MODEL_OPTION_PREFIX):
            names.add(token[len(MODEL_OPTION_PREFIX):].split("=", 1)[0].replace("-", "_"))
    return names


def resolve_architecture(
    model_config, dictionary: Dict[str, Any], path: Path, explicit: Optional[Set[str]] = None, argv=None
) -> List[str]:
    """Adopt the dictionary's architecture; reject options the user set to something else. Returns the
    adopted fields, ``"name=value (config had old)"``, which are also logged in one line.

    A dictionary fixes the shapes of the tables and the decoder, so a field that differs from it cannot
    work. Which fields the user set decides between an error and adopting the dictionary's value:

    - under ``ns-train`` (and the other commands) the command line says it (:func:`explicit_model_options`):
      a field given there with another value is an error even when that value is the default
      (``--pipeline.model.num-levels 8`` against a 4-level dictionary); every other field (a default or a
      method preset's value) takes the dictionary's;
    - otherwise (a config built in Python), a value that differs from both the default and the dictionary's
      was set on purpose: an error; a default takes the dictionary's.

    ``explicit`` overrides what the command line says (``argv``: instead of ``sys.argv``).
    """
    if explicit is None:
        explicit = explicit_model_options(argv)
    defaults = {f.name: f.default for f in fields(type(model_config)) if f.name in ARCHITECTURE_FIELDS}
    conflicts, adopted = [], []
    for name in ARCHITECTURE_FIELDS:
        wanted, stored = getattr(model_config, name), dictionary["config"][name]
        if wanted == stored:
            continue
        user_set = name in explicit if explicit is not None else wanted != defaults[name]
        if user_set:
            conflicts.append(f"{name}={wanted} (dictionary has {stored})")
        else:
            adopted.append(f"{name}={stored} (config had {wanted})")
    if conflicts:
        raise NIDInputError(
            f"dictionary {path} does not match the model config: {'; '.join(conflicts)}; "
            "drop those options or use a dictionary pretrained with them"
        )
    for name in ARCHITECTURE_FIELDS:
        setattr(model_config, name, dictionary["config"][name])
    if adopted:
        CONSOLE.log(f"dictionary {path}: adopted its architecture: {', '.join(adopted)}")
    return adopted
