"""Every shipped experiment composes and passes validation, without running anything."""

from __future__ import annotations

import pytest

from interp_pipeline.compose import compose
from interp_pipeline.errors import ConfigError
from interp_pipeline.experiment import prepare
from interp_pipeline.paths import conf_dir
from interp_pipeline.pipeline.preflight import run_preflight

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    assert "smoke" in EXPERIMENTS


# Experiments on hub models: here (no hub) their pre-flight must stop them, naming the model.
NEEDS_HUB = {"cache_activations", "ioi_patching", "sae_train", "sae_train_streamed", "sae_eval_pretrained",
             "sae_features", "inspect_model", "logit_lens", "causal_tracing"}


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_validates(name, outputs, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prepared = prepare(compose([f"+experiment={name}"]))
    assert prepared.spec.stages
    if name in NEEDS_HUB:
        with pytest.raises(ConfigError, match=r"^model\.name: model 'gpt2-(small|xl)'.*offline options"):
            run_preflight(prepared.spec.stages)
    else:
        run_preflight(prepared.spec.stages)


@pytest.mark.parametrize("overrides", [
    ["+experiment=cache_activations", "model=toy_induction", "data=task_tokens",
         "cache.hooks=[blocks.1.hook_resid_pre]"],
    ["+experiment=ioi_patching", "model=toy_ioi"],
    ["+experiment=sae_train", "model=toy_induction"],
    ["+experiment=inspect_model", "model=toy_induction"],
    ["+experiment=inspect_model", "model=toy_ioi"],
    ["+experiment=logit_lens", "model=toy_induction"],
    ["+experiment=logit_lens", "model=toy_ioi"],
    ["+experiment=probes", "model=toy_induction"],
    ["+experiment=probes", "model=toy_ioi"],
    ["+experiment=causal_tracing", "model=toy_facts"],
])
def test_hub_experiment_runs_offline_on_a_toy_model(outputs, overrides):
    prepared = prepare(compose(overrides))
    run_preflight(prepared.spec.stages)


def test_ioi_patching_on_gpt2_carries_the_published_values(outputs):
    config = compose(["+experiment=ioi_patching"])
    assert config.data.fn == "prompt_pairs" and len(config.data.params.pairs) == 8
    assert config.expect["patching.clean_logit_diff"].value == 3.552
    assert config.expect["patching.head_out/L10H7"].value == -0.48
    assert compose(["+experiment=ioi_patching", "model=toy_ioi"]).data.fn == "ioi_prompts"
