"""Hydra callbacks: check the config and prepare the MLflow store before a sweep's jobs start;
gather their statuses, print the sweep's table and log its summary run after."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.common.exit_status import EXIT_EXPECT, EXIT_OK, STATUS_FILE, combine, read_statuses

log = logging.getLogger(__name__)
SWEEP_STATUSES: list[int] = []
# The sweep this process launched, once its first job is about to start (sweeps/open_runs.py), and
# whether the launcher got every job back; cli.main closes what dead jobs left RUNNING.
SWEEP_STATE: dict[str, Any] = {}
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


def _experiment_name(config: DictConfig) -> str:
    return config.tracking.experiment_name or experiment_choice(config.hydra.runtime.choices)


def finish_sweep() -> None:
    """Scrub the sweep's multirun.yaml of secrets; end KILLED what its dead jobs left RUNNING (sweeps/open_runs.py).
    Called by cli.main however the sweep ended. Never raises: the sweep's own outcome is what the exit status says."""
    files = SWEEP_STATE.pop("files", None)
    if files is not None:
        from interp_pipeline.config.secrets import scrub_files

        try:
            scrub_files(*files)
        except OSError as error:
            log.error("error: %s not scrubbed of secrets: %s", files[0][0], error)
    where = SWEEP_STATE.pop("runs", None)
    if where is None:
        return
    from interp_pipeline.sweeps.open_runs import close_sweep_runs as close

    try:
        closed = close(where, sweep_ended=bool(SWEEP_STATE.get("ended")))
    except Exception as error:  # noqa: BLE001
        log.debug("could not close the sweep's runs", exc_info=True)
        log.error("error: runs of sweep %s may be left RUNNING: %s: %s", where.sweep_id, type(error).__name__, error)
        return
    if closed:
        log.info("sweep %s: marked %d run(s) KILLED that jobs which died had left RUNNING", where.sweep_id, closed)


class SweepRefused(BaseException):
    """A config error found before a sweep's first job. A BaseException because Hydra turns an
    Exception raised by a callback into a warning and goes on; cli.main prints it (exit status 2)."""

    def __init__(self, error: ConfigError):
        super().__init__(str(error))
        self.error = error


class PipelineCallbacks(Callback):
    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            self._prepare(config)
        except ConfigError as error:
            raise SweepRefused(error) from error

    def _prepare(self, config: DictConfig) -> None:
        from interp_pipeline.experiments.run import prepare
        from interp_pipeline.sweeps.job_results import RESULT_FILE

        # Every check that needs no model (sweep.objective among them) before the sweeper
        # starts a job.
        prepare(config)
        sweep_dir = Path(config.hydra.sweep.dir)
        for stale in [*sweep_dir.glob(f"*/{STATUS_FILE}"), *sweep_dir.glob(f"*/{RESULT_FILE}")]:
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
            tracking.experiment_id(_experiment_name(config))
            from interp_pipeline.sweeps.open_runs import SweepRuns

            SWEEP_STATE["runs"] = SweepRuns(uri, _experiment_name(config), sweep_dir.name)
        from interp_pipeline.config.secrets import Redactor

        # Hydra writes the sweep's multirun.yaml after this; cli.main scrubs it of a literal credential once done.
        SWEEP_STATE["files"] = ([sweep_dir / "multirun.yaml"], Redactor.from_config(config))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        SWEEP_STATE["ended"] = True
        statuses = read_statuses(Path(config.hydra.sweep.dir))
        counted = statuses
        if config.sweep.objective and EXIT_OK in statuses:
            # In a search, a job that misses expect: is a trial the sweeper was told failed (a
            # constraint of the search, sweeps/objective.py), not a failure of the sweep.
            counted = [s for s in statuses if s != EXIT_EXPECT]
        SWEEP_STATUSES[:] = [combine(counted)] if counted else []
        failed = sum(s != 0 for s in statuses)
        log.info("sweep: %d jobs, %d not ok; outputs in %s", len(statuses), failed, config.hydra.sweep.dir)
        try:
            self._summarise(config)
        except Exception as error:  # the jobs' results stand; say why the summary is missing
            log.debug("sweep summary failed", exc_info=True)
            log.error("error: sweep summary not logged: %s: %s", type(error).__name__, error)

    def _summarise(self, config: DictConfig) -> None:
        from interp_pipeline.sweeps.job_results import read_job_results
        from interp_pipeline.sweeps.summary import log_summary_run, render_table, summarise

        sweep_dir = Path(config.hydra.sweep.dir)
        records = read_job_results(sweep_dir)
        if not records:
            return
        sweep = config.sweep
        result = summarise(records, list(sweep.objective), list(sweep.direction), list(sweep.summary))
        table = render_table(result, title=f"sweep {sweep_dir.name}")
        log.info("%s", table)
        for record in records:  # why each job that is not ok stopped, without opening its folder
            if record.status != EXIT_OK and record.error:
                swept = " ".join(f"{k}={v}" for k, v in result.swept[record.job_num].items())
                # In a search, a trial that misses expect: is a constraint the sweeper was told of, not a failure.
                level = logging.INFO if sweep.objective and record.status == EXIT_EXPECT else logging.ERROR
                log.log(level, "job %d%s: %s", record.job_num, f" ({swept})" if swept else "", record.error)
        if result.best and len(result.best) == 1:
            best = next(r for r in records if r.job_num == result.best[0])
            log.info("best job: %d (%s)", best.job_num, " ".join(f"{k}={v}" for k, v in result.swept[best.job_num].items()))
        if config.tracking.enabled:
            from interp_pipeline.tracking.mlflow_tracking import MlflowTracking, resolve_tracking_uri

            tracking = MlflowTracking(resolve_tracking_uri(config.tracking.uri, config.paths.outputs))
            experiment_id = tracking.experiment_id(_experiment_name(config))
            run_id = log_summary_run(result, tracking, experiment_id, sweep_dir.name, sweep_dir, table)
            log.info("sweep summary: %s", tracking.run_url(experiment_id, run_id))
