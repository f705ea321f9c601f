"""Hydra callbacks: prepare the MLflow store before a sweep's jobs start, gather their statuses after."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from interp_pipeline.exit_status import STATUS_FILE, combine, read_statuses

log = logging.getLogger(__name__)
SWEEP_STATUSES: list[int] = []


def experiment_choice(choices: Any) -> str:
    """The experiment config's name (``+experiment=NAME``), which names the MLflow experiment."""
    return choices.get("experiment") or "default"


class PipelineCallbacks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        for stale in sweep_dir.glob(f"*/{STATUS_FILE}"):
            stale.unlink()
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
