"""Every field of every nid-nerf config dataclass has a docstring, which tyro shows as its help in ``ns-train --help``.

The fields and their docstrings are read from the source (the string literal right after a field is its
docstring, the convention tyro and nerfstudio follow); a field inherited from nerfstudio keeps nerfstudio's.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Set, Tuple

PACKAGE = Path(__file__).resolve().parents[1] / "nid_nerf"
CONFIG_SUFFIXES = ("Config", "Options")
CONFIG_PACKAGES = ("configs", "dataparsers", "engine", "fields", "models", "sampling")
"""The folders whose dataclasses make up the ``ns-train`` configs (the CLI tools' own options are tyro dataclasses too,
but live with their tools)."""


def is_dataclass_def(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name == "dataclass":
            return True
    return False


def own_fields(node: ast.ClassDef) -> List[Tuple[str, bool]]:
    """(field name, has a docstring) for each annotated field written in the class body, in order."""
    out = []
    body = node.body
    for i, statement in enumerate(body):
        if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
            nxt = body[i + 1] if i + 1 < len(body) else None
            documented = (isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant)
                          and isinstance(nxt.value.value, str) and nxt.value.value.strip() != "")
            out.append((statement.target.id, documented))
    return out


def config_classes() -> Dict[str, ast.ClassDef]:
    """{module:Class: class AST} of every dataclass of CONFIG_PACKAGES whose name ends in Config or Options."""
    found = {}
    for path in sorted(p for folder in CONFIG_PACKAGES for p in (PACKAGE / folder).rglob("*.py")):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef) and is_dataclass_def(node) and node.name.endswith(CONFIG_SUFFIXES):
                found[f"{module}:{node.name}"] = node
    return found


def undocumented(node: ast.ClassDef) -> List[str]:
    return [name for name, documented in own_fields(node) if not documented and not name.startswith("_")]


def test_the_walk_finds_the_configs_of_both_methods():
    names = {key.split(":")[1] for key in config_classes()}
    assert {"NIDModelConfig", "NIDDataManagerConfig", "NIDPipelineConfig", "NIDTrainerConfig",
            "LogDecaySchedulerConfig", "ResidualPixelSamplerConfig", "MaskedPixelSamplerConfig",
            "NIDSceneDataParserConfig", "NIDCollectionDataParserConfig", "TrainingMaskOptions"} <= names


def test_the_checker_sees_a_missing_docstring():
    source = '@dataclass\nclass AConfig:\n    a: int = 1\n    """A."""\n    b: int = 2\n    _target: type = int\n'
    node = ast.parse(source).body[0]
    assert own_fields(node) == [("a", True), ("b", False), ("_target", False)]
    assert undocumented(node) == ["b"]


def test_every_config_field_has_a_docstring():
    missing = {key: undocumented(node) for key, node in config_classes().items()}
    assert {key: names for key, names in missing.items() if names} == {}


def nid_dataclasses_in_tree(value, seen: Set[type]) -> None:
    """Every dataclass defined in nid_nerf that a method config contains (tyro turns each into a group of options)."""
    if isinstance(value, dict):
        for v in value.values():  # the optimizers: {group: {"optimizer": ..., "scheduler": ...}}
            nid_dataclasses_in_tree(v, seen)
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        if type(value).__module__.startswith("nid_nerf"):
            seen.add(type(value))
        for f in dataclasses.fields(value):
            nid_dataclasses_in_tree(getattr(value, f.name, None), seen)


def test_every_nid_dataclass_of_the_method_configs_is_checked():
    from nid_nerf.configs.method_configs import nid_dict, nid_field

    seen: Set[type] = set()
    for spec in (nid_field, nid_dict):
        nid_dataclasses_in_tree(spec.config, seen)
    checked = set(config_classes())
    in_tree = {f"{cls.__module__}:{cls.__name__}" for cls in seen}
    assert in_tree <= checked, "a nid-nerf dataclass in the CLI whose name does not end in Config / Options"
    assert {cls.__name__ for cls in seen} >= {"NIDTrainerConfig", "NIDPipelineConfig", "NIDDataManagerConfig",
                                              "ResidualPixelSamplerConfig", "NIDModelConfig", "LogDecaySchedulerConfig",
                                              "NIDSceneDataParserConfig", "NIDCollectionDataParserConfig"}


def test_ns_train_help_shows_the_docstrings():
    env = dict(os.environ, COLUMNS="80", PYTHONWARNINGS="ignore")  # one column of options: each help text in one piece
    bin_dir = Path(sys.executable).parent
    result = subprocess.run([str(bin_dir / "ns-train"), "nid-field", "--help"], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    text = " ".join(result.stdout.replace("│", " ").split())
    from nid_nerf.models.nid_model import NIDModelConfig

    body = ast.parse(textwrap.dedent(inspect.getsource(NIDModelConfig))).body[0].body
    for name in ("code_l1_mult", "eikonal_loss_mult", "beta_min", "log2_table_size"):
        (i,) = [k for k, s in enumerate(body) if isinstance(s, ast.AnnAssign) and s.target.id == name]
        docstring = " ".join(body[i + 1].value.value.split())
        option = f"--pipeline.model.{name.replace('_', '-')}"
        assert f"{option} FLOAT" in text or f"{option} INT" in text
        assert docstring in text, f"{name}: its docstring is not in --help"
