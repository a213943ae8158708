"""NIDPipeline: the vanilla pipeline, plus feeding per-ray residuals back to the ray sampler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Type

from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler


@dataclass
class NIDPipelineConfig(VanillaPipelineConfig):
    _target: Type = field(default_factory=lambda: NIDPipeline)


class NIDPipeline(VanillaPipeline):
    """After each training step, the datamanager sees the photometric residual of the rays it served."""

    @profiler.time_function
    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        outputs = self._model(ray_bundle)
        metrics = self.model.get_metrics_dict(outputs, batch)
        losses = self.model.get_loss_dict(outputs, batch, metrics)
        observe = getattr(self.datamanager, "observe_residuals", None)
        if observe is not None and "per_ray_residual" in outputs:
            observe(batch, outputs["per_ray_residual"])
        return outputs, losses, metrics
