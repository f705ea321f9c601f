"""A second run served wholly from the stage cache, against the first run, in one benchmark run.

Both runs go through the real CLI in a subprocess, into a fresh outputs directory
(stage cache and MLflow store), so the first run pays for every stage and the
second only for start-up, validation, cache look-ups and tracking.
Goal (issue 2): the second run at most 10% of the first, measured on `quickstart`.

Usage: python benchmarks/cached_rerun.py [EXPERIMENT] [extra overrides...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

GOAL_RATIO = 0.10


def timed_run(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "interp_pipeline", *args], env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"run failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return elapsed


def main() -> None:
    experiment = sys.argv[1] if len(sys.argv) > 1 else "smoke"
    args = [f"+experiment={experiment}", *sys.argv[2:]]
    with tempfile.TemporaryDirectory() as outputs:
        env = {**os.environ, "INTERP_PIPELINE_OUTPUTS": outputs, "TQDM_DISABLE": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        first = timed_run(args, env)
        second = timed_run(args, env)
    ratio = second / first
    print(f"experiment:            {experiment}")
    print(f"first run (computes):  {first:.2f} s")
    print(f"second run (cached):   {second:.2f} s")
    print(f"ratio second/first:    {ratio:.3f} (goal <= {GOAL_RATIO}: {'met' if ratio <= GOAL_RATIO else 'NOT met'})")


if __name__ == "__main__":
    main()
