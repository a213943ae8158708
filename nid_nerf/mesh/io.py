"""Atomic writes of meshes and JSON, with early checks that the output can be written."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Sequence

import trimesh

from nid_nerf.errors import NIDInputError

MESH_SUFFIXES = (".ply", ".obj", ".glb")


def check_writable(path: Path, suffixes: Sequence[str]) -> Path:
    """Fail fast (before any long computation) if ``path`` cannot be written; create missing parent folders.

    Raises:
        NIDInputError: wrong suffix, path is a folder, parent cannot be created or written into.
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
            "pass an --output inside a writable folder"
        ) from None
    try:
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".probe"):
            pass
    except OSError as err:
        raise NIDInputError(
            f"output {path} cannot be written: folder {path.parent} is not writable ({err.strerror}); "
            "pass an --output inside a writable folder"
        ) from None
    return path


def _temp_sibling(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the final file the usual permissions
    return Path(tmp)


def write_mesh_atomic(mesh: trimesh.Trimesh, path: Path) -> Path:
    """Write ``mesh`` (PLY, OBJ or GLB, from the suffix) to a temp file next to ``path``, then ``os.replace``."""
    path = check_writable(Path(path), MESH_SUFFIXES)
    tmp = _temp_sibling(path)
    try:
        mesh.export(str(tmp), file_type=path.suffix.lower().lstrip("."))
        os.replace(tmp, path)
    except OSError as err:
        raise NIDInputError(f"output {path} cannot be written ({err}); pass an --output on a writable disk") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_json_atomic(data: Dict[str, Any], path: Path) -> Path:
    """Write ``data`` as indented JSON to a temp file next to ``path``, then ``os.replace``."""
    path = check_writable(Path(path), (".json",))
    tmp = _temp_sibling(path)
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except OSError as err:
        raise NIDInputError(f"output {path} cannot be written ({err}); pass an --output on a writable disk") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
