"""However a sweep ends, no MLflow run is left RUNNING: real signals to the real CLI's process group (or to
one job's process), with the joblib, basic and submitit_local launchers; the rerun serves what finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import cli_env


def hold_pipeline(folder: Path) -> tuple[Path, Path, Path]:
    """numbers -> scaled -> hold (each job appends its pid to ``started`` and holds until ``release`` exists)."""
    started, release = folder / "started.txt", folder / "release"
    stages = [{"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
              {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": "${seed}"}},
              {"name": "hold", "fn": "t_hold", "inputs": {"numbers": "scaled"},
               "params": {"started_file": str(started), "release_file": str(release), "seconds": 300}}]
    path = folder / "hold.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path, started, release


def start_sweep(args: list[str], outputs: Path, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "interp_pipeline", "-m", *args], cwd=cwd, env=cli_env(outputs),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for_jobs(process: subprocess.Popen[str], started: Path, jobs: int, timeout: float = 150) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(line) for line in started.read_text().split()] if started.exists() else []
        if len(pids) >= jobs:
            return pids
        if process.poll() is not None:
            pytest.fail("the sweep ended before its jobs held: " + "".join(process.communicate()))
        assert time.monotonic() < deadline, "the jobs never reached their holding stage"
        time.sleep(0.1)


def runs_of(outputs: Path, experiment: str) -> list:
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], max_results=1000)


def assert_none_running(outputs: Path, experiment: str) -> list:
    runs = runs_of(outputs, experiment)
    running = [(r.info.run_name, r.data.tags.get("pid")) for r in runs if r.info.status == "RUNNING"]
    assert not running, running
    return runs


def test_ctrl_c_to_a_joblib_sweep_then_sigterm_to_its_rerun_on_the_basic_launcher(outputs, tmp_path):
    """Ctrl-C (SIGINT to the process group: joblib SIGKILLs its workers) leaves no run RUNNING; the same sweep
    run again on the basic launcher serves the finished stages from the cache, and SIGTERM to its group while
    its first job holds leaves none either."""
    pipeline, started, _ = hold_pipeline(tmp_path)
    args = [f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]", "seed=1,2",
            "tracking.experiment_name=stopped"]
    sweep = start_sweep([*args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], outputs, tmp_path)
    workers = wait_for_jobs(sweep, started, 2)
    signalled = time.monotonic()
    os.killpg(sweep.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
    stdout, stderr = sweep.communicate(timeout=120)
    print(f"exited {time.monotonic() - signalled:.1f} s after Ctrl-C")
    assert sweep.returncode == 130, stdout + stderr
    for pid in workers:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split(")")[1][:3]
    runs = assert_none_running(outputs, "stopped")
    holds = [r for r in runs if r.data.tags.get("stage") == "hold"]
    assert len(holds) == 2 and {r.info.status for r in holds} == {"KILLED"}

    started.unlink()
    again = start_sweep(args, outputs, tmp_path)  # the basic launcher: jobs one after another, in its process
    wait_for_jobs(again, started, 1)
    os.killpg(again.pid, signal.SIGTERM)
    stdout, stderr = again.communicate(timeout=120)
    assert again.returncode == 143, stdout + stderr
    runs = assert_none_running(outputs, "stopped")
    rerun = [r for r in runs if r.data.tags.get("pid") == str(again.pid)]
    assert {r.data.tags.get("stage", "job"): (r.data.tags.get("cached"), r.info.status) for r in rerun} == {
        "job": (None, "KILLED"), "numbers": ("true", "FINISHED"), "scaled": ("true", "FINISHED"),
        "hold": ("false", "KILLED")}


def test_submitit_jobs_killed_or_past_their_time_have_no_run_left_running(outputs, tmp_path):
    """One job SIGKILLed (no handler of ours runs: the launcher closes its runs), one sent SIGTERM, as SLURM
    does to a job past its time before its SIGKILL (its own handler ends its runs)."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    pipeline, started, _ = hold_pipeline(tmp_path)
    sweep = start_sweep([f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]", "seed=1,2",
                         "hydra/launcher=submitit_local", "tracking.experiment_name=killed_job"], outputs, tmp_path)
    killed, timed_out = wait_for_jobs(sweep, started, 2)  # submitit_local runs the jobs side by side
    os.kill(killed, signal.SIGKILL)
    os.kill(timed_out, signal.SIGTERM)
    stdout, stderr = sweep.communicate(timeout=180)
    assert sweep.returncode != 0, stdout + stderr
    runs = assert_none_running(outputs, "killed_job")
    for pid in (killed, timed_out):
        ended = {r.data.tags.get("stage", "job"): r.info.status for r in runs if r.data.tags.get("pid") == str(pid)}
        assert ended == {"job": "KILLED", "numbers": "FINISHED", "scaled": "FINISHED", "hold": "KILLED"}, pid
    logs = "".join(p.read_text() for p in (outputs / "multirun").rglob("*_log.out"))
    assert logs.count("terminated (SIGTERM): runs marked KILLED") == 1
