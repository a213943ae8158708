"""Pieces shared by the nid-field and nid-dict method configs."""

from __future__ import annotations

from typing import Dict

from nerfstudio.data.datamanagers.base_datamanager import VanillaDataManagerConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig

from nid_nerf.schedulers import LogDecaySchedulerConfig


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


def datamanager(dataparser, rays: int = 1024) -> VanillaDataManagerConfig:
    """The NID datamanager (residual sampler) when present, else nerfstudio's vanilla one."""
    try:
        from nid_nerf.datamanager import NIDDataManagerConfig
    except ImportError:  # pragma: no cover - during development only
        NIDDataManagerConfig = VanillaDataManagerConfig
    return NIDDataManagerConfig(dataparser=dataparser, train_num_rays_per_batch=rays, eval_num_rays_per_batch=rays)
