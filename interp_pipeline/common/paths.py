"""Where the configs, pipelines and outputs live, for source checkouts and wheels alike."""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
OUTPUTS_ENV = "INTERP_PIPELINE_OUTPUTS"


def _shipped_or_checkout(name: str) -> Path:
    # A wheel carries conf/ and pipelines/ inside the package (see pyproject's
    # force-include); a source checkout or editable install has them beside it.
    inside = PACKAGE_DIR / name
    return inside if inside.is_dir() else PACKAGE_DIR.parent / name


def conf_dir() -> Path:
    return _shipped_or_checkout("conf")


def pipelines_dir() -> Path:
    return _shipped_or_checkout("pipelines")


def project_root() -> Path | None:
    """The repository this package runs from, or None for a wheel install."""
    candidate = PACKAGE_DIR.parent
    return candidate if (candidate / "pyproject.toml").is_file() else None


def default_outputs_dir() -> Path:
    """``$INTERP_PIPELINE_OUTPUTS``, else ``<repo>/outputs``, else ``./outputs``.

    Always absolute, so Hydra's per-job working directories and parallel sweep jobs
    all share one MLflow store and one stage cache.
    """
    env = os.environ.get(OUTPUTS_ENV)
    if env:
        return Path(env).expanduser().resolve()
    root = project_root()
    return (root / "outputs") if root is not None else (Path.cwd() / "outputs").resolve()
