"""Procedural shape families: parametric, exact meshes that need no input files.

Each family module has ``sample_params(rng) -> dict`` (JSON-serialisable) and ``build(params) -> ColoredMesh``.
"""

from __future__ import annotations

from types import ModuleType
from typing import Dict, Tuple

import numpy as np

from nid_nerf.synthetic.colored_mesh import ColoredMesh
from nid_nerf.synthetic.families import chairs, mugs, vases

FAMILIES: Dict[str, ModuleType] = {"chairs": chairs, "vases": vases, "mugs": mugs}


def member_seed(family: str, index: int, seed: int) -> np.random.SeedSequence:
    """Member ``index`` of ``family`` depends only on (family, index, seed), not on how many are made."""
    tag = int.from_bytes(family.encode("utf-8")[:8].ljust(8, b"\0"), "little")
    return np.random.SeedSequence([seed, tag, index])


def make_member(family: str, index: int, seed: int = 0) -> Tuple[ColoredMesh, Dict]:
    """Build member ``index`` of ``family``; returns the mesh and the parameters it was built from."""
    module = FAMILIES[family]
    params = module.sample_params(np.random.default_rng(member_seed(family, index, seed)))
    return module.build(params), params
