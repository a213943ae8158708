"""Atomic file writes and early checks that an output can be written: the only place nid-nerf writes files.

Every file goes to a temporary sibling first (same folder, so the final ``os.replace`` is atomic on the
same file system) and is renamed over ``path`` only once it is complete: a crash or Ctrl-C leaves the
previous file or none, never half a file, and a reader never sees a partial checkpoint, mesh or report.
The final file gets the ordinary mode of a new file (``0666 & ~umask``), not ``mkstemp``'s 0600.

All writers take ``(path, data)`` and return ``path``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, List, Literal, Optional, Sequence

from nid_nerf.errors import NIDInputError


def _plain_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


TEMP_FILE_PATTERN = re.compile(r"^\.(?P<stem>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp(\.[^.]*)?$")
"""Name of the temporary files of :func:`atomic_path`: ``.<stem>.<pid>.<random>.tmp<suffix>`` (the pid lets a
later run tell a killed writer's leftover from a live writer's file, see :func:`remove_stale_temp_files`)."""


@contextlib.contextmanager
def atomic_path(path: Path, temp_dir: Optional[Path] = None) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write to; renamed over ``path`` when the block ends without error.

    The temporary name keeps ``path``'s suffix (writers such as matplotlib, PIL and trimesh pick the format
    from it). On an error the temporary file is removed and the error propagates; ``path`` is untouched.

    ``temp_dir`` puts the temporary file in another folder of the same file system (so the rename stays
    atomic): for folders whose every entry some reader parses, such as nerfstudio's ``nerfstudio_models/``,
    where a killed writer's leftover would otherwise break that reader.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent if temp_dir is None else Path(temp_dir)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.stem}.{os.getpid()}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, _plain_file_mode())
        os.replace(tmp, path)
    except OSError as err:
        raise NIDInputError(f"output {path} cannot be written ({err}); pass an output on a writable disk") from None
    finally:
        tmp.unlink(missing_ok=True)


TEMP_FOLDER_PREFIX = ".tmp-"
"""Name prefix of the temporary folders of :func:`atomic_folder`: ``.tmp-<pid>-<random>-<name>`` (the pid lets a
later run tell a dead writer's leftovers from a live one's)."""


@contextlib.contextmanager
def atomic_folder(
    final: Path,
    if_exists: Literal["error", "replace", "keep"] = "error",
    complete: Optional[Callable[[Path], bool]] = None,
) -> Iterator[Path]:
    """A temporary sibling folder of ``final`` to fill; renamed to ``final`` when the block ends without error.

    A folder cannot be replaced atomically, so a half-written scene or mask cache is never visible under its
    final name, but what happens when ``final`` already exists is a policy:

    - ``error``: raise FileExistsError (the new folder is discarded);
    - ``replace``: the old folder is moved aside, the new one renamed in, the old one deleted;
    - ``keep``: a concurrent writer got there first: keep its folder if ``complete(final)`` (default: always),
      else replace it. A rename that fails because another writer just finished is no error either.

    The temporary folder is removed in every case.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TEMP_FOLDER_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}"
    tmp.mkdir()
    is_complete = complete or (lambda folder: True)
    try:
        yield tmp
        if final.exists():
            if if_exists == "error":
                raise FileExistsError(f"{final} exists")
            if if_exists == "keep" and is_complete(final):
                return
            trash = final.parent / f"{TEMP_FOLDER_PREFIX}{os.getpid()}-old-{uuid.uuid4().hex[:8]}-{final.name}"
            os.rename(final, trash)
            try:
                os.rename(tmp, final)
            except OSError:
                os.rename(trash, final)  # put the old folder back: nothing lost
                raise
            shutil.rmtree(trash, ignore_errors=True)
            return
        try:
            os.rename(tmp, final)
        except OSError:
            if not (if_exists == "keep" and final.exists() and is_complete(final)):
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_stale_temp_files(folder: Path, stems: Optional[Callable[[str], bool]] = None) -> List[Path]:
    """Delete the temporary files of :func:`atomic_path` in ``folder`` whose writer is gone; returns them.

    A writer killed by ``kill -9`` (or a power cut) cannot clean up, so its temporary file stays. Files of a
    live process (by pid) are kept. Also removes the older name form ``.<stem>.<random>.tmp<suffix>``
    (no pid) when ``stems`` (a test on the stem) accepts its stem: only a folder's owner can know that such a
    file is no live writer's.
    """
    removed: List[Path] = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in folder.iterdir():
        if not entry.name.startswith(".") or ".tmp" not in entry.name or not entry.is_file():
            continue
        match = TEMP_FILE_PATTERN.match(entry.name)
        if match is not None:
            pid = int(match.group("pid"))
            if pid != os.getpid() and process_alive(pid):
                continue
        elif stems is None or not stems(entry.name[1:].split(".", 1)[0]):
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id exists (a process of another user counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def write_text(path: Path, text: str) -> Path:
    """Write a UTF-8 text file atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: Path, data: Any, indent: int = 2, sort_keys: bool = True, **dumps_kwargs) -> Path:
    """Write ``data`` as JSON (newline-terminated) atomically."""
    return write_text(path, json.dumps(data, indent=indent, sort_keys=sort_keys, **dumps_kwargs) + "\n")


def torch_save(path: Path, obj: Any, temp_dir: Optional[Path] = None) -> Path:
    """``torch.save`` atomically: a crash never leaves half a checkpoint or dictionary (``temp_dir``: see
    :func:`atomic_path`)."""
    import torch

    with atomic_path(path, temp_dir) as tmp:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
    return Path(path)


def save_figure(path: Path, figure, **savefig_kwargs) -> Path:
    """Save a matplotlib figure atomically, then close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, **savefig_kwargs)
    finally:
        plt.close(figure)
    return Path(path)


def save_image(path: Path, image) -> Path:
    """Save a uint8 image array (H x W, H x W x 3 or H x W x 4) atomically; the format comes from the suffix."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(image).save(tmp)
    return Path(path)


def save_npz(path: Path, **arrays) -> Path:
    """``numpy.savez_compressed`` atomically."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
    return Path(path)


MESH_SUFFIXES = (".ply", ".obj", ".glb")


def write_mesh(path: Path, mesh) -> Path:
    """Export a trimesh mesh (PLY, OBJ or GLB, from the suffix) atomically."""
    with atomic_path(path) as tmp:
        mesh.export(str(tmp), file_type=Path(path).suffix.lower().lstrip("."))
    return Path(path)


def check_writable_folder(folder: Path, option: str = "--output-dir") -> Path:
    """Create ``folder`` if needed and check that a file can be written in it; else one-line NIDInputError."""
    folder = Path(folder).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise NIDInputError(
            f"cannot write to output folder {folder} (files cannot be written there: {err.strerror or err}); "
            f"pass a writable {option} "
            "(or fix its permissions)"
        ) from None
    return folder


def check_writable_file(path: Path, suffixes: Sequence[str], option: str = "--output") -> Path:
    """Fail fast, before any long computation, if the file ``path`` cannot be written; create missing folders.

    Raises:
        NIDInputError: wrong suffix, ``path`` is a folder, or its folder cannot be created or written into.
    """
    path = Path(path).expanduser()
    if path.suffix.lower() not in suffixes:
        raise NIDInputError(
            f"output {path} has an unsupported extension '{path.suffix}'; use one of {', '.join(suffixes)}"
        )
    if path.is_dir():
        raise NIDInputError(f"output {path} is a folder; pass a file path such as {path / ('mesh' + suffixes[0])}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NIDInputError(
            f"output {path} cannot be written: its folder {path.parent} cannot be created ({err.strerror}); "
            f"pass an {option} inside a writable folder"
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise NIDInputError(
            f"output {path} cannot be written: folder {path.parent} is not writable ({err.strerror}); "
            f"pass an {option} inside a writable folder"
        ) from None
    return path
