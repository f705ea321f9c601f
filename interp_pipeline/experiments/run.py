"""One invocation, from composed config to exit status: validate, track, run, check ``expect:``.

Hydra-free (it takes the composed config and a few facts about the invocation), so tests can
drive it directly. :func:`launch` is how every door runs one in its own process: the command
line (``interp_pipeline.cli``, Hydra's wrapper), ``api.run`` and the rehearsal.
"""

from __future__ import annotations

import fnmatch
import logging
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from interp_pipeline.config.hydra_errors import check_resolves
from interp_pipeline.config.ranges import check_ranges
from interp_pipeline.config.secrets import Redactor, activate
from interp_pipeline.config.secrets import active as active_redactor
from interp_pipeline.experiments.config import ExperimentConfig
from interp_pipeline.common.errors import ConfigError, StageFailed, Terminated, did_you_mean, one_of
from interp_pipeline.common.exit_status import EXIT_CONFIG, EXIT_EXPECT, EXIT_FAILED, EXIT_OK, write_status
from interp_pipeline.experiments.catalog import with_offline_suggestion
from interp_pipeline.report.expect import (
    ExpectResult,
    check_expectations,
    per_name_matches,
    render_table,
    validate_expectations,
)
from interp_pipeline.common.paths import project_root
from interp_pipeline.pipeline.registry import load_stage_modules
from interp_pipeline.pipeline.preflight import run_preflight
from interp_pipeline.pipeline.spec import PipelineSpec, load_pipeline
from interp_pipeline.runner.ranked import RankedRunner, join_ranks, run_other_rank
from interp_pipeline.runner.runner import CACHED, COMPUTED, PipelineRunner, StageOutcome, flatten
from interp_pipeline.runner.stage_cache import StageCache
from interp_pipeline.sweeps.objective import validate_sweep
from interp_pipeline.tracking.base import NullRun, RunLogger
from interp_pipeline.tracking.run_info import git_state, version_tags
from interp_pipeline.tracking.run_names import parent_run_name, with_expect_failed

log = logging.getLogger("interp_pipeline")


@dataclass
class Invocation:
    experiment: str
    output_dir: Path
    overrides: list[str] = field(default_factory=list)
    sweep_id: str | None = None
    job_num: int | None = None
    parallel_jobs: int = 1  # jobs the launcher runs at once on this machine
    swept: list[str] | None = None  # keys the sweep varies (None: not a sweep, or not known)


@dataclass
class JobResult:
    """What a job leaves for its sweep: the exit status, the metrics its stages logged, its MLflow run."""

    status: int
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    error: str | None = None  # the one line logged when the job failed, for the sweep's summary


@dataclass
class Prepared:
    spec: PipelineSpec
    expect: dict[str, dict[str, Any]]


def prepare(cfg: DictConfig) -> Prepared:
    """Every check that needs no model and no data; raises :class:`ConfigError`."""
    check_resolves(cfg)
    check_ranges(cfg, ExperimentConfig)
    load_stage_modules(cfg.runner.plugins)
    spec = load_pipeline(cfg)
    names = [s.name for s in spec.stages]
    if cfg.runner.from_stage is not None and cfg.runner.from_stage not in names:
        raise ConfigError(
            "runner.from_stage",
            f"expected a stage of pipeline '{spec.name}' ({one_of(names)}), found '{cfg.runner.from_stage}'",
            suggestion=did_you_mean(cfg.runner.from_stage, names),
        )
    # `~expect` on the command line removes the block, and runner.check_expect=false skips it: nothing to check.
    node = OmegaConf.select(cfg, "expect", default=None) if cfg.runner.check_expect else None
    expect = OmegaConf.to_container(node, resolve=True) if node is not None else {}
    assert isinstance(expect, dict)
    metric_patterns = {s.name: s.definition.metric_patterns(s.params) for s in spec.stages}
    validate_expectations(expect, names, metric_patterns)
    sweep = OmegaConf.select(cfg, "sweep", default=None)
    if sweep is not None:
        validate_sweep(sweep, names, metric_patterns)
    return Prepared(spec, expect)


def _open_tracking(cfg: DictConfig, invocation: Invocation) -> tuple[Any, str | None]:
    if not cfg.tracking.enabled:
        return None, None
    from interp_pipeline.tracking.mlflow_tracking import MlflowTracking, resolve_tracking_uri

    tracking = MlflowTracking(resolve_tracking_uri(cfg.tracking.uri, cfg.paths.outputs),
                              max_model_mb=cfg.tracking.max_model_mb)
    experiment_id = tracking.experiment_id(cfg.tracking.experiment_name or invocation.experiment)
    ended = tracking.end_orphaned_runs()
    if ended:
        log.info("marked %d run(s) KILLED whose process had died without ending them", ended)
    return tracking, experiment_id


def _parent_tags(prepared: Prepared, invocation: Invocation) -> dict[str, str]:
    tags = {
        "experiment": invocation.experiment,
        "pipeline": prepared.spec.name,
        "hydra.overrides": " ".join(invocation.overrides),
        "run_dir": str(invocation.output_dir),
        "mlflow.source.name": "interp_pipeline",
        **git_state(project_root()),
        **version_tags(),
    }
    if invocation.sweep_id is not None:
        tags["sweep.id"] = invocation.sweep_id
        tags["sweep.job_num"] = str(invocation.job_num)
    return tags


def _run_name(invocation: Invocation) -> str:
    return parent_run_name(invocation.experiment, invocation.overrides, invocation.swept)


def _log_file_artifact(run: RunLogger, name: str, text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_text(text)
        run.log_artifact(path)


def _key_metrics(metrics: Mapping[str, float], patterns: tuple[str, ...], limit: int = 4) -> dict[str, float]:
    if not patterns:
        return dict(list(metrics.items())[:limit])
    chosen = [k for pattern in patterns for k in metrics if fnmatch.fnmatchcase(k, pattern)]
    return {k: metrics[k] for k in dict.fromkeys(chosen)}


def _summary(index: int, total: int, outcome: StageOutcome, patterns: tuple[str, ...] = ()) -> str:
    shown = ", ".join(f"{k}={v:.4g}" for k, v in _key_metrics(outcome.metrics, patterns).items())
    status = outcome.status
    if outcome.status == CACHED and outcome.cached_from:
        status = f"cached (from run {outcome.cached_from[:8]})"
    line = f"[{index + 1}/{total}] {outcome.name:<16} {status:<28} {outcome.seconds:7.2f} s"
    return f"{line}  {shown}" if shown else line


def _mark_expect_failed(tracking: Any, parent: RunLogger, invocation: Invocation, outcomes: list[StageOutcome],
                        failed: list[str]) -> None:
    """Name the parent and the stage runs whose metrics missed their expect: with a suffix, and tag them."""
    parent.set_tags({"expect.failed": ", ".join(failed)})
    parent.rename(with_expect_failed(_run_name(invocation)))
    if tracking is None:
        return
    for outcome in outcomes:
        keys = [k for k in failed if k.startswith(f"{outcome.name}.")]
        if keys and outcome.run_id is not None:
            tracking.mark_expect_failed(outcome.run_id, keys)


def _set_threads(cfg: DictConfig, invocation: Invocation, prepared: Prepared, shapes: list[Any]) -> None:
    from interp_pipeline.common.devices import resolve_device
    from interp_pipeline.models.shape import ModelShape
    from interp_pipeline.common.threads import apply_threads, choose_threads

    widths = [shape.d_model for shape in shapes if isinstance(shape, ModelShape)]
    models = [s for s in prepared.spec.stages if s.definition.name == "load_model"]
    on_cpu = all(resolve_device(str(s.params.get("device", "auto"))) == "cpu" for s in models) if widths else False
    apply_threads(*choose_threads(cfg.runner.num_threads, parallel=invocation.parallel_jobs, model_widths=widths,
                                  on_cpu=on_cpu))


def launch(cfg: DictConfig, invocation: Invocation) -> JobResult:
    """Run one job in this process, as every door does (the CLI's Hydra task, ``api.run``, the
    rehearsal): :func:`run_job`, where a failure outside any stage (the tracking store, the disk)
    is logged and ends in exit status 1 rather than raising, and the status is written to the run
    directory (``exit_status``), where a sweep gathers its jobs'. KeyboardInterrupt and Terminated
    are re-raised, after the runs are ended KILLED, so the process stops as the user asked."""
    invocation.output_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run_job(cfg, invocation)
    except (KeyboardInterrupt, Terminated):
        raise
    except Exception as error:
        log.debug("unexpected error:\n%s", traceback.format_exc())
        message = f"error: {type(error).__name__}: {error} (traceback in {invocation.output_dir})"
        log.error("%s", message)
        result = JobResult(EXIT_FAILED, error=message)
    write_status(invocation.output_dir, result.status)
    return result


def run_job(cfg: DictConfig, invocation: Invocation) -> JobResult:
    """One experiment: its exit status, the metrics a sweep's objective and summary read, its MLflow
    run. Raises what fails outside the stages (:func:`launch` turns that into a status)."""
    try:
        activate(Redactor.from_config(cfg))
        ranks = join_ranks(cfg)  # torchrun: every rank composed the same config, or none goes on
        prepared = prepare(cfg)
        runner = (RankedRunner if ranks.spread else PipelineRunner)(
            prepared.spec,
            StageCache(cfg.runner.cache_dir),
            force=cfg.runner.force,
            from_stage=cfg.runner.from_stage,
            **({"ranks": ranks} if ranks.spread else {}),
        )
        shapes = run_preflight(runner.stages_to_compute(), prepared.spec.stages)
        if cfg.tracking.enabled and ranks.is_main:
            from interp_pipeline.tracking.mlflow_tracking import check_reachable, resolve_tracking_uri

            check_reachable(resolve_tracking_uri(cfg.tracking.uri, cfg.paths.outputs))
    except ConfigError as error:
        log.debug("configuration error", exc_info=True)
        message = f"error: {with_offline_suggestion(error, cfg, invocation.experiment)}"
        log.error("%s", message)
        return JobResult(EXIT_CONFIG, error=message)
    _set_threads(cfg, invocation, prepared, shapes)
    if not ranks.is_main:  # its share of the ranked stages; rank 0 logs, stores and checks expect:
        invocation.output_dir = invocation.output_dir / f"rank{ranks.rank}"
        invocation.output_dir.mkdir(parents=True, exist_ok=True)
        return JobResult(run_other_rank(runner, lambda name: prepared.spec.stage(name).params_key))

    tracking, experiment_id = _open_tracking(cfg, invocation)
    parent: RunLogger = NullRun()
    if tracking is not None:
        parent = tracking.start_run(experiment_id, _run_name(invocation), _parent_tags(prepared, invocation))

    def start_child(name: str, tags: Mapping[str, str]) -> RunLogger:
        if tracking is None:
            return NullRun()
        run = tracking.start_run(experiment_id, name, tags, parent=parent)
        computing = tags.get("cached") == "false" and "skipped" not in tags
        if computing and cfg.tracking.system_metrics:  # a cached stage's run lasts a moment: nothing to sample
            run.start_system_metrics(cfg.tracking.system_metrics_interval)
        return run

    try:
        return _run_tracked(cfg, invocation, prepared, runner, parent, start_child, tracking, experiment_id)
    except KeyboardInterrupt:
        log.error("interrupted: runs marked KILLED, no partial result kept")
        parent.end("KILLED")
        raise
    except Terminated:
        log.error("terminated (SIGTERM): runs marked KILLED, no partial result kept")
        parent.end("KILLED")
        raise
    except BaseException:
        parent.end("FAILED")
        raise


def _run_tracked(
    cfg: DictConfig,
    invocation: Invocation,
    prepared: Prepared,
    runner: PipelineRunner,
    parent: RunLogger,
    start_child: Callable[[str, Mapping[str, str]], RunLogger],
    tracking: Any,
    experiment_id: str | None,
) -> JobResult:
    # Values read from the environment as their interpolation text, credentials masked (config/secrets.py).
    logged = active_redactor().config(cfg)
    parent.log_params(flatten("", logged))
    _log_file_artifact(parent, "config.yaml", OmegaConf.to_yaml(OmegaConf.create(logged)))

    parent.set_tags({f"cache_key.{name}": key for name, key in runner.keys.items()})
    total = len(prepared.spec.stages)
    log.info("%s: pipeline '%s', %d stages, %d to compute", invocation.experiment, prepared.spec.name,
             total, len(runner.to_compute))
    started = time.perf_counter()
    try:
        outcomes = runner.run(start_child, on_outcome=lambda i, o: log.info(
            _summary(i, total, o, prepared.spec.stages[i].definition.summary)),
            on_start=lambda i, s: log.info("[%d/%d] %s: running %s", i + 1, total, s.name, s.definition.name))
    except StageFailed as failure:
        cause = failure.__cause__
        text = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__)) if cause else ""
        log.debug("traceback of stage '%s':\n%s", failure.stage, text)
        _log_file_artifact(parent, "traceback.txt", text)
        if isinstance(cause, ConfigError):
            stage = prepared.spec.stage(failure.stage)
            message = f"error: {cause.under(stage.params_key)}"
            status = EXIT_CONFIG
        else:
            message = f"error: {failure} (traceback in {invocation.output_dir})"
            status = EXIT_FAILED
        _write_report(cfg, invocation, prepared, runner, parent, status, time.perf_counter() - started, [], message)
        parent.end("FAILED")
        log.error("%s", message)
        return JobResult(status, run_id=parent.run_id, error=message)

    metrics = {f"{o.name}.{k}": v for o in outcomes for k, v in o.metrics.items()}
    if metrics:
        parent.log_metrics(metrics)
    computed = sum(o.status == COMPUTED for o in outcomes)
    log.info("done in %.2f s: %d computed, %d cached", time.perf_counter() - started, computed,
             sum(o.status == CACHED for o in outcomes))

    status, error = EXIT_OK, None
    results: list[ExpectResult] = []
    if prepared.expect and cfg.runner.check_expect:
        results = check_expectations(prepared.expect, metrics, rehearsal=cfg.runner.rehearsal)
        table = render_table(results)
        log.info("%s", table)
        _log_file_artifact(parent, "expect.txt", table + "\n")
        parent.log_metrics({f"expect.{r.key}": r.got for r in results if r.got is not None})
        passed = all(r.passed for r in results)
        parent.set_tags({"expect.passed": str(passed).lower()})
        if not passed:
            failed = ", ".join(r.key for r in results if not r.passed)
            _mark_expect_failed(tracking, parent, invocation, outcomes, [r.key for r in results if not r.passed])
            error = f"error: expect not met for {failed}"
            log.error("%s", error)
            for result in results:
                named = per_name_matches(result.key, metrics) if result.got is None else []
                if named:
                    log.error("  %s is missing, but the run has it per name: %s (name those in expect:, or "
                              "runner.check_expect=false)", result.key, ", ".join(named))
            status = EXIT_EXPECT

    _write_report(cfg, invocation, prepared, runner, parent, status, time.perf_counter() - started, results)
    # An unmet expect: ends the parent FAILED (red in the runs list, and `attributes.status =
    # 'FAILED'` finds it), named with a suffix and tagged expect.passed=false so that it reads
    # apart from a crash, whose run has a traceback.txt instead of an expect.txt.
    parent.end("FAILED" if status == EXIT_EXPECT else "FINISHED")
    log.info("outputs: %s", invocation.output_dir)
    if tracking is not None:
        log.info("mlflow: %s", tracking.run_url(experiment_id, parent.run_id))
    return JobResult(status, metrics, parent.run_id, error)


def _write_report(cfg: DictConfig, invocation: Invocation, prepared: Prepared, runner: PipelineRunner,
                  parent: RunLogger, status: int, seconds: float, results: list[ExpectResult],
                  message: str = "") -> None:
    """``report.json`` and ``report.html`` (interp_pipeline.report) in the run directory, the page
    logged to the run. A report that cannot be written costs a warning, never the run's result."""
    from interp_pipeline.report import run_report

    try:
        stages = [(s.name, s.definition.name, runner.keys[s.name]) for s in prepared.spec.stages]
        figures = run_report.stage_figures(stages, Path(cfg.runner.cache_dir))
        report = run_report.build(invocation.experiment, invocation.overrides, status, seconds, results, figures,
                                  invocation.output_dir, active_redactor().text(message))
        paths = run_report.write(report, invocation.output_dir)
        parent.log_artifact(paths["html"])
        log.info("report: %s", paths["html"])
    except Exception as error:  # noqa: BLE001 - the run's own outcome matters more than its page
        log.warning("warning: could not write the run report: %s: %s", type(error).__name__, error)
