"""A heartbeat on each top-level MLflow run, so that a run left RUNNING by a machine that died can be told
from one still at work, from any other machine.

A process on this host is seen to be gone by its pid (MlflowTracking.end_orphaned_runs); a job on
another node of a cluster cannot be seen at all, and MLflow keeps no "last seen" time for a run. So
a daemon thread sets the run's ``heartbeat`` tag (seconds since the epoch) every ``HEARTBEAT_S``;
a RUNNING run whose own heartbeat, or its top-level run's, is older than ``STALE_S`` belongs to a
process that has stopped (a dead node, a job SLURM killed) and is closed KILLED by the next run
on the store. A job that is only suspended for longer than that (SIGSTOP, preemption) and then
resumes ends its runs itself, which sets their status again.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any

HEARTBEAT_TAG = "heartbeat"
HEARTBEAT_S = float(os.environ.get("INTERP_PIPELINE_HEARTBEAT_S", 60))
STALE_S = float(os.environ.get("INTERP_PIPELINE_STALE_S", 15 * 60))  # 15 heartbeats missed

log = logging.getLogger(__name__)


class Heartbeat:
    """Sets ``heartbeat`` on one run until :meth:`stop`."""

    def __init__(self, client: Any, run_id: str, interval: float = HEARTBEAT_S):
        self._client, self._run_id, self._interval = client, run_id, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{run_id[:8]}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self._client.set_tag(self._run_id, HEARTBEAT_TAG, str(int(time.time())))
            except Exception:  # noqa: BLE001 - a store that hiccups must not stop the run; the next beat retries
                log.debug("heartbeat of run %s not written", self._run_id, exc_info=True)

    def stop(self) -> None:
        self._stopped.set()


def is_stale(run: Any, running: Mapping[str, Any], now: float | None = None, stale_s: float = STALE_S) -> bool:
    """Whether ``run``'s heartbeat, or that of the top-level run above it (among ``running``: id -> run), is
    older than ``stale_s``. A run with no heartbeat anywhere above it (logged before heartbeats) is not."""
    now = time.time() if now is None else now
    seen = run
    for _ in range(16):
        beat = seen.data.tags.get(HEARTBEAT_TAG, "")
        if beat.isdigit():
            return now - int(beat) > stale_s
        parent = running.get(seen.data.tags.get("mlflow.parentRunId", ""))
        if parent is None:
            return False
        seen = parent
    return False
