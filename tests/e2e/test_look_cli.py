"""inspect_model and logit_lens through the real CLI on the toy models: expect: met, figures, tables and
one self-contained HTML page per stage in MLflow; GPT-2 offline stops before any work."""

from __future__ import annotations

import re

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli
from tests.e2e.test_cli import parents, sqlite_uri

pytestmark = pytest.mark.slow

# Until the entry points of this branch are installed, the stage modules are named here.


@pytest.fixture(scope="module")
def shared_outputs(tmp_path_factory):
    """One outputs directory for the module: a toy model trains once and is served from the stage cache after."""
    return tmp_path_factory.mktemp("look") / "outputs"


def _stage_run(outputs, experiment, stage):
    runs, all_runs = parents(sqlite_uri(outputs), experiment)
    assert runs[-1].info.status == "FINISHED"
    child = next(r for r in all_runs if r.data.tags.get("stage") == stage and r.info.start_time >= runs[-1].info.start_time)
    return runs[-1], child


def _artifacts(outputs, run_id):
    client = MlflowClient(sqlite_uri(outputs))
    return client, {a.path for a in client.list_artifacts(run_id)}


def _check_page(client, run_id, name):
    """The page loads offline: plotly.js inlined exactly once, no script fetched from anywhere."""
    page = open(client.download_artifacts(run_id, name), encoding="utf-8").read()
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1
    assert not re.search(r"<script[^>]+src=", page) and "unpkg.com" not in page
    return page


def test_inspect_model_on_the_induction_probe(shared_outputs):
    done = run_cli(["+experiment=inspect_model", "model=toy_induction"], shared_outputs, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    parent, inspect = _stage_run(shared_outputs, "inspect_model", "inspect")
    assert parent.data.metrics["inspect.answer_top1"] >= 0.85
    client, names = _artifacts(shared_outputs, inspect.info.run_id)
    assert {"tokens.md", "top_predictions.md", "resid_norms.png", "attention_patterns.png", "inspect.html"} <= names
    history = client.get_metric_history(inspect.info.run_id, "norm/resid_post")
    assert sorted(m.step for m in history) == [0, 1]  # a value per layer, the layer as step
    page = _check_page(client, inspect.info.run_id, "inspect.html")
    assert "layer 1, head 3" in page and "&lt;bos&gt;" in page


def test_logit_lens_on_the_induction_probe(shared_outputs):
    done = run_cli(["+experiment=logit_lens", "model=toy_induction"], shared_outputs, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    parent, lens = _stage_run(shared_outputs, "logit_lens", "logit_lens")
    metrics = parent.data.metrics
    assert metrics["logit_lens.agreement/final_post"] == 1.0
    assert metrics["logit_lens.answer_prob/1_pre"] < 0.05 < 0.5 < metrics["logit_lens.answer_prob/final_post"]
    client, names = _artifacts(shared_outputs, lens.info.run_id)
    assert {"logit_lens.md", "logit_lens_top1.png", "logit_lens_answer.png", "logit_lens_layers.png",
            "logit_lens.html"} <= names
    assert [m.step for m in client.get_metric_history(lens.info.run_id, "answer_prob")] == [0, 1, 2]
    _check_page(client, lens.info.run_id, "logit_lens.html")


def test_both_on_the_ioi_model(shared_outputs):
    for experiment in ("logit_lens", "inspect_model"):
        done = run_cli([f"+experiment={experiment}", "model=toy_ioi"], shared_outputs, timeout=900)
        assert done.returncode == 0, done.stdout + done.stderr
    metrics = parents(sqlite_uri(shared_outputs), "logit_lens")[0][-1].data.metrics
    assert metrics["logit_lens.answer_top1/final_post"] >= 0.95
    assert parents(sqlite_uri(shared_outputs), "inspect_model")[0][-1].data.metrics["inspect.answer_top1"] >= 0.95


@pytest.mark.parametrize("experiment", ["inspect_model", "logit_lens"])
def test_the_gpt2_default_stops_offline_before_any_work(experiment, outputs):
    done = run_cli([f"+experiment={experiment}"], outputs, HF_HUB_OFFLINE="1",
                   HF_HOME=str(outputs.parent / "empty_hf_home"))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "gpt2" in lines[0] and "offline" in lines[0], lines
    assert not (outputs / "mlflow.db").exists()
