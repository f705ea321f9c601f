"""Every configuration error is one line that names the key, what was expected, what was found:
composing (groups, types, experiments) and preparing an experiment (pipeline, from_stage, expect).
The pipeline's own errors are in tests/pipeline/test_spec.py."""

from __future__ import annotations

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from interp_pipeline.experiments.compose import compose
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.experiments.run import prepare
from interp_pipeline.config.hydra_errors import describe


def composition_error(overrides: list[str]) -> str:
    with pytest.raises((HydraException, OmegaConfBaseException)) as caught:
        compose(overrides)
    line = describe(caught.value)
    assert "\n" not in line
    return line


def test_unknown_key_in_a_group_names_it_and_suggests(outputs):
    line = composition_error(["+experiment=smoke", "stats.batch_size=3"])  # the key batch_size_prompts once was
    assert line.startswith("stats.batch_size: expected a key of ActivationStatsConfig")
    assert "did you mean 'batch_size_prompts'?" in line


def test_wrong_type_names_key_expected_and_found(outputs):
    line = composition_error(["+experiment=smoke", "stats.batch_size_prompts=many"])
    assert line == "stats.batch_size_prompts: expected integer, found 'many' (str)"


def test_a_model_without_per_model_settings_is_named_as_the_model(outputs):
    line = composition_error(["+experiment=ioi_patching", "model=tiny"])
    assert line.startswith("model=tiny: this experiment has per-model settings (conf/ioi/) for model= ")
    assert "toy_ioi" in line and "add conf/ioi/tiny.yaml" in line


def test_unknown_option_of_a_group_lists_options(outputs):
    line = composition_error(["+experiment=smoke", "model=tinny"])
    assert line.startswith("model=tinny: expected one of ") and " tiny," in line
    assert "did you mean 'tiny'?" in line


def test_unknown_experiment(outputs):
    line = composition_error(["+experiment=smoek"])
    assert "experiment=smoek" in line and "did you mean 'smoke'?" in line


def test_unknown_key_in_a_free_form_dict_suggests_and_explains_plus(outputs):
    line = composition_error(["+experiment=smoke", "model.cfg.n_layer=3"])
    assert line.startswith("model.cfg.n_layer: expected an existing key")
    assert "did you mean 'n_layers'?" in line and "+model.cfg.n_layer=VALUE" in line


def test_missing_pipeline_tells_how_to_pick_an_experiment(outputs):
    with pytest.raises(ConfigError, match=r"^pipeline: .*\+experiment=NAME"):
        prepare(compose([]))


def test_unknown_pipeline_name(outputs):
    with pytest.raises(ConfigError, match=r"pipeline: expected one of .*smoke.*did you mean 'smoke'"):
        prepare(compose(["+experiment=smoke", "pipeline=smok"]))


def test_unknown_from_stage(outputs):
    with pytest.raises(ConfigError, match=r"^runner.from_stage: .*found 'stat' \(did you mean 'stats'\?\)"):
        prepare(compose(["+experiment=smoke", "runner.from_stage=stat"]))


def test_expect_key_naming_no_stage(outputs):
    cfg = compose(["+experiment=smoke", "+expect={stat.loss_mean: {min: 1}}"])
    with pytest.raises(ConfigError, match=r"^expect.stat.loss_mean: .*did you mean 'stats'"):
        prepare(cfg)


def test_expect_value_needs_a_tolerance(outputs):
    cfg = compose(["+experiment=smoke", "+expect={stats.loss_mean: {value: 5.1}}"])
    with pytest.raises(ConfigError, match=r"^expect.stats.loss_mean: expected atol or rtol"):
        prepare(cfg)
