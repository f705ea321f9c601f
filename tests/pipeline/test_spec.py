"""Every pipeline error is one line that names the key, what was expected, what was found:
stage entries, inputs, cycles, params (parse_stages), and the model's pre-flight."""

from __future__ import annotations

import pytest

from interp_pipeline.experiments.compose import compose
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.pipeline.preflight import run_preflight
from interp_pipeline.pipeline.spec import load_pipeline, parse_stages


def pipeline_error(stages: list[dict]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_stages(stages, name="p", label="pipelines/p.yaml")
    assert "\n" not in str(caught.value)
    return caught.value


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
    assert error.key == "pipelines/p.yaml: stages[0].params.n" and "NumbersConfig requires it" in str(error)


def test_order_follows_dependencies_not_the_file():
    spec = parse_stages(
        [
            {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": 2}},
            {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        ],
        name="p", label="p",
    )
    assert [s.name for s in spec.stages] == ["numbers", "scaled"]


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
