#!/usr/bin/env bash
# Install everything (idempotent), lint, and run the test suite. Extra args go to pytest, e.g. `-m slow`.
# The tests run with jaxtyping shape checks on (tests/conftest.py); NID_NO_RUNTIME_CHECKS=1 turns them off.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Lint first (rules in pyproject.toml [tool.ruff]); a finding fails the run before any test starts.
ruff check nid_nerf scripts tests
python -m pytest -q "$@"
