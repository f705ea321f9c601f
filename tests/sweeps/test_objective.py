"""sweep.objective and sweep.summary checked against the pipeline's declared metrics; what a job returns."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.experiments.run import prepare
from interp_pipeline.experiments.compose import compose
from interp_pipeline.sweeps.objective import objective_values, validate_sweep

STAGES = ["model", "tokens", "stats"]
METRICS = {"model": ("n_params",), "tokens": None, "stats": ("loss_mean", "norm_mean.*")}


def sweep(**fields):
    return OmegaConf.create({"objective": [], "direction": [], "summary": [], **fields})


def test_objective_and_summary_named_by_the_stages_pass():
    validate_sweep(sweep(objective=["stats.loss_mean", "model.n_params"], direction=["minimize", "maximize"],
                         summary=["stats.norm_mean.hook_embed"]), STAGES, METRICS)


@pytest.mark.parametrize("fields, key, words", [
    ({"objective": ["stats.loss_meen"], "direction": ["minimize"]}, "sweep.objective[0]", "did you mean 'loss_mean'"),
    ({"objective": ["stat.loss_mean"], "direction": ["minimize"]}, "sweep.objective[0]", "did you mean 'stats'"),
    ({"objective": ["loss_mean"], "direction": ["minimize"]}, "sweep.objective[0]", "STAGE.METRIC"),
    ({"summary": ["model.n_param"]}, "sweep.summary[0]", "n_params"),
    ({"objective": ["stats.loss_mean"], "direction": []}, "sweep.direction", "one direction"),
    ({"objective": ["stats.loss_mean"], "direction": ["lowest"]}, "sweep.direction[0]", "maximize, minimize"),
])
def test_a_metric_no_stage_produces_names_the_key(fields, key, words):
    with pytest.raises(ConfigError) as raised:
        validate_sweep(sweep(**fields), STAGES, METRICS)
    assert raised.value.key == key and words in str(raised.value)


def test_prepare_checks_the_objective_of_a_composed_experiment():
    cfg = compose(["+experiment=smoke_search", "sweep.objective=[stats.loss]"])
    prepare(cfg)  # stats.loss is a metric the stats stage declares
    with pytest.raises(ConfigError, match=r"^sweep.objective\[0\]: .*'stats'.*found 'losses'"):
        prepare(compose(["+experiment=smoke_search", "sweep.objective=[stats.losses]"]))


def test_the_task_returns_the_objective_or_none_for_a_job_that_did_not_succeed():
    metrics = {"stats.loss_mean": 5.1, "model.n_params": 10.0}
    assert objective_values(["stats.loss_mean"], 0, metrics) == 5.1
    assert objective_values(["stats.loss_mean", "model.n_params"], 0, metrics) == [5.1, 10.0]
    assert objective_values(["stats.loss_mean"], 3, metrics) is None  # missed expect: a failed trial
    assert objective_values(["stats.other"], 0, metrics) is None  # a metric the run did not log
