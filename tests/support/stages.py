"""Stages for tests: they count their calls and can fail or wait on demand.

Imported as a plugin (``runner.plugins=[tests.support.stages]``), also by the CLI in
a subprocess, so they must stay importable with nothing but the package around them.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from interp_pipeline.pipeline.registry import stage
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

CALLS: dict[str, int] = {}


def _count(name: str) -> None:
    CALLS[name] = CALLS.get(name, 0) + 1
    # Subprocess tests read calls from a file, as the stage runs in another process.
    log = os.environ.get("INTERP_TEST_CALL_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(name + "\n")


@stage("t_numbers", outputs=("numbers",))
def t_numbers(n: int, start: int = 0) -> list[int]:
    _count("t_numbers")
    return list(range(start, start + n))


@stage("t_scale", outputs=("scaled",))
def t_scale(numbers: list[int], factor: float, tracker: Tracker = NULL_TRACKER) -> list[float]:
    _count("t_scale")
    scaled = [x * factor for x in numbers]
    for step, value in enumerate(scaled):
        tracker.log_metrics({"value": value}, step=step)
    tracker.log_metrics({"total": sum(scaled)})
    tracker.log_dict({"scaled": scaled}, "scaled_summary")
    return scaled


@stage("t_split", outputs=("low", "high"))
def t_split(numbers: list[int], threshold: int) -> dict[str, list[int]]:
    _count("t_split")
    return {"low": [x for x in numbers if x < threshold], "high": [x for x in numbers if x >= threshold]}


@stage("t_rebuild", outputs=("thing",), cache=False)
def t_rebuild(size: int) -> dict[str, int]:
    """Like a model built from its config: cheap, never stored."""
    _count("t_rebuild")
    return {"size": size}


@stage("t_use", outputs=("used",))
def t_use(thing: dict[str, int], numbers: list[int]) -> int:
    _count("t_use")
    return thing["size"] + len(numbers)


@stage("t_fail", outputs=("never",))
def t_fail(numbers: list[int], message: str = "boom", flag_file: str | None = None) -> int:
    """Raises, unless ``flag_file`` exists (so a test can let a second attempt succeed)."""
    _count("t_fail")
    if flag_file is None or not Path(flag_file).exists():
        raise RuntimeError(message)
    return len(numbers)


@stage("t_wait", outputs=("waited",))
def t_wait(numbers: list[int], started_file: str, seconds: float = 120.0) -> int:
    """Announces that it started, then waits: something for a signal to interrupt."""
    _count("t_wait")
    Path(started_file).write_text(json.dumps({"pid": os.getpid()}))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return len(numbers)


@stage("t_interrupt", outputs=("never",))
def t_interrupt(numbers: list[int]) -> int:
    """Behaves as if the user pressed Ctrl-C while it ran."""
    _count("t_interrupt")
    raise KeyboardInterrupt


@stage("t_in_place", outputs=("written",))
def t_in_place(numbers: list[int], stage_dir: Path, big_bytes: int = 100_000) -> dict[str, object]:
    """Like the activation cache: writes into its stage_dir (one small, one big file), returns where."""
    _count("t_in_place")
    (stage_dir / "small.json").write_text(json.dumps(numbers))
    (stage_dir / "big.bin").write_bytes(bytes(range(256)) * (big_bytes // 256))
    return {"dir": str(stage_dir), "n": len(numbers)}


@stage("t_hold", outputs=("held",))
def t_hold(numbers: list[int], started_file: str, release_file: str, seconds: float = 120.0) -> int:
    """Appends its pid to ``started_file``, then holds until ``release_file`` exists (a stage to kill, or to
    keep busy while parallel jobs that need the same key wait for it)."""
    _count("t_hold")
    with open(started_file, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + seconds
    while not Path(release_file).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sum(numbers)
