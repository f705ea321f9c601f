"""Close what a sweep's dead jobs left RUNNING in MLflow, from the process that launched them.

A job ends its own runs when it is interrupted (KeyboardInterrupt, SIGTERM: experiments/run.py),
but not when it is killed outright: joblib answers Ctrl-C by SIGKILLing its workers (racing their
handlers), a joblib worker has no SIGTERM handler of ours, and SLURM kills a job past its time
after a grace period. The launching process outlives them all, so when the sweep is over (however
it ended) it looks up the runs of its sweep still RUNNING (job runs carry the ``sweep.id`` tag,
stage and SAE runs hang below them by ``mlflow.parentRunId``; the summary run is tagged too) and
ends KILLED those whose process is gone. A job still alive on this machine is given a few seconds
to end its own runs first. Runs on other machines are closed only once the launcher has every
job's result (the sweep reached its end), since their processes cannot be seen from here; any left
then are closed by the next run on their own machine (MlflowTracking.end_orphaned_runs).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp_pipeline.storage.locks import pid_alive

WAIT_FOR_JOBS_S = 10.0  # how long a job still alive here gets to end its own runs


@dataclass(frozen=True)
class SweepRuns:
    """What the launching process needs to find its sweep's runs (kept by the sweep callback)."""

    uri: str
    experiment: str
    sweep_id: str


def process_gone(pid: int) -> bool:
    """No such process here, or a zombie (a killed worker its parent has not reaped yet)."""
    if not pid_alive(pid):
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _in_sweep(runs: Iterable[Any], sweep_id: str) -> list[Any]:
    """The runs tagged with the sweep, and every run below one of them."""
    by_id = {run.info.run_id: run for run in runs}

    def belongs(run: Any, depth: int = 0) -> bool:
        tags = run.data.tags
        if tags.get("sweep.id") == sweep_id:
            return True
        parent = by_id.get(tags.get("mlflow.parentRunId", ""))
        return parent is not None and depth < 16 and belongs(parent, depth + 1)

    return [run for run in by_id.values() if belongs(run)]


def _closable(run: Any, sweep_ended: bool) -> bool:
    tags = run.data.tags
    if tags.get("host") == socket.gethostname() and tags.get("pid", "").isdigit():
        pid = int(tags["pid"])
        return pid == os.getpid() or process_gone(pid)
    return sweep_ended


def close_sweep_runs(where: SweepRuns, *, sweep_ended: bool, wait_s: float = WAIT_FOR_JOBS_S) -> int:
    """End KILLED the sweep's runs still RUNNING whose job is gone; returns how many."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(where.uri)
    experiment = client.get_experiment_by_name(where.experiment)
    if experiment is None:
        return 0
    deadline = time.monotonic() + wait_s
    closed = 0
    while True:
        ids = [experiment.experiment_id]
        running = client.search_runs(ids, "attributes.status = 'RUNNING'", max_results=5000)
        # The job runs in any state: a stage run may outlive the job run it hangs below.
        tagged = client.search_runs(ids, f"tags.`sweep.id` = '{where.sweep_id}'", max_results=5000)
        left = [r for r in _in_sweep([*tagged, *running], where.sweep_id) if r.info.status == "RUNNING"]
        for run in [r for r in left if _closable(r, sweep_ended)]:
            client.set_terminated(run.info.run_id, "KILLED")
            closed += 1
        if all(_closable(r, sweep_ended) for r in left) or time.monotonic() > deadline:
            return closed
        time.sleep(0.5)
