"""Exit statuses, and how one status is chosen for a sweep of many jobs."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_EXPECT = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143  # the shell's 128 + SIGINT / SIGTERM
STATUS_FILE = "exit_status"  # written into each job's output directory

# A sweep reports its worst job: a config error first, then a failure, then a missed expectation.
_SEVERITY = (EXIT_CONFIG, EXIT_FAILED, EXIT_EXPECT)


def combine(statuses: Iterable[int]) -> int:
    found = set(statuses)
    for status in _SEVERITY:
        if status in found:
            return status
    return max(found, default=EXIT_OK)


def write_status(job_dir: Path, status: int) -> None:
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / STATUS_FILE).write_text(f"{status}\n")


def read_statuses(sweep_dir: Path) -> list[int]:
    return [int(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{STATUS_FILE}"))]
