"""From a notebook: compose an experiment's config, run it with its log on the console, and load
any stage's output of a finished run by experiment and stage name::

    from interp_pipeline import api

    cfg = api.compose("quickstart", overrides=["sae.training_tokens=200_000"])
    result = api.run(cfg)                     # or api.run("quickstart", overrides=[...])
    sae = api.load("quickstart", "sae")       # the latest finished run's SAE (run_id= for another)
    store = api.load("quickstart", "cache")   # an ActivationStore: store["resid_pre", 1][seq, pos]

``api.compose`` is the composer the tests and the rehearsal use too
(interp_pipeline.experiments.compose), ``api.experiments()`` lists what conf/experiment/ offers,
``api.run`` runs in this process as the CLI's task does (interp_pipeline.experiments.run.launch),
and ``api.load`` finds the run in MLflow (interp_pipeline.tracking.past_runs: the experiment's
parent runs carry a ``cache_key.STAGE`` tag per stage, their stage runs the stage's function) and
reads the stage cache entry of that key, so nobody has to know a hash. Hydra's own
``initialize_config_dir`` + ``compose`` work too: importing ``interp_pipeline`` registers the
schemas and resolvers they need.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from interp_pipeline.common.errors import NotFound
from interp_pipeline.common.paths import default_outputs_dir
from interp_pipeline.experiments.catalog import experiments
from interp_pipeline.experiments.compose import compose

log = logging.getLogger("interp_pipeline")
# As the CLI does: MLflow's store-migration lines at INFO are not for the notebook's output.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

__all__ = ["NotFound", "RunError", "RunResult", "compose", "experiments", "load", "run"]


class RunError(RuntimeError):
    """A run that stopped with a config error (status 2) or a failure (status 1)."""


@dataclass(frozen=True)
class RunResult:
    """What ``run`` did: its exit status (0, or 3 when ``expect:`` was not met), its run directory
    (the log file is ``run.log`` there) and its MLflow parent run."""

    experiment: str
    status: int
    output_dir: Path
    run_id: str | None
    tracking_uri: str | None

    def load(self, stage: str) -> Any:
        """This run's output of ``stage`` (see :func:`load`)."""
        if self.run_id is None:
            raise NotFound(f"run in {self.output_dir} was not tracked (tracking.enabled=false): its outputs "
                           "cannot be found by stage name")
        return load(self.experiment, stage, run_id=self.run_id, tracking_uri=self.tracking_uri)


def run(experiment: str | DictConfig, overrides: Sequence[str] = (), *, level: int = logging.INFO) -> RunResult:
    """Run an experiment (a name, composed with ``overrides``, or a config from :func:`compose`),
    printing the CLI's log lines (stages, progress every ~10 s, the ``expect:`` table) to stdout.

    Like the CLI, it sets torch's threads for the run (1 for toy-sized models on the CPU;
    ``runner.num_threads=N`` overrides). Raises :class:`RunError` when the run stops with a
    config error or a failure; an unmet ``expect:`` returns status 3.
    """
    from interp_pipeline.experiments.compose import register
    from interp_pipeline.experiments.run import Invocation, launch
    from interp_pipeline.tracking.mlflow_tracking import resolve_tracking_uri

    register()
    if isinstance(experiment, DictConfig):
        if overrides:
            raise ValueError("run(cfg, overrides): give overrides to compose(), or run(NAME, overrides)")
        cfg = experiment
        name = cfg.tracking.experiment_name
        if not name:
            raise ValueError("run(cfg): cfg has no tracking.experiment_name; compose it with api.compose(NAME), "
                             "or set cfg.tracking.experiment_name")
    else:
        cfg, name = compose(experiment, overrides), experiment
        # Recorded as the CLI records them (the run's hydra.overrides tag and name).
        overrides = [f"+experiment={experiment}", *overrides]
    output_dir = Path(cfg.paths.outputs) / "runs" / time.strftime("%Y-%m-%d") / f"{time.strftime('%H-%M-%S')}-api"
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config.yaml")
    with _console_log(output_dir / "run.log", level):
        result = launch(cfg, Invocation(experiment=name, output_dir=output_dir, overrides=list(overrides)))
    if result.status in (1, 2):
        raise RunError(f"{name}: exit status {result.status} "
                       f"({'config error' if result.status == 2 else 'a stage failed'}; "
                       f"the error is in the log above and in {output_dir / 'run.log'})")
    uri = resolve_tracking_uri(cfg.tracking.uri, cfg.paths.outputs) if cfg.tracking.enabled else None
    return RunResult(name, result.status, output_dir, result.run_id, uri)


class _console_log:
    """The CLI's logging (hydra/job_logging/interp.yaml) for the length of one run: short lines on
    stdout, everything in a file. A plain Python process has no handler on our logger, so without
    this a run would print nothing."""

    def __init__(self, path: Path, level: int):
        self.handlers = [logging.StreamHandler(sys.stdout), logging.FileHandler(path)]
        self.handlers[0].setLevel(level)
        self.handlers[1].setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] %(message)s"))
        self.logger = logging.getLogger("interp_pipeline")

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.DEBUG)
        for handler in self.handlers:
            self.logger.addHandler(handler)

    def __exit__(self, *exc: Any) -> None:
        for handler in self.handlers:
            self.logger.removeHandler(handler)
            handler.close()
        self.logger.setLevel(self.level)


def load(experiment: str, stage: str, *, run_id: str | None = None, tracking_uri: str | None = None) -> Any:
    """The output of ``stage`` (a pipeline stage's name, e.g. ``"sae"``; ``"stage.output"`` picks one
    of several outputs, else a dict of them all) in the latest finished run of ``experiment``, or in
    the run ``run_id``. Reads the stage cache under the run's own ``runner.cache_dir``.
    """
    from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages
    from interp_pipeline.runner.stage_cache import StageCache
    from interp_pipeline.tracking.mlflow_tracking import resolve_tracking_uri
    from interp_pipeline.tracking.past_runs import PastRuns

    stage_name, _, output = stage.partition(".")
    runs = PastRuns(resolve_tracking_uri(tracking_uri, default_outputs_dir()))
    found = runs.stage_output(experiment, stage_name, run_id)
    cache = StageCache(found.cache_dir or default_outputs_dir() / "cache")
    entry = cache.lookup(found.fn, found.cache_key)
    if entry is None:
        load_stage_modules()
        definition = registered_stages().get(found.fn)
        why = f"no complete cache entry {cache.entry_path(found.fn, found.cache_key)}"
        if definition is not None and definition.cache is not True:
            why += f" ({found.fn} keeps no result when cache=False for its params, e.g. a model built from its config)"
        raise NotFound(f"stage '{stage_name}' of run {found.run_id}: {why}")
    names = list(entry.record["outputs"])
    if output:
        if output not in names:
            raise NotFound(f"stage '{stage_name}' has no output '{output}' (outputs: {', '.join(names)})")
        return _opened(entry.load_output(output))
    if len(names) == 1:
        return _opened(entry.load_output(names[0]))
    return {name: _opened(entry.load_output(name)) for name in names}


def _opened(value: Any) -> Any:
    """A stored output as one works with it: cache_activations' record of its store (``store_uri``,
    ``n_rows``, ``hooks``) opens as the :class:`ActivationStore` it names; anything else as stored."""
    if isinstance(value, dict) and isinstance(value.get("store_uri"), str):
        from interp_pipeline.activations.reader import ActivationStore

        return ActivationStore.open(value["store_uri"])
    return value
