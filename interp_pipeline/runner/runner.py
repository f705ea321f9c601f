"""Run a validated pipeline: key every stage, serve what the cache has, compute the rest.

Keys are computed for every stage first (they depend only on params and upstream
keys, never on values), so the runner knows before doing any work which stages
are cached. Cached outputs are loaded only when a computed stage needs them, and
a stage marked ``cache=False`` (a model rebuilt from its config) runs only when
something downstream must compute. A second run of an unchanged experiment
therefore loads nothing and computes nothing.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_pipeline.common.errors import StageFailed
from interp_pipeline.config.secrets import active as active_redactor
from interp_pipeline.config.secrets import key_params
from interp_pipeline.pipeline.registry import CACHE_KEY_PARAM, STAGE_DIR_PARAM, TRACKER_PARAM, WORKDIR_PARAM
from interp_pipeline.pipeline.spec import PipelineSpec, StageSpec
from interp_pipeline.storage.cache_keys import library_versions, stage_cache_key
from interp_pipeline.runner.stage_cache import CacheEntry, PendingEntry, StageCache
from interp_pipeline.tracking.base import NullRun, RecordingTracker, RunLogger
from interp_pipeline.tracking.datasets import DatasetRecord, entry_datasets
from interp_pipeline.tracking.run_names import stage_run_name

log = logging.getLogger(__name__)

COMPUTED, CACHED, SKIPPED = "computed", "cached", "skipped"
StartChild = Callable[[str, Mapping[str, str]], RunLogger]


@dataclass
class StageOutcome:
    name: str
    status: str  # computed, cached, or skipped (cache=False and nothing downstream needed it)
    key: str
    seconds: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    cached_from: str | None = None


def compute_keys(spec: PipelineSpec, versions: Mapping[str, str] | None = None) -> dict[str, str]:
    versions = library_versions() if versions is None else versions
    keys: dict[str, str] = {}
    for stage in spec.stages:
        input_keys = {arg: f"{keys[ref.stage]}:{ref.output}" for arg, ref in stage.inputs.items()}
        definition = stage.definition
        # A credential enters the key as a marker, not its value (config/secrets.py says why).
        params = key_params({k: v for k, v in stage.params.items() if k not in definition.key_exclude})
        keys[stage.name] = stage_cache_key(definition.name, definition.version, params, input_keys, versions)
    return keys


def flatten(prefix: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``, for MLflow params."""
    if isinstance(value, Mapping):
        flat: dict[str, Any] = {}
        for k, v in value.items():
            flat.update(flatten(f"{prefix}.{k}" if prefix else str(k), v))
        return flat
    return {prefix: value}


class PipelineRunner:
    def __init__(
        self,
        spec: PipelineSpec,
        cache: StageCache,
        *,
        force: bool = False,
        from_stage: str | None = None,
        versions: Mapping[str, str] | None = None,
    ):
        self.spec = spec
        self.cache = cache
        self.start_child: StartChild = lambda name, tags: NullRun()
        self.keys = compute_keys(spec, versions)
        forced: set[str] = set()
        if force:
            forced = {s.name for s in spec.stages}
        elif from_stage:
            forced = spec.downstream_of(from_stage)
        self.forced = forced
        self.entries: dict[str, CacheEntry | None] = {
            s.name: (None if (s.name in forced or not s.cacheable)
                     else cache.lookup(s.definition.name, self.keys[s.name]))
            for s in spec.stages
        }
        self.to_compute = self._plan()
        self._values: dict[tuple[str, str], Any] = {}
        self._datasets: dict[str, dict[str, DatasetRecord]] = {}

    def _plan(self) -> set[str]:
        consumers: dict[str, list[str]] = {s.name: [] for s in self.spec.stages}
        for stage in self.spec.stages:
            for ref in stage.inputs.values():
                consumers[ref.stage].append(stage.name)
        compute: set[str] = set()
        for stage in reversed(self.spec.stages):  # consumers are decided before producers
            if stage.cacheable:
                if self.entries[stage.name] is None:
                    compute.add(stage.name)
            elif not consumers[stage.name] or any(c in compute for c in consumers[stage.name]):
                compute.add(stage.name)
        return compute

    def stages_to_compute(self) -> list[StageSpec]:
        return [s for s in self.spec.stages if s.name in self.to_compute]

    def run(
        self,
        start_child: StartChild | None = None,
        on_outcome: Callable[[int, StageOutcome], None] | None = None,
        on_start: Callable[[int, StageSpec], None] | None = None,
    ) -> list[StageOutcome]:
        """Run the plan; ``start_child(stage_name, tags)`` opens each stage's tracked run;
        ``on_start`` hears of each stage about to be computed, ``on_outcome`` of each stage done."""
        if start_child is not None:
            self.start_child = start_child
        outcomes = []
        remaining_uses = self._count_uses()
        for index, stage in enumerate(self.spec.stages):
            if stage.name in self.to_compute:
                outcome = self._compute_once(index, stage, on_start)
            else:
                outcome = self._record_uncomputed(stage)
            outcomes.append(outcome)
            self._release_inputs(stage, remaining_uses)
            if on_outcome is not None:
                on_outcome(index, outcome)
        return outcomes

    def _count_uses(self) -> dict[tuple[str, str], int]:
        uses: dict[tuple[str, str], int] = {}
        for stage in self.spec.stages:
            if stage.name in self.to_compute:
                for ref in stage.inputs.values():
                    uses[(ref.stage, ref.output)] = uses.get((ref.stage, ref.output), 0) + 1
        return uses

    def _release_inputs(self, stage: StageSpec, remaining: dict[tuple[str, str], int]) -> None:
        # Drop a value once its last consumer has run, so a big model does not
        # outlive the stages that need it.
        if stage.name not in self.to_compute:
            return
        for ref in stage.inputs.values():
            slot = (ref.stage, ref.output)
            remaining[slot] -= 1
            if remaining[slot] == 0:
                self._values.pop(slot, None)

    def _input_value(self, stage_name: str, output: str) -> Any:
        slot = (stage_name, output)
        if slot not in self._values:
            entry = self.entries[stage_name]
            assert entry is not None, f"stage '{stage_name}' neither computed nor cached"
            self._values[slot] = entry.load_output(output)
        return self._values[slot]

    def _child_tags(self, stage: StageSpec) -> dict[str, str]:
        return {"stage": stage.name, "stage.fn": stage.definition.name, "cache_key": self.keys[stage.name]}

    def _start_stage_run(self, stage: StageSpec, tags: Mapping[str, str]) -> RunLogger:
        index = [s.name for s in self.spec.stages].index(stage.name)
        return self.start_child(stage_run_name(index, len(self.spec.stages), stage.name),
                                {**tags, "stage.index": str(index + 1)})

    def _datasets_of(self, stage_name: str) -> dict[str, DatasetRecord]:
        """The stage's outputs that are datasets, from its cache entry (none when it has no entry)."""
        if stage_name not in self._datasets:
            entry = self.entries.get(stage_name)
            self._datasets[stage_name] = {} if entry is None else entry_datasets(stage_name, entry.path, entry.record)
        return self._datasets[stage_name]

    def _log_datasets(self, stage: StageSpec, run: RunLogger) -> None:
        """Datasets the stage read (context: its argument name) and wrote (context: output), as MLflow inputs."""
        for arg, ref in stage.inputs.items():
            dataset = self._datasets_of(ref.stage).get(ref.output)
            if dataset is not None:
                run.log_datasets([dataset], arg)
        run.log_datasets(list(self._datasets_of(stage.name).values()), "output")

    def _record_uncomputed(self, stage: StageSpec) -> StageOutcome:
        started = time.perf_counter()
        entry = self.entries[stage.name]
        tags = self._child_tags(stage)
        if entry is None:
            tags.update({"cached": "false", "skipped": "not needed: every stage it feeds is cached"})
        else:
            tags.update({"cached": "true", "cached_from_run_id": str(entry.run_id), "cache_entry": str(entry.path)})
        run = self._start_stage_run(stage, tags)
        try:
            run.log_params(flatten("", stage.params))
            self._log_datasets(stage, run)
            if entry is not None:
                # Show the cached metrics and figures again, so this run reads like the one that made them.
                run.log_metric_history(entry.metric_history())  # every value, step and order, as first logged
                run.set_tags(entry.record.get("tags", {}))
                for path in entry.artifacts():
                    relative = path.relative_to(entry.path / "artifacts").parent.as_posix()
                    run.log_artifact(path, None if relative == "." else relative)
        except BaseException:
            run.end("KILLED")
            raise
        run.end("FINISHED")
        return StageOutcome(
            stage.name, CACHED if entry is not None else SKIPPED, self.keys[stage.name],
            time.perf_counter() - started, entry.metrics if entry else {}, run.run_id,
            entry.run_id if entry else None,
        )

    def _compute_once(self, index: int, stage: StageSpec,
                      on_start: Callable[[int, StageSpec], None] | None) -> StageOutcome:
        """Compute a stage, under its key's lock when it is cached: parallel jobs that need the
        same key (a sweep's shared activation cache or trained model) compute it once; the
        others wait for the lock and then serve the result like any cached one."""
        if not stage.cacheable:
            self._decided(stage, True)
            if on_start is not None:
                on_start(index, stage)
            return self._compute(stage)
        fn_name, key = stage.definition.name, self.keys[stage.name]

        def waiting(holder: Mapping[str, Any]) -> None:
            by = f"pid {holder['pid']} on {holder.get('host', '?')}" if holder.get("pid") else "another process"
            waited = holder.get("waited", 0.0)
            still = f"still ({waited / 60:.0f} min) " if waited >= 30 else ""
            log.info("[%d/%d] %s: %swaiting for %s, which computes %s key %s", index + 1, len(self.spec.stages),
                     stage.name, still, by, fn_name, key)

        with self.cache.key_lock(fn_name, key, on_wait=waiting):
            entry = None if stage.name in self.forced else self.cache.lookup(fn_name, key)
            self._decided(stage, entry is None)
            if entry is None:
                if on_start is not None:
                    on_start(index, stage)
                return self._compute(stage)
        # Computed by another job while this one planned or waited: served like any cached result.
        self.entries[stage.name] = entry
        return self._record_uncomputed(stage)

    def _decided(self, stage: StageSpec, compute: bool) -> None:
        """Called once it is known whether ``stage`` computes here or is served (the ranked runner tells its
        other ranks, interp_pipeline.runner.ranked)."""

    def _compute(self, stage: StageSpec) -> StageOutcome:
        definition = stage.definition
        key = self.keys[stage.name]
        tags = {**self._child_tags(stage), "cached": "false"}
        run = self._start_stage_run(stage, tags)
        pending: PendingEntry | None = None
        scratch: tempfile.TemporaryDirectory[str] | None = None
        started = time.perf_counter()
        try:
            run.log_params(flatten("", stage.params))
            if stage.cacheable:
                pending = self.cache.begin(definition.name, key)
                artifacts_dir = pending.artifacts_dir
            else:
                scratch = tempfile.TemporaryDirectory(prefix=f"interp-{stage.name}-")
                artifacts_dir = Path(scratch.name)
            tracker = RecordingTracker(run, artifacts_dir)
            outputs = self._call(stage, tracker)
            for name, value in outputs.items():
                self._values[(stage.name, name)] = value
                path = None
                if pending is not None:
                    path = pending.write_output(name, value)
                    if path.suffix == ".json" and path.stat().st_size <= 1_000_000:
                        run.log_artifact(path, "outputs")
                # A model or SAE becomes an MLflow model (the run decides which values are, and their size limit);
                # its tags go into the cache entry, so a run served from the cache points at the same model.
                tracker.tags.update(run.log_model(name, value, path if path is not None and path.is_dir() else None))
            if pending is not None:
                self.entries[stage.name] = pending.commit(run_id=run.run_id, metrics=tracker.last,
                                                          extra={"stage": stage.name, "key": key,
                                                                 "tags": active_redactor().mapping(tracker.tags)},
                                                          history=tracker.history)
                pending = None
            self._log_datasets(stage, run)
            if definition.wants_workdir:
                shutil.rmtree(self.cache.workdir(definition.name, key), ignore_errors=True)  # the stored result supersedes its checkpoints
        except (KeyboardInterrupt, SystemExit) as interrupt:
            self._abandon(pending, run, "KILLED")
            raise interrupt
        except BaseException as error:
            status = "FAILED" if isinstance(error, Exception) else "KILLED"
            if status == "FAILED":
                _log_traceback(run, error)
            self._abandon(pending, run, status)
            if isinstance(error, Exception):
                raise StageFailed(stage.name, error) from error
            raise
        finally:
            if scratch is not None:
                scratch.cleanup()
        run.end("FINISHED")
        return StageOutcome(stage.name, COMPUTED, key, time.perf_counter() - started, dict(tracker.last), run.run_id)

    def _call(self, stage: StageSpec, tracker: RecordingTracker) -> dict[str, Any]:
        """The stage's function called with its inputs, params and the injected parameters; its outputs by name."""
        definition, key = stage.definition, self.keys[stage.name]
        kwargs = {arg: self._input_value(ref.stage, ref.output) for arg, ref in stage.inputs.items()}
        kwargs.update(stage.params)
        if definition.wants_tracker:
            kwargs[TRACKER_PARAM] = tracker
        if definition.wants_workdir:
            kwargs[WORKDIR_PARAM] = self.cache.workdir(definition.name, key)
        if definition.wants_stage_dir:
            kwargs[STAGE_DIR_PARAM] = self.cache.stage_dir(definition.name, key)
        if CACHE_KEY_PARAM in definition.signature.parameters:
            kwargs[CACHE_KEY_PARAM] = key
        return _as_outputs(definition.name, definition.outputs, definition.fn(**kwargs))

    @staticmethod
    def _abandon(pending: PendingEntry | None, run: RunLogger, status: str) -> None:
        if pending is not None:
            pending.abort()
        try:
            run.end(status)
        except Exception:  # the store itself may be what failed; the original error matters more
            log.debug("could not end the stage run", exc_info=True)


def _as_outputs(fn_name: str, declared: tuple[str, ...], returned: Any) -> dict[str, Any]:
    if len(declared) == 1:
        return {declared[0]: returned}
    if not isinstance(returned, Mapping) or set(returned) != set(declared):
        found = sorted(returned) if isinstance(returned, Mapping) else type(returned).__name__
        raise TypeError(f"{fn_name}() must return a mapping with keys {list(declared)}, returned {found}")
    return dict(returned)


def _log_traceback(run: RunLogger, error: BaseException) -> None:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    log.debug("stage failed:\n%s", text)
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "traceback.txt"
            path.write_text(text)
            run.log_artifact(path)
    except Exception:
        log.debug("could not log the traceback artifact", exc_info=True)
