"""Facts about this invocation worth tagging on a run: git state and library versions."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

REPORTED_LIBRARIES = (
    "interp_pipeline", "torch", "transformer_lens", "sae_lens", "mlflow",
    "hydra-core", "omegaconf", "zarr", "numpy",
)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(root: Path | None) -> dict[str, str]:
    """MLflow's own git tag name for the commit, plus whether the work tree had changes."""
    if root is None:
        return {}
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {}
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {"mlflow.source.git.commit": commit, "git.dirty": str(bool(status)).lower()}


def version_tags() -> dict[str, str]:
    tags = {"version.python": sys.version.split()[0]}
    for name in REPORTED_LIBRARIES:
        try:
            tags[f"version.{name}"] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return tags
