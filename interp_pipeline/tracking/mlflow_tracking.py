"""MLflow tracking through ``MlflowClient`` (not the fluent API).

The client lets the runner hold a parent run and one child run per stage at the
same time, set each one's final status itself (FINISHED, FAILED, KILLED), and
avoid the fluent API's atexit hook, which would mark an interrupted run FINISHED.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from interp_pipeline.config.secrets import active as active_redactor
from interp_pipeline.storage.locks import lock_beside, pid_alive
from interp_pipeline.tracking.heartbeat import HEARTBEAT_TAG, Heartbeat, is_stale

# MLflow refuses longer values; a 50-element list in a param is rarely read anyway.
MAX_PARAM_LENGTH = 6000
BATCH = 100  # log_batch's per-call limit for params and tags
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def resolve_tracking_uri(configured: str | None, outputs_dir: str | os.PathLike[str]) -> str:
    """``tracking.uri`` if set, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<outputs>/mlflow.db``."""
    if configured:
        return configured
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(outputs_dir).resolve() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Pre-flight for a tracking server: one quick request, instead of MLflow's minutes of retries.

    Raises ConfigError("tracking.uri", ...) when an http(s) server does not answer.
    """
    if urlparse(uri).scheme not in ("http", "https"):
        return
    import urllib.error
    import urllib.request

    from interp_pipeline.common.errors import ConfigError

    try:
        urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # it answered; MLflow itself will say if something is wrong
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ConfigError("tracking.uri", f"expected a reachable MLflow server, found no answer at {uri} ({reason})",
                          suggestion="start it, or unset MLFLOW_TRACKING_URI to log to the local store") from None


def local_artifact_root(uri: str) -> Path | None:
    """Artifacts go beside a local store (``mlartifacts/`` next to the .db); a server decides its own."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        db = Path(uri[len("sqlite:///"):])
        return db.parent / "mlartifacts"
    if parsed.scheme in ("", "file"):
        return Path(parsed.path).resolve()
    return None


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Hold an inter-process lock beside a local store (``.mlflow.db.lock``); no-op for a server.

    A fresh SQLite store is created by running MLflow's migrations, and two processes
    doing that at once fail (``duplicate column name``, ``Online migration expected to
    match one row``); so do two creating the same experiment. A server serialises both itself.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite":
        store = Path(uri[len("sqlite:///"):])
    elif parsed.scheme in ("", "file"):
        store = Path(parsed.path)
    else:
        yield
        return
    with lock_beside(store):
        yield


def _boot_id() -> str:
    """This boot of this machine (Linux): a run started before a reboot is dead whatever its pid is now."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


_BOOT_ID = _boot_id()


def _chunks(items: list[Any], size: int = BATCH) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


# Text artifacts (reports, tables, tracebacks) are scrubbed of secrets before they are logged.
_TEXT_SUFFIXES = {".txt", ".yaml", ".yml", ".json", ".html", ".csv", ".md", ".log"}
_MAX_SCRUBBED_BYTES = 50_000_000


@contextlib.contextmanager
def _scrubbed(path: Path) -> Iterator[Path]:
    """``path``, or a copy of it with the active redactor's secrets replaced when it holds any."""
    import tempfile

    redactor = active_redactor()
    if (not redactor.secrets or not path.is_file() or path.suffix not in _TEXT_SUFFIXES
            or path.stat().st_size > _MAX_SCRUBBED_BYTES):
        yield path
        return
    text = path.read_text(errors="replace")
    clean = redactor.text(text)
    if clean == text:
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / path.name
        copy.write_text(clean)
        yield copy


class MlflowRun:
    """One MLflow run, parent or child; implements ``RunLogger``."""

    def __init__(self, client: Any, run_id: str, tracking: MlflowTracking, experiment_id: str):
        self.client = client
        self.run_id = run_id
        self.tracking = tracking
        self.experiment_id = experiment_id
        self._ended = False
        self._monitor: Any = None
        self._heartbeat: Any = None

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = active_redactor().mapping(params)  # secrets never reach the store (config/secrets.py)
        items = [Param(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()]
        for chunk in _chunks(items):
            self.client.log_batch(self.run_id, params=chunk)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(str(k), float(v), now, step or 0) for k, v in metrics.items()]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_metric_history(self, batches: Sequence[Mapping[str, Any]]) -> None:
        """Batches ``{"step", "metrics"}`` as :meth:`log_metrics` logged them (a cached stage's
        series, replayed), in fewer requests: a millisecond apart each, so their order survives
        where steps tie."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(str(k), float(v), now + i, batch["step"] or 0)
                 for i, batch in enumerate(batches) for k, v in batch["metrics"].items()]
        for chunk in _chunks(items, 1000):
            self.client.log_batch(self.run_id, metrics=chunk)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        tags = active_redactor().mapping(tags)
        items = [RunTag(str(k), str(v)[:MAX_PARAM_LENGTH]) for k, v in tags.items()]
        for chunk in _chunks(items):
            self.client.log_batch(self.run_id, tags=chunk)

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        with _scrubbed(Path(path)) as logged:
            self.client.log_artifact(self.run_id, str(logged), artifact_path)

    def start_child(self, name: str, tags: Mapping[str, Any]) -> MlflowRun:
        """A run nested under this one (``mlflow.parentRunId``), in the same experiment."""
        return self.tracking.start_run(self.experiment_id, name, tags, parent=self)

    def log_datasets(self, datasets: Iterable[Any], context: str) -> None:
        """What ``mlflow.log_input`` records, for DatasetRecords (tracking/datasets.py): the UI's Datasets column."""
        import json

        from mlflow.entities import Dataset, DatasetInput, InputTag

        inputs = [
            DatasetInput(Dataset(name=d.name, digest=d.digest, source_type="local" if d.source.startswith("file:")
                                 else "url", source=json.dumps({"uri": d.source}),
                                 schema=json.dumps(d.schema) if d.schema else None, profile=json.dumps(d.profile)),
                         tags=[InputTag("mlflow.data.context", context), InputTag("kind", d.kind)])
            for d in datasets
        ]
        if not inputs:
            return
        # MLflow's SQL store looks a dataset up by (experiment, name, digest) and inserts it when absent,
        # not atomically: the jobs of a sweep logging the same tokens at once collide on the table's
        # unique key (seen with 4 joblib jobs on one SQLite store). Under the store's lock locally; a
        # server's workers can race the same way, and a retry then finds the row the other one wrote.
        from mlflow.exceptions import MlflowException

        with store_lock(self.tracking.uri):
            for attempt in range(3):
                try:
                    self.client.log_inputs(self.run_id, datasets=inputs)
                    return
                except MlflowException as error:
                    if attempt == 2 or "UNIQUE constraint" not in str(error) and "Duplicate entry" not in str(error):
                        raise
                    time.sleep(0.2 * (attempt + 1))

    def log_model(self, name: str, value: Any, saved: Path | None) -> dict[str, str]:
        """Log a model or SAE(s) as a pyfunc model (tracking/logged_models.py) within ``tracking.max_model_mb``;
        returns the tags it set (``logged_model.<name>``: its ``models:/`` URI, or why it was not logged)."""
        from interp_pipeline.tracking.logged_models import log_model, model_codec, size_mb

        codec = model_codec(value)
        if codec is None:
            return {}
        megabytes = size_mb(value)
        if megabytes > self.tracking.max_model_mb:
            tags = {f"logged_model.{name}.not_logged":
                    f"{megabytes:.1f} MB > tracking.max_model_mb={self.tracking.max_model_mb:g}"}
        else:
            # Named apart from the run's artifact folder of the same output (``sae/``): MLflow lists a
            # logged model's files under a run path that equals its name, through the default tracking
            # URI, so a client on another store could no longer list that folder.
            info = log_model(self.tracking.uri, self.experiment_id, self.run_id, f"{name}_model", value, codec, saved)
            tags = {f"logged_model.{name}": info.model_uri, f"logged_model.{name}.mb": f"{megabytes:.2f}"}
        self.set_tags(tags)
        return tags

    def rename(self, name: str) -> None:
        self.client.update_run(self.run_id, name=active_redactor().text(name))

    def start_system_metrics(self, interval: float) -> None:
        """MLflow's system metrics (``system/cpu_utilization_percentage`` ...), sampled every
        ``interval`` s until :meth:`end`."""
        from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

        self._monitor = SystemMetricsMonitor(self.run_id, sampling_interval=interval, tracking_uri=self.tracking.uri)
        self._monitor.start()

    def end(self, status: str) -> None:
        if self._heartbeat is not None:
            self._heartbeat.stop()
            self._heartbeat = None
        if self._monitor is not None:
            self._monitor.finish()  # its last samples are written before the run ends
            self._monitor = None
        if not self._ended:
            self._ended = True
            self.client.set_terminated(self.run_id, status)


class MlflowTracking:
    """The store: experiments, runs, and clean-up of runs whose process died."""

    def __init__(self, uri: str, *, max_model_mb: float = 200.0):
        from mlflow.tracking import MlflowClient

        self.uri = uri
        self.max_model_mb = max_model_mb
        with store_lock(uri):
            # Opening the store creates or migrates its tables (MLflow 3 does it as the
            # client is made; the search makes sure of it where that is lazy).
            self.client = MlflowClient(tracking_uri=uri)
            self.client.search_experiments(max_results=1)

    def experiment_id(self, name: str) -> str:
        """Get or create the experiment; safe when other processes race to create it."""
        from mlflow.exceptions import MlflowException

        with store_lock(self.uri):
            existing = self.client.get_experiment_by_name(name)
            if existing is not None:
                return existing.experiment_id
            root = local_artifact_root(self.uri)
            location = (root / _UNSAFE.sub("_", name)).as_uri() if root is not None else None
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:
                # Another client of the same server created it between our two calls
                # (RESOURCE_ALREADY_EXISTS, or a backend's own integrity error).
                existing = self.client.get_experiment_by_name(name)
                if existing is None:
                    raise
                return existing.experiment_id

    def start_run(
        self,
        experiment_id: str,
        run_name: str,
        tags: Mapping[str, Any],
        parent: MlflowRun | None = None,
    ) -> MlflowRun:
        all_tags = {str(k): str(v) for k, v in active_redactor().mapping(tags).items()}
        run_name = active_redactor().text(run_name)
        all_tags["host"] = socket.gethostname()
        all_tags["pid"] = str(os.getpid())
        if _BOOT_ID:
            all_tags["boot_id"] = _BOOT_ID
        all_tags[HEARTBEAT_TAG] = str(int(time.time()))  # then every HEARTBEAT_S, until the run ends
        if parent is not None:
            all_tags["mlflow.parentRunId"] = parent.run_id
        run = self.client.create_run(experiment_id, tags=all_tags, run_name=run_name)
        logger = MlflowRun(self.client, run.info.run_id, self, experiment_id)
        logger._heartbeat = Heartbeat(self.client, run.info.run_id)
        return logger

    def mark_expect_failed(self, run_id: str, keys: Iterable[str]) -> None:
        """Tag a stage's run with the ``expect:`` keys its metrics missed, and suffix its name."""
        from interp_pipeline.tracking.run_names import with_expect_failed

        run = self.client.get_run(run_id)
        self.client.set_tag(run_id, "expect.failed", ", ".join(keys))
        self.client.update_run(run_id, name=with_expect_failed(run.info.run_name))

    def end_orphaned_runs(self) -> int:
        """Mark KILLED the runs, of any experiment, left RUNNING by a process that no longer works on them.

        A kill -9 gives the process no chance to end its runs; the next invocation on the store does it.
        On this host, a run whose process no longer exists (or that started before this boot); on any
        host, a run whose heartbeat stopped more than STALE_S ago (tracking/heartbeat.py: its machine
        died, or its job was killed; other hosts' processes cannot be seen from here).
        """
        host = socket.gethostname()
        running = self._running_runs()
        by_id = {run.info.run_id: run for run in running}
        ended = 0
        for run in running:
            tags = run.data.tags
            if tags.get("host") == host and tags.get("pid", "").isdigit():
                pid = int(tags["pid"])
                rebooted = bool(_BOOT_ID) and tags.get("boot_id", _BOOT_ID) != _BOOT_ID  # its pid may be reused since
                if not rebooted and (pid == os.getpid() or pid_alive(pid)):
                    continue
            elif not is_stale(run, by_id):
                continue
            self.client.set_terminated(run.info.run_id, "KILLED")
            ended += 1
        return ended

    def _running_runs(self) -> list[Any]:
        """Every RUNNING run of the active experiments, read in full before any is ended
        (ending them while paging would shift the pages and skip some)."""
        from mlflow.entities import ViewType

        ids: list[str] = []
        token = None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, max_results=1000, page_token=token)
            ids += [experiment.experiment_id for experiment in page]
            token = page.token
            if not token:
                break
        found: list[Any] = []
        for chunk in _chunks(ids):
            token = None
            while True:
                runs = self.client.search_runs(chunk, filter_string="attributes.status = 'RUNNING'",
                                               max_results=1000, page_token=token)
                found += runs
                token = runs.token
                if not token:
                    break
        return found

    def run_url(self, experiment_id: str, run_id: str) -> str:
        parsed = urlparse(self.uri)
        if parsed.scheme in ("http", "https"):
            return f"{self.uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        return f"run {run_id} (experiment {experiment_id}); view: mlflow ui --backend-store-uri {self.uri}"

