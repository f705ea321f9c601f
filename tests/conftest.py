from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

import tests.support.stages  # noqa: E402,F401  (registers the t_* stages)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On TransformerLens 4 (scripts/tl4_check.sh), skip what needs HookedTransformer, naming why."""
    from interp_pipeline.common.tl_version import has_hooked_transformer, major

    if has_hooked_transformer():
        return
    removed = f"needs HookedTransformer, which TransformerLens {major()} removed (README 'TransformerLens 4')"
    for item in items:
        marker = item.get_closest_marker("hooked_transformer")
        if marker is not None:  # a reason of its own where the test needs more than the class
            item.add_marker(pytest.mark.skip(reason=marker.kwargs.get("reason", removed)))


@pytest.fixture
def outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh outputs directory (stage cache, MLflow store) for one test."""
    folder = tmp_path / "outputs"
    monkeypatch.setenv("INTERP_PIPELINE_OUTPUTS", str(folder))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


@pytest.fixture(scope="session")
def toy_models(tmp_path_factory: pytest.TempPathFactory):
    """The session's toy models, each trained once, lazily (tests/support/toy_models.py):
    ``toy_models.outputs_with(overrides, outputs)`` puts the model of ``overrides`` in ``outputs``'s cache."""
    from tests.support.toy_models import ToyModels

    return ToyModels(tmp_path_factory.mktemp("toy_models"))


def cli_env(outputs: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "HYDRA_FULL_ERROR")}
    env.update(
        INTERP_PIPELINE_OUTPUTS=str(outputs),
        PYTHONPATH=str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        TQDM_DISABLE="1",
    )
    env.update(extra)
    return env


def run_cli(args: list[str], outputs: Path, *, cwd: Path | None = None, timeout: float = 300,
            **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "interp_pipeline", *args],
        cwd=cwd or outputs.parent, env=cli_env(outputs, **env),
        capture_output=True, text=True, timeout=timeout,
    )
