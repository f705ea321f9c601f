"""How many threads torch may use in one job, chosen before any stage runs.

Measured here (2 cores; benchmarks/threads.py, figures in benchmarks/README.md): a
toy model's training step takes 34-38 ms with two threads and 55-63 ms with one on a
quiet machine, but with one other busy process beside it two threads take 225-515 ms
against 53-73 ms for one: its matrices are too small for two threads to win anything
once they must wait for a core. A joblib sweep whose jobs keep torch's default
threads takes 1.8x (2 jobs) and 2.1x (4 jobs) the time of running them one after
another; with one thread each, 0.65x and 0.58x. So: a job of a parallel sweep gets
the cores divided by the jobs running at once, and a single run whose models are all
toy-sized gets one thread, giving up a third of the quiet machine's speed to never be
the run that is 4-7x slower on a busy one (and never slower than OMP_NUM_THREADS=1).
Larger models keep torch's default. ``runner.num_threads`` overrides all of it.
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
