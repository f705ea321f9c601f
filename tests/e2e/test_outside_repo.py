"""Experiments and pipelines kept outside the repository, as the README's "Writing an experiment" says."""

from __future__ import annotations

import yaml

from tests.conftest import run_cli


def test_an_experiment_on_hydras_search_path_runs_a_pipeline_named_by_path(outputs, tmp_path):
    pipeline = tmp_path / "elsewhere" / "my_pipeline.yaml"
    pipeline.parent.mkdir()
    pipeline.write_text(yaml.safe_dump({"stages": [
        {"name": "model", "fn": "load_model", "params": "${model}"},
        {"name": "tokens", "fn": "${data.fn}", "inputs": {"model": "model"}, "params": "${data.params}"},
        {"name": "stats", "fn": "activation_stats", "inputs": {"model": "model", "tokens": "tokens"},
         "params": "${stats}"},
    ]}))
    experiment = tmp_path / "my_conf" / "experiment" / "mine.yaml"
    experiment.parent.mkdir(parents=True)
    experiment.write_text("# @package _global_\n" + yaml.safe_dump({
        "defaults": [{"/model": "tiny"}, {"/data": "random_tokens"}, {"/stats": "default"}],
        "pipeline": str(pipeline),
        "expect": {"stats.loss_mean": {"min": 4.85, "max": 5.35}},
    }))
    done = run_cli([f"hydra.searchpath=[file://{tmp_path / 'my_conf'}]", "+experiment=mine"], outputs)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "stats" in done.stdout and "done in" in done.stdout
