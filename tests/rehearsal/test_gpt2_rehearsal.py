"""The GPT-2 rehearsal: every GPT-2-default experiment end to end, offline, on a GPT-2 of random
weights in a Hugging Face cache directory (models--gpt2 with GPT-2's real tokenizer, and a random
gpt2-small-res-jb SAE), loaded through TransformerLens's and SAELens's own from_pretrained with
HF_HUB_OFFLINE=1, in rehearsal mode: every expect: key is produced, its value not judged.

One subprocess runs them all (python -m interp_pipeline.rehearsal), so huggingface_hub reads the
rehearsal's HF_HOME at import as a user's process reads theirs."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import time

import pytest
import yaml

from interp_pipeline.experiments.compose import compose
from interp_pipeline.report.expect import check_expectations
from interp_pipeline.common.paths import conf_dir
from interp_pipeline.rehearsal.experiments import REHEARSALS, overrides_for
from tests.conftest import cli_env

pytestmark = pytest.mark.slow


def _gpt2_default_experiments() -> list[str]:
    found = []
    for path in sorted((conf_dir() / "experiment").glob("*.yaml")):
        defaults = yaml.safe_load(path.read_text()).get("defaults") or []
        if any(isinstance(d, dict) and d.get("/model") == "gpt2_small" for d in defaults):
            found.append(path.stem)
    return found


def test_every_gpt2_default_experiment_has_a_rehearsal():
    """A new experiment defaulting to model=gpt2_small joins REHEARSALS (interp_pipeline/rehearsal/experiments.py);
    any other entry rehearses a bigger GPT-2's config at GPT-2 small's shapes, Gemma 3's, or a Bridge of GPT-2."""
    small = _gpt2_default_experiments()
    assert set(small) <= set(REHEARSALS)
    for other in set(REHEARSALS) - set(small):
        assert {"model=gpt2_small", "model=gemma3_270m", "model=hf"} & set(REHEARSALS[other]), other


def test_rehearsal_mode_needs_each_key_produced_and_judges_no_value():
    expect = {"patching.clean_logit_diff": {"value": 3.552, "atol": 0.01}, "eval.sparsity/l0": {"max": 30}}
    far_off = {"patching.clean_logit_diff": -40.0, "eval.sparsity/l0": 500.0}
    assert [r.passed for r in check_expectations(expect, far_off, rehearsal=True)] == [True, True]
    assert [r.passed for r in check_expectations(expect, far_off)] == [False, False]
    missing = check_expectations(expect, {"patching.clean_logit_diff": 3.5}, rehearsal=True)
    assert [r.passed for r in missing] == [True, False]
    assert not check_expectations(expect, {**far_off, "eval.sparsity/l0": math.nan}, rehearsal=True)[1].passed


@pytest.fixture(scope="module")
def rehearsal(rehearsal_hf_home, tmp_path_factory):
    """All rehearsals in one process: (summary, log text)."""
    folder = tmp_path_factory.mktemp("rehearsal_runs")
    summary = folder / "summary.json"
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "interp_pipeline.rehearsal", "--hf-home", str(rehearsal_hf_home),
         "--summary", str(summary)],
        env=cli_env(folder / "outputs", OMP_NUM_THREADS="1"), cwd=folder, capture_output=True, text=True,
        timeout=1200)
    log = result.stdout + result.stderr
    print(f"rehearsal: {time.perf_counter() - started:.1f} s wall\n{log[-3000:]}")
    assert summary.is_file(), log[-4000:]
    return json.loads(summary.read_text()), log


@pytest.mark.parametrize("experiment", list(REHEARSALS))
def test_the_experiment_runs_end_to_end_offline_and_produces_every_expect_key(rehearsal, experiment):
    summary, log = rehearsal
    assert summary[experiment]["status"] == 0, log[-4000:]
    cfg = compose(overrides_for(experiment, "unused.jsonl"))
    for key in cfg.get("expect") or {}:
        # The expect table's row: key, "produced (rehearsal)", the value got, ok.
        assert re.search(rf"{re.escape(key)}\s.*produced \(rehearsal\)\s.*\sok\s", log), key


def test_preflight_reads_the_models_shape_and_tokenizer_from_the_cache(rehearsal):
    """Pre-flight's shape (hook names, layers, context, token checks) comes from the cached config.json and
    tokenizer, as for a user with GPT-2 cached; without them it would leave the checks to the stages."""
    summary, _ = rehearsal
    assert summary["preflight"] == {"n_layers": 12, "n_heads": 12, "d_model": 96, "d_vocab": 50257,
                                    "tokenizer_vocab": 50257}


def test_the_model_is_transformer_lens_gpt2_small_from_the_rehearsal_cache(rehearsal):
    """model=gpt2_small loads through HookedTransformer.from_pretrained (the fast patching path), one
    load per experiment, with the hub unreachable by setting (HF_HUB_OFFLINE=1)."""
    _, log = rehearsal
    # One load per experiment with anything to compute: sae_l1_search_gpt2's single trial has
    # sae_train's stage keys, so the stage cache serves all of it and no model is loaded.
    computing = len(re.findall(r"stages, [1-9]\d* to compute", log))
    assert computing >= len(REHEARSALS) - 1
    # ... but the TransformerBridges' (model=gemma3_270m, and GPT-2 by its hub id with model=hf; from the cache too)
    bridges = sum(bool({"model=gemma3_270m", "model=hf"} & set(overrides)) for overrides in REHEARSALS.values())
    assert log.count("Loaded pretrained model gpt2-small into HookedTransformer") == computing - bridges


def test_ioi_patching_on_a_bridge_of_gpt2_takes_the_fast_path(rehearsal):
    """ioi_patching with model=hf on the cached GPT-2: a TransformerBridge whose patches start at the patched
    block (models/bridge_blocks.py), as its log says, not the generic path's full runs."""
    _, log = rehearsal
    run = re.search(r"^ioi_patching_bridge: pipeline .*?^rehearsal ioi_patching_bridge: exit", log, re.M | re.S)
    assert run, log[-4000:]
    assert "patching TransformerBridge: fast path (from the patched layer)" in run.group(0)
    assert "no fast path" not in log and "generic path" not in run.group(0)
    # Once a process, for the first GPT-2 Bridge: this one (every other GPT-2 entry is a HookedTransformer).
    assert log.count("TransformerBridge of architecture GPT2LMHeadModel: fast path") == 1
