"""expect: entries on the command line: the forms people type, rewritten into one Hydra can apply."""

from __future__ import annotations

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from interp_pipeline.experiments.compose import compose
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.experiments.expect_overrides import rewrite


def parsed(override: str):
    return OverridesParser.create().parse_overrides([override])[0]


@pytest.mark.parametrize("override, entry", [
    ("+expect.stats.loss_mean={min: 4.9}", {"stats.loss_mean": {"min": 4.9}}),
    ("expect.stats.loss_mean={value: 5, atol: 0.1}", {"stats.loss_mean": {"value": 5, "atol": 0.1}}),
    ("++expect.scores.induction.layer1.max.min=0.5", {"scores.induction.layer1.max": {"min": 0.5}}),
    ("expect.model.eval/accuracy.max=null", {"model.eval/accuracy": {"max": None}}),
])
def test_an_entry_or_one_field_becomes_a_merge_of_a_one_entry_dict(override, entry):
    rewritten = parsed(rewrite(override))
    assert rewritten.key_or_group == "expect" and rewritten.value() == entry


def test_a_comma_list_still_sweeps():
    rewritten = parsed(rewrite("expect.stats.loss_mean.max=6,7"))
    assert rewritten.is_sweep_override()
    assert list(rewritten.sweep_iterator()) == [{"stats.loss_mean": {"max": 6}}, {"stats.loss_mean": {"max": 7}}]


@pytest.mark.parametrize("override", ["~expect", "expect={}", "++expect={a.b: {min: 1}}", "seed=3", "sae.expect_x=1"])
def test_other_overrides_are_left_alone(override):
    assert rewrite(override) == override


@pytest.mark.parametrize("override, key", [
    ("~expect.stats.loss_mean", "expect.stats.loss_mean"),
    ("+expect.stats.loss_mean=5", "expect.stats.loss_mean"),
    ("+expect.stats={loss_mean: {min: 1}}", "expect.stats"),
    ("expect.stats.loss_mean.mx=5", "expect.stats.loss_mean.mx"),
])
def test_what_hydra_could_not_apply_is_refused_with_the_forms_that_work(override, key):
    with pytest.raises(ConfigError) as caught:
        rewrite(override)
    assert caught.value.key == key and "+expect.STAGE.METRIC={min: V, max: V}" in str(caught.value)
    assert "~expect to check none" in str(caught.value) and "\n" not in str(caught.value)
    if key.endswith(".mx"):
        assert caught.value.suggestion == "did you mean 'max'?"


def test_compose_applies_them_over_the_experiment(outputs):
    cfg = compose(["+experiment=smoke", "expect.stats.loss_mean.max=6", "+expect.model.n_params={min: 1}"])
    expect = OmegaConf.to_container(cfg.expect)
    # The experiment's notes (where the value comes from, why the tolerance) stay with its entry.
    assert expect["stats.loss_mean"].pop("source").startswith("uniform guessing")
    assert expect["stats.loss_mean"].pop("why").startswith("measured")
    assert expect == {
        "stats.loss_mean": {"value": None, "atol": None, "rtol": None, "min": 4.85, "max": 6.0},
        "model.n_params": {"value": None, "atol": None, "rtol": None, "min": 1.0, "max": None,
                           "source": None, "why": None},
    }
    assert "expect" not in compose(["+experiment=smoke", "~expect"])
