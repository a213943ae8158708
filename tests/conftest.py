"""Test-wide setup: jaxtyping shape checks on every nid_nerf function and dataclass, at run time.

jaxtyping's import hook decorates each function and dataclass of every ``nid_nerf`` module imported from here on
with ``@jaxtyped(typechecker=beartype)``, so an argument or return value whose dtype or shape does not match its
annotation (``Float[Tensor, "*bs 3"]``), or whose named dimensions disagree between arguments, raises
``jaxtyping.TypeCheckError`` (a ``TypeError``) at the call. Only nid_nerf is instrumented: nerfstudio, torch and the
rest import as usual. The hook must be installed before the first ``import nid_nerf``; pytest imports this file
before any test module, and the check below fails loudly if something imported nid_nerf earlier.

Subprocesses that the tests start (CLIs, ``ns-train``) run unchecked. ``NID_NO_RUNTIME_CHECKS=1`` turns the hook off
(to time the suite without it, or to tell a shape failure from a logic failure).
"""

from __future__ import annotations

import os
import shutil
import sys

import pytest

RUNTIME_CHECKS = os.environ.get("NID_NO_RUNTIME_CHECKS", "") in ("", "0")

if RUNTIME_CHECKS:
    if any(name == "nid_nerf" or name.startswith("nid_nerf.") for name in sys.modules):
        raise RuntimeError(
            "nid_nerf was imported before tests/conftest.py could install jaxtyping's import hook, so its shape "
            "annotations would go unchecked; find what imports it early (a pytest plugin?) or set "
            "NID_NO_RUNTIME_CHECKS=1"
        )
    from jaxtyping import install_import_hook

    # PEP 484's numeric tower (an int is a valid float, as for mypy and pyright): the annotations are written to the
    # static checkers' rules, and `bbox: Sequence[float] = [-1, -1, -1, 1, 1, 1]` is meant to pass.
    install_import_hook("nid_nerf", "beartype.beartype(conf=beartype.BeartypeConf(is_pep484_tower=True))")


def pytest_report_header(config) -> str:
    state = "on (jaxtyping + beartype)" if RUNTIME_CHECKS else "off (NID_NO_RUNTIME_CHECKS)"
    return f"nid_nerf runtime shape checks: {state}"


@pytest.fixture(scope="module")
def fused_extension():
    """The fused C++ extension (lookup and softplus), built and loaded; a skip where no compiler is, a failure where
    g++ and ninja are but the build failed."""
    from nid_nerf.fields import fused_lookup

    if not fused_lookup.load():
        if shutil.which("g++") is not None and shutil.which("ninja") is not None:
            pytest.fail(f"g++ and ninja are here but the extension did not build: {fused_lookup._state.get('error')}")
        pytest.skip("no compiler here: the field uses torch's lookup and softplus")
