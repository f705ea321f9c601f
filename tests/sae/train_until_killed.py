"""Train a tiny SAE with checkpoints in WORKDIR, slowly enough to be killed partway; save the result to OUT.

Used by test_sae_checkpoints.py in a subprocess: ``python -m tests.sae.train_until_killed
WORKDIR OUT``. STEP_SLEEP_S (seconds per batch drawn) stretches the run so the test can
kill -9 it after its first checkpoint; the same command then resumes. Prints one JSON
line: the step the run resumed from and the steps it trained.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import torch

from interp_pipeline.sae import trainer
from interp_pipeline.stages.sae import train_sae
from interp_pipeline.tracking.base import NULL_TRACKER, NullRun, RecordingTracker

# 40 steps of 64 rows; SAELens first draws 40 batches to estimate the activation scale, so the
# 80 batches drawn cross the epoch boundary (48 batches) of the training rows.
PARAMS = dict(d_sae=32, train_batch_size_tokens=64, training_tokens=40 * 64, eval_tokens=128,
              lr=3e-3, lr_scheduler="cosineannealing", lr_warm_up_steps=5, l1_warm_up_steps=10,
              normalize_activations="expected_average_only_in", log_every=1, checkpoint_every=4,
              device="cpu", seed=3)


def activations() -> torch.Tensor:
    """3072 training rows (512 distinct, each 6 times) and 128 held-out ones, 16 wide."""
    generator = torch.Generator().manual_seed(11)
    acts = torch.randn(640, 16, generator=generator) * torch.linspace(0.5, 2.0, 16)
    return torch.cat([acts[:512]] * 6 + [acts[512:]])


def run(workdir: str | None, tracker=None, **overrides):
    """The trained SAE (SAELens's inference SAE)."""
    return train_sae(activations=activations(), workdir=workdir,
                     tracker=tracker or NULL_TRACKER, **{**PARAMS, **overrides})


def slow_down_from_env() -> None:
    """STEP_SLEEP_S (seconds) before each batch drawn, so a test can kill the run partway."""
    pause = float(os.environ.get("STEP_SLEEP_S", "0"))
    if pause:
        drawn = trainer.CountingBatches.__next__

        def slow(self):
            time.sleep(pause)
            return drawn(self)

        trainer.CountingBatches.__next__ = slow


def main() -> None:
    torch.set_num_threads(1)
    slow_down_from_env()
    tracker = RecordingTracker(NullRun(), Path(sys.argv[2]).parent)
    sae = run(sys.argv[1], tracker)
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in sae.state_dict().items()}, sys.argv[2])
    print(json.dumps({"resumed_from_step": tracker.last.get("resumed_from_step", 0.0),
                      "steps": tracker.last["steps"]}))


if __name__ == "__main__":
    main()
