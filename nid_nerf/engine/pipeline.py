"""NIDPipeline: the vanilla pipeline, plus feeding per-ray residuals back to the ray sampler.

A training step composites prediction and target once (``NIDModel.get_training_terms``: metrics, losses
and the per-ray residual, from one random background) and hands the residual to
``NIDDataManager.observe_residuals``. Evaluation is nerfstudio's (``get_eval_loss_dict`` calls the model's
``get_metrics_dict`` and ``get_loss_dict``).

Multi-process (``--machine.num-devices N``): the model is wrapped in DistributedDataParallel by
``nid_nerf.engine.distributed.wrap_ddp`` rather than by nerfstudio's VanillaPipeline, whose wrapper passes
GPU ``device_ids`` that DDP refuses for CPU modules. Gradients are averaged over the processes at
every step; metrics, losses, callbacks and checkpoints use the unwrapped model (``self.model``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Literal, Optional, Type, Union

import torch
import torch.distributed as dist
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.pipelines.base_pipeline import VanillaPipeline, VanillaPipelineConfig
from nerfstudio.utils import profiler
from nerfstudio.utils.rich_utils import CONSOLE

from nid_nerf.engine.datamanager import NIDDataManager, NIDDataManagerConfig
from nid_nerf.engine.distributed import rewrap_ddp, trainable_parameters, wrap_ddp
from nid_nerf.engine.nerfstudio_patches import label_viewer_step, refuse_unsupported_export
from nid_nerf.errors import NIDInputError
from nid_nerf.fields.dictionary import building_for_checkpoint, weights_from_checkpoint
from nid_nerf.models.nid_model import NIDModelConfig


@dataclass
class NIDPipelineConfig(VanillaPipelineConfig):
    """nerfstudio's VanillaPipelineConfig for a NIDModel fed by a NIDDataManager, multi-process aware."""

    _target: Type = field(default_factory=lambda: NIDPipeline)
    datamanager: NIDDataManagerConfig = field(default_factory=NIDDataManagerConfig)
    """Training and evaluation rays (uniform or residual ray sampling, sharded across processes)."""
    model: NIDModelConfig = field(default_factory=NIDModelConfig)
    """The NID field model."""
    find_unused_parameters: bool = True
    """Multi-process only: let DDP skip parameters a step does not use (safe default; False saves a graph walk)."""


class NIDPipeline(VanillaPipeline):
    """After each training step, the datamanager sees the photometric residual of the rays it served.

    ``self.model`` (nerfstudio's property: the model, unwrapped from DDP) is a ``NIDModel``.
    """

    config: NIDPipelineConfig
    datamanager: NIDDataManager

    def __init__(
        self,
        config: NIDPipelineConfig,
        device: Union[str, torch.device],
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler=None,
    ):
        refuse_unsupported_export()  # ns-export marching-cubes / gaussian-splat: one line, before any loading
        label_viewer_step()  # ns-viewer: "Step: <checkpoint step>", not "Step: 0"
        # world_size=1 keeps VanillaPipeline from wrapping the model itself (GPU-only device_ids); the
        # datamanager takes the real rank and world size from torch.distributed
        # any test mode but ns-train's "val" builds the model for a checkpoint (eval_setup: ns-eval, ns-viewer,
        # ns-render, nid-export-mesh), which then needs no dictionary file (see weights_from_checkpoint)
        with weights_from_checkpoint(test_mode != "val"):
            super().__init__(config, device, test_mode=test_mode, world_size=1, local_rank=local_rank,
                             grad_scaler=grad_scaler)
        self.start_seconds = 0.0
        """Seconds spent finding the solve's starting code (encoder, code search, grid) before the first step."""
        if test_mode == "val" and self.model.config.dictionary_path is not None and not building_for_checkpoint():
            self._start_solve()  # a resumed solve (--load-dir) gets its code from the checkpoint instead
        self.world_size = world_size
        self.local_rank = local_rank
        self._device_name = str(device)
        self._ddp_trainable: Optional[List[int]] = None
        if world_size > 1:
            self._wrap()
            dist.barrier()

    def _start_solve(self) -> None:
        """Where a solve against a dictionary starts (``code_init``): the code the dictionary's encoder predicts from
        the training views (``encoder``), the best-rendering of the candidate codes (``search``), or the mean code the
        model already holds; then the cached SDF grid is brought to that field, so the first steps sample the
        predicted surface, not the initial sphere."""
        began = time.perf_counter()
        model = self.model
        start = model.field.gate.codes[0].detach().clone()
        predicted = self._encoder_code() if model.config.code_init in ("encoder", "search") else None
        if model.config.code_init == "encoder" and predicted is not None:
            start = predicted
            CONSOLE.log(f"nid: the solve starts from the code the dictionary's encoder predicts from "
                        f"{len(self.datamanager.train_dataset)} training views")
        if model.config.code_init == "search":
            start = self._searched_code(predicted)
        model.start_code(start)
        self.start_seconds = time.perf_counter() - began

    def _encoder_code(self) -> Optional[torch.Tensor]:
        """The code the dictionary's encoder predicts from the training views (None, with one log line, for a
        dictionary without an encoder)."""
        model = self.model
        payload = getattr(model, "dictionary_encoder", None)
        if payload is None:
            fallback = ("the solve starts from the mean code" if model.config.code_init == "encoder"
                        else "the code search goes without its prediction")
            CONSOLE.log(f"dictionary {model.config.dictionary_path} has no code encoder (pretrained by an older "
                        f"nid-nerf); {fallback}. Fit one with nid-export-dictionary --load-config "
                        "<its nid-dict run>/config.yml")
            return None
        from nid_nerf.fields.code_encoder import CodeEncoder, predict_code

        encoder = CodeEncoder.from_payload(payload)
        dataset = self.datamanager.train_dataset
        images = [dataset.get_image_float32(i) for i in range(len(dataset))]
        return predict_code(encoder, images, dataset.cameras.camera_to_worlds, model.scene_box.aabb)

    def _searched_code(self, predicted: Optional[torch.Tensor]) -> torch.Tensor:
        """``code_init search``: the candidate code with the lowest error on a fixed sample of training rays."""
        from nid_nerf.model_components.code_search import candidate_codes, search_model_code

        model = self.model
        names, candidates = candidate_codes(getattr(model, "dictionary_codes", None), model.field.gate.top_k,
                                            model.code_mean, predicted)
        found = search_model_code(model, self.datamanager, names, candidates, model.config.code_search_rays,
                                  model.config.code_search_grid, progress=True)
        mse = found.errors[found.name]
        CONSOLE.log(f"nid: code search over {len(names)} codes on {model.config.code_search_rays} training rays "
                    f"({found.seconds:.1f} s): the solve starts from {found.name} "
                    f"(MSE {mse:.4f}; mean code {found.errors['mean']:.4f}"
                    + (f", encoder {found.errors['encoder']:.4f})" if "encoder" in found.errors else ")"))
        return found.code

    def _wrap(self) -> None:
        model = self.model  # unwrapped
        self._model = wrap_ddp(model, self._device_name, self.local_rank, self.config.find_unused_parameters)
        self._ddp_trainable = trainable_parameters(model)

    def _rewrap_if_trainable_changed(self, step: int) -> None:
        """Re-wrap when the set of trainable parameters changed (nid-field's solve -> refine switch).

        The model's callbacks switch parameters at a given step, identically on every rank, so every
        rank re-wraps (a collective) at the same step.
        """
        if trainable_parameters(self.model) != self._ddp_trainable:
            model = self.model
            self._model = rewrap_ddp(self._model, self._device_name, self.local_rank,  # type: ignore[arg-type]
                                     self.config.find_unused_parameters)
            self._ddp_trainable = trainable_parameters(model)
            CONSOLE.log(f"nid: trainable parameters changed at step {step}; DDP re-wrapped the model")

    def get_training_callbacks(
        self, training_callback_attributes: TrainingCallbackAttributes
    ) -> List[TrainingCallback]:
        callbacks = list(super().get_training_callbacks(training_callback_attributes))
        if self.world_size > 1:
            # after the model's own callbacks, which may switch parameters on (refine)
            callbacks.append(
                TrainingCallback([TrainingCallbackLocation.BEFORE_TRAIN_ITERATION], self._rewrap_if_trainable_changed)
            )
        return callbacks

    def load_pipeline(self, loaded_state, step: int) -> None:
        """nerfstudio's loader; a checkpoint that does not fit a model built without its dictionary file is one line.

        Without the file the model's shapes come from config.yml alone. Runs saved before config.yml recorded the
        dictionary's architecture hold nid-field's defaults there, which do not fit their checkpoint.
        """
        try:
            super().load_pipeline(loaded_state, step)
        except RuntimeError as err:
            path = self.model.config.dictionary_path
            if path is None or Path(path).is_file() or "size mismatch" not in str(err):
                raise
            raise NIDInputError(
                f"the checkpoint does not fit the layout in config.yml and dictionary {path} is missing (the config "
                f"predates recorded layouts); put the dictionary.pt it was solved against back at {path}"
            ) from None

    @profiler.time_function
    def get_train_loss_dict(self, step: int):
        ray_bundle, batch = self.datamanager.next_train(step)
        outputs = self._model(ray_bundle)  # DDP forward when multi-process
        metrics, losses, per_ray_residual = self.model.get_training_terms(outputs, batch)
        self.datamanager.observe_residuals(batch, per_ray_residual)
        return outputs, losses, metrics
