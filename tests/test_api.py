"""interp_pipeline.api from a plain Python process: Hydra's compose API, compose/run/load by name,
and one-line errors. (api.load on the quickstart's SAE and store: tests/test_readme.py.)"""

from __future__ import annotations

import subprocess
import sys

import pytest

from interp_pipeline import api
from tests.conftest import REPO, cli_env


def test_hydras_own_compose_api_works_after_importing_the_package(outputs):
    code = (
        "from hydra import compose, initialize_config_dir\n"
        "from interp_pipeline.common.paths import conf_dir\n"
        "with initialize_config_dir(version_base='1.3', config_dir=str(conf_dir())):\n"
        "    cfg = compose('config', overrides=['+experiment=smoke', 'seed=4'])\n"
        "print(cfg.pipeline, cfg.seed, cfg.paths.outputs)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=cli_env(outputs), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["smoke", "4", str(outputs)]


def test_compose_by_name_with_overrides():
    cfg = api.compose("smoke", overrides=["seed=3", "expect.stats.loss_mean.max=6"])
    assert cfg.seed == 3 and cfg.pipeline == "smoke" and cfg.tracking.experiment_name == "smoke"
    assert cfg.expect["stats.loss_mean"]["max"] == 6
    with pytest.raises(api.NotFound, match=r"^no experiment 'smok' in .*\(did you mean 'smoke'\?\)$"):
        api.compose("smok")


def test_run_logs_to_the_console_and_load_finds_outputs_by_stage_name(outputs, capsys):
    result = api.run("smoke", ["seed=2"])
    printed = capsys.readouterr().out
    assert result.status == 0 and result.run_id
    assert "[3/3] stats" in printed and "│ stats.loss_mean" in printed, printed  # stage lines and the expect table
    assert "[3/3] stats" in (result.output_dir / "run.log").read_text()
    from mlflow.tracking import MlflowClient

    assert MlflowClient(result.tracking_uri).get_run(result.run_id).data.tags["hydra.overrides"] == "+experiment=smoke seed=2"
    stats = api.load("smoke", "stats")
    assert stats == result.load("stats") and "hook_embed" in stats
    assert api.load("smoke", "tokens").shape[0] > 0
    # A later run is the default; the earlier one stays reachable by its id.
    later = api.run(api.compose("smoke", ["seed=2", "+expect.stats.loss_mean.max=1"]))
    assert later.status == 3 and api.load("smoke", "stats") == stats  # cached: the same result
    assert api.load("smoke", "stats", run_id=result.run_id) == stats
    with pytest.raises(api.NotFound, match=r"has no stage 'statz' \(did you mean 'stats'\?\)$"):
        api.load("smoke", "statz")
    with pytest.raises(api.NotFound, match=r"^no MLflow experiment 'smok' in sqlite:.*\(did you mean 'smoke'\?\)$"):
        api.load("smok", "stats")
    with pytest.raises(api.NotFound, match=r"^no MLflow run 'nope' in "):
        api.load("smoke", "stats", run_id="nope")
    with pytest.raises(api.NotFound, match=r"keeps no result when cache=False"):
        api.load("smoke", "model")  # a config-built model is rebuilt, not stored
    with pytest.raises(api.NotFound, match=r"has no output 'x' \(outputs: stats\)"):
        api.load("smoke", "stats.x")
    with pytest.raises(api.RunError, match=r"^smoke: exit status 2 \(config error"):
        api.run("smoke", ["stats.batch_size_prompts=0"])
    assert "error: stats.batch_size_prompts: expected an integer >= 1, found 0" in capsys.readouterr().out
