"""Pieces shared by the nid-field and nid-dict method configs."""

from __future__ import annotations

from typing import Dict

import torch
from nerfstudio.configs.base_config import MachineConfig, ViewerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig

from nid_nerf.datamanager import NIDDataManagerConfig
from nid_nerf.model import NIDModelConfig
from nid_nerf.pipeline import NIDPipelineConfig
from nid_nerf.schedulers import LogDecaySchedulerConfig
from nid_nerf.trainer import NIDTrainerConfig


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
