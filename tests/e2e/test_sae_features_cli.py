"""sae_features through the real CLI on the toy model (trained once per session): train an SAE, look at
its features on the prompt, build the dashboard, and log it all to MLflow."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import run_cli
from tests.e2e.test_cli import parents, sqlite_uri
from tests.e2e.test_sae_cli import SMALL

pytestmark = pytest.mark.slow

# sae_train's small settings (tests/e2e/test_sae_cli.py); the features stage keeps its defaults.
FEATURES = [a.replace("sae_train", "sae_features") for a in SMALL]


def test_sae_features_on_the_toy_model_end_to_end(outputs, toy_models):
    toy_models.outputs_with(FEATURES, outputs)  # the model tests/e2e/test_sae_cli.py uses, trained once
    done = run_cli(FEATURES, outputs, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[8/8] features" in done.stdout
    assert "cached" in next(line for line in done.stdout.splitlines() if line.startswith("[1/8] model"))
    runs, all_runs = parents(sqlite_uri(outputs), "sae_features")
    metrics = runs[0].data.metrics
    assert metrics["features.d_sae"] == 8 * metrics["features.d_in"] == 512
    assert metrics["features.prompt_tokens"] == 20  # the prompt's words, BOS left out
    assert 0 < metrics["features.l0_mean"] <= metrics["features.l0_max"] < 512
    assert metrics["features.explained_variance"] > 0.5
    assert metrics["features.dashboard/features"] == 10 and metrics["features.dashboard/min_contexts"] >= 1
    assert metrics["features.dashboard/tokens"] == 64 * 48  # the held-out sequences, BOS left out

    features_run = next(r for r in all_runs if r.data.tags.get("stage") == "features")
    assert features_run.data.tags["sae.hook"] == "blocks.1.hook_resid_pre"
    client = MlflowClient(sqlite_uri(outputs))
    artifacts = {a.path for a in client.list_artifacts(features_run.info.run_id)}
    assert {"top_features_heatmap.png", "l0_per_token.png", "top_features.md", "feature_dashboard.html",
            "sae_features.json"} <= artifacts
    page = open(client.download_artifacts(features_run.info.run_id, "feature_dashboard.html")).read()
    assert "<script" not in page and page.count("<div class=\"card\">") == 10
