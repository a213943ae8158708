"""Multi-process training through nerfstudio's own launcher, including CPU processes with gloo.

``ns-train nid-dict --machine.num-devices 2 --machine.device-type cpu`` runs nerfstudio's ``launch``
(``nerfstudio/scripts/train.py``): it spawns one process per device with ``torch.multiprocessing`` and
each process runs nerfstudio's ``train_loop`` (seeded with ``machine.seed + rank``). nerfstudio 1.1.5's
per-process ``_distributed_worker`` asserts that CUDA is available (and that ``num_devices`` GPUs
exist) before it would pick gloo for CPU, so CPU processes never start.
``nid_nerf.engine.nerfstudio_patches.install_gloo_worker`` (run by ``NIDTrainerConfig.save_config``, just
before ``launch``) puts :func:`gloo_worker` in its place for CPU runs only; it does what nerfstudio's worker
does (process group, per-machine group in ``comms.LOCAL_PROCESS_GROUP``, ``main_func``, teardown) without
the CUDA checks. Spawning, joining, Ctrl-C and ``--machine.dist-url auto`` stay nerfstudio's.

The rest of multi-process training lives where it belongs:

- sharding of the training images: :func:`shard_images` (used by ``NIDDataManager``);
- the DDP wrapper, CPU aware: :func:`wrap_ddp` (used by ``NIDPipeline``);
- rank-0-only checkpoints, dictionary.pt, eval and logs: ``NIDTrainer``.
"""

from __future__ import annotations

import os
from collections import defaultdict
from datetime import timedelta
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from nerfstudio.utils import comms
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from nid_nerf.errors import NIDInputError

DEFAULT_TIMEOUT = timedelta(minutes=30)
"""Same as nerfstudio's launcher: how long a collective waits for the other processes."""


# ----------------------------------------------------------------------------------------------
# ranks
# ----------------------------------------------------------------------------------------------


def rank_and_world_size(world_size: int = 1, rank: int = 0) -> Tuple[int, int]:
    """(global rank, world size) of this process: torch.distributed's when it is initialised, else the given ones.

    The fallback lets a datamanager be built as "rank r of w" without a process group (unit tests).
    """
    if comms.is_dist_avail_and_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(rank), max(int(world_size), 1)


def is_main_process() -> bool:
    """True in a single process, and in the process of global rank 0 of a multi-process run."""
    return comms.is_main_process()


def gather_objects(obj: Any) -> List[Any]:
    """The ``obj`` of every process, in rank order (``[obj]`` without a process group). Collective."""
    if not comms.is_dist_avail_and_initialized() or dist.get_world_size() == 1:
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# ----------------------------------------------------------------------------------------------
# sharding
# ----------------------------------------------------------------------------------------------


def shard_images(scene_index: Optional[Sequence[int]], num_images: int, rank: int, world_size: int) -> List[int]:
    """Training images owned by ``rank``: dealt like cards, scene by scene.

    The images are put in (scene, dataset order) order and the k-th one goes to rank ``k % world_size``.
    So every rank owns a disjoint set of images, the shards differ in size by at most one image,
    and every scene with at least ``world_size`` training views is seen by every rank: each rank's
    batches keep drawing rays from all scenes (NID trains the codes of all scenes at every step),
    and no rank's per-scene state (codes, cached SDF grid) goes stale. Without a scene index
    (``scene_index`` None: a single scene) this is image ``i`` -> rank ``i % world_size``.

    With ``world_size`` 1 it returns every image, in dataset order.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} process(es)")
    if scene_index is not None and len(scene_index) != num_images:
        raise ValueError(f"{len(scene_index)} scene indices for {num_images} images")
    order = list(range(num_images))
    if scene_index is not None:
        order.sort(key=lambda i: int(scene_index[i]))  # stable: dataset order within a scene
    owned = sorted(order[rank::world_size])
    if not owned:
        raise NIDInputError(
            f"process {rank} of {world_size} gets no training image (the dataset has {num_images}); "
            f"use --machine.num-devices {max(1, min(num_images, world_size))} or fewer, or more training views"
        )
    return owned


def scenes_of(scene_index: Optional[Sequence[int]], images: Sequence[int]) -> Dict[int, int]:
    """{scene: number of ``images`` of that scene} (scene 0 for all when there is no scene index)."""
    counts: Dict[int, int] = defaultdict(int)
    for i in images:
        counts[int(scene_index[i]) if scene_index is not None else 0] += 1
    return dict(sorted(counts.items()))


# ----------------------------------------------------------------------------------------------
# DDP
# ----------------------------------------------------------------------------------------------


def trainable_parameters(module: nn.Module) -> List[int]:
    """ids of the parameters that require a gradient (what DDP synchronises), in module order."""
    return [id(p) for p in module.parameters() if p.requires_grad]


def wrap_ddp(module: nn.Module, device: str, local_rank: int, find_unused_parameters: bool = True) -> DDP:
    """DistributedDataParallel for a model on CPU (gloo) or on GPU ``local_rank`` (NCCL).

    nerfstudio's VanillaPipeline passes ``device_ids=[local_rank]`` for every device, which DDP refuses
    for CPU modules; CPU needs ``device_ids=None``. Buffers are not broadcast at each forward: the NID
    model's buffers (cached coarse SDF grid, gate state, code statistics) are pure functions of the
    parameters and the step, which DDP keeps identical on every rank, so broadcasting them from rank 0
    would only cost bandwidth (the grid is num_scenes x 48^3 floats). Parameters and buffers are still
    copied from rank 0 once, when the wrapper is built.
    """
    on_gpu = str(device).startswith("cuda")
    return DDP(
        module,
        device_ids=[local_rank] if on_gpu else None,
        output_device=local_rank if on_gpu else None,
        find_unused_parameters=find_unused_parameters,
        broadcast_buffers=False,
    )


def rewrap_ddp(ddp: DDP, device: str, local_rank: int, find_unused_parameters: bool = True) -> DDP:
    """A fresh wrapper of ``ddp.module`` after parameters were switched on or off for training.

    DDP synchronises the parameters that required grad when it was built, so a parameter switched on
    later (nid-field's residual table at the solve -> refine switch) would otherwise train on each
    rank's own gradients and the replicas would drift apart. The old wrapper's gradient hooks are
    removed so that it no longer reduces anything. Collective: every rank re-wraps at the same step.
    """
    if hasattr(ddp, "_remove_autograd_hooks"):
        ddp._remove_autograd_hooks()
    return wrap_ddp(ddp.module, device, local_rank, find_unused_parameters)


# ----------------------------------------------------------------------------------------------
# launcher
# ----------------------------------------------------------------------------------------------


def cpu_threads_per_process(num_processes: int) -> int:
    """The CPU cores this process may use, split evenly between the processes of this machine."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover (not Linux)
        cores = os.cpu_count() or 1
    return max(1, cores // max(num_processes, 1))


def gloo_worker(
    local_rank: int,
    main_func: Callable,
    world_size: int,
    num_devices_per_machine: int,
    machine_rank: int,
    dist_url: str,
    config: Any,
    timeout: timedelta = DEFAULT_TIMEOUT,
    device_type: str = "cpu",
) -> Any:
    """One CPU training process: nerfstudio's ``_distributed_worker`` contract, with gloo and no CUDA checks.

    Same arguments as nerfstudio's worker (``launch`` passes them positionally). Unless OMP_NUM_THREADS
    is set, torch uses this machine's cores divided by the processes on it, so N processes on N cores
    do not oversubscribe the CPU.
    """
    if device_type != "cpu":
        raise NIDInputError(f"the gloo worker runs CPU processes, not '{device_type}'; use --machine.device-type cpu")
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(cpu_threads_per_process(num_devices_per_machine))
    global_rank = machine_rank * num_devices_per_machine + local_rank
    dist.init_process_group(
        backend="gloo", init_method=dist_url, world_size=world_size, rank=global_rank, timeout=timeout
    )
    try:
        num_machines = world_size // num_devices_per_machine
        for machine in range(num_machines):  # new_group is collective: every process builds every group
            first = machine * num_devices_per_machine
            group = dist.new_group(list(range(first, first + num_devices_per_machine)))
            if machine == machine_rank:
                comms.LOCAL_PROCESS_GROUP = group
        # no closing barrier (nerfstudio's worker has one): with viewer.quit_on_train_completion False,
        # rank 0 keeps serving the viewer after training and the other ranks would time out waiting for
        # it; nothing collective follows training (the last collective is in NIDTrainer._after_train)
        return main_func(local_rank, world_size, config, global_rank)
    finally:
        dist.destroy_process_group()
