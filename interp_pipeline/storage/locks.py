"""Small process helpers shared by the stage cache, the tracker and the activation store."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def lock_beside(path: Path, on_wait: Callable[[dict[str, Any]], None] | None = None,
                wait_log_seconds: float = 60.0) -> Iterator[None]:
    """An exclusive lock between processes on this machine, on a hidden file beside ``path``
    (``.NAME.lock``): for work on ``path`` that must not interleave (creating a store, migrating one,
    computing one stage cache key).

    flock, not a lock file that exists or not: the kernel releases it when its holder dies,
    kill -9 included, so a dead holder never blocks the next one (no stale locks to detect).
    The holder writes its pid and host into the file; a process that finds the lock taken
    calls ``on_wait(holder)`` (``{"pid", "host", "since"}`` as the holder wrote them, and
    ``waited``, seconds so far) once, then again every ``wait_log_seconds`` while it waits. The file stays: removing a lock file
    while another process has it open would let a third lock a new file beside the second.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # "a+", not "w": opening must not erase the holder's note of who it is.
    with open(path.parent / f".{path.name}.lock", "a+") as handle:
        if on_wait is None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        else:
            _wait_for_lock(handle, on_wait, wait_log_seconds)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
            handle.flush()
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _wait_for_lock(handle: Any, on_wait: Callable[[dict[str, Any]], None], log_seconds: float) -> None:
    # Polled rather than blocking in flock, so the wait can be reported while it lasts.
    started = next_report = time.monotonic()
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        now = time.monotonic()
        if now >= next_report:
            on_wait({**lock_holder(handle), "waited": now - started})
            next_report = now + log_seconds
        time.sleep(0.2)


def lock_holder(handle: Any) -> dict[str, Any]:
    """Who holds the lock of an open lock file, as its holder wrote it (empty while it is being written)."""
    try:
        handle.seek(0)
        return dict(json.loads(handle.read() or "{}"))
    except (OSError, ValueError):
        return {}
