"""What reaches MLflow, read back with MlflowClient from a temporary SQLite store."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from interp_pipeline.experiments.compose import compose
from interp_pipeline.experiments.run import Invocation, launch
from interp_pipeline.common.exit_status import EXIT_EXPECT, EXIT_FAILED, EXIT_OK


def write_pipeline(folder: Path, *extra: dict) -> Path:
    stages = [
        {"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": "${seed}"}},
        *extra,
    ]
    path = folder / "pipe.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def run(outputs: Path, pipeline: Path, *overrides: str) -> int:
    cfg = compose([f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]", "seed=2", *overrides])
    return launch(cfg, Invocation("tracking_test", outputs / "run", overrides=list(overrides))).status


@pytest.fixture
def client(outputs):
    return MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")


def runs_by_name(client: MlflowClient):
    experiment = client.get_experiment_by_name("tracking_test")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return parents, children


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_parent_and_nested_stage_runs_with_params_tags_metrics_artifacts(outputs, client, tmp_path):
    assert run(outputs, write_pipeline(tmp_path)) == EXIT_OK
    (parent,), children = runs_by_name(client)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["seed"] == "2" and parent.data.params["runner.force"] == "False"
    assert parent.data.tags["pipeline"] == "pipe" and parent.data.tags["experiment"] == "tracking_test"
    assert len(parent.data.tags["mlflow.source.git.commit"]) == 40
    assert parent.data.tags["git.dirty"] in ("true", "false")
    assert parent.data.tags["version.torch"] and parent.data.tags["version.transformer_lens"]
    assert parent.data.metrics["scaled.total"] == 6.0  # (0 + 1 + 2) * seed
    assert "config.yaml" in artifact_paths(client, parent.info.run_id)

    by_stage = {c.data.tags["stage"]: c for c in children}
    assert set(by_stage) == {"numbers", "scaled"}
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED" and child.data.tags["cached"] == "false"
        assert parent.data.tags[f"cache_key.{child.data.tags['stage']}"] == child.data.tags["cache_key"]
    scaled = by_stage["scaled"]
    assert scaled.data.params["factor"] == "2.0"  # the resolved setting: ScaleConfig.factor is a float
    history = client.get_metric_history(scaled.info.run_id, "value")
    assert [(m.step, m.value) for m in history] == [(0, 0.0), (1, 2.0), (2, 4.0)]
    assert artifact_paths(client, scaled.info.run_id) == {"scaled_summary.json", "outputs/scaled.json"}


def test_cached_stage_is_a_child_run_pointing_at_the_run_that_computed_it(outputs, client, tmp_path):
    pipeline = write_pipeline(tmp_path)
    run(outputs, pipeline)
    run(outputs, pipeline)
    (first, second), children = runs_by_name(client)
    computed = {c.data.tags["stage"]: c for c in children if c.data.tags["mlflow.parentRunId"] == first.info.run_id}
    cached = {c.data.tags["stage"]: c for c in children if c.data.tags["mlflow.parentRunId"] == second.info.run_id}
    for name, child in cached.items():
        assert child.data.tags["cached"] == "true"
        assert child.data.tags["cached_from_run_id"] == computed[name].info.run_id
        assert child.info.status == "FINISHED"
    assert cached["scaled"].data.metrics["total"] == 6.0
    assert "scaled_summary.json" in artifact_paths(client, cached["scaled"].info.run_id)
    assert second.data.metrics["scaled.total"] == 6.0


def test_stage_exception_ends_runs_failed_with_the_traceback(outputs, client, tmp_path):
    pipeline = write_pipeline(tmp_path, {"name": "fails", "fn": "t_fail", "inputs": {"numbers": "numbers"},
                                         "params": {"message": "it broke"}})
    assert run(outputs, pipeline) == EXIT_FAILED
    (parent,), children = runs_by_name(client)
    assert parent.info.status == "FAILED"
    failed = next(c for c in children if c.data.tags["stage"] == "fails")
    assert failed.info.status == "FAILED"
    for run_id in (parent.info.run_id, failed.info.run_id):
        local = client.download_artifacts(run_id, "traceback.txt", str(tmp_path / run_id))
        assert "RuntimeError: it broke" in Path(local).read_text()
    assert not any(r.info.status == "RUNNING" for r in [parent, *children])


def test_interrupt_ends_runs_killed(outputs, client, tmp_path):
    pipeline = write_pipeline(tmp_path, {"name": "stop", "fn": "t_interrupt", "inputs": {"numbers": "numbers"}})
    with pytest.raises(KeyboardInterrupt):
        run(outputs, pipeline)
    (parent,), children = runs_by_name(client)
    assert parent.info.status == "KILLED"
    assert next(c for c in children if c.data.tags["stage"] == "stop").info.status == "KILLED"


def test_unmet_expectation_gives_status_3_and_is_logged(outputs, client, tmp_path):
    status = run(outputs, write_pipeline(tmp_path), "++expect={scaled.total: {min: 100}}")
    assert status == EXIT_EXPECT
    (parent,), _ = runs_by_name(client)
    assert parent.info.status == "FAILED"  # red in the runs list (the stage runs stay FINISHED)
    assert parent.data.tags["expect.passed"] == "false"
    assert parent.data.metrics["expect.scaled.total"] == 6.0
    assert "expect.txt" in artifact_paths(client, parent.info.run_id)


def test_runs_left_running_by_a_dead_process_are_marked_killed(outputs, client, tmp_path):
    from interp_pipeline.tracking.mlflow_tracking import MlflowTracking

    tracking = MlflowTracking(f"sqlite:///{outputs / 'mlflow.db'}")
    experiment_id = tracking.experiment_id("tracking_test")
    orphan = client.create_run(experiment_id, tags={"host": socket.gethostname(), "pid": "999999999"})
    alive = client.create_run(experiment_id, tags={"host": socket.gethostname(), "pid": str(os.getpid())})
    run(outputs, write_pipeline(tmp_path))
    assert client.get_run(orphan.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"  # its process still runs


def test_tracking_uri_setting_wins_over_the_environment(outputs, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'from_env.db'}")
    explicit = tmp_path / "explicit.db"
    run(outputs, write_pipeline(tmp_path), f"tracking.uri=sqlite:///{explicit}")
    assert MlflowClient(f"sqlite:///{explicit}").get_experiment_by_name("tracking_test") is not None
    assert not (tmp_path / "from_env.db").exists()
    # Artifacts sit beside the store they belong to.
    assert (tmp_path / "mlartifacts" / "tracking_test").is_dir()


def test_an_unreachable_tracking_server_stops_the_run_before_any_work(outputs, tmp_path, monkeypatch):
    from tests.support.stages import CALLS

    CALLS.clear()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert run(outputs, write_pipeline(tmp_path)) == 2
    assert CALLS == {}  # no stage ran


def test_child_trackers_open_nested_runs_that_end_with_their_block(tmp_path):
    from interp_pipeline.tracking.base import RecordingTracker
    from interp_pipeline.tracking.mlflow_tracking import MlflowTracking

    tracking = MlflowTracking(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking.experiment_id("children")
    stage_run = tracking.start_run(experiment, "stage", {"stage": "s"})
    tracker = RecordingTracker(stage_run, tmp_path / "artifacts")
    with tracker.child("good", {"kind": "a"}) as good:
        good.log_params({"width": 8})
        good.log_metrics({"loss": 1.5}, step=3)
        good.log_text("hello", "note.txt")
    with pytest.raises(ValueError), tracker.child("bad") as bad:
        bad.log_metrics({"loss": 2.0})
        raise ValueError("boom")
    stage_run.end("FINISHED")

    client = MlflowClient(tracking.uri)
    runs = {r.info.run_name: r for r in client.search_runs(
        [experiment], filter_string=f"tags.mlflow.parentRunId = '{stage_run.run_id}'")}
    assert runs["good"].info.status == "FINISHED" and runs["bad"].info.status == "FAILED"
    assert runs["good"].data.tags["kind"] == "a" and runs["good"].data.params == {"width": "8"}
    assert [m.step for m in client.get_metric_history(runs["good"].info.run_id, "loss")] == [3]
    assert [a.path for a in client.list_artifacts(runs["good"].info.run_id)] == ["note.txt"]
    # Kept with the stage's files too, so a cached stage can show them again.
    assert (tmp_path / "artifacts" / "children" / "good" / "note.txt").read_text() == "hello"


ORPHAN = """
import sys, time
from interp_pipeline.tracking.mlflow_tracking import MlflowTracking
tracking = MlflowTracking(sys.argv[1])
run = tracking.start_run(tracking.experiment_id("other_experiment"), "orphan", {})
print(run.run_id, flush=True)
time.sleep(600)
"""


def test_a_run_killed_with_sigkill_is_ended_by_the_next_invocation_of_another_experiment(outputs, client, tmp_path):
    import signal
    import subprocess
    import sys

    uri = f"sqlite:///{outputs / 'mlflow.db'}"
    process = subprocess.Popen([sys.executable, "-c", ORPHAN, uri], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    orphan = process.stdout.readline().strip()
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    other_experiment = client.get_experiment_by_name("other_experiment").experiment_id
    elsewhere = client.create_run(other_experiment, tags={"host": "another-machine", "pid": "1"})
    assert client.get_run(orphan).info.status == "RUNNING"
    assert run(outputs, write_pipeline(tmp_path)) == EXIT_OK  # experiment tracking_test
    assert client.get_run(orphan).info.status == "KILLED"
    assert client.get_run(elsewhere.info.run_id).info.status == "RUNNING"  # its host's processes are not ours to see


def test_a_cached_stage_logs_every_metric_series_its_computing_run_logged(outputs, client):
    """Issue 27: the logit lens logs its metrics per layer (the layer as step); served from the cache,
    its stage run must show the same series, not the last value at step 0."""
    from interp_pipeline.runner.stage_cache import METRIC_HISTORY

    overrides = ["+experiment=logit_lens", "model=tiny", "lens_setup=toy_induction", "~expect",
                 "data.params.n_sequences=2", "data.params.half_len=6", "tracking.experiment_name=history"]
    for _ in range(2):
        assert launch(compose(overrides), Invocation("history", outputs / "run", overrides=overrides)).status == EXIT_OK
    experiment = client.get_experiment_by_name("history")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'logit_lens'",
                              order_by=["attributes.start_time ASC"])
    computed, cached = runs
    assert computed.data.tags["cached"] == "false" and cached.data.tags["cached"] == "true"

    def series(run_id, name):
        history = client.get_metric_history(run_id, name)
        return [(m.step, m.value) for m in sorted(history, key=lambda m: (m.timestamp, m.step))]

    assert set(cached.data.metrics) == set(computed.data.metrics)
    per_layer = [name for name in computed.data.metrics if len(series(computed.info.run_id, name)) > 1]
    assert "answer_prob" in per_layer  # one value per layer (steps 0..), besides the per-layer names
    for name in computed.data.metrics:
        assert series(cached.info.run_id, name) == series(computed.info.run_id, name), name
    entry = Path(cached.data.tags["cache_entry"])
    assert (entry / METRIC_HISTORY).is_file()
