"""Library chatter kept off the terminal and in the run's log file.

Hydra's job logging (conf/hydra/job_logging/interp.yaml) sends every record to the terminal and to
the log file. A library's INFO lines (botocore's "Found credentials in environment variables.") and
the "Exception ignored in: <coroutine object FsspecStore.get>" tracebacks Python prints when an
async reader is dropped mid-read are for the log file: the terminal keeps our own lines, and the
libraries' warnings and errors.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

OURS = ("interp_pipeline", "__main__", "hydra")


class LibraryChatter(logging.Filter):
    """On the console handler: drops records below WARNING that are not ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.split(".", 1)[0] in OURS


def _to_log_file(unraisable: Any) -> None:
    error = unraisable.exc_value
    logging.getLogger("interp_pipeline.unraisable").debug(
        "exception ignored in %r", unraisable.object,
        exc_info=(unraisable.exc_type, error, unraisable.exc_traceback) if error is not None else None)


def route_unraisable() -> None:
    """Send what Python would print as 'Exception ignored in: ...' to the log file (DEBUG) instead."""
    sys.unraisablehook = _to_log_file
