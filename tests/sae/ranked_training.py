"""Under torchrun: train train_until_killed's SAE on each rank's share of its batches; rank 0 saves it.

Used by test_ranks.py: ``torchrun --nproc-per-node 2 -m tests.sae.ranked_training OUT_DIR WORKDIR
[--variants] [--nan]``. Each rank writes its pid to ``OUT_DIR/rank<r>.pid`` (for the test to kill one),
then trains with checkpoints in WORKDIR; rank 0 writes ``OUT_DIR/sae.safetensors`` and prints one
JSON line (the step it resumed from, the steps trained). ``--variants`` then trains the one-pass
pair VARIANTS too and writes ``OUT_DIR/<name>.safetensors``; ``--nan`` then makes rank 1's rows
overflow at step 6 and each rank writes the error it stopped with to ``OUT_DIR/nan-rank<r>.txt``. STEP_SLEEP_S slows each batch drawn.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from interp_pipeline.common.distributed import join
from interp_pipeline.sae import trainer
from interp_pipeline.tracking.base import NullRun, RecordingTracker
from tests.sae.train_until_killed import run, slow_down_from_env

# A standard SAE with an L1 penalty and a TopK SAE with its auxiliary loss on dead latents, in one pass.
VARIANTS = [{"name": "standard"}, {"name": "topk", "architecture": "topk", "k": 4, "l1_coefficient": None,
                                   "l1_warm_up_steps": None}]


def _save(sae: torch.nn.Module, path: Path) -> None:
    save_file({k: v.detach().contiguous() for k, v in sae.state_dict().items()}, str(path))


def main() -> None:
    torch.set_num_threads(1)
    out, workdir = Path(sys.argv[1]), sys.argv[2]
    ranks = join({"argv": sys.argv[1:]})
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{ranks.rank}.pid").write_text(str(os.getpid()))
    slow_down_from_env()
    tracker = RecordingTracker(NullRun(), out)
    sae = run(workdir, tracker)
    if ranks.is_main:
        _save(sae, out / "sae.safetensors")
    if "--variants" in sys.argv:
        saes = run(None, variants=VARIANTS)
        if ranks.is_main:
            for name, one in saes.items():
                _save(one, out / f"{name}.safetensors")
    if "--nan" in sys.argv:  # rank 1's share of step 6 overflows: every rank must stop at that step
        step = trainer.TrackedSteps.step

        def overflowing(self, batch):
            return step(self, batch * 1e30 if ranks.rank == 1 and self.n_training_steps == 5 else batch)

        trainer.TrackedSteps.step = overflowing
        try:
            run(None)
        except trainer.NonFiniteLoss as error:
            (out / f"nan-rank{ranks.rank}.txt").write_text(str(error))
        trainer.TrackedSteps.step = step
    if ranks.is_main:
        print(json.dumps({"resumed_from_step": tracker.last.get("resumed_from_step", 0.0),
                          "steps": tracker.last.get("steps")}))


if __name__ == "__main__":
    main()
