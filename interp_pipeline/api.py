"""From a notebook: compose an experiment's config, run it with its log on the console, and load
any stage's output of a finished run by experiment and stage name::

    from interp_pipeline import api

    cfg = api.compose("quickstart", overrides=["sae.training_tokens=200_000"])
    result = api.run(cfg)                     # or api.run("quickstart", overrides=[...])
    sae = api.load("quickstart", "sae")       # the latest finished run's SAE (run_id= for another)
    store = api.load("quickstart", "cache")   # an ActivationStore: store["resid_pre", 1][seq, pos]

``api.load`` finds the run in MLflow (the experiment's parent runs carry a ``cache_key.STAGE``
tag per stage, their stage runs the stage's function) and reads the stage cache entry of that
key, so nobody has to know a hash. Hydra's own ``initialize_config_dir`` + ``compose`` work too:
importing ``interp_pipeline`` registers the schemas and resolvers they need.
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

from interp_pipeline.common.errors import did_you_mean, one_of
from interp_pipeline.common.paths import conf_dir, default_outputs_dir

log = logging.getLogger("interp_pipeline")
# As the CLI does: MLflow's store-migration lines at INFO are not for the notebook's output.
os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


class NotFound(LookupError):
    """No such experiment, run, stage or output; the message is one line saying what exists."""

    def __str__(self) -> str:  # LookupError's str() would quote the message
        return str(self.args[0])


class RunError(RuntimeError):
    """A run that stopped with a config error (status 2) or a failed stage (status 1)."""


def experiments() -> list[str]:
    """The experiment configs that ship (``conf/experiment/*.yaml``)."""
    return sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))


def compose(experiment: str, overrides: Sequence[str] = ()) -> DictConfig:
    """The config ``python -m interp_pipeline +experiment=EXPERIMENT *overrides`` would run.

    Overrides use Hydra's grammar, ``expect.STAGE.METRIC...`` forms included. The
    experiment's name is kept in ``tracking.experiment_name`` (unless an override sets
    it), which is what names its MLflow experiment, so ``run(cfg)`` logs where ``load``
    looks.
    """
    from interp_pipeline.experiments.compose import compose as compose_overrides

    if not (conf_dir() / "experiment" / f"{experiment}.yaml").is_file():
        known = experiments()
        hint = did_you_mean(experiment, known)
        raise NotFound(f"no experiment '{experiment}' in {conf_dir() / 'experiment'}"
                       + (f" ({hint})" if hint else f" (experiments: {one_of(known)})"))
    cfg = compose_overrides([f"+experiment={experiment}", *overrides])
    if cfg.tracking.experiment_name is None:
        cfg.tracking.experiment_name = experiment
    return cfg


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
    config error or a failed stage; an unmet ``expect:`` returns status 3.
    """
    from interp_pipeline.experiments.compose import register
    from interp_pipeline.experiments.run import Invocation, run_experiment

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
    invocation = Invocation(experiment=name, output_dir=output_dir, overrides=list(overrides))
    with _console_log(output_dir / "run.log", level):
        status = run_experiment(cfg, invocation)
    if status in (1, 2):
        raise RunError(f"{name}: exit status {status} ({'config error' if status == 2 else 'a stage failed'}; "
                       f"the error is in the log above and in {output_dir / 'run.log'})")
    uri = _tracking_uri(cfg) if cfg.tracking.enabled else None
    run_id = _run_in_dir(uri, name, output_dir) if uri else None
    return RunResult(name, status, output_dir, run_id, uri)


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


def _tracking_uri(cfg: DictConfig | None = None, tracking_uri: str | None = None) -> str:
    from interp_pipeline.tracking.mlflow_tracking import resolve_tracking_uri

    if cfg is not None:
        return resolve_tracking_uri(cfg.tracking.uri, cfg.paths.outputs)
    return resolve_tracking_uri(tracking_uri, default_outputs_dir())


def _client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(uri)


def _experiment_id(client: Any, name: str, uri: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        known = [e.name for e in client.search_experiments() if e.name != "Default"]
        hint = did_you_mean(name, known)
        raise NotFound(f"no MLflow experiment '{name}' in {uri}"
                       + (f" ({hint})" if hint else f" (experiments run so far: {one_of(known)})"))
    return found.experiment_id


def _run_in_dir(uri: str, name: str, output_dir: Path) -> str | None:
    client = _client(uri)
    runs = client.search_runs([_experiment_id(client, name, uri)], f"tags.run_dir = '{output_dir}'", max_results=1)
    return runs[0].info.run_id if runs else None


def _parent_run(client: Any, experiment: str, run_id: str | None, uri: str) -> Any:
    from mlflow.exceptions import MlflowException

    experiment_id = _experiment_id(client, experiment, uri)
    if run_id is None:
        runs = client.search_runs([experiment_id], "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"], max_results=200)
        parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags and "pipeline" in r.data.tags]
        if not parents:
            raise NotFound(f"experiment '{experiment}' has no finished run in {uri}; run it first "
                           f"(api.run('{experiment}') or python -m interp_pipeline +experiment={experiment})")
        return parents[0]
    try:
        found = client.get_run(run_id)
    except MlflowException:
        raise NotFound(f"no MLflow run '{run_id}' in {uri}") from None
    if found.info.experiment_id != experiment_id:
        raise NotFound(f"run '{run_id}' is not a run of experiment '{experiment}'")
    parent = found.data.tags.get("mlflow.parentRunId")
    return client.get_run(parent) if parent else found  # a stage run's id names its parent's run too


def load(experiment: str, stage: str, *, run_id: str | None = None, tracking_uri: str | None = None) -> Any:
    """The output of ``stage`` (a pipeline stage's name, e.g. ``"sae"``; ``"stage.output"`` picks one
    of several outputs, else a dict of them all) in the latest finished run of ``experiment``, or in
    the run ``run_id``. Reads the stage cache under the run's own ``runner.cache_dir``.
    """
    from interp_pipeline.pipeline.registry import load_stage_modules, registered_stages
    from interp_pipeline.runner.stage_cache import StageCache

    stage_name, _, output = stage.partition(".")
    uri = _tracking_uri(tracking_uri=tracking_uri)
    client = _client(uri)
    parent = _parent_run(client, experiment, run_id, uri)
    parent_id = parent.info.run_id
    keys = {k.removeprefix("cache_key."): v for k, v in parent.data.tags.items() if k.startswith("cache_key.")}
    if stage_name not in keys:
        hint = did_you_mean(stage_name, keys)
        raise NotFound(f"run {parent_id} of '{experiment}' has no stage '{stage_name}' "
                       + (f"({hint})" if hint else f"(stages: {', '.join(keys)})"))
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_id}' and tags.stage = '{stage_name}'",
                                  max_results=1)
    if not children:
        raise NotFound(f"run {parent_id} of '{experiment}' has no run for stage '{stage_name}' (it did not finish)")
    fn = children[0].data.tags["stage.fn"]
    cache = StageCache(parent.data.params.get("runner.cache_dir") or default_outputs_dir() / "cache")
    entry = cache.lookup(fn, keys[stage_name])
    if entry is None:
        load_stage_modules()
        definition = registered_stages().get(fn)
        why = f"no complete cache entry {cache.entry_path(fn, keys[stage_name])}"
        if definition is not None and definition.cache is not True:
            why += f" ({fn} keeps no result when cache=False for its params, e.g. a model built from its config)"
        raise NotFound(f"stage '{stage_name}' of run {parent_id}: {why}")
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
