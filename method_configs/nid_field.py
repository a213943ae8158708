"""``ns-train nid-field``: one scene, from scratch (K = 1) or solved against a dictionary."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from method_configs.common import trainer_config
from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig
from nid_nerf.model import NIDModelConfig

nid_field = MethodSpecification(
    # lr_codes: the solved code's Adam step. 3e-2 rather than nid-dict's 1e-2: on 6 validation scenes at 3 views
    # (docs/fewview_benchmark.md) +0.3 dB after solve + refine, and the solve plateaus about 3x sooner.
    config=trainer_config("nid-field", 2000, NIDSceneDataParserConfig(), NIDModelConfig(), rays=1024, eval_every=100,
                          lr_codes=3e-2),
    description="NID SDF + radiance field from gated hash-grid experts (K=1: plain hash-grid SDF; "
    "with --pipeline.model.dictionary-path: few-view solve against a pretrained dictionary).",
)
