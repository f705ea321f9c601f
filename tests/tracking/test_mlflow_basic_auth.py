"""The cluster recipe's MLflow server (scripts/mlflow_server.sh): MLflow's basic-auth app on 127.0.0.1.

A request without credentials is refused; the pipeline, given MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD, logs its runs. Needs Flask-WTF (mlflow[auth], in the dev extra).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.test_cli import free_port

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path):
    pytest.importorskip("flask_wtf", reason="mlflow[auth] is not installed (pip install -e '.[dev]')")
    port, password = free_port(), secrets.token_urlsafe(12)
    env = {**os.environ, "MLFLOW_AUTH_ADMIN_USERNAME": "admin", "MLFLOW_AUTH_ADMIN_PASSWORD": password,
           "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16), "MLFLOW": f"{sys.executable} -m mlflow"}
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(["bash", str(REPO / "scripts" / "mlflow_server.sh"), str(tmp_path / "server"),
                                "127.0.0.1", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)  # its own group: MLflow's job runners go with it
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2):
                break
        except urllib.error.HTTPError:
            break
        except OSError:
            pass
        assert process.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        assert time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url, password
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


def test_unauthenticated_requests_are_refused_and_the_pipeline_logs_with_credentials(server, tmp_path):
    url, password = server
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{url}/api/2.0/mlflow/experiments/search?max_results=10", timeout=10)
    assert refused.value.code == 401

    # The pipeline, in this process (api.run, as the CLI runs it), with MLflow's client variables set.
    from interp_pipeline import api

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", password
    try:
        result = api.run("smoke", [f"tracking.uri={url}", f"paths.outputs={tmp_path / 'outputs'}"])
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    assert result.status == 0

    from mlflow.tracking import MlflowClient

    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = "admin", password
    try:
        client = MlflowClient(url)
        experiment = client.get_experiment_by_name("smoke")
        runs = client.search_runs([experiment.experiment_id])
    finally:
        del os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]
    assert len(runs) == 4 and any(r.data.metrics.get("stats.loss_mean") for r in runs)  # parent + 3 stages
