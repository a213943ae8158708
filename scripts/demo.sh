#!/usr/bin/env bash
# The main job: install (idempotent), then the few-view demo on the CPU:
#   procedural collection -> ns-train nid-dict (pretrain the dictionary) -> solve a held-out scene from 3 views
#   (and the same field from scratch, for comparison) -> ns-eval, mesh export + mesh metrics -> results page.
# Usage: bash scripts/demo.sh [options of scripts/fewview_demo.py]   e.g. --dict-steps 3000 --count 40
# Writes outputs/demo/results.md and outputs/demo/results.png; every command it runs is printed first.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$ROOT/scripts/setup.sh"
cd "$ROOT"
python scripts/fewview_demo.py "$@"
