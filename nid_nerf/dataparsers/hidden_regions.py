"""The hidden region of a training image under ``--occlusion``: where inpainting is scored.

Kept apart from ``occlusion`` (the occluder geometry, used by the dataparser) because it parses scenes
itself: ``occlusion`` must not import the dataparser that imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
from jaxtyping import Bool
from nerfstudio.data.dataparsers.base_dataparser import DataparserOutputs

from nid_nerf.dataparsers.occlusion import OCCLUSION, OCCLUSION_FILENAMES, OcclusionShape, check_fraction, read_mask
from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig
from nid_nerf.errors import NIDInputError


def hidden_mask(outputs: DataparserOutputs, index: int) -> Bool[np.ndarray, "H W"]:
    """Hidden region (True = hidden) of training image ``index`` of dataparser outputs made with --occlusion."""
    files = outputs.metadata.get(OCCLUSION_FILENAMES)
    if not files:
        raise NIDInputError(
            "these dataparser outputs have no occlusion masks; build them from the train split with --occlusion > 0"
        )
    if not 0 <= index < len(files):
        raise NIDInputError(f"training image {index} does not exist (0..{len(files) - 1}); pick an existing index")
    return read_mask(files[index])


def train_occlusion_mask(
    source: Union[DataparserOutputs, Path, str],
    index: int,
    fraction: Optional[float] = None,
    seed: int = 0,
    shape: OcclusionShape = "rectangle",
    **scene_options: Any,
) -> Bool[np.ndarray, "H W"]:
    """The occlusion mask (True = hidden) of training image ``index``: where inpainting is scored.

    Args:
        source: train-split DataparserOutputs made with ``occlusion > 0`` (``fraction``/``seed``/``shape`` must
            then be None or match), or a scene folder, parsed by ``nid-scene`` with ``occlusion=fraction``,
            ``occlusion_seed=seed``, ``occlusion_shape=shape`` and ``scene_options`` (e.g. num_train_views=3,
            so that ``index`` counts the same training images as the run being scored).
        index: training image, in the order of the train split (``outputs.image_filenames``).

    The mask has the image's resolution; AND it with the object region to score object pixels only.
    """
    if isinstance(source, (str, Path)):
        if fraction is None:
            raise NIDInputError(f"train_occlusion_mask({source}): pass the occlusion fraction, e.g. 0.25")
        config = NIDSceneDataParserConfig(
            data=Path(source), occlusion=check_fraction(fraction), occlusion_seed=seed, occlusion_shape=shape,
            **scene_options,
        )
        return hidden_mask(config.setup().get_dataparser_outputs(split="train"), index)
    settings = source.metadata.get(OCCLUSION) or {}
    if fraction is not None and settings:
        asked = {"fraction": check_fraction(fraction), "seed": int(seed), "shape": shape}
        for key, value in asked.items():
            if settings.get(key) != value:
                raise NIDInputError(
                    f"these dataparser outputs were made with occlusion {key}={settings.get(key)!r}, not {value!r}; "
                    "pass matching settings, or fraction=None to use theirs"
                )
    return hidden_mask(source, index)
