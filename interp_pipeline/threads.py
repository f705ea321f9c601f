"""How many threads torch may use in one job, chosen before any stage runs.

Measured here (2 cores; benchmarks/threads.py): training the toy models, one torch
thread per process beats two, by 3-10x when anything else runs beside it, because
their matrices are too small to split; and two jobs of a joblib sweep with torch's
default threads each oversubscribe the cores (37x slower per step than one thread
each). So: a job of a parallel sweep gets the cores divided by the jobs running at
once, and a single run whose models are all toy-sized gets one thread. Larger models
keep torch's default. ``runner.num_threads`` overrides all of it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("interp_pipeline")

# A model this narrow does matrix products too small to be worth a second thread.
TOY_D_MODEL = 512


def parallel_jobs(launcher: Any) -> int:
    """Jobs a Hydra launcher runs at once on this machine (1 for the basic launcher)."""
    target = str(getattr(launcher, "_target_", "") or "")
    if "joblib" in target.lower():
        n_jobs = int(getattr(launcher, "n_jobs", -1) or -1)
        return os.cpu_count() or 1 if n_jobs < 0 else max(1, n_jobs)
    return 1


def choose_threads(requested: int | None, *, parallel: int, model_widths: Iterable[int], on_cpu: bool,
                   cpu_count: int | None = None) -> tuple[int | None, str]:
    """(threads, why); None threads: leave torch's default."""
    cpus = cpu_count or os.cpu_count() or 1
    if requested is not None:
        return requested, "runner.num_threads"
    if parallel > 1:
        return max(1, cpus // parallel), f"{parallel} jobs at once on {cpus} cores"
    widths = list(model_widths)
    if on_cpu and widths and max(widths) <= TOY_D_MODEL:
        return 1, f"toy-sized models (d_model {max(widths)}) on the CPU"
    return None, "torch's default"


def apply_threads(threads: int | None, why: str) -> None:
    if threads is None:
        return
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    log.info("torch threads: %d (%s; runner.num_threads overrides)", threads, why)
