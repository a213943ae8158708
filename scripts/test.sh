#!/usr/bin/env bash
# Install everything (idempotent) and run the test suite. Extra args go to pytest, e.g. `-m slow`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
python -m pytest -q "$@"
