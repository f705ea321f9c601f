"""Stages for tests: they count their calls and can fail or wait on demand.

Imported as a plugin (``runner.plugins=[tests.support.stages]``), also by the CLI in
a subprocess, so they must stay importable with nothing but the package around them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import MISSING

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


@dataclass
class NumbersConfig:
    n: int = MISSING
    start: int = 0


@stage("t_numbers", outputs=("numbers",), config=NumbersConfig)
def t_numbers(settings: NumbersConfig) -> list[int]:
    _count("t_numbers")
    return list(range(settings.start, settings.start + settings.n))


@dataclass
class ScaleConfig:
    factor: float = MISSING


@stage("t_scale", outputs=("scaled",), config=ScaleConfig)
def t_scale(numbers: list[int], settings: ScaleConfig, tracker: Tracker = NULL_TRACKER) -> list[float]:
    _count("t_scale")
    scaled = [x * settings.factor for x in numbers]
    for step, value in enumerate(scaled):
        tracker.log_metrics({"value": value}, step=step)
    tracker.log_metrics({"total": sum(scaled)})
    tracker.log_dict({"scaled": scaled}, "scaled_summary")
    return scaled


@dataclass
class SplitConfig:
    threshold: int = MISSING


@stage("t_split", outputs=("low", "high"), config=SplitConfig)
def t_split(numbers: list[int], settings: SplitConfig) -> dict[str, list[int]]:
    _count("t_split")
    return {"low": [x for x in numbers if x < settings.threshold],
            "high": [x for x in numbers if x >= settings.threshold]}


@dataclass
class RebuildConfig:
    size: int = MISSING


@stage("t_rebuild", outputs=("thing",), config=RebuildConfig, cache=False)
def t_rebuild(settings: RebuildConfig) -> dict[str, int]:
    """Like a model built from its config: cheap, never stored."""
    _count("t_rebuild")
    return {"size": settings.size}


@stage("t_use", outputs=("used",))
def t_use(thing: dict[str, int], numbers: list[int]) -> int:
    _count("t_use")
    return thing["size"] + len(numbers)


@dataclass
class FailConfig:
    message: str = "boom"
    flag_file: Optional[str] = None


@stage("t_fail", outputs=("never",), config=FailConfig)
def t_fail(numbers: list[int], settings: FailConfig) -> int:
    """Raises, unless ``flag_file`` exists (so a test can let a second attempt succeed)."""
    _count("t_fail")
    if settings.flag_file is None or not Path(settings.flag_file).exists():
        raise RuntimeError(settings.message)
    return len(numbers)


@dataclass
class WaitConfig:
    started_file: str = MISSING
    seconds: float = 120.0


@stage("t_wait", outputs=("waited",), config=WaitConfig)
def t_wait(numbers: list[int], settings: WaitConfig) -> int:
    """Announces that it started, then waits: something for a signal to interrupt."""
    _count("t_wait")
    Path(settings.started_file).write_text(json.dumps({"pid": os.getpid()}))
    deadline = time.monotonic() + settings.seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return len(numbers)


@stage("t_interrupt", outputs=("never",))
def t_interrupt(numbers: list[int]) -> int:
    """Behaves as if the user pressed Ctrl-C while it ran."""
    _count("t_interrupt")
    raise KeyboardInterrupt


@dataclass
class InPlaceConfig:
    big_bytes: int = 100_000


@stage("t_in_place", outputs=("written",), config=InPlaceConfig)
def t_in_place(numbers: list[int], stage_dir: Path, settings: InPlaceConfig) -> dict[str, object]:
    """Like the activation cache: writes into its stage_dir (one small, one big file), returns where."""
    _count("t_in_place")
    (stage_dir / "small.json").write_text(json.dumps(numbers))
    (stage_dir / "big.bin").write_bytes(bytes(range(256)) * (settings.big_bytes // 256))
    return {"dir": str(stage_dir), "n": len(numbers)}


@dataclass
class HoldConfig:
    started_file: str = MISSING
    release_file: str = MISSING
    seconds: float = 120.0


@stage("t_hold", outputs=("held",), config=HoldConfig)
def t_hold(numbers: list[int], settings: HoldConfig) -> int:
    """Appends its pid to ``started_file``, then holds until ``release_file`` exists (a stage to kill, or to
    keep busy while parallel jobs that need the same key wait for it)."""
    _count("t_hold")
    with open(settings.started_file, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    deadline = time.monotonic() + settings.seconds
    while not Path(settings.release_file).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return sum(numbers)


@dataclass
class AuthorisedConfig:
    api_token: str = MISSING
    n: int = 2


@stage("t_authorised", outputs=("numbers",), config=AuthorisedConfig, metrics=("n",))
def t_authorised(settings: AuthorisedConfig, tracker: Tracker = NULL_TRACKER) -> list[int]:
    """Like a stage that reads a private dataset with a token: the token is needed, never returned or logged
    by the stage itself; a failing token check says so (as a client library would: naming the value)."""
    _count("t_authorised")
    if not settings.api_token:
        raise RuntimeError(f"token {settings.api_token!r} refused")
    tracker.log_metrics({"n": settings.n})
    return list(range(settings.n))
