"""``ns-train nid-field``: one scene, from scratch (K = 1) or solved against a dictionary."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from method_configs.common import trainer_config
from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig
from nid_nerf.model import NIDModelConfig

nid_field = MethodSpecification(
    config=trainer_config("nid-field", 2000, NIDSceneDataParserConfig(), NIDModelConfig(), rays=1024, eval_every=100),
    description="NID SDF + radiance field from gated hash-grid experts (K=1: plain hash-grid SDF; "
    "with --pipeline.model.dictionary-path: few-view solve against a pretrained dictionary).",
)
