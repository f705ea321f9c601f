"""Jobs of one sweep log the same dataset to one MLflow store at the same moment (a sharded cache's
jobs all read the same tokens). Seen in CI: MLflow's SQL store looked the dataset up and inserted it
in two steps, and the second job's insert failed the table's unique key, ending that job (exit 1).
With the old code, most runs of this test failed (4 of 5 of its set-up as a script, 1 of 2 as the test)."""

from __future__ import annotations

import multiprocessing

from mlflow.tracking import MlflowClient

from interp_pipeline.tracking.datasets import DatasetRecord
from interp_pipeline.tracking.mlflow_tracking import MlflowTracking

JOBS = 4


def _log_at_once(uri: str, barrier: multiprocessing.synchronize.Barrier, job: int, results: multiprocessing.Queue) -> None:
    tracking = MlflowTracking(uri)
    run = tracking.start_run(tracking.experiment_id("shards"), f"job {job}", {})
    tokens = DatasetRecord(name="tokens.tokens", digest="ffb02e584001bd24", source="file:///x/tokens.safetensors",
                           kind="tokens", profile={"tokens": 401408})
    barrier.wait()  # every job at the same line, as a sweep's jobs are after their shared stages
    try:
        run.log_datasets([tokens], "output")
        results.put((job, "ok", run.run_id))
    except Exception as error:  # noqa: BLE001 - reported to the test
        results.put((job, f"{type(error).__name__}: {error}", run.run_id))


def test_jobs_logging_the_same_dataset_at_once_all_succeed_and_each_records_it(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowTracking(uri).experiment_id("shards")  # the store and experiment made first, as a sweep's driver does
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(JOBS), context.Queue()
    jobs = [context.Process(target=_log_at_once, args=(uri, barrier, job, results)) for job in range(JOBS)]
    for job in jobs:
        job.start()
    outcomes = sorted(results.get(timeout=240) for _ in jobs)
    for job in jobs:
        job.join(timeout=60)
    assert [outcome for _, outcome, _ in outcomes] == ["ok"] * JOBS, outcomes
    client = MlflowClient(uri)
    for _, _, run_id in outcomes:
        inputs = client.get_run(run_id).inputs.dataset_inputs
        assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("tokens.tokens", "ffb02e584001bd24")]
