"""``ns-train nid-field``: one scene, from scratch (K = 1) or solved against a dictionary."""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.plugins.types import MethodSpecification

from method_configs.common import datamanager, optimizers
from nid_nerf.model import NIDModelConfig
from nid_nerf.pipeline import NIDPipelineConfig
from nid_nerf.trainer import NIDTrainerConfig

MAX_STEPS = 2000


def _dataparser():
    try:
        from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig

        return NIDSceneDataParserConfig()
    except ImportError:  # pragma: no cover - during development only
        return NerfstudioDataParserConfig(orientation_method="none", center_method="none", auto_scale_poses=False)


nid_field = MethodSpecification(
    config=NIDTrainerConfig(
        method_name="nid-field",
        steps_per_eval_batch=100,
        steps_per_eval_image=500,
        steps_per_eval_all_images=MAX_STEPS,
        steps_per_save=500,
        max_num_iterations=MAX_STEPS,
        mixed_precision=False,
        pipeline=NIDPipelineConfig(
            datamanager=datamanager(_dataparser()),
            model=NIDModelConfig(),
        ),
        optimizers=optimizers(MAX_STEPS),
        viewer=ViewerConfig(num_rays_per_chunk=16384),
        vis="viewer",
    ),
    description="NID SDF + radiance field from gated hash-grid experts (K=1: plain hash-grid SDF; "
    "with --pipeline.model.dictionary-path: few-view solve against a pretrained dictionary).",
)
