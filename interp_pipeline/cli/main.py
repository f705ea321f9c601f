"""The command line: Hydra composes the config, ``interp_pipeline.experiments.run.launch`` runs it.

Hydra prints its own errors and exits 1 for all of them; we need 2 for a config
error, 1 for a failure, 3 for an unmet ``expect:``. So Hydra is asked to raise
(HYDRA_FULL_ERROR), its errors are turned into one line here, the task returns
a status instead of raising, and a sweep's statuses are gathered by a callback.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from types import FrameType
from typing import Any

from interp_pipeline.common.errors import ConfigError, Terminated
from interp_pipeline.common.exit_status import EXIT_CONFIG, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TERMINATED
from interp_pipeline.common.paths import conf_dir, default_outputs_dir
from interp_pipeline.common.quiet_logs import route_unraisable
from interp_pipeline.experiments.compose import register

log = logging.getLogger("interp_pipeline")
_RUN_STATUSES: list[int] = []

# At import, not in main(): parallel launchers (joblib) unpickle `task` in worker
# processes that never ran main(), and their configs need the resolver too.
register()


class _JobLines(logging.Formatter):
    """Every terminal line of a job (each line of a table too) starts with the job's number."""

    def __init__(self, job_num: int):
        super().__init__("%(message)s")
        self.prefix = f"[job {job_num}] "

    def format(self, record: logging.LogRecord) -> str:
        return "\n".join(self.prefix + line for line in super().format(record).splitlines())


def _label_job_lines(job_num: int) -> None:
    """Prefix this job's terminal lines with its number, so a parallel sweep's output can be told apart."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.setFormatter(_JobLines(job_num))


def task(cfg: Any) -> Any:
    """Hydra's task function: one job. Never raises for a user error.

    Returns the exit status; in a sweep with ``sweep.objective``, the objective's values
    instead (what hydra/sweeper=optuna optimises; None for a job that did not succeed, a failed trial).
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from interp_pipeline.cli.hydra_callbacks import experiment_choice, read_swept_keys
    from interp_pipeline.common.threads import parallel_jobs
    from interp_pipeline.config.secrets import Redactor, redact_override, scrub_files
    from interp_pipeline.config.secrets import active as active_redactor
    from interp_pipeline.experiments.run import Invocation, launch
    from interp_pipeline.sweeps.job_results import JobRecord, write_job_result
    from interp_pipeline.sweeps.objective import objective_values

    route_unraisable()  # in a joblib worker too, which never ran main()
    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    invocation = Invocation(
        experiment=experiment_choice(hydra_cfg.runtime.choices),
        output_dir=output_dir,
        # As typed (reading the list through the config would resolve ${oc.env:...} in it), credentials masked.
        overrides=[redact_override(str(o), cfg.tracking.mask_keys)
                   for o in OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)],
        sweep_id=Path(hydra_cfg.sweep.dir).name if multirun else None,
        job_num=hydra_cfg.job.num if multirun else None,
        parallel_jobs=parallel_jobs(hydra_cfg.launcher) if multirun else 1,
        swept=read_swept_keys(Path(hydra_cfg.sweep.dir)) if multirun else None,
    )
    if multirun and "BasicLauncher" not in str(hydra_cfg.launcher.get("_target_", "")):
        _label_job_lines(hydra_cfg.job.num)
    if multirun and "submitit" in str(hydra_cfg.launcher.get("_target_", "")):
        # submitit logs and ignores SIGTERM; SLURM sends it to a job past its time, then SIGKILL after a grace
        # period: end the runs KILLED in that grace period, as a single run does.
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        scrub_files(output_dir.glob(".hydra/*.yaml"), Redactor.from_config(cfg))
    except Exception:  # noqa: BLE001 - a config that does not resolve is reported by launch, naming its key
        pass
    result = launch(cfg, invocation)
    _RUN_STATUSES.append(result.status)
    if not multirun:
        return result.status
    # The error line as the log printed it: a credential the message quoted is masked in the file too.
    error = active_redactor().text(result.error) if result.error else None
    write_job_result(output_dir, JobRecord(hydra_cfg.job.num, invocation.overrides, result.status, result.metrics,
                                           result.run_id, error))
    objective = list(cfg.sweep.objective)
    return objective_values(objective, result.status, result.metrics) if objective else result.status


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _record_config_error(error: BaseException) -> Path | None:
    """Keep the traceback of an error raised before any job's run directory exists: in the outputs
    directory, or, when that cannot be written (read-only, full), in the system's temporary directory."""
    import tempfile

    from interp_pipeline.config.secrets import Redactor, redact_override

    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    text = Redactor.from_overrides(sys.argv[1:]).text(text)
    command = " ".join(redact_override(arg) for arg in sys.argv)
    for path in (default_outputs_dir() / "errors.log", Path(tempfile.gettempdir()) / "interp_pipeline-errors.log"):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "a") as handle:
                handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {command}\n")
                handle.write(text)
            return path
        except OSError:
            continue
    return None


def _say(line: str) -> None:
    """An error line on stderr, with any secret the command line reads from the environment scrubbed."""
    from interp_pipeline.config.secrets import Redactor

    print(Redactor.from_overrides(sys.argv[1:]).text(line), file=sys.stderr)


def main() -> None:
    if sys.argv[1:2] == ["repro"]:  # `interp-pipeline repro ...`: a suite of runs, not one (interp_pipeline.cli.repro)
        from interp_pipeline.cli.repro import main as repro_main

        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
        sys.exit(repro_main(sys.argv[2:]))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises; we print one line and pick the status
    # MLflow logs its store migrations at INFO on its own handler; keep the terminal to our lines.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    register()
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from interp_pipeline.common.exit_status import combine
    from interp_pipeline.cli.hydra_callbacks import SWEEP_STATUSES, SweepRefused, finish_sweep

    from interp_pipeline.experiments.expect_overrides import rewrite_all

    signal.signal(signal.SIGTERM, _raise_terminated)
    route_unraisable()
    hydra_main = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(task)
    try:
        sys.argv[1:] = rewrite_all(sys.argv[1:])  # expect.STAGE.METRIC overrides, in a form Hydra can apply
        try:
            hydra_main()
        finally:
            # However a sweep ended (Ctrl-C, SIGTERM, a job killed): none of its runs stays RUNNING.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            finish_sweep()
    except SweepRefused as refused:  # the sweep callback's pre-flight, before any job
        _record_config_error(refused.error)
        _say(f"error: {refused.error}")
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    except (HydraException, OmegaConfBaseException) as error:
        _record_config_error(error)
        from interp_pipeline.config.hydra_errors import describe

        _say(f"error: {describe(error)}")
        sys.exit(EXIT_CONFIG)
    except ConfigError as error:  # raised before any job: an expect override, the sweep callback's pre-flight
        _record_config_error(error)
        _say(f"error: {error}")
        sys.exit(EXIT_CONFIG)
    except Exception as error:  # outside any job (a sweep callback reaching the tracking store)
        where = _record_config_error(error)
        kept = f"traceback in {where}" if where is not None else "no traceback kept: nowhere to write it"
        _say(f"error: {type(error).__name__}: {error} ({kept})")
        sys.exit(EXIT_FAILED)
    statuses = SWEEP_STATUSES or _RUN_STATUSES
    sys.exit(combine(statuses) if statuses else EXIT_OK)
