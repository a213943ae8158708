"""``ns-train nid-dict``: pretrain a Neural Implicit Dictionary on a collection of scenes."""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs.common import datamanager, optimizers
from nid_nerf.model import NIDModelConfig
from nid_nerf.pipeline import NIDPipelineConfig
from nid_nerf.trainer import NIDTrainerConfig

MAX_STEPS = 6000


def _dataparser():
    try:
        from nid_nerf.dataparsers.collection import NIDCollectionDataParserConfig

        return NIDCollectionDataParserConfig()
    except ImportError:  # pragma: no cover - during development only
        return NerfstudioDataParserConfig()


nid_dict = MethodSpecification(
    config=NIDTrainerConfig(
        method_name="nid-dict",
        steps_per_eval_batch=200,
        steps_per_eval_image=1000,
        steps_per_eval_all_images=MAX_STEPS,
        steps_per_save=1000,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=NIDPipelineConfig(
            datamanager=datamanager(_dataparser(), rays=2048),
            model=NIDModelConfig(
                num_experts=16,
                top_k=4,
                learn_codes=True,
                dense_warmup_steps=1000,
                grid_resolution=48,
            ),
        ),
        optimizers=optimizers(MAX_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=16384),
        vis="viewer",
    ),
    description="Pretrain a Neural Implicit Dictionary (hash-grid experts + shared decoder + per-scene codes) "
    "on a nid-collection folder.",
)
