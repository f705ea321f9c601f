"""Hydra callbacks: prepare the MLflow store before a sweep's jobs start, gather their statuses after."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from interp_pipeline.exit_status import STATUS_FILE, combine, read_statuses

log = logging.getLogger(__name__)
SWEEP_STATUSES: list[int] = []
# Written in the sweep directory before the jobs start: the keys the sweep varies, which
# name each job's MLflow run (tracking/run_names.py). A file, not an environment
# variable, so that jobs launched elsewhere (submitit, ray) read it too.
SWEPT_FILE = ".swept_keys.json"


def write_swept_keys(config: DictConfig, sweep_dir: Path) -> list[str]:
    from interp_pipeline.tracking.run_names import swept_keys

    keys = swept_keys(config.hydra.overrides.task)
    params = config.hydra.get("sweeper", {}).get("params") or {}  # a sweep set in the config (Optuna's search space)
    keys += [str(k) for k in params if str(k) not in keys]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    (sweep_dir / SWEPT_FILE).write_text(json.dumps(keys))
    return keys


def read_swept_keys(sweep_dir: Path) -> list[str] | None:
    """The keys written by :func:`write_swept_keys`; None when there are none to read."""
    try:
        keys = json.loads((sweep_dir / SWEPT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return [str(k) for k in keys] or None


def experiment_choice(choices: Any) -> str:
    """The experiment config's name (``+experiment=NAME``), which names the MLflow experiment."""
    return choices.get("experiment") or "default"


class PipelineCallbacks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for stale in sweep_dir.glob(f"*/{STATUS_FILE}"):
            stale.unlink()
        write_swept_keys(config, sweep_dir)
        if config.tracking.enabled:
            # Every job opens the store under a file lock (MlflowTracking); doing it once
            # here first checks the server before any job starts and spares them the wait.
            from interp_pipeline.tracking.mlflow_tracking import (
                MlflowTracking,
                check_reachable,
                resolve_tracking_uri,
            )

            uri = resolve_tracking_uri(config.tracking.uri, config.paths.outputs)
            check_reachable(uri)
            tracking = MlflowTracking(uri)
            name = config.tracking.experiment_name or experiment_choice(config.hydra.runtime.choices)
            tracking.experiment_id(name)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        statuses = read_statuses(Path(config.hydra.sweep.dir))
        SWEEP_STATUSES[:] = [combine(statuses)] if statuses else []
        failed = sum(s != 0 for s in statuses)
        log.info("sweep: %d jobs, %d not ok; outputs in %s", len(statuses), failed, config.hydra.sweep.dir)
