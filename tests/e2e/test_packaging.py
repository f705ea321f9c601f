"""`python -m interp_pipeline` works from any directory, from an editable install and from a wheel."""

from __future__ import annotations

import re
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def clean_env(**extra: str) -> dict[str, str]:
    drop = ("PYTHONPATH", "INTERP_PIPELINE_OUTPUTS", "MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["TQDM_DISABLE"] = "1"
    env.update(extra)
    return env


def python(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_installed_package_runs_from_another_directory(tmp_path):
    where = python(["-c", "import interp_pipeline, sys; print(interp_pipeline.__file__)"], tmp_path, clean_env())
    assert Path(where.stdout.strip()).parent == REPO / "interp_pipeline"
    done = python(["-m", "interp_pipeline", "--help"], tmp_path, clean_env())
    assert done.returncode == 0 and re.search(r"^experiment: .*\bsmoke\b", done.stdout, re.M), done.stderr


def test_wheel_carries_configs_and_pipelines_and_runs_smoke(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
         str(REPO)], capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("interp_pipeline-*.whl")
    target = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
        capture_output=True, text=True, timeout=300,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (target / "interp_pipeline" / "conf" / "experiment" / "smoke.yaml").is_file()
    assert (target / "interp_pipeline" / "pipelines" / "smoke.yaml").is_file()

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = clean_env(PYTHONPATH=str(target))
    where = python(["-c", "import interp_pipeline; print(interp_pipeline.__file__)"], workdir, env)
    assert Path(where.stdout.strip()).parent == target / "interp_pipeline"
    done = python(["-m", "interp_pipeline", "+experiment=smoke"], workdir, env)
    assert done.returncode == 0, done.stdout + done.stderr
    # No repository around a wheel: outputs go to ./outputs of the working directory.
    assert (workdir / "outputs" / "mlflow.db").is_file()
    assert (workdir / "outputs" / "cache" / "activation_stats").is_dir()
