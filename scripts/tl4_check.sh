#!/usr/bin/env bash
# TransformerLens 4 readiness: a second environment, .venv-tl4, with TransformerLens 4 and
# the project but no SAELens (SAELens 6 pins transformer-lens<4, so it cannot install there),
# then the tests of everything that does not need SAELens, run on it. .ci/run runs this after
# the main steps; README "TransformerLens 4" lists what cannot work on 4 yet, and why.
# Safe to run again: the environment is built once and reused while it imports.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
TL4_SPEC="${TL4_SPEC:-transformer-lens>=4,<5}"
VENV=.venv-tl4

if ! "$VENV/bin/python" -c "import transformer_lens, interp_pipeline" >/dev/null 2>&1; then
    "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    # torch first, as in scripts/setup.sh: asked for later, pip would resolve a multi-GB CUDA build.
    "$VENV/bin/python" -m pip install --quiet "$TORCH_SPEC"
    # The project's own dependencies from pyproject.toml but sae-lens and transformer-lens (which
    # would pull TransformerLens 3 back in), then the project itself without dependencies.
    deps="$("$VENV/bin/python" - <<'PY'
import re, tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
for spec in project["dependencies"]:
    if re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0].lower() not in ("sae-lens", "transformer-lens"):
        print(spec)
PY
)"
    # pytest; nothing else of [dev] (the tests chosen below need none of it).
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --quiet "$TL4_SPEC" $deps "pytest>=8"
    "$VENV/bin/python" -m pip install --quiet --no-deps -e .
fi
"$VENV/bin/python" -c "import transformer_lens, importlib.metadata as m; print('TransformerLens', m.version('transformer-lens'))"
if "$VENV/bin/python" -c "import sae_lens" >/dev/null 2>&1; then
    echo "error: SAELens is installed in $VENV; this check is of an environment without it" >&2
    exit 1
fi

# The tests that run on TransformerLens 4: a fast file or two per area (the lists' comments say
# which); tests/tl4_selection.py marks out, with the reason, the tests of these files that need
# SAELens or HookedTransformer. README "TransformerLens 4" lists the areas that cannot work yet.
TL4_TESTS=(
    tests/models/test_tl4.py
)
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" "$VENV/bin/python" -m pytest -q -p no:cacheprovider "${TL4_TESTS[@]}" "$@"
