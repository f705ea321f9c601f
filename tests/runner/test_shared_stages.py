"""Shared stages: parallel jobs that need one cache key compute it once, under a lock that a
holder's death (kill -9) releases; a 4-job joblib sweep computes its shared stage once."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from interp_pipeline.pipeline.spec import parse_stages
from interp_pipeline.runner.runner import CACHED, COMPUTED, PipelineRunner
from interp_pipeline.runner.stage_cache import MARKER, StageCache
from tests.conftest import REPO, run_cli
from tests.support.stages import CALLS


def held_pipeline(folder: Path, factor: float = 1.0) -> list[dict]:
    return [
        {"name": "numbers", "fn": "t_numbers", "params": {"n": 4}},
        {"name": "held", "fn": "t_hold", "inputs": {"numbers": "numbers"},
         "params": {"started_file": str(folder / "started"), "release_file": str(folder / "release")}},
        {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": factor}},
    ]


def wait_for(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def started_pids(folder: Path) -> list[int]:
    path = folder / "started"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_a_job_that_needs_a_key_being_computed_waits_then_serves_it(tmp_path, caplog):
    CALLS.clear()
    cache = StageCache(tmp_path / "cache")
    outcomes: dict[str, dict] = {}

    def job(name: str, factor: float) -> None:
        runner = PipelineRunner(parse_stages(held_pipeline(tmp_path, factor), name="p", label="p"), cache)
        outcomes[name] = {o.name: o for o in runner.run()}

    # Both plan while nothing is cached, so both set out to compute 'held'.
    first = threading.Thread(target=job, args=("first", 1.0))
    first.start()
    wait_for(lambda: started_pids(tmp_path), "the first job to start 'held'")
    with caplog.at_level(logging.INFO, logger="interp_pipeline.runner.runner"):
        second = threading.Thread(target=job, args=("second", 2.0))
        second.start()
        wait_for(lambda: "waiting for" in caplog.text, "the second job to say it waits")
        (tmp_path / "release").touch()
        first.join(30)
        second.join(30)
    waiting = [r.getMessage() for r in caplog.records if "waiting for" in r.getMessage()]
    key = outcomes["first"]["held"].key
    assert waiting[0] == f"[2/3] held: waiting for pid {os.getpid()} on {os.uname().nodename}, " \
                         f"which computes t_hold key {key}"
    assert outcomes["first"]["held"].status == COMPUTED
    assert outcomes["second"]["held"].status == CACHED
    assert outcomes["second"]["scaled"].status == COMPUTED  # its own stage still runs
    assert CALLS["t_hold"] == 1 and CALLS["t_scale"] == 2


HOLDER = textwrap.dedent("""
    import sys, yaml
    import tests.support.stages
    from interp_pipeline.pipeline.spec import parse_stages
    from interp_pipeline.runner.runner import PipelineRunner
    from interp_pipeline.runner.stage_cache import StageCache
    stages = yaml.safe_load(open(sys.argv[1]))
    PipelineRunner(parse_stages(stages, name="p", label="p"), StageCache(sys.argv[2])).run()
""")


def test_kill_9_of_the_holder_lets_the_waiting_job_compute_the_key(tmp_path, caplog):
    CALLS.clear()
    stages = held_pipeline(tmp_path)
    (tmp_path / "pipe.yaml").write_text(yaml.safe_dump(stages))
    cache_root = tmp_path / "cache"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "pipe.yaml"), str(cache_root)],
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"},
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: started_pids(tmp_path) or holder.poll() is not None, "the holder to start 'held'", 120)
        assert started_pids(tmp_path) == [holder.pid], holder.stderr.read() if holder.poll() is not None else ""
        result: dict = {}
        runner = PipelineRunner(parse_stages(stages, name="p", label="p"), StageCache(cache_root))
        with caplog.at_level(logging.INFO, logger="interp_pipeline.runner.runner"):
            waiter = threading.Thread(target=lambda: result.update({o.name: o for o in runner.run()}))
            waiter.start()
            wait_for(lambda: "waiting for" in caplog.text, "the waiter to say it waits")
            assert f"waiting for pid {holder.pid} " in caplog.text
            # The holder left a temporary entry and a lock file; neither may block the waiter.
            assert list((cache_root / "t_hold").glob(".tmp-*"))
            (tmp_path / "release").touch()  # a living holder would finish now; a dead one never will
            os.kill(holder.pid, signal.SIGKILL)
            holder.wait(10)
            waiter.join(30)
        assert not waiter.is_alive()
    finally:
        if holder.poll() is None:
            holder.kill()
    assert result["held"].status == COMPUTED and result["held"].metrics == {}
    assert started_pids(tmp_path) == [holder.pid, os.getpid()]
    entry = cache_root / "t_hold" / result["held"].key
    assert (entry / MARKER).is_file() and not list((cache_root / "t_hold").glob(".tmp-*"))


def test_a_4_job_joblib_sweep_computes_the_shared_stage_once(outputs, tmp_path):
    # 'held' keeps the first job busy until every other job waits for its key (or found it
    # cached), so without the lock all four would compute it: each plans before any finishes.
    stages = held_pipeline(tmp_path)
    stages[2]["params"]["factor"] = "${seed}"
    pipeline = tmp_path / "pipe.yaml"
    pipeline.write_text(yaml.safe_dump({"stages": stages}))
    log_file = tmp_path / "calls.log"
    release = tmp_path / "release"

    def release_when_all_planned() -> None:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not release.exists():
            logs = list((outputs / "multirun").rglob("*.log")) if (outputs / "multirun").exists() else []
            text = "".join(p.read_text(errors="replace") for p in logs)
            if (started_pids(tmp_path) and text.count("held: waiting for pid") >= 3) or len(started_pids(tmp_path)) > 1:
                break  # every other job waits (or, were there no lock, a second one computes too)
            time.sleep(0.2)
        release.touch()

    releaser = threading.Thread(target=release_when_all_planned)
    releaser.start()
    done = run_cli(["-m", f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]",
                    "tracking.experiment_name=shared", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4",
                    "seed=1,2,3,4"], outputs, INTERP_TEST_CALL_LOG=str(log_file))
    release.touch()
    releaser.join()
    assert done.returncode == 0, done.stdout + done.stderr
    client = MlflowClient(f"sqlite:///{outputs / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("shared")
    runs = client.search_runs([experiment.experiment_id], "tags.stage = 'held'")
    cached = sorted(r.data.tags["cached"] for r in runs)
    assert cached == ["false", "true", "true", "true"]  # one computed it, three served it
    assert log_file.read_text().split().count("t_hold") == 1
    assert len(set(r.data.tags["cache_key"] for r in runs)) == 1
    assert len(client.search_runs([experiment.experiment_id], "tags.stage = 'scaled' and tags.cached = 'false'")) == 4
