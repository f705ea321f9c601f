"""The command line: Hydra composes the config, ``interp_pipeline.experiment`` runs it.

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

from interp_pipeline.errors import ConfigError, Terminated
from interp_pipeline.exit_status import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    write_status,
)
from interp_pipeline.compose import register
from interp_pipeline.paths import conf_dir, default_outputs_dir

log = logging.getLogger("interp_pipeline")
_RUN_STATUSES: list[int] = []

# At import, not in main(): parallel launchers (joblib) unpickle `task` in worker
# processes that never ran main(), and their configs need the resolver too.
register()


def task(cfg: Any) -> int:
    """Hydra's task function: one job. Never raises for a user error; returns the exit status."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from interp_pipeline.experiment import Invocation, run_experiment
    from interp_pipeline.hydra_callbacks import experiment_choice, read_swept_keys
    from interp_pipeline.threads import parallel_jobs

    hydra_cfg = HydraConfig.get()
    output_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    invocation = Invocation(
        experiment=experiment_choice(hydra_cfg.runtime.choices),
        output_dir=output_dir,
        overrides=list(hydra_cfg.overrides.task),
        sweep_id=Path(hydra_cfg.sweep.dir).name if multirun else None,
        job_num=hydra_cfg.job.num if multirun else None,
        parallel_jobs=parallel_jobs(hydra_cfg.launcher) if multirun else 1,
        swept=read_swept_keys(Path(hydra_cfg.sweep.dir)) if multirun else None,
    )
    try:
        status = run_experiment(cfg, invocation)
    except (KeyboardInterrupt, Terminated):
        raise
    except Exception as error:  # a failure outside any stage (the tracking store, the disk)
        log.debug("unexpected error:\n%s", traceback.format_exc())
        log.error("error: %s: %s (traceback in %s)", type(error).__name__, error, output_dir)
        status = EXIT_FAILED
    write_status(output_dir, status)
    _RUN_STATUSES.append(status)
    return status


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _record_config_error(error: BaseException) -> Path | None:
    """Keep the traceback of an error raised before any job's run directory exists."""
    try:
        path = default_outputs_dir() / "errors.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
            handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
        return path
    except OSError:
        return None


def main() -> None:
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises; we print one line and pick the status
    # MLflow logs its store migrations at INFO on its own handler; keep the terminal to our lines.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    register()
    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from interp_pipeline.exit_status import combine
    from interp_pipeline.hydra_callbacks import SWEEP_STATUSES

    from interp_pipeline.expect_overrides import rewrite_all

    signal.signal(signal.SIGTERM, _raise_terminated)
    hydra_main = hydra.main(version_base="1.3", config_path=str(conf_dir()), config_name="config")(task)
    try:
        sys.argv[1:] = rewrite_all(sys.argv[1:])  # expect.STAGE.METRIC overrides, in a form Hydra can apply
        hydra_main()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    except Terminated:
        sys.exit(EXIT_TERMINATED)
    except (HydraException, OmegaConfBaseException) as error:
        _record_config_error(error)
        from interp_pipeline.hydra_errors import describe

        print(f"error: {describe(error)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except ConfigError as error:  # raised before any job: an expect override, the sweep callback's pre-flight
        _record_config_error(error)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    except Exception as error:  # outside any job (a sweep callback reaching the tracking store)
        where = _record_config_error(error)
        print(f"error: {type(error).__name__}: {error} (traceback in {where})", file=sys.stderr)
        sys.exit(EXIT_FAILED)
    statuses = SWEEP_STATUSES or _RUN_STATUSES
    sys.exit(combine(statuses) if statuses else EXIT_OK)
