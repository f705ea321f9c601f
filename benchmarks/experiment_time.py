"""Wall time of an experiment from a cold stage cache, and how much of it is each stage.

Runs the real CLI in a subprocess into a fresh outputs directory, then reads the
stage runs' start and end times back from MLflow. "Overhead" is everything that is
not a stage: interpreter start, imports, config composition and validation, MLflow.

Usage: python benchmarks/experiment_time.py quickstart [grokking ...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time


def measure(experiment: str) -> None:
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as outputs:
        env = {**os.environ, "INTERP_PIPELINE_OUTPUTS": outputs, "TQDM_DISABLE": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "interp_pipeline", f"+experiment={experiment}"],
                              env=env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"{experiment} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        client = MlflowClient(f"sqlite:///{outputs}/mlflow.db")
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id])
        stages = {r.data.tags["stage"]: (r.info.end_time - r.info.start_time) / 1000
                  for r in runs if "stage" in r.data.tags}
    print(f"{experiment}: {wall:.1f} s wall")
    for name, seconds in stages.items():
        print(f"  stage {name:<12} {seconds:7.1f} s  ({seconds / wall:5.1%})")
    overhead = wall - sum(stages.values())
    print(f"  overhead           {overhead:7.1f} s  ({overhead / wall:5.1%})")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["quickstart"]:
        measure(name)
