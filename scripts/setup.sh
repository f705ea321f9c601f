#!/usr/bin/env bash
# Set up .venv for this checkout: the CPU build of torch first, then the project with
# its dev extras (editable). Safe to run again; it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
# torch before anything that depends on it: asked for later, pip would resolve a
# multi-GB CUDA build. Override TORCH_SPEC for another build (e.g. on a GPU machine).
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e ".[dev]"
