"""The on-disk stage cache: one directory per (stage function, cache key), complete or absent.

A result is built in a hidden temporary directory beside its final place; its
``complete.json`` is written last, everything is fsynced, and the directory is
renamed into place in one atomic step. So a crash, a kill -9 or a failing stage
leaves at worst a temporary directory, which is never read and is swept up later;
a directory under its final name is always a finished result.

``complete.json`` also records the SHA-256 of every file of the entry and a digest
of itself (interp_pipeline.runner.integrity); :meth:`StageCache.lookup` checks them,
so an entry edited or corrupted since it was written is recomputed, never served.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from interp_pipeline.storage.atomic_dirs import fsync_tree
from interp_pipeline.storage.locks import lock_beside, pid_alive
from interp_pipeline.storage.cache_codecs import codec_for, codec_named
from interp_pipeline.runner.integrity import (
    INTEGRITY_VERSION,
    SKIP_ENV,
    entry_hashes,
    entry_problem,
    record_digest,
    stage_dir_listing,
    stage_dir_problem,
)

log = logging.getLogger(__name__)

MARKER = "complete.json"
ARTIFACTS = "artifacts"
# Every metric batch the stage logged, in order: [{"step": int | null, "metrics": {name: value}}, ...],
# so a cached rerun logs the same series (per layer, per step) as the run that computed it.
METRIC_HISTORY = "metric_history.json"



@dataclass(frozen=True)
class CacheEntry:
    """A complete result: its outputs, the metrics it logged, and its small artifacts."""

    path: Path
    record: Mapping[str, Any]

    @property
    def run_id(self) -> str | None:
        return self.record.get("run_id")

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.record.get("metrics", {}))

    def metric_history(self) -> list[dict[str, Any]]:
        """The metric batches the stage logged, in order; an entry written before histories were kept
        gives its last values as one batch at step 0 (what was replayed then)."""
        path = self.path / METRIC_HISTORY
        if path.is_file():
            return json.loads(path.read_text())
        return [{"step": None, "metrics": {k: v for k, v in self.metrics.items() if math.isfinite(v)}}]

    def load_output(self, name: str) -> Any:
        info = self.record["outputs"][name]
        return codec_named(info["codec"]).load(self.path / info["file"])

    def artifacts(self) -> list[Path]:
        folder = self.path / ARTIFACTS
        return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []


class PendingEntry:
    """A result being written; nothing is visible under the final name until :meth:`commit`."""

    def __init__(self, final: Path):
        self.final = final
        self.dir = final.parent / f".tmp-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.dir.mkdir(parents=True)
        self.artifacts_dir = self.dir / ARTIFACTS
        self.artifacts_dir.mkdir()
        self._outputs: dict[str, dict[str, str]] = {}

    def write_output(self, name: str, value: Any) -> Path:
        codec = codec_for(value)
        path = self.dir / f"{name}{codec.suffix}"
        codec.save(value, path)
        self._outputs[name] = {"codec": codec.name, "file": path.name}
        return path

    def commit(self, *, run_id: str | None, metrics: Mapping[str, float], extra: Mapping[str, Any],
               history: Sequence[Mapping[str, Any]] | None = None) -> CacheEntry:
        if history is not None:  # written before the files are hashed, so the entry's check covers it
            (self.dir / METRIC_HISTORY).write_text(json.dumps(list(history)))
        record = {
            "run_id": run_id,
            "created": time.time(),
            "outputs": self._outputs,
            "metrics": dict(metrics),
            **extra,
            "integrity": INTEGRITY_VERSION,
            "files": entry_hashes(self.dir, MARKER),
        }
        data = data_dir(self.final)
        if data.is_dir():
            record["stage_dir"] = stage_dir_listing(data)
        record["digest"] = record_digest(record)
        (self.dir / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True))
        fsync_tree(self.dir)
        try:
            os.rename(self.dir, self.final)
        except OSError:
            # Another process finished the same key first: its result is as good as ours.
            if not (self.final / MARKER).is_file():
                raise
            shutil.rmtree(self.dir, ignore_errors=True)
            return StageCache.read_entry(self.final)
        return CacheEntry(self.final, record)

    def abort(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def data_dir(entry: Path) -> Path:
    """The stage_dir of an entry's key (see StageCache.stage_dir)."""
    return entry.parent / f"{entry.name}.data"


class StageCache:
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        # stage_dirs whose entry failed its check in a way that leaves them untrusted:
        # emptied before the stage writes into them again (see stage_dir).
        self._untrusted: set[Path] = set()
        # Rejected entries already warned about (path and its marker's identity): a job looks an
        # entry up again under the key's lock, and the same damaged entry is worth one warning.
        self._warned: set[tuple[Path, tuple[int, int, int]]] = set()

    def entry_path(self, fn_name: str, key: str) -> Path:
        return self.root / fn_name / key

    def lookup(self, fn_name: str, key: str) -> CacheEntry | None:
        """The complete entry of this key if its content is what was committed, else None.

        Checked here, where the runner decides which stages are cached, rather than
        when an output is loaded: a fully cached rerun loads nothing, yet reports the
        entries' metrics, and a mismatch found after planning would need the stages
        above it recomputed mid-run. Hashing every file of every entry each time is
        affordable because entries hold small outputs (models, tensors, JSON); big
        outputs live in the stage_dir, of which only small files are hashed
        (benchmarks/integrity.py measures the cost on a cached quickstart).
        """
        path = self.entry_path(fn_name, key)
        if not (path / MARKER).is_file():
            return None
        try:
            entry = self.read_entry(path)
        except (OSError, ValueError) as error:  # an unreadable or hand-broken complete.json
            self._reject(path, f"its {MARKER} cannot be read ({error})", stage_dir_trusted=False)
            return None
        if os.environ.get(SKIP_ENV) == "1":
            return entry
        problem, record_trusted = entry_problem(path, entry.record, MARKER)
        data = data_dir(path)
        data_problem = None
        if record_trusted and "stage_dir" in entry.record:
            data_problem = stage_dir_problem(data, entry.record["stage_dir"])
        if problem or data_problem:
            self._reject(path, problem or data_problem, stage_dir_trusted=record_trusted and data_problem is None)
            return None
        return entry

    def _reject(self, path: Path, problem: str, *, stage_dir_trusted: bool) -> None:
        try:
            marker = (path / MARKER).stat()
            seen = (path, (marker.st_ino, marker.st_mtime_ns, marker.st_size))
        except OSError:
            seen = (path, (0, 0, 0))
        if seen not in self._warned:
            self._warned.add(seen)
            log.warning("warning: cache entry %s is not served: %s; recomputing it", path, problem)
        if not stage_dir_trusted:
            self._untrusted.add(data_dir(path))

    @staticmethod
    def read_entry(path: Path) -> CacheEntry:
        return CacheEntry(path, json.loads((path / MARKER).read_text()))

    def workdir(self, fn_name: str, key: str) -> Path:
        """A scratch directory kept across attempts at one key (a killed run resumes from it)."""
        path = self.root / fn_name / f"{key}.work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def stage_dir(self, fn_name: str, key: str) -> Path:
        """A directory kept beside the entry of this key, for outputs written in place.

        Emptied first when the entry failed its check and the directory's own content
        could not be vouched for: a stage resuming into it would otherwise keep what
        is damaged (an activation store finds every chunk done and rewrites nothing).
        """
        path = data_dir(self.entry_path(fn_name, key))
        if path in self._untrusted:
            self._untrusted.discard(path)
            shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @contextlib.contextmanager
    def key_lock(self, fn_name: str, key: str,
                 on_wait: Callable[[dict[str, Any]], None] | None = None) -> Iterator[None]:
        """Held while one process computes this key, so parallel jobs that need it compute it once.

        A file lock beside the entry (``.KEY.lock``): released by the kernel when its holder
        dies (kill -9 included), so the next waiter takes over and resumes from the key's
        workdir and stage_dir. ``on_wait(holder)`` hears that another process holds it.
        """
        with lock_beside(self.entry_path(fn_name, key), on_wait=on_wait):
            yield

    def begin(self, fn_name: str, key: str) -> PendingEntry:
        final = self.entry_path(fn_name, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        self._sweep_abandoned(final)
        if final.exists() and not (final / MARKER).is_file():
            # Only reachable if someone hand-made the directory; it is not a result.
            shutil.rmtree(final)
        elif final.exists():
            # runner.force: the old result is replaced only once the new one is complete.
            return _ReplacingEntry(final)
        return PendingEntry(final)

    @staticmethod
    def _sweep_abandoned(final: Path) -> None:
        """Remove temporary directories for this key left by processes that no longer run."""
        for leftover in final.parent.glob(f".tmp-{final.name}-*"):
            try:
                pid = int(leftover.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if not pid_alive(pid):
                shutil.rmtree(leftover, ignore_errors=True)


class _ReplacingEntry(PendingEntry):
    """A recomputation of a key that already has a result: swap the old one out only at the end."""

    def commit(self, *, run_id: str | None, metrics: Mapping[str, float], extra: Mapping[str, Any],
               history: Sequence[Mapping[str, Any]] | None = None) -> CacheEntry:
        retired = self.final.parent / f".tmp-{self.final.name}-{os.getpid()}-retired-{uuid.uuid4().hex[:8]}"
        os.rename(self.final, retired)
        try:
            return super().commit(run_id=run_id, metrics=metrics, extra=extra, history=history)
        finally:
            shutil.rmtree(retired, ignore_errors=True)
