"""What MLflow's system metrics cost a stage: the same CPU-bound work with and without the monitor.

    .venv/bin/python benchmarks/system_metrics.py [seconds_per_trial] [trials]

Each trial runs a fixed amount of torch matmul work (one thread) in a run of a fresh
SQLite store, alternating: no monitor, the monitor at the default 10 s interval, and
at 1 s (ten times the sampling). Alternating in one process keeps the busy machine's
noise in all three (the order rotates from trial to trial); the figure is the median ratio
to the runs without it. On a busy machine that ratio is mostly noise, so the cost of one
sample (collecting and logging what the monitor reads, timed alone) is printed as well:
divided by the interval, it is the fraction of a core the monitor takes.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from interp_pipeline.tracking.mlflow_tracking import MlflowTracking


def work(seconds_hint: float) -> float:
    """Matmuls sized to take about ``seconds_hint`` on this machine; returns the time they took."""
    a = torch.randn(256, 256)
    started = time.perf_counter()
    for _ in range(int(seconds_hint * 400)):
        a = torch.tanh(a @ a)
    return time.perf_counter() - started


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 25.0
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        tracking = MlflowTracking(f"sqlite:///{Path(folder) / 'mlflow.db'}")
        experiment = tracking.experiment_id("overhead")
        times: dict[str, list[float]] = {"none": [], "10 s": [], "1 s": []}
        settings = [("none", None), ("10 s", 10.0), ("1 s", 1.0)]
        for trial in range(trials):
            for label, interval in settings[trial % 3:] + settings[:trial % 3]:
                run = tracking.start_run(experiment, label, {})
                if interval is not None:
                    run.start_system_metrics(interval)
                times[label].append(work(seconds))
                started = time.perf_counter()
                run.end("FINISHED")
                times[label][-1] += time.perf_counter() - started  # the monitor's last flush counts too
        sample = sample_seconds(tracking, experiment)
    base = statistics.median(times["none"])
    print(f"work per trial: {base:.2f} s (median of {trials}, one torch thread)")
    for label in ("10 s", "1 s"):
        ratio = statistics.median(t / b for t, b in zip(times[label], times["none"]))
        print(f"system metrics every {label:>4}: {statistics.median(times[label]):.2f} s, ratio {ratio:.3f}")
    print(f"one sample (collect + log): {sample * 1000:.1f} ms = {sample / 10:.3%} of a core at 10 s, "
          f"{sample:.2%} at 1 s")


def sample_seconds(tracking: MlflowTracking, experiment: str, samples: int = 20) -> float:
    """Median time of one sample: what the monitor's thread does once per interval."""
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    run = tracking.start_run(experiment, "sample cost", {})
    monitor = SystemMetricsMonitor(run.run_id, sampling_interval=1, tracking_uri=tracking.uri)
    costs = []
    for _ in range(samples):
        started = time.perf_counter()
        monitor.collect_metrics()
        monitor.publish_metrics(monitor.aggregate_metrics())
        monitor.mlflow_logger.flush()
        costs.append(time.perf_counter() - started)
        time.sleep(0.1)  # the CPU monitor reads utilisation since its previous call
    run.end("FINISHED")
    return statistics.median(costs)


if __name__ == "__main__":
    main()
