"""Multi-process training on CPU through nerfstudio's own launcher (gloo), and the sharding of the data.

Fast (default run): the sharding rule; two datamanagers built as rank 0 and rank 1 of a tiny
collection; nerfstudio's ``launch`` starting 2 gloo processes that take a DDP step on a tiny module.
Slow (``-m slow``): ``ns-train nid-dict --machine.num-devices 2 --machine.device-type cpu`` end to end.
"""

from __future__ import annotations

import gc
import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from cli_helpers import render_vases, run

from nid_nerf.engine.distributed import shard_images
from nid_nerf.engine.nerfstudio_patches import install_gloo_worker
from nid_nerf.errors import NIDInputError

torch.set_num_threads(1)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    return render_vases(tmp_path_factory.mktemp("collection"), count=3, views_train=8, views_test=2)


# ------------------------------------------------------------------------------------------- sharding rule


def test_shards_are_disjoint_balanced_and_cover_every_scene():
    scene = [0] * 8 + [1] * 8 + [2] * 5  # scene-major, like a nid-collection
    shards = [shard_images(scene, len(scene), r, 2) for r in range(2)]
    assert set(shards[0]).isdisjoint(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(len(scene)))
    assert abs(len(shards[0]) - len(shards[1])) <= 1
    for shard in shards:  # every rank sees every scene, through different views
        assert {scene[i] for i in shard} == {0, 1, 2}


def test_sharding_follows_scenes_not_dataset_order():
    scene = [1, 0, 1, 0, 1, 0, 0, 1]  # interleaved: i % 2 would give each rank a single scene
    for r in range(2):
        shard = shard_images(scene, len(scene), r, 2)
        assert sorted(scene[i] for i in shard) == [0, 0, 1, 1]


def test_sharding_without_scenes_and_with_one_process():
    assert shard_images(None, 7, 1, 3) == [1, 4]
    assert shard_images([0, 0, 1], 3, 0, 1) == [0, 1, 2]  # one process: everything, in dataset order
    with pytest.raises(NIDInputError, match="no training image"):
        shard_images(None, 2, 2, 3)


# ------------------------------------------------------------------------------------------- datamanager


def make_dm(collection: Path, world_size: int, rank: int, **kwargs):
    from nid_nerf.dataparsers.collection import NIDCollectionDataParserConfig
    from nid_nerf.engine.datamanager import NIDDataManagerConfig

    config = NIDDataManagerConfig(dataparser=NIDCollectionDataParserConfig(data=collection),
                                  train_num_rays_per_batch=256, eval_num_rays_per_batch=256, **kwargs)
    torch.manual_seed(42 + rank)  # what nerfstudio's train_loop does per rank (machine.seed + rank)
    return config.setup(device="cpu", test_mode="val", world_size=world_size, local_rank=rank)


def test_two_ranks_own_and_draw_different_images(collection):
    ranks = [make_dm(collection, 2, r) for r in range(2)]
    num_images = len(ranks[0].train_dataset)
    assert num_images == 24
    shards = [dm.train_shard for dm in ranks]
    assert set(shards[0]).isdisjoint(shards[1]) and sorted(shards[0] + shards[1]) == list(range(num_images))
    scene = ranks[0].train_dataset.cameras.metadata["scene_index"].reshape(-1)
    drawn = []
    for dm, shard in zip(ranks, shards):
        # the image cache holds this rank's images only; cameras and residual map stay global
        assert sorted(dm.train_image_dataloader.cached_collated_batch["image_idx"].tolist()) == shard
        assert len(dm.train_dataset) == num_images
        assert dm.train_pixel_sampler.residual_map.num_images == num_images
        pixels = set()
        for step in range(3):
            ray_bundle, batch = dm.next_train(step)
            images = batch["indices"][:, 0]
            assert set(images.tolist()) <= set(shard)
            # rays carry the scene of their (global) image
            assert torch.equal(ray_bundle.metadata["scene_index"].reshape(-1), scene[images])
            dm.observe_residuals(batch, torch.rand(images.shape[0]))
            pixels |= {tuple(p) for p in batch["indices"].tolist()}
        assert set(scene[sorted({p[0] for p in pixels})].tolist()) == {0, 1, 2}, "each rank draws from every scene"
        drawn.append(pixels)
        # each rank's residual map: visited cells only in the images it owns
        rmap = dm.train_pixel_sampler.residual_map
        visited = [i for i in range(num_images) if torch.isfinite(rmap.image(i)).any()]
        assert visited and set(visited) <= set(shard)
        assert dm.train_pixel_sampler.preview_image_indices() == shard[:4]
        report = dm.shard_report()
        assert report["images"] == shard and report["rays_drawn"] == 3 * 256
        assert set(map(int, report["rays_per_image"])) <= set(shard)
    assert drawn[0].isdisjoint(drawn[1])


@pytest.mark.parametrize("world_size", [1, 2])
def test_scenes_per_step_draws_each_batch_from_that_many_scenes(collection, world_size):
    dm = make_dm(collection, world_size, 0, scenes_per_step=1)
    scene = dm.train_dataset.cameras.metadata["scene_index"].reshape(-1)
    owned = set(dm.train_shard) if dm.train_shard is not None else set(range(len(dm.train_dataset)))
    seen = set()
    for step in range(12):
        ray_bundle, batch = dm.next_train(step)
        images = batch["indices"][:, 0]
        assert images.shape[0] == 256 and set(images.tolist()) <= owned
        scenes = set(scene[images].tolist())
        assert len(scenes) == 1, "one scene per step"
        assert torch.equal(ray_bundle.metadata["scene_index"].reshape(-1), scene[images])
        dm.observe_residuals(batch, torch.rand(images.shape[0]))
        seen |= scenes
    assert seen == {0, 1, 2}, "the scene changes from step to step"


def test_negative_scenes_per_step_is_a_clear_error(collection):
    with pytest.raises(NIDInputError, match="scenes-per-step is -1"):
        make_dm(collection, 1, 0, scenes_per_step=-1)


def test_restrict_to_scenes_subsets_every_per_image_entry():
    from nid_nerf.engine.datamanager import restrict_to_scenes

    batch = {"image": torch.arange(6.0).reshape(6, 1, 1, 1), "image_idx": torch.tensor([5, 4, 3, 2, 1, 0]),
             "mask": [torch.full((1, 1), i) for i in range(6)], "note": "kept"}
    image_scenes = torch.tensor([0, 0, 1, 1, 2, 2])
    torch.manual_seed(0)
    out = restrict_to_scenes(batch, image_scenes, 1)
    (kept_scene,) = set(image_scenes[out["image_idx"]].tolist())
    assert sorted(out["image_idx"].tolist()) == [i for i in range(6) if image_scenes[i] == kept_scene]
    expected = [5 - i for i in out["image_idx"].tolist()]
    assert [int(m) for m in out["mask"]] == out["image"].reshape(-1).long().tolist() == expected
    assert out["note"] == "kept"
    assert restrict_to_scenes(batch, image_scenes, 3) is batch


def test_one_process_is_not_sharded(collection):
    dm = make_dm(collection, 1, 0)
    assert dm.train_shard is None
    assert dm.train_image_dataloader.dataset is dm.train_dataset  # nerfstudio's own loader, untouched
    assert len(dm.train_image_dataloader.cached_collated_batch["image_idx"]) == 24


# ------------------------------------------------------------------------------------------- launcher


def ddp_probe(local_rank: int, world_size: int, config, global_rank: int = 0) -> None:
    """Runs in each spawned process: one DDP step on rank-dependent data, results gathered on rank 0."""
    import torch.distributed as dist
    from nerfstudio.utils import comms

    from nid_nerf.engine.distributed import gather_objects, rank_and_world_size, rewrap_ddp, wrap_ddp

    torch.manual_seed(global_rank)  # different initial weights: DDP must copy rank 0's
    model = torch.nn.Linear(3, 1)
    model.bias.requires_grad_(False)  # switched on later, like nid-field's residual table
    ddp = wrap_ddp(model, "cpu", local_rank)
    x = torch.ones(4, 3)
    (ddp(x).sum() * (global_rank + 1)).backward()  # d/dw = 4 (rank + 1) per input
    weight_grad = model.weight.grad.tolist()
    model.bias.requires_grad_(True)
    model.zero_grad()
    ddp = rewrap_ddp(ddp, "cpu", local_rank)
    (ddp(x).sum() * (global_rank + 1)).backward()  # d/db = 4 (rank + 1)
    rank, world = rank_and_world_size()
    mine = {"rank": rank, "world": world, "backend": str(dist.get_backend()), "local_size": comms.get_local_size(),
            "weight": model.weight.detach().tolist(), "weight_grad": weight_grad, "bias_grad": model.bias.grad.item(),
            "threads": torch.get_num_threads()}
    everyone = gather_objects(mine)
    if rank == 0:
        Path(config.out).write_text(json.dumps(everyone))
    # tear the DDP reducers down on every rank before the worker destroys the process group: a reducer freed
    # by the garbage collector after that point aborts the process ("terminate called without an active exception")
    del ddp
    gc.collect()
    dist.barrier()


def test_nerfstudio_launch_runs_two_gloo_processes_on_cpu(tmp_path, monkeypatch):
    from nerfstudio.configs.base_config import LoggingConfig, MachineConfig
    from nerfstudio.scripts import train

    monkeypatch.setattr(train, "_distributed_worker", train._distributed_worker)  # restored after the test
    assert not install_gloo_worker(MachineConfig(num_devices=2, device_type="cuda"))
    assert not install_gloo_worker(MachineConfig(num_devices=1, device_type="cpu"))
    assert install_gloo_worker(MachineConfig(num_devices=2, device_type="cpu"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)

    out = tmp_path / "probe.json"
    config = SimpleNamespace(out=str(out), logging=LoggingConfig())
    train.launch(ddp_probe, num_devices_per_machine=2, dist_url=f"tcp://127.0.0.1:{free_port()}", config=config,
                 device_type="cpu")
    results = json.loads(out.read_text())
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == 2 for r in results)
    assert all(r["backend"] == "gloo" and r["local_size"] == 2 for r in results)
    assert results[0]["weight"] == results[1]["weight"], "DDP started both replicas from rank 0's weights"
    # gradients 4 (rank + 1) averaged over the ranks: (4 + 8) / 2, also for the parameter switched on later
    for r in results:
        assert r["weight_grad"] == [[6.0, 6.0, 6.0]]
        assert r["bias_grad"] == 6.0, "the re-wrapped DDP reduces the newly trainable parameter"
        assert r["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)


# ------------------------------------------------------------------------------------------- end to end

TWO_CPU_PROCESSES = ["--machine.num-devices", "2", "--machine.device-type", "cpu",
                     "--vis", "tensorboard", "--viewer.quit-on-train-completion", "True",
                     "--pipeline.datamanager.train-num-rays-per-batch", "256",
                     "--pipeline.model.grid-resolution", "24", "--pipeline.model.num-fine-samples", "16",
                     "--experiment-name", "e", "--timestamp", "t"]
STEPS = 6


def assert_sharded_and_in_sync(run_dir: Path, num_images: int, scenes: set) -> None:
    shards = json.loads((run_dir / "shards.json").read_text())
    ranks = shards["ranks"]
    assert shards["world_size"] == 2 and [r["rank"] for r in ranks] == [0, 1]
    assert set(ranks[0]["images"]).isdisjoint(ranks[1]["images"])
    assert sorted(ranks[0]["images"] + ranks[1]["images"]) == list(range(num_images))
    for r in ranks:
        assert r["rays_drawn"] == STEPS * 256
        assert set(map(int, r["rays_per_image"])) <= set(r["images"]), "each rank drew from its own images only"
        assert set(r["scene_image_counts"]) == scenes
    assert ranks[0]["parameter_checksum"] == ranks[1]["parameter_checksum"], "DDP kept the replicas identical"
    assert not list(run_dir.rglob(".*tmp")), "no half-written file left behind"


@pytest.fixture(scope="module")
def dict_run(collection, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dict2")
    result = run([
        "ns-train", "nid-dict", "--data", collection, "--output-dir", out,
        "--machine.dist-url", f"tcp://127.0.0.1:{free_port()}",
        "--max-num-iterations", STEPS, "--steps-per-save", STEPS,
        "--pipeline.model.num-experts", "4", "--pipeline.model.top-k", "2",
        "--pipeline.model.dense-warmup-steps", "3", "--pipeline.model.log2-table-size", "12",
        *TWO_CPU_PROCESSES,
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    return out / "e" / "nid-dict" / "t"


@pytest.mark.slow
def test_ns_train_nid_dict_with_two_cpu_processes(dict_run):
    ckpts = list((dict_run / "nerfstudio_models").glob("*.ckpt"))
    assert [c.name for c in ckpts] == [f"step-{STEPS - 1:09d}.ckpt"]
    state = torch.load(ckpts[0], map_location="cpu", weights_only=True)
    assert any(k.endswith("field.experts.tables") for k in state["pipeline"])
    assert not any(".module." in k for k in state["pipeline"]), "single-process key layout"
    payload = torch.load(dict_run / "dictionary.pt", weights_only=True)
    assert payload["codes"].shape == (3, 4)
    assert (dict_run / "dataparser_transforms.json").is_file()
    assert_sharded_and_in_sync(dict_run, 24, {"0", "1", "2"})


@pytest.mark.slow
def test_ns_train_nid_field_solve_then_refine_with_two_cpu_processes(dict_run, collection, tmp_path):
    dictionary = dict_run / "dictionary.pt"
    result = run([
        "ns-train", "nid-field", "--data", collection / "vases_0002", "--output-dir", tmp_path,
        "--pipeline.model.dictionary-path", dictionary, "--pipeline.model.solve-steps", "3",
        "--max-num-iterations", STEPS, "--steps-per-save", STEPS, *TWO_CPU_PROCESSES,
    ])
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "e" / "nid-field" / "t"
    state = torch.load(next(run_dir.rglob("*.ckpt")), weights_only=True)["pipeline"]
    tables = next(v for k, v in state.items() if k.endswith("field.experts.tables"))
    assert torch.equal(tables, torch.load(dictionary, weights_only=True)["tables"])
    residual = next(v for k, v in state.items() if k.endswith("field.refine_table"))
    assert residual.abs().sum() > 0, "the refine stage trained the residual table"
    # equal checksums after the refine switch: the residual table is averaged over the ranks too
    assert_sharded_and_in_sync(run_dir, 8, {"0"})
