"""nerfstudio method specifications of nid-nerf: ``nid-field`` and ``nid-dict``.

They are the ``nerfstudio.method_configs`` entry points of the package.
"""

from __future__ import annotations

from typing import Dict

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.plugins.types import MethodSpecification

from nid_nerf.dataparsers.collection import NIDCollectionDataParserConfig
from nid_nerf.dataparsers.scene import NIDSceneDataParserConfig
from nid_nerf.engine.datamanager import NIDDataManagerConfig
from nid_nerf.engine.pipeline import NIDPipelineConfig
from nid_nerf.engine.schedulers import LogDecaySchedulerConfig
from nid_nerf.engine.trainer import NIDTrainerConfig
from nid_nerf.models.nid_model import NIDModelConfig


def optimizers(max_steps: int, lr_experts: float = 1e-2, lr_decoder: float = 5e-3, lr_codes: float = 1e-2) -> Dict:
    """Adam for each parameter group, decaying 10x over training (30x for the tables)."""

    def adam(lr: float, final_ratio: float, eps: float = 1e-15) -> Dict:
        return {
            "optimizer": AdamOptimizerConfig(lr=lr, eps=eps),
            "scheduler": LogDecaySchedulerConfig(lr_final=lr * final_ratio, max_steps=max_steps),
        }

    return {
        "experts": adam(lr_experts, 1 / 30),
        "decoder": adam(lr_decoder, 1 / 10),
        "beta": adam(1e-2, 1.0),  # log-beta: sharpens the surface within a few hundred steps
        "codes": adam(lr_codes, 1 / 10),
        "background": adam(5e-3, 1 / 10),  # the inverted-sphere background MLP (RGB scenes without masks)
        "appearance": adam(1e-3, 1 / 10),  # per-image colour transforms (model.appearance affine)
    }


def trainer_config(
    method_name: str, max_steps: int, dataparser, model: NIDModelConfig, rays: int, eval_every: int,
    lr_codes: float = 1e-2,
) -> NIDTrainerConfig:
    """The ns-train config of a NID method: CPU-friendly eval cadence, atomic checkpoints, residual sampler."""
    return NIDTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=eval_every,
        steps_per_eval_image=5 * eval_every,
        steps_per_eval_all_images=max_steps,
        steps_per_save=5 * eval_every,
        max_num_iterations=max_steps,
        mixed_precision=False,
        # the machine's own device by default: a CPU-only machine needs no --machine.device-type cpu
        machine=MachineConfig(device_type="cuda" if torch.cuda.is_available() else "cpu"),
        pipeline=NIDPipelineConfig(
            datamanager=NIDDataManagerConfig(
                dataparser=dataparser, train_num_rays_per_batch=rays, eval_num_rays_per_batch=rays
            ),
            model=model,
        ),
        optimizers=optimizers(max_steps, lr_codes=lr_codes),
        viewer=ViewerConfig(num_rays_per_chunk=16384),
        vis="viewer",
    )


nid_field = MethodSpecification(
    # lr_codes: the solved code's Adam step. 3e-2 rather than nid-dict's 1e-2: on 6 validation scenes at 3 views
    # (docs/fewview_benchmark.md) +0.3 dB after solve + refine, and the solve plateaus about 3x sooner.
    config=trainer_config("nid-field", 2000, NIDSceneDataParserConfig(), NIDModelConfig(), rays=1024, eval_every=100,
                          lr_codes=3e-2),
    description="NID SDF + radiance field from gated hash-grid experts (K=1: plain hash-grid SDF; "
    "with --pipeline.model.dictionary-path: few-view solve against a pretrained dictionary).",
)


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
