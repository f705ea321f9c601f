"""Every validation error is one line that names the key, what was expected, what was found."""

from __future__ import annotations

import pytest
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from interp_pipeline.compose import compose
from interp_pipeline.errors import ConfigError
from interp_pipeline.experiment import prepare
from interp_pipeline.hydra_errors import describe
from interp_pipeline.pipeline.preflight import run_preflight
from interp_pipeline.pipeline.spec import load_pipeline, parse_stages

PLUGINS = "runner.plugins=[tests.support.stages]"


def composition_error(overrides: list[str]) -> str:
    with pytest.raises((HydraException, OmegaConfBaseException)) as caught:
        compose(overrides)
    line = describe(caught.value)
    assert "\n" not in line
    return line


def pipeline_error(stages: list[dict]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_stages(stages, name="p", label="pipelines/p.yaml")
    assert "\n" not in str(caught.value)
    return caught.value


def test_unknown_key_in_a_group_names_it_and_suggests(outputs):
    line = composition_error(["+experiment=smoke", "stats.batch_sizee=3"])
    assert line.startswith("stats.batch_sizee: expected a key of ActivationStatsConfig")
    assert "did you mean 'batch_size'?" in line


def test_wrong_type_names_key_expected_and_found(outputs):
    line = composition_error(["+experiment=smoke", "stats.batch_size=many"])
    assert line == "stats.batch_size: expected integer, found 'many' (str)"


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


def test_unknown_stage_function():
    error = pipeline_error([{"name": "a", "fn": "t_numbr", "params": {"n": 3}}])
    assert error.key == "pipelines/p.yaml: stages[0].fn"
    assert "found 't_numbr'" in str(error) and "did you mean 't_numbers'?" in str(error)


def test_unknown_stage_entry_key():
    error = pipeline_error([{"name": "a", "fn": "t_numbers", "parms": {"n": 3}}])
    assert error.key == "pipelines/p.yaml: stages[0].parms"
    assert "did you mean 'params'?" in str(error)


def test_input_referencing_no_stage():
    error = pipeline_error([
        {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbres"}, "params": {"factor": 2}},
    ])
    assert error.key == "pipelines/p.yaml: stages[1].inputs.numbers"
    assert "found 'numbres'" in str(error) and "did you mean 'numbers'?" in str(error)


def test_input_naming_an_output_the_stage_lacks():
    error = pipeline_error([
        {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "split", "fn": "t_split", "inputs": {"numbers": "numbers"}, "params": {"threshold": 1}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "split.hihg"}, "params": {"factor": 2}},
    ])
    assert error.key == "pipelines/p.yaml: stages[2].inputs.numbers"
    assert "did you mean 'high'?" in str(error)


def test_input_from_a_multi_output_stage_must_name_the_output():
    error = pipeline_error([
        {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "split", "fn": "t_split", "inputs": {"numbers": "numbers"}, "params": {"threshold": 1}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "split"}, "params": {"factor": 2}},
    ])
    assert "split.OUTPUT" in str(error)


def test_cycle_is_named():
    error = pipeline_error([
        {"name": "a", "fn": "t_scale", "inputs": {"numbers": "b"}, "params": {"factor": 2}},
        {"name": "b", "fn": "t_scale", "inputs": {"numbers": "a"}, "params": {"factor": 2}},
    ])
    assert "expected no cycles, found a -> b -> a" in str(error)


def test_duplicate_stage_names():
    error = pipeline_error([
        {"name": "a", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "a", "fn": "t_numbers", "params": {"n": 4}},
    ])
    assert error.key == "pipelines/p.yaml: stages[1].name" and "'a' twice" in str(error)


def test_param_the_function_does_not_take():
    error = pipeline_error([{"name": "a", "fn": "t_numbers", "params": {"n": 3, "strat": 1}}])
    assert error.key == "pipelines/p.yaml: stages[0].params.strat"
    assert "did you mean 'start'?" in str(error)


def test_required_argument_missing():
    error = pipeline_error([{"name": "a", "fn": "t_numbers", "params": {}}])
    assert error.key == "pipelines/p.yaml: stages[0].params.n" and "t_numbers() requires it" in str(error)


def test_order_follows_dependencies_not_the_file():
    spec = parse_stages(
        [
            {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": 2}},
            {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        ],
        name="p", label="p",
    )
    assert [s.name for s in spec.stages] == ["numbers", "scaled"]


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


def test_model_preflight_names_the_config_key(outputs):
    cfg = compose(["+experiment=smoke", "+model.cfg.n_head=4"])
    spec = load_pipeline(cfg)
    with pytest.raises(ConfigError, match=r"^model.cfg.n_head: .*did you mean 'n_heads'"):
        run_preflight(spec.stages)


def test_a_misspelt_input_of_a_stage_that_takes_settings_is_caught(outputs):
    from interp_pipeline.pipeline.registry import load_stage_modules

    load_stage_modules()  # train_sae takes **settings: params go to its schema, inputs must still be arguments
    error = pipeline_error([
        {"name": "a", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "sae", "fn": "train_sae", "inputs": {"stor": "a"}},
    ])
    assert error.key == "pipelines/p.yaml: stages[1].inputs.stor"
    assert "did you mean 'store'?" in str(error)
