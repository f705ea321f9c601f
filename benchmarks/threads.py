"""The thread policy (interp_pipeline/common/threads.py), measured.

Part 1, in this process: ms per training step of quickstart's toy model (2 layers,
attention only, d_model 64, batch 64) with 1 and with 2 torch threads, alternating.

Part 2, through the CLI: N jobs of a toy experiment (grokking cut to a few hundred
steps, a fresh stage cache each) run one after another (the basic launcher), and as
a joblib sweep of N parallel jobs, with the policy (each job gets cores / N threads)
and without it (runner.num_threads=<cores>: torch's default, what every job got before).
Goal: parallel never slower than serial.

Usage: python benchmarks/threads.py [--steps 300] [--jobs 2 4] [--skip-sweeps]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def step_times(rounds: int = 3, steps: int = 15) -> dict[int, float]:
    import torch
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from interp_pipeline.experiments.compose import compose
    from interp_pipeline.tasks.base import make_task

    cfg = compose(["+experiment=quickstart"])
    task = make_task(dict(cfg.model.train.task))
    model = HookedTransformer(HookedTransformerConfig(**{**dict(cfg.model.cfg), **task.model_config()}, device="cpu"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)

    def per_step(n: int) -> float:
        started = time.perf_counter()
        for _ in range(n):
            tokens = task.train_batch(generator, 64)
            loss = task.loss(task.logits(model, tokens), tokens)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / n

    found: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(rounds):
        for threads in found:
            torch.set_num_threads(threads)
            per_step(3)  # warm-up
            found[threads].append(per_step(steps))
    return {threads: statistics.median(times) for threads, times in found.items()}


def sweep_seconds(jobs: int, steps: int, *, parallel: bool, threads: int | None) -> float:
    with tempfile.TemporaryDirectory() as outputs:
        env = {**os.environ, "INTERP_PIPELINE_OUTPUTS": outputs, "TQDM_DISABLE": "1"}
        env.pop("MLFLOW_TRACKING_URI", None)
        env.pop("OMP_NUM_THREADS", None)
        args = [sys.executable, "-m", "interp_pipeline", "-m", "+experiment=grokking", f"model.train.steps={steps}",
                "runner.check_expect=false", "seed=" + ",".join(str(s) for s in range(jobs))]
        if parallel:
            args += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
        if threads is not None:
            args.append(f"runner.num_threads={threads}")
        started = time.perf_counter()
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"sweep exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--jobs", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1

    times = step_times()
    print(f"toy model training step: 1 thread {times[1] * 1e3:.1f} ms, 2 threads {times[2] * 1e3:.1f} ms "
          f"(2 threads / 1 thread = {times[2] / times[1]:.2f})")
    if args.skip_sweeps:
        return
    for jobs in args.jobs:
        serial = sweep_seconds(jobs, args.steps, parallel=False, threads=None)
        policy = sweep_seconds(jobs, args.steps, parallel=True, threads=None)
        default = sweep_seconds(jobs, args.steps, parallel=True, threads=cores)
        print(f"{jobs} jobs of grokking ({args.steps} steps) on {cores} cores: serial {serial:.1f} s; "
              f"joblib with the policy {policy:.1f} s ({policy / serial:.2f} of serial); "
              f"joblib with {cores} threads each {default:.1f} s ({default / serial:.2f} of serial)")


if __name__ == "__main__":
    main()
