"""``sweep.objective``: checked against the metrics the pipeline's stages declare, returned to the sweeper.

Hydra's Optuna sweeper reads the task function's return value: one float per objective.
A job that failed (or missed its ``expect:``) returns None: the sweeper cannot read a value
from it and tells Optuna the trial failed (TrialState.FAIL), and the study goes on (the
experiments set hydra.sweeper.max_failure_rate so that failures are not counted as an error).
NaN would not do: optuna 2.10's ``Study.tell`` raises on it, and the sweeper stops.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

from interp_pipeline.common.errors import ConfigError, one_of
from interp_pipeline.common.exit_status import EXIT_OK
from interp_pipeline.report.expect import check_metric_name

log = logging.getLogger("interp_pipeline")
DIRECTIONS = ("maximize", "minimize")


def validate_sweep(sweep: Any, stage_names: list[str], metrics: Mapping[str, Sequence[str] | None]) -> None:
    """Every name in ``sweep.objective`` and ``sweep.summary`` is a metric of the pipeline; one direction per objective."""
    for index, name in enumerate(sweep.objective):
        check_metric_name(f"sweep.objective[{index}]", str(name), stage_names, metrics)
    for index, name in enumerate(sweep.summary):
        check_metric_name(f"sweep.summary[{index}]", str(name), stage_names, metrics)
    directions = [str(d) for d in sweep.direction]
    for index, direction in enumerate(directions):
        if direction not in DIRECTIONS:
            raise ConfigError(f"sweep.direction[{index}]", f"expected one of {one_of(DIRECTIONS)}, found '{direction}'")
    if sweep.objective and len(directions) != len(sweep.objective):
        raise ConfigError("sweep.direction", f"expected one direction ({one_of(DIRECTIONS)}) per objective "
                                             f"({len(sweep.objective)}), found {len(directions)}")


def objective_values(objective: Sequence[str], status: int, metrics: Mapping[str, float]) -> float | list[float] | None:
    """What the task returns to the sweeper: the objective's values, None for a job that did not succeed."""
    values = [float(metrics.get(name, math.nan)) if status == EXIT_OK else math.nan for name in objective]
    if any(math.isnan(v) for v in values):
        log.warning("sweep: this job (exit status %d) is reported to the sweeper as failed", status)
        return None
    return values[0] if len(values) == 1 else values
