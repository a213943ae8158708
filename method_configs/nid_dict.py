"""``ns-train nid-dict``: pretrain a Neural Implicit Dictionary on a collection of scenes."""

from __future__ import annotations

from nerfstudio.plugins.types import MethodSpecification

from method_configs.common import trainer_config
from nid_nerf.dataparsers.collection import NIDCollectionDataParserConfig
from nid_nerf.model import NIDModelConfig

nid_dict = MethodSpecification(
    config=trainer_config(
        "nid-dict",
        6000,
        NIDCollectionDataParserConfig(),
        NIDModelConfig(num_experts=16, top_k=4, learn_codes=True, dense_warmup_steps=1000),
        rays=2048,
        eval_every=200,
    ),
    description="Pretrain a Neural Implicit Dictionary (hash-grid experts + shared decoder + per-scene codes) "
    "on a nid-collection folder.",
)
