#!/usr/bin/env bash
# Idempotent environment setup: system packages, a venv at .venv, and nid-nerf in editable mode.
# Usage: source scripts/setup.sh   (or: bash scripts/setup.sh)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NID_VENV:-$ROOT/.venv}"

# open3d needs libusb at import time; the viewer check needs chromium (optional).
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0; then
  if [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && apt-get install -y -qq libusb-1.0-0) >/dev/null 2>&1 || echo "warning: could not apt-get install libusb-1.0-0 (open3d may not import)"
  else
    echo "warning: libusb-1.0-0 missing; install it with: sudo apt-get install libusb-1.0-0"
  fi
fi
# ns-render writes its videos through ffmpeg (and ns-render refuses to start without it).
if ! command -v ffmpeg >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    (apt-get update -qq && apt-get install -y -qq ffmpeg) >/dev/null 2>&1 || echo "warning: could not apt-get install ffmpeg (ns-render cannot write videos)"
  else
    echo "warning: ffmpeg missing (ns-render needs it); install it with: sudo apt-get install ffmpeg"
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
stamp="$VENV/.nid-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  "$PY" -m pip install -q --upgrade pip
  # torch first, pinned, so that nothing pulls a multi-GB build; this pair installs from local files here.
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
  "$PY" -m pip install -q -e "$ROOT[test]"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
# The fused C++ hash-grid lookup and softplus (nid_nerf/fields/fused_lookup.cpp, fused_softplus.cpp): compiled once
# per machine with g++ and ninja (about 20 s; cached in torch's extension folder), then checked against torch's ops.
# Without a compiler the field falls back to torch's lookup and softplus.
"$PY" -m nid_nerf.fields.fused_lookup 2>&1 | grep -v "No CUDA runtime is found" \
  || echo "warning: the fused hash-grid lookup and softplus did not build (is g++ installed?); training uses torch's slower ops"
