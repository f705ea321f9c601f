"""The command line (``interp-pipeline``, ``python -m interp_pipeline``): main (Hydra's task and
the exit statuses), hydra_callbacks (a sweep's checks before its jobs and its summary after),
repro (``interp-pipeline repro``, a suite of runs).
"""

from interp_pipeline.cli.main import main

__all__ = ["main"]
