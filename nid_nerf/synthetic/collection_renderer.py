"""Render a folder of meshes, or members of a procedural family, into a collection of posed scenes."""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import shutil
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Literal, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nid_nerf.errors import NIDInputError
from nid_nerf.io import check_writable_folder, process_alive, write_json
from nid_nerf.synthetic.cameras import Pinhole, orbit_views
from nid_nerf.synthetic.colored_mesh import ColoredMesh
from nid_nerf.synthetic.colors import load_colors_file, palette_color
from nid_nerf.synthetic.mesh_loading import MESH_SUFFIXES, MeshRejected, load_mesh_file
from nid_nerf.synthetic.normalize import UpAxis, normalize_mesh
from nid_nerf.synthetic.raycast import Shading, raycast_views
from nid_nerf.synthetic.scene_writer import TEMP_PREFIX, write_scene

COLORS_FILE = "colors.json"
COLLECTION_FILE = "collection.json"


@dataclass(frozen=True)
class RenderSettings:
    """How every scene of a collection is rendered (stored in each scene's nid_scene.json)."""

    views_train: int = 50
    views_test: int = 10
    resolution: int = 64
    """Image width and height in pixels."""
    seed: int = 0
    fov_deg: float = 45.0
    camera_distance: float = 2.5
    object_radius: float = 0.8
    """The mesh is scaled so that its farthest vertex from the bounding-box centre is at this radius."""
    scene_box_half: float = 1.0
    """Half-size of the axis-aligned scene box written to transforms.json."""
    up_axis: UpAxis = "y"
    """Which axis of a mesh file points up (turned into +z). Procedural families are built z-up."""
    max_faces: int = 1_000_000
    huge: Literal["decimate", "reject"] = "decimate"
    decimate_to: int = 200_000
    shading: Shading = field(default_factory=Shading)
    overwrite: bool = False


@dataclass(frozen=True)
class SceneJob:
    """One scene to render: a mesh file, or member ``index`` of a procedural ``family``."""

    name: str
    path: Optional[str] = None
    family: Optional[str] = None
    index: int = 0
    color: Optional[Tuple[float, float, float]] = None
    """Colour from colors.json, which wins over the mesh's own colours."""


@dataclass
class SceneResult:
    name: str
    status: Literal["rendered", "exists", "skipped"]
    reason: str = ""
    views: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of the process that rendered the scene (insensitive to other load on the machine)."""
    color_source: str = ""
    faces: int = 0
    notes: List[str] = field(default_factory=list)


def discover_mesh_jobs(meshes_dir: Path) -> Tuple[List[SceneJob], List[Tuple[str, str]]]:
    """List the meshes in ``meshes_dir``: mesh files at the top level, and folders holding exactly one mesh file.

    Returns the jobs and ``(item, reason)`` for everything skipped (not a mesh, empty folder, unreadable
    colours file, duplicate names). Hidden files are ignored.

    Raises:
        NIDInputError: ``meshes_dir`` is not a folder.
    """
    meshes_dir = Path(meshes_dir)
    if not meshes_dir.is_dir():
        raise NIDInputError(f"mesh folder {meshes_dir} does not exist or is not a folder; pass --meshes DIR")
    skipped: List[Tuple[str, str]] = []
    colors: Dict[str, np.ndarray] = {}
    colors_path = meshes_dir / COLORS_FILE
    if colors_path.exists():
        loaded, warning = load_colors_file(colors_path)
        if warning:
            skipped.append((COLORS_FILE, f"colours file not used ({warning})" if loaded is None else warning))
        colors = loaded or {}

    jobs: Dict[str, SceneJob] = {}
    for entry in sorted(meshes_dir.iterdir()):
        if entry.name.startswith(".") or entry.name == COLORS_FILE:
            continue
        if entry.is_dir():
            found = sorted(p for p in entry.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
            if not found:
                has_files = any(p.is_file() for p in entry.rglob("*"))
                skipped.append((entry.name + "/", "folder holds no mesh file" if has_files else "empty folder"))
                continue
            if len(found) > 1:
                skipped.append((entry.name + "/", f"folder holds {len(found)} mesh files; keep one mesh per folder"))
                continue
            path, name = found[0], entry.name
        elif entry.suffix.lower() in MESH_SUFFIXES:
            path, name = entry, entry.stem
        else:
            skipped.append((entry.name, f"not a mesh (use one of {', '.join(MESH_SUFFIXES)})"))
            continue
        if name in jobs:
            skipped.append((entry.name, f"another mesh is already named '{name}'"))
            continue
        color = colors.get(name, colors.get(path.name))
        jobs[name] = SceneJob(name=name, path=str(path), color=None if color is None else tuple(map(float, color)))
    return list(jobs.values()), skipped


def family_jobs(family: str, count: int) -> List[SceneJob]:
    from nid_nerf.synthetic.families import FAMILIES

    if family not in FAMILIES:
        raise NIDInputError(f"unknown shape family '{family}'; use one of {', '.join(sorted(FAMILIES))}")
    if count < 1:
        raise NIDInputError(f"--count must be at least 1 (got {count})")
    return [SceneJob(name=f"{family}_{i:04d}", family=family, index=i) for i in range(count)]


def scene_rng(seed: int, name: str) -> np.random.Generator:
    """Per-scene cameras depend on (seed, scene name) only: adding meshes does not move other scenes' cameras."""
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))]))


def resolve_colors(mesh: ColoredMesh, job: SceneJob) -> ColoredMesh:
    """colors.json first, then the mesh's own colours, then a palette colour picked by the scene name."""
    if job.color is not None:
        return mesh.with_uniform_color(np.asarray(job.color), "colors.json")
    if mesh.color_source != "none":
        return mesh
    return mesh.with_uniform_color(palette_color(job.name), "palette")


def build_mesh(job: SceneJob, settings: RenderSettings) -> Tuple[ColoredMesh, Dict, List[str]]:
    """Load or generate the mesh, apply the face budget and colours. Returns (mesh, source info, notes)."""
    notes: List[str] = []
    if job.family is not None:
        from nid_nerf.synthetic.families import make_member

        mesh, params = make_member(job.family, job.index, settings.seed)
        return mesh, {"kind": "family", "family": job.family, "index": job.index, "params": params}, notes
    path = Path(job.path)
    mesh = load_mesh_file(path)
    source = {"kind": "file", "path": str(path), "format": path.suffix.lower().lstrip(".")}
    if mesh.num_faces > settings.max_faces:
        if settings.huge == "reject":
            raise MeshRejected(
                "huge", f"has {mesh.num_faces:,} faces (> {settings.max_faces:,}); decimate it or pass --huge decimate"
            )
        from nid_nerf.synthetic.decimate import decimate_mesh

        before = mesh.num_faces
        mesh = decimate_mesh(mesh, settings.decimate_to)
        notes.append(f"decimated from {before:,} to {mesh.num_faces:,} faces")
        source["decimated_from_faces"] = before
    return resolve_colors(mesh, job), source, notes


def render_scene(job: SceneJob, settings: RenderSettings, output_dir: Path, nthreads: int = 0) -> SceneResult:
    """Render one scene into ``output_dir/job.name`` (atomically). Bad meshes come back as ``skipped``."""
    start, cpu_start = time.perf_counter(), time.process_time()
    final = Path(output_dir) / job.name
    if final.is_dir() and not settings.overwrite:
        return SceneResult(job.name, "exists", reason="already rendered", notes=_settings_mismatch(final, settings))
    try:
        mesh, source, notes = build_mesh(job, settings)
    except MeshRejected as err:
        return SceneResult(job.name, "skipped", reason=f"{err.kind}: {err.reason}")
    up_axis = "z" if job.family is not None else settings.up_axis
    mesh, transform = normalize_mesh(mesh, up_axis, settings.object_radius)

    intrinsics = Pinhole.from_fov(settings.resolution, settings.resolution, settings.fov_deg)
    train_poses, test_poses = orbit_views(
        settings.views_train, settings.views_test, settings.camera_distance, scene_rng(settings.seed, job.name)
    )
    splits, poses = {}, {}
    for split, c2w in (("train", train_poses), ("test", test_poses)):
        if len(c2w):
            splits[split] = raycast_views(mesh, c2w, intrinsics, settings.shading, nthreads=nthreads)
            poses[split] = c2w
    vertices, faces = mesh.concatenated()
    info = {
        "name": job.name,
        "source": source,
        "color_source": mesh.color_source,
        "normalization": transform,
        "faces": mesh.num_faces,
        "scene_scale": settings.object_radius,
        "settings": _settings_dict(settings),
        "nid_nerf_version": _version(),
    }
    write_scene(
        output_dir, job.name, splits, poses, intrinsics, vertices, faces, settings.scene_box_half, info,
        overwrite=settings.overwrite,
    )
    views = settings.views_train + settings.views_test
    return SceneResult(
        job.name, "rendered", views=views, seconds=time.perf_counter() - start,
        cpu_seconds=time.process_time() - cpu_start, color_source=mesh.color_source, faces=mesh.num_faces, notes=notes,
    )


def _settings_mismatch(scene: Path, settings: RenderSettings) -> List[str]:
    """A note when an existing scene was rendered with other settings (it is kept; --overwrite redoes it)."""
    try:
        old = json.loads((scene / "nid_scene.json").read_text()).get("settings", {})
    except (OSError, ValueError):
        return ["existing scene has no readable nid_scene.json; pass --overwrite to re-render it"]
    new = json.loads(json.dumps(_settings_dict(settings)))
    changed = sorted(k for k in new if old.get(k) != new[k])
    if not changed:
        return []
    diffs = ", ".join(f"{k} {old.get(k)!r} -> {new[k]!r}" for k in changed[:4])
    return [f"kept the existing scene, rendered with other settings ({diffs}); pass --overwrite to re-render"]


def _render_scene_safe(job: SceneJob, settings: RenderSettings, output_dir: str, nthreads: int) -> SceneResult:
    try:
        return render_scene(job, settings, Path(output_dir), nthreads)
    except Exception as err:  # one bad mesh must not stop a collection; report it instead
        return SceneResult(job.name, "skipped", reason=f"broken: unexpected {type(err).__name__}: {err}")


def clean_stale_temp_folders(output_dir: Path) -> List[str]:
    """Remove temp folders left by interrupted runs whose process is gone (never another live run's)."""
    removed = []
    for tmp in Path(output_dir).glob(f"{TEMP_PREFIX}*"):
        pid = _pid_of_temp(tmp.name)
        if pid is not None and process_alive(pid) and pid != os.getpid():
            continue
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


def remove_unlisted_scenes(output_dir: Path, names: Sequence[str]) -> List[str]:
    """Delete the scenes this tool rendered earlier into ``output_dir`` (folders with nid_scene.json) that are not
    in ``names``; returns their names, sorted.

    With ``--overwrite`` the folder must come out as the listed collection: nid-collection trains on every
    scene folder it finds, so a scene left over from a larger ``--count`` would silently join the training
    set. Folders without nid_scene.json are not this tool's and are never touched. Each scene is first
    renamed to a temporary name (one atomic step, so no half-deleted scene is ever visible under its name;
    an interrupted delete is finished by :func:`clean_stale_temp_folders` on the next run).
    """
    keep = set(names)
    removed = []
    for folder in sorted(Path(output_dir).iterdir()):
        if folder.name.startswith(".") or folder.name in keep or not folder.is_dir():
            continue
        if not (folder / "nid_scene.json").is_file():
            continue
        trash = folder.parent / f"{TEMP_PREFIX}{os.getpid()}-removed-{folder.name}"
        os.rename(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(folder.name)
    return removed


def render_collection(
    jobs: Sequence[SceneJob],
    output_dir: Path,
    settings: RenderSettings,
    workers: int = 0,
    skipped_inputs: Sequence[Tuple[str, str]] = (),
    progress: bool = True,
) -> Tuple[List[SceneResult], Dict]:
    """Render ``jobs`` with ``workers`` processes (0 = one per CPU core) and write ``collection.json``.

    Returns the per-scene results and a summary with the rendering speed. With ``settings.overwrite``, scenes
    rendered earlier into ``output_dir`` that ``jobs`` no longer lists are removed (``stats["removed"]``,
    see :func:`remove_unlisted_scenes`).

    Raises:
        NIDInputError: no input is usable, or the output folder cannot be written.
    """
    output_dir = Path(output_dir)
    check_writable_folder(output_dir, option="--output")
    clean_stale_temp_folders(output_dir)
    if not jobs:
        raise NIDInputError(_nothing_usable_message(skipped_inputs))
    workers = workers or os.cpu_count() or 1
    workers = max(1, min(workers, len(jobs)))
    nthreads = 1 if workers > 1 else 0

    results: List[SceneResult] = []
    start = time.perf_counter()
    bar = tqdm(
        total=len(jobs), unit="scene", desc="rendering", disable=not progress, dynamic_ncols=True, mininterval=1.0
    )
    views_done = 0
    try:
        if workers == 1:
            for job in jobs:
                results.append(_render_scene_safe(job, settings, str(output_dir), nthreads))
                views_done += results[-1].views
                _advance(bar, views_done, start)
        else:
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
                futures = [pool.submit(_render_scene_safe, job, settings, str(output_dir), nthreads) for job in jobs]
                try:
                    for future in cf.as_completed(futures):
                        results.append(future.result())
                        views_done += results[-1].views
                        _advance(bar, views_done, start)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    elapsed = time.perf_counter() - start
    results.sort(key=lambda r: r.name)

    usable = [r for r in results if r.status in ("rendered", "exists")]
    labels = {job.name: _label(job, Path(output_dir)) for job in jobs}
    skipped = list(skipped_inputs) + [(labels[r.name], r.reason) for r in results if r.status == "skipped"]
    summary = {
        "scenes": [r.name for r in usable],
        "skipped": [{"item": item, "reason": reason} for item, reason in skipped],
        "settings": _settings_dict(settings),
    }
    removed = remove_unlisted_scenes(output_dir, [job.name for job in jobs]) if settings.overwrite and usable else []
    if usable:
        write_json(output_dir / COLLECTION_FILE, summary, indent=1)
    rendered_views = sum(r.views for r in results if r.status == "rendered")
    cpu = sum(r.cpu_seconds for r in results if r.status == "rendered")
    stats = {
        "rendered": sum(r.status == "rendered" for r in results),
        "existing": sum(r.status == "exists" for r in results),
        "skipped": skipped,
        "views": rendered_views,
        "seconds": elapsed,
        "views_per_second": rendered_views / elapsed if elapsed > 0 else 0.0,
        "cpu_seconds": cpu,
        "views_per_cpu_second": rendered_views / cpu if cpu > 0 else 0.0,
        "workers": workers,
        "removed": removed,
    }
    if not usable:
        raise NIDInputError(_nothing_usable_message(skipped))
    return results, stats


def _label(job: SceneJob, output_dir: Path) -> str:
    """How a skipped input is named in warnings: its file (or folder) name, or the family member."""
    if job.path is None:
        return job.name
    path = Path(job.path)
    return path.name if path.stem == job.name else f"{job.name}/ ({path.name})"


def _advance(bar: tqdm, views_done: int, start: float) -> None:
    bar.update(1)
    bar.set_postfix(views_per_s=f"{views_done / max(time.perf_counter() - start, 1e-9):.1f}")


def _nothing_usable_message(skipped: Sequence[Tuple[str, str]]) -> str:
    if not skipped:
        return "the mesh folder holds no mesh files; put OBJ, PLY, GLB or STL files in it, or use --family NAME"
    listed = "; ".join(f"{item}: {reason}" for item, reason in list(skipped)[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    return f"no usable mesh: {listed}{more}; fix or replace these files"


def _settings_dict(settings: RenderSettings) -> Dict:
    out = asdict(settings)
    out.pop("overwrite", None)
    return out


def _pid_of_temp(name: str) -> Optional[int]:
    head = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    return int(head) if head.isdigit() else None



def _version() -> str:
    from nid_nerf import __version__

    return __version__
