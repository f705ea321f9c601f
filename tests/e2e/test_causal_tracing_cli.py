"""+experiment=causal_tracing model=toy_facts through the real CLI: train the toy factual-recall model,
trace 256 of its prompts, meet the experiment's expect: (the paper's qualitative findings), log the
figures to MLflow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli
from tests.e2e.test_cli import parents, sqlite_uri

pytestmark = pytest.mark.slow


def test_causal_tracing_on_the_toy_facts_model_meets_its_expect(outputs):
    done = run_cli(["+experiment=causal_tracing", "model=toy_facts", "tracing.figures=1"], outputs, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr  # 3: an expect: not met
    assert "[3/3] tracing" in done.stdout
    runs, all_runs = parents(sqlite_uri(outputs), "causal_tracing")
    metrics = runs[0].data.metrics
    assert metrics["tracing.prompts_traced"] + metrics["tracing.prompts_unknown"] == 256
    assert metrics["tracing.window"] == 1 and metrics["tracing.noise_std"] > 0
    tracing_run = next(r for r in all_runs if r.data.tags.get("stage") == "tracing")
    artifacts = {a.path for a in MlflowClient(sqlite_uri(outputs)).list_artifacts(tracing_run.info.run_id)}
    assert {"causal_trace_average.png", "causal_trace_last_subject.png", "causal_trace_prompt0.png"} <= artifacts
