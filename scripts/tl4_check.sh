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

started=$SECONDS
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
version="$("$VENV/bin/python" -c "import importlib.metadata as m; print(m.version('transformer-lens'))")"
echo "$VENV: TransformerLens $version, ready in $((SECONDS - started)) s"
if [ "${version%%.*}" != 4 ]; then
    echo "error: $VENV has TransformerLens $version, expected 4.x (remove $VENV to rebuild it)" >&2
    exit 1
fi
if "$VENV/bin/python" -c "import sae_lens" >/dev/null 2>&1; then
    echo "error: SAELens is installed in $VENV; this check is of an environment without it" >&2
    exit 1
fi

# The tests that run on TransformerLens 4, a fast file or two per area. Tests marked hooked_transformer
# are skipped there, each with its reason (tests/conftest.py); README "TransformerLens 4" lists what
# cannot work on 4 yet. Hub models are tiny checkpoints saved here, as in the main run: no network.
TL4_TESTS=(
    tests/models/test_from_config.py                  # config-built and trained toy models (boot_native)
    tests/models/test_load_model.py                   # every source through the stage, the stage cache's codec
    tests/models/test_hub_sources.py                  # hub ids and local directories (TransformerBridge)
    tests/activations/test_cache_stage.py             # caching activations
    tests/patching/test_engine.py                     # patching sweeps against transformer_lens.patching
    tests/patching/test_bridge.py                     # ... and on a GPT-2 Bridge, fast path included
    tests/patching/test_path_and_attribution.py       # path and attribution patching
    tests/stages/test_look.py                         # inspect and logit lens
    tests/analysis/test_logit_lens.py
    tests/pipeline/test_look_preflight.py
    tests/tracing/test_engine.py                      # causal tracing
    tests/tracing/test_rome_reference.py
    tests/probes/test_probes.py                       # probes
    tests/editing/test_rome.py                        # ROME
    tests/circuits/test_scores.py                     # circuit discovery (on a GPT-2 Bridge there)
    tests/circuits/test_circuits.py
)
# Left out: the store's kill -9 and two-process tests (a minute; nothing in them depends on TransformerLens).
# -rs: every skipped test with its reason, in the log.
started=$SECONDS
status=0
OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1 "$VENV/bin/python" -m pytest -q -rs -p no:cacheprovider \
    -k "not kill_9 and not two_processes" "${TL4_TESTS[@]}" "$@" || status=$?
echo "TransformerLens $version tests: $((SECONDS - started)) s"
exit "$status"
