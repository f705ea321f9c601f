"""Every shipped experiment composes and passes validation, without running anything."""

from __future__ import annotations

import shlex

import pytest

from interp_pipeline.experiments.compose import compose
from interp_pipeline.common.errors import ConfigError, NotFound
from interp_pipeline.experiments.run import prepare
from interp_pipeline.experiments.catalog import experiments
from interp_pipeline.common.paths import conf_dir
from interp_pipeline.pipeline.preflight import run_preflight

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def test_there_are_experiments():
    assert "smoke" in EXPERIMENTS
    assert [info.name for info in experiments()] == EXPERIMENTS


def test_one_composer_takes_an_experiments_name_or_the_command_lines_overrides():
    by_name, by_overrides = compose("smoke", ["seed=3"]), compose(["+experiment=smoke", "seed=3"])
    # By name, the experiment's name is kept where it names the MLflow experiment (api.run logs there).
    assert by_name.tracking.experiment_name == "smoke" and by_overrides.tracking.experiment_name is None
    by_name.tracking.experiment_name = None
    assert by_name == by_overrides
    with pytest.raises(NotFound, match=r"^no experiment 'smok' in .*\(did you mean 'smoke'\?\)$"):
        compose("smok")


# Experiments on hub models: here (no hub) their pre-flight must stop them, naming the model.
NEEDS_HUB = {"cache_activations", "induction_heads", "ioi_patching", "sae_train", "sae_train_streamed",
             "sae_eval_pretrained", "sae_features", "inspect_model", "logit_lens", "sae_l1_search_gpt2",
             "causal_tracing", "memit_edit_gpt2_xl", "steering", "circuit_discovery",
             "circuit_discovery_greater_than"}


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


# Each hub experiment's own `offline:` overrides (what its pre-flight suggests), and other toy variants.
OFFLINE_VARIANTS = [[f"+experiment={info.name}", *shlex.split(info.offline)] for info in experiments() if info.offline]


@pytest.mark.parametrize("overrides", OFFLINE_VARIANTS + [
    ["+experiment=inspect_model", "model=toy_ioi"],
    ["+experiment=logit_lens", "model=toy_induction"],
    ["+experiment=probes", "model=toy_induction"],
    ["+experiment=probes", "model=toy_ioi"],
], ids=" ".join)
def test_hub_experiment_runs_offline_on_a_toy_model(outputs, overrides, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    prepared = prepare(compose(overrides))
    run_preflight(prepared.spec.stages)


def test_every_hub_experiment_but_the_pretrained_sae_names_its_offline_variant():
    offline = {info.name for info in experiments() if info.offline}
    # sae_l1_search_gpt2's offline form is another experiment (sae_l1_search), not overrides of its own;
    # memit_edit_gpt2_xl's is memit_edit; circuit_discovery_greater_than's is circuit_discovery model=toy_ioi
    # (no toy model has the years' tokens).
    assert offline == NEEDS_HUB - {"sae_eval_pretrained", "sae_l1_search_gpt2", "memit_edit_gpt2_xl",
                                   "circuit_discovery_greater_than"}


def test_ioi_patching_on_gpt2_carries_the_published_values(outputs):
    config = compose(["+experiment=ioi_patching"])
    assert config.data.fn == "prompt_pairs" and len(config.data.params.pairs) == 8
    assert config.expect["patching.clean_logit_diff"].value == 3.552
    assert config.expect["patching.head_out/L10H7"].value == -0.48
    assert compose(["+experiment=ioi_patching", "model=toy_ioi"]).data.fn == "ioi_prompts"
