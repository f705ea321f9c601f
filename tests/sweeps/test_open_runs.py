"""Which RUNNING runs the launcher (sweeps/open_runs.py) and the next run (end_orphaned_runs) may close."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from interp_pipeline.sweeps.open_runs import SweepRuns, close_sweep_runs
from interp_pipeline.tracking.mlflow_tracking import MlflowTracking


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One store for the module (creating one runs MLflow's migrations: seconds); one experiment a test."""
    return MlflowTracking(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_launcher_closes_its_sweep_s_dead_runs_and_those_of_other_machines_only_once_the_sweep_ended(tracking):
    uri = tracking.uri
    experiment = tracking.experiment_id("sweep")
    client = tracking.client
    here, dead = socket.gethostname(), str(dead_pid())

    def run(tags: dict[str, str]) -> str:
        return client.create_run(experiment, tags=tags).info.run_id

    job = run({"sweep.id": "s1", "host": here, "pid": dead})
    stage = run({"mlflow.parentRunId": job, "host": here, "pid": dead})
    sae = run({"mlflow.parentRunId": stage, "host": here, "pid": dead})  # two levels below the job
    alive = run({"sweep.id": "s1", "host": here, "pid": str(os.getppid())})
    elsewhere = run({"sweep.id": "s1", "host": "another-node", "pid": "12"})
    other_sweep = run({"sweep.id": "s2", "host": here, "pid": dead})
    where = SweepRuns(uri, "sweep", "s1")

    assert close_sweep_runs(where, sweep_ended=False, wait_s=0) == 3
    status = {r: client.get_run(r).info.status for r in (job, stage, sae, alive, elsewhere, other_sweep)}
    assert status == {job: "KILLED", stage: "KILLED", sae: "KILLED", alive: "RUNNING", elsewhere: "RUNNING",
                      other_sweep: "RUNNING"}
    assert close_sweep_runs(where, sweep_ended=True, wait_s=0) == 1
    assert client.get_run(elsewhere).info.status == "KILLED" and client.get_run(alive).info.status == "RUNNING"
    for left in (alive, other_sweep):  # the store is the module's
        client.set_terminated(left, "FINISHED")


def test_a_run_from_before_a_reboot_is_closed_even_if_its_pid_is_alive_again(tracking):
    experiment = tracking.experiment_id("stale")
    live_pid = str(os.getppid())
    before = tracking.client.create_run(experiment, tags={"host": socket.gethostname(), "pid": live_pid,
                                                          "boot_id": "a-boot-before-this-one"}).info.run_id
    now = tracking.start_run(experiment, "now", {}).run_id  # this process, this boot
    assert tracking.end_orphaned_runs() == 1
    assert tracking.client.get_run(before).info.status == "KILLED"
    assert tracking.client.get_run(now).info.status == "RUNNING"


def test_a_run_of_another_machine_is_closed_once_its_heartbeat_stopped(tracking):
    import time

    from interp_pipeline.tracking import heartbeat

    experiment = tracking.experiment_id("nodes")
    client = tracking.client
    old, fresh = str(int(time.time()) - 3600), str(int(time.time()))
    dead_node = client.create_run(experiment, tags={"host": "node-7", "pid": "41", "heartbeat": old}).info.run_id
    stage = client.create_run(experiment, tags={"host": "node-7", "mlflow.parentRunId": dead_node}).info.run_id
    working = client.create_run(experiment, tags={"host": "node-8", "pid": "41", "heartbeat": fresh}).info.run_id
    assert tracking.end_orphaned_runs() == 2
    assert [client.get_run(r).info.status for r in (dead_node, stage, working)] == ["KILLED", "KILLED", "RUNNING"]

    # A run of ours beats while it runs, and stops when it ends.
    run = tracking.start_run(experiment, "beating", {})
    run._heartbeat.stop()
    run._heartbeat = heartbeat.Heartbeat(client, run.run_id, interval=0.2)
    first = client.get_run(run.run_id).data.tags["heartbeat"]
    time.sleep(1.5)
    assert int(client.get_run(run.run_id).data.tags["heartbeat"]) > int(first)
    run.end("FINISHED")
    assert not run._heartbeat
