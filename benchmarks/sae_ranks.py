"""Data-parallel SAE training: tokens per second with 1 and 2 ranks (torchrun, gloo on the CPU).

Each configuration is one torchrun launch of this file's worker: the train_sae stage on the
same in-memory activations (standard SAE, the same global batch, steps and seed), every rank
with ``--threads`` torch threads; rank 0 reports the stage's ``tokens_per_s`` (global tokens
over training time). A single process with 2 threads is measured too: on a 2-core machine
that, not 1 rank with 1 thread, is what 2 ranks must beat.

    python benchmarks/sae_ranks.py [--d-in 256] [--expansion 8] [--batch 4096] [--steps 20]

What a CPU can show: that N ranks take the steps of one process (same tokens trained) and
what the gloo all-reduce of the gradients and statistics costs per step. What it cannot: GPU
scaling (NCCL over NVLink or InfiniBand), where each rank has its own device and the
all-reduce overlaps the backward pass; here the ranks share 2 cores and one memory bus.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace) -> None:
    import torch

    from interp_pipeline.common.distributed import join
    from interp_pipeline.stages.sae import train_sae
    from interp_pipeline.tracking.base import NullRun, RecordingTracker

    torch.set_num_threads(args.threads)
    ranks = join({"benchmark": vars(args)})
    rows = args.batch * args.steps + args.batch
    activations = torch.randn(rows, args.d_in, generator=torch.Generator().manual_seed(0))
    tracker = RecordingTracker(NullRun(), Path(os.environ.get("TMPDIR", "/tmp")))
    started = time.perf_counter()
    train_sae(activations=activations, tracker=tracker, d_sae=args.d_in * args.expansion,
              train_batch_size_tokens=args.batch, training_tokens=args.batch * args.steps, eval_tokens=args.batch,
              log_every=args.steps, checkpoint_every=0, device="cpu", seed=0)
    if ranks.is_main:
        print(json.dumps({"tokens_per_s": tracker.last["tokens_per_s"], "steps": tracker.last["steps"],
                          "wall_s": time.perf_counter() - started}))


def launch(ranks: int, threads: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks),
               __file__, "--worker", "--threads", str(threads), "--d-in", str(args.d_in),
               "--expansion", str(args.expansion), "--batch", str(args.batch), "--steps", str(args.steps)]
    if ranks == 1:  # one process without torchrun: the plain single-process path
        command = [sys.executable, __file__, "--worker", *command[command.index("--threads"):]]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--d-in", type=int, default=256)
    parser.add_argument("--expansion", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    print(f"standard SAE, d_in {args.d_in}, {args.d_in * args.expansion} latents, global batch {args.batch}, "
          f"{args.steps} steps")
    results = {}
    for label, ranks, threads in (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2),
                                  ("2 ranks, 1 thread each", 2, 1)):
        results[label] = launch(ranks, threads, args)
        print(f"{label:<26} {results[label]['tokens_per_s']:9.0f} tokens/s  ({results[label]['steps']:.0f} steps)")
    base = results["1 process, 1 thread"]["tokens_per_s"]
    for label in ("1 process, 2 threads", "2 ranks, 1 thread each"):
        print(f"{label} / 1 process, 1 thread: {results[label]['tokens_per_s'] / base:.2f}")


if __name__ == "__main__":
    main()
