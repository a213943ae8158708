"""nid_nerf.io: nothing half-written, whatever happens inside the block."""

from __future__ import annotations

import json

import pytest

from nid_nerf.errors import NIDInputError
from nid_nerf.io import TEMP_FOLDER_PREFIX, atomic_folder, atomic_path, check_writable_file, write_json, write_text


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = write_text(tmp_path / "report.md", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.md"]  # no temp file left


def test_written_files_get_a_plain_mode_and_json_round_trips(tmp_path):
    path = write_json(tmp_path / "sub" / "a.json", {"b": 1, "a": [1, 2]})
    assert json.loads(path.read_text()) == {"a": [1, 2], "b": 1}
    assert path.read_text().endswith("\n")
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others, not mkstemp's 0600 (default umask 022)


def test_check_writable_file_names_the_problem(tmp_path):
    with pytest.raises(NIDInputError, match="unsupported extension '.txt'"):
        check_writable_file(tmp_path / "mesh.txt", (".ply",))
    (tmp_path / "mesh.ply").mkdir()
    with pytest.raises(NIDInputError, match="is a folder"):
        check_writable_file(tmp_path / "mesh.ply", (".ply",))


def _fill(folder, text):
    (folder / "f.txt").write_text(text)


def test_atomic_folder_policies(tmp_path):
    final = tmp_path / "scene"
    with atomic_folder(final) as tmp:
        assert tmp.name.startswith(TEMP_FOLDER_PREFIX) and tmp.parent == tmp_path
        _fill(tmp, "one")
    assert (final / "f.txt").read_text() == "one"
    with pytest.raises(FileExistsError):
        with atomic_folder(final) as tmp:
            _fill(tmp, "two")
    assert (final / "f.txt").read_text() == "one"
    with atomic_folder(final, if_exists="keep") as tmp:  # a writer got there first: its folder stays
        _fill(tmp, "three")
    assert (final / "f.txt").read_text() == "one"
    with atomic_folder(final, if_exists="keep", complete=lambda f: False) as tmp:  # incomplete leftover: replaced
        _fill(tmp, "four")
    assert (final / "f.txt").read_text() == "four"
    with atomic_folder(final, if_exists="replace") as tmp:
        _fill(tmp, "five")
    assert (final / "f.txt").read_text() == "five"
    with pytest.raises(RuntimeError):
        with atomic_folder(final, if_exists="replace") as tmp:
            _fill(tmp, "six")
            raise RuntimeError("crash while writing")
    assert (final / "f.txt").read_text() == "five"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]  # no temp or trash folder left
