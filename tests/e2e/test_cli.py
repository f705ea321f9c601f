"""The real CLI in a subprocess: smoke, the cache, sweeps, signals, and a real MLflow server."""

from __future__ import annotations

import re
import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.slow


def parents(uri: str, experiment: str):
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no MLflow experiment {experiment!r} in {uri}"
    runs = client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags], runs


def sqlite_uri(outputs: Path) -> str:
    return f"sqlite:///{outputs / 'mlflow.db'}"


def test_smoke_then_served_from_the_cache(outputs):
    first = run_cli(["+experiment=smoke"], outputs)
    assert first.returncode == 0, first.stderr
    assert "[3/3] stats" in first.stdout and "computed" in first.stdout
    assert "│ stats.loss_mean │" in first.stdout and "ok" in first.stdout  # the expect table
    second = run_cli(["+experiment=smoke"], outputs)
    assert second.returncode == 0, second.stderr
    assert "0 to compute" in second.stdout and "cached (from run" in second.stdout
    runs, all_runs = parents(sqlite_uri(outputs), "smoke")
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert all(r.info.status == "FINISHED" for r in all_runs)
    assert runs[0].data.metrics["stats.loss_mean"] == runs[1].data.metrics["stats.loss_mean"]


def test_an_edited_cached_output_is_recomputed_not_served(outputs, tmp_path):
    # The case: smoke's tokens edited in the cache, then stats recomputed on them
    # (another hook set) gave another loss (5.126 -> 5.004) with no word said.
    from safetensors.torch import load_file, save_file

    assert run_cli(["+experiment=smoke"], outputs).returncode == 0
    (entry,) = [p for p in (outputs / "cache" / "random_tokens").iterdir() if (p / "complete.json").exists()]
    tokens_file = entry / json.loads((entry / "complete.json").read_text())["outputs"]["tokens"]["file"]
    tokens = load_file(str(tokens_file))
    tokens["tensor"][:, 1:] = 7
    save_file(tokens, str(tokens_file))
    overrides = ["+experiment=smoke", "stats.hooks=[hook_embed]", "runner.check_expect=false"]
    edited = run_cli(overrides, outputs)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert f"warning: cache entry {entry} is not served: file {tokens_file.name} changed" in edited.stdout
    fresh = run_cli(overrides, tmp_path / "fresh")
    assert fresh.returncode == 0, fresh.stdout + fresh.stderr
    loss = [parents(sqlite_uri(folder), "smoke")[0][-1].data.metrics["stats.loss_mean"]
            for folder in (outputs, tmp_path / "fresh")]
    assert loss[0] == loss[1]


def test_user_error_is_one_line_status_2_and_no_traceback(outputs):
    done = run_cli(["+experiment=smoke", "stats.batch_sise=4"], outputs)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: stats.batch_sise: expected a key of ActivationStatsConfig (batch_size_prompts, hooks), "
        "found 'batch_sise' (did you mean 'batch_size_prompts'?)"
    ]
    assert "Traceback" in (outputs / "errors.log").read_text()


def test_hook_typo_stops_with_status_2(outputs):
    done = run_cli(["+experiment=smoke", "stats.hooks=[blocks.0.hook_resid_prex]"], outputs)
    assert done.returncode == 2
    assert "error: stats.hooks[0]: expected a hook name of this model" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_expect_from_the_command_line(outputs):
    """~expect checks nothing; an entry or one field of it is added or changed; other forms say what works."""
    none = run_cli(["+experiment=smoke", "~expect"], outputs)
    assert none.returncode == 0, none.stdout + none.stderr
    assert "stats.loss_mean │" not in none.stdout
    widened = run_cli(["+experiment=smoke", "expect.stats.loss_mean.max=6", "+expect.stats.loss={min: 1}"], outputs)
    assert widened.returncode == 0, widened.stdout + widened.stderr
    assert re.search(r"│ stats.loss_mean +│ >= 4.85, <= 6 ", widened.stdout) and "│ stats.loss  " in widened.stdout
    unmet = run_cli(["+experiment=smoke", "+expect.stats.loss.max=1"], outputs)
    assert unmet.returncode == 3 and "error: expect not met for stats.loss" in unmet.stdout
    runs, _ = parents(sqlite_uri(outputs), "smoke")
    assert "expect.passed" not in runs[0].data.tags and runs[1].data.tags["expect.passed"] == "true"
    refused = run_cli(["+experiment=smoke", "~expect.stats.loss_mean"], outputs)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        "error: expect.stats.loss_mean: expected +expect.STAGE.METRIC={min: V, max: V} (or {value: V, atol: T}), "
        "expect.STAGE.METRIC.FIELD=V (FIELD one of atol, max, min, rtol, source, value, why), or ~expect to check none; "
        "found '~expect.stats.loss_mean'"]


def test_a_plugin_that_does_not_import_stops_with_status_2_naming_runner_plugins(outputs, tmp_path):
    missing = run_cli(["+experiment=smoke", "runner.plugins=[no_such_module]"], outputs)
    assert missing.returncode == 2, missing.stdout + missing.stderr
    assert [line for line in (missing.stdout + missing.stderr).splitlines() if "error" in line.lower()] == [
        "error: runner.plugins: expected importable modules, found 'no_such_module', which does not exist "
        "(check its spelling, and that its folder is on PYTHONPATH)"]
    (tmp_path / "broken_plugin.py").write_text("import no_such_dependency\n")  # the CLI's cwd is on sys.path
    broken = run_cli(["+experiment=smoke", "runner.plugins=[broken_plugin]"], outputs)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    assert [line for line in (broken.stdout + broken.stderr).splitlines() if "error" in line.lower()] == [
        "error: runner.plugins: expected importable modules, found 'broken_plugin', whose import failed: "
        "ModuleNotFoundError: No module named 'no_such_dependency'"]
    assert "Traceback" not in missing.stdout + missing.stderr + broken.stdout + broken.stderr


def test_help_lists_groups_and_experiments(outputs):
    done = run_cli(["--help"], outputs)
    assert done.returncode == 0
    assert re.search(r"^experiment: .*\bsmoke\b", done.stdout, re.M) and re.search(r"^model: .*\btoy_induction\b", done.stdout, re.M)
    assert "Exit status" in done.stdout


def test_parallel_sweep_of_three_jobs_shares_one_store(outputs):
    done = run_cli(["-m", "+experiment=smoke", "seed=0,1,2", "hydra/launcher=joblib",
                    "hydra.launcher.n_jobs=3"], outputs, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    top, all_runs = parents(sqlite_uri(outputs), "smoke")
    summaries = [r for r in top if r.data.tags.get("sweep.summary") == "true"]
    runs = [r for r in top if r.data.tags.get("sweep.summary") != "true"]
    assert len(runs) == 3 and len(summaries) == 1 and len(all_runs) == 13
    assert all(r.info.status == "FINISHED" for r in all_runs)
    assert len({r.data.tags["sweep.id"] for r in top}) == 1  # the summary run carries the sweep's id too
    # each job's terminal lines carry its number, so the three jobs' interleaved output can be told apart
    for job in range(3):
        assert f"[job {job}] smoke: pipeline 'smoke'" in done.stdout and f"[job {job}] [3/3] stats" in done.stdout
    assert sorted(r.data.tags["hydra.overrides"] for r in runs) == [f"+experiment=smoke seed={i}" for i in range(3)]
    assert sorted(r.data.tags["sweep.job_num"] for r in runs) == ["0", "1", "2"]
    assert len({r.data.metrics["stats.loss_mean"] for r in runs}) == 3


@pytest.mark.parametrize("round_", range(3))
def test_two_invocations_started_together_on_a_fresh_store_both_succeed(tmp_path, round_):
    """Both create the SQLite store and the experiment; without a lock one fails in MLflow's migrations."""
    outputs = tmp_path / "outputs"
    processes = [subprocess.Popen([sys.executable, "-m", "interp_pipeline", "+experiment=smoke", f"seed={seed}"],
                                  cwd=tmp_path, env=cli_env(outputs), stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for seed in (0, 1)]
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    runs, _ = parents(sqlite_uri(outputs), "smoke")
    assert sorted(r.data.tags["hydra.overrides"] for r in runs) == ["+experiment=smoke seed=0",
                                                                    "+experiment=smoke seed=1"]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]


def test_a_corrupt_checkpoint_fails_its_stage_in_one_line_naming_the_file(outputs):
    from interp_pipeline.experiments.compose import compose
    from interp_pipeline.experiments.run import prepare
    from interp_pipeline.runner.runner import PipelineRunner
    from interp_pipeline.runner.stage_cache import StageCache

    # stats.hooks: smoke's default hooks include an MLP hook, which the attention-only toy model lacks
    args = ["+experiment=smoke", "model=toy_induction", "stats.hooks=[blocks.1.hook_resid_post]", "runner.check_expect=false"]
    cfg = compose(args)
    runner = PipelineRunner(prepare(cfg).spec, StageCache(cfg.runner.cache_dir))
    checkpoint = StageCache(cfg.runner.cache_dir).workdir("load_model", runner.keys["model"]) / "step-000000500"
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"\x00" * 40)  # cut short by a full disk, say
    (checkpoint / "done.json").write_text(json.dumps({"step": 500, "loss": 1.0}))
    done = run_cli(args, outputs)
    assert done.returncode == 1, done.stdout + done.stderr
    errors = [line for line in (done.stdout + done.stderr).splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error: stage 'model' failed: "), errors
    assert f"checkpoint file {checkpoint / 'model.safetensors'} cannot be loaded" in errors[0]
    assert f"delete {checkpoint} to start over" in errors[0]
    assert "Traceback" not in done.stdout + done.stderr and "weights_only" not in done.stdout + done.stderr


def write_test_pipeline(folder: Path, *extra: dict) -> Path:
    stages = [{"name": "numbers", "fn": "t_numbers", "params": {"n": 3}},
              {"name": "scaled", "fn": "t_scale", "inputs": {"numbers": "numbers"}, "params": {"factor": "${seed}"}},
              *extra]
    path = folder / "pipe.yaml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def test_sweep_status_is_its_worst_job(outputs, tmp_path):
    pipeline = write_test_pipeline(tmp_path)
    done = run_cli(["-m", f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]",
                    "++expect={scaled.total: {max: 7}}", "seed=1,5"], outputs)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "sweep: 2 jobs, 1 not ok" in done.stdout
    assert "job 1 (seed=5): error: expect not met for scaled.total" in done.stdout
    assert "job 0 (seed=1)" not in done.stdout


def test_sweep_summary_names_why_each_failed_job_stopped(outputs, tmp_path):
    # The message quotes a credential, as a client library's error may: masked in the line and in job_result.json.
    secret = "tok" + uuid.uuid4().hex
    pipeline = write_test_pipeline(tmp_path, {"name": "fail", "fn": "t_fail", "inputs": {"numbers": "numbers"},
                                              "params": {"message": "no luck with seed ${seed}, token ${custom.api_token}"}})
    done = run_cli(["-m", f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]", "seed=1,5",
                    "+custom.api_token=${oc.env:JOB_ERROR_TOKEN}"], outputs, JOB_ERROR_TOKEN=secret)
    assert done.returncode == 1, done.stdout + done.stderr
    for job, seed in enumerate((1, 5)):
        lines = [line for line in done.stdout.splitlines() if f"job {job} (seed={seed}): " in line]
        assert len(lines) == 1, done.stdout
        assert "error: stage 'fail' failed" in lines[0] and f"no luck with seed {seed}, token " in lines[0], lines[0]
    records = [json.loads(p.read_text()) for p in sorted((outputs / "multirun").glob("*/*/*/job_result.json"))]
    assert [r["error"].split("failed: ")[0] for r in records] == ["error: stage 'fail' ", "error: stage 'fail' "]
    assert secret not in done.stdout + done.stderr and not any(secret in r["error"] for r in records)


def test_sigterm_mid_stage_ends_runs_killed_and_keeps_no_partial_result(outputs, tmp_path):
    started = tmp_path / "started.json"
    pipeline = write_test_pipeline(tmp_path, {"name": "wait", "fn": "t_wait", "inputs": {"numbers": "numbers"},
                                              "params": {"started_file": str(started)}})
    process = subprocess.Popen(
        [sys.executable, "-m", "interp_pipeline", f"pipeline={pipeline}", "runner.plugins=[tests.support.stages]",
         "tracking.experiment_name=sigterm"],
        cwd=tmp_path, env=cli_env(outputs), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 120
    while not started.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the waiting stage never started"
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stdout + stderr
    assert "terminated (SIGTERM)" in stdout
    runs, all_runs = parents(sqlite_uri(outputs), "sigterm")
    assert runs[0].info.status == "KILLED"
    statuses = {r.data.tags.get("stage"): r.info.status for r in all_runs if "stage" in r.data.tags}
    assert statuses == {"numbers": "FINISHED", "scaled": "FINISHED", "wait": "KILLED"}
    wait_entries = outputs / "cache" / "t_wait"
    assert not any((p / "complete.json").exists() for p in wait_entries.glob("*"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "server.log", "w"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    import urllib.request

    while True:
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        assert time.monotonic() < deadline, "mlflow server did not start"
        time.sleep(0.5)
    yield url
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()


def test_logs_to_a_real_mlflow_server(outputs, mlflow_server, tmp_path):
    done = run_cli(["+experiment=smoke"], outputs, MLFLOW_TRACKING_URI=mlflow_server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"mlflow: {mlflow_server}/#/experiments/" in done.stdout
    assert not (outputs / "mlflow.db").exists()  # nothing went to the default store
    runs, all_runs = parents(mlflow_server, "smoke")
    assert len(runs) == 1 and len(all_runs) == 4
    client = MlflowClient(mlflow_server)
    stats = next(r for r in all_runs if r.data.tags.get("stage") == "stats")
    names = {a.path for a in client.list_artifacts(stats.info.run_id)}
    assert "activation_norms.png" in names
    assert (tmp_path / "server-artifacts").is_dir()


def test_an_unobtainable_hub_model_stops_before_any_work(outputs):
    done = run_cli(["+experiment=smoke", "model=gpt2_small"], outputs, HF_HUB_OFFLINE="1",
                   HF_HOME=str(outputs.parent / "empty_hf_home"))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "gpt2" in lines[0] and "offline" in lines[0]
    assert not (outputs / "mlflow.db").exists()  # stopped before any run was opened


def test_smoke_on_a_local_hugging_face_checkpoint(outputs, tmp_path):
    from tests.support.tiny_gpt2 import save_tiny_gpt2

    directory = save_tiny_gpt2(tmp_path / "tiny_gpt2")
    done = run_cli(["+experiment=smoke", "model=hf", f"model.name_or_path={directory}", "runner.check_expect=false"], outputs,
                   HF_HUB_OFFLINE="1")
    assert done.returncode == 0, done.stdout + done.stderr
    runs, all_runs = parents(sqlite_uri(outputs), "smoke")
    model_run = next(r for r in all_runs if r.data.tags.get("stage") == "model")
    assert model_run.data.tags["model.source"] == "hf"
    assert model_run.data.metrics["n_params"] > 0 and len(model_run.data.tags["model.checksum"]) == 16


# quickstart, ioi_patching model=toy_ioi and grokking run end to end in tests/test_readme.py (the README's
# commands), which makes the assertions these tests made on them.
