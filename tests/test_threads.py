"""The thread policy (interp_pipeline/common/threads.py): cores shared by a sweep's jobs, one thread for toy models."""

from __future__ import annotations

from types import SimpleNamespace

from interp_pipeline.common.threads import choose_threads, parallel_jobs
from tests.conftest import run_cli


def test_a_parallel_sweep_divides_the_cores_between_its_jobs():
    assert choose_threads(None, parallel=2, model_widths=[768], on_cpu=True, cpu_count=8) == (4, "2 jobs at once on 8 cores")
    assert choose_threads(None, parallel=4, model_widths=[], on_cpu=True, cpu_count=2)[0] == 1  # never below one


def test_a_single_run_of_toy_models_on_the_cpu_gets_one_thread_and_others_keep_torchs_default():
    assert choose_threads(None, parallel=1, model_widths=[64, 128], on_cpu=True, cpu_count=2)[0] == 1
    assert choose_threads(None, parallel=1, model_widths=[768], on_cpu=True, cpu_count=2)[0] is None
    assert choose_threads(None, parallel=1, model_widths=[64], on_cpu=False, cpu_count=2)[0] is None
    assert choose_threads(None, parallel=1, model_widths=[], on_cpu=True, cpu_count=2)[0] is None


def test_runner_num_threads_overrides_everything():
    assert choose_threads(3, parallel=2, model_widths=[64], on_cpu=True, cpu_count=2) == (3, "runner.num_threads")


def test_parallel_jobs_reads_the_joblib_launcher():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert parallel_jobs(SimpleNamespace(_target_=joblib, n_jobs=3)) == 3
    assert parallel_jobs(SimpleNamespace(_target_="hydra._internal.core_plugins.basic_launcher.BasicLauncher")) == 1


def test_each_job_of_a_joblib_sweep_says_its_threads(outputs):
    done = run_cli(["-m", "+experiment=smoke", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                    "model.cfg.d_model=1024", "model.cfg.d_head=256"], outputs, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    logs = [p.read_text() for p in (outputs / "multirun").rglob("cli.log")]
    assert len(logs) == 2 and all("torch threads: 1 (2 jobs at once on " in text for text in logs), logs
