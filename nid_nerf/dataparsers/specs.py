"""nerfstudio entry points (``nerfstudio.dataparser_configs``): ``nid-scene`` and ``nid-collection``."""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification

from nid_nerf.dataparsers.collection import NIDCollectionDataParserConfig
from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig

nid_scene = DataParserSpecification(
    config=NIDSceneDataParserConfig(),
    description="One scene (nerfstudio transforms.json or Blender transforms_{split}.json), frame kept as is, "
    "clear errors on bad input, --num-train-views N for few-view training, --occlusion F / --mask-dir DIR to leave "
    "training pixels out of the loss (inpainting).",
)

nid_collection = DataParserSpecification(
    config=NIDCollectionDataParserConfig(),
    description="A folder of scene folders as one dataset; each image carries its scene index "
    "(cameras.metadata['scene_index']); --num-train-views N and --occlusion F per scene.",
)
