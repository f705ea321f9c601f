"""The training loop for toy models: seeded, resumable, logged with steps, stopping early on a target.

AdamW with a linear warm-up, one batch (or the whole training set, for full-batch
tasks) per step. Deterministic on CPU: the model's init comes from its config's
seed and the data from a generator of its own seeded from the same number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp_pipeline.progress import progress
from interp_pipeline.tasks.base import Task
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.training import checkpoints


@dataclass
class TrainSettings:
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 0
    log_every: int = 10
    eval_every: int = 100
    checkpoint_every: int = 500
    # Stop once the eval metric `early_stop_metric` (e.g. "repeat_loss") is <= early_stop_max
    # or >= early_stop_min.
    early_stop_metric: str | None = None
    early_stop_min: float | None = None
    early_stop_max: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def target_met(self, metrics: Mapping[str, float]) -> bool:
        if self.early_stop_metric is None or self.early_stop_metric not in metrics:
            return False
        value = metrics[self.early_stop_metric]
        if self.early_stop_min is not None and value < self.early_stop_min:
            return False
        if self.early_stop_max is not None and value > self.early_stop_max:
            return False
        return self.early_stop_min is not None or self.early_stop_max is not None


def train(
    model: Any,
    task: Task,
    settings: TrainSettings,
    *,
    seed: int,
    tracker: Tracker = NULL_TRACKER,
    workdir: Path | None = None,
) -> dict[str, float]:
    """Train ``model`` in place on ``task``; returns the last eval metrics (also logged as ``eval/...``).

    With ``workdir``, a checkpoint is written every ``checkpoint_every`` steps and a
    later call with the same arguments resumes from the newest one: same data order,
    same optimizer state, same learning-rate schedule.
    """
    import torch

    generator = torch.Generator().manual_seed(seed + 1)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay, betas=tuple(settings.betas)
    )
    warmup = max(settings.warmup_steps, 0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
    )
    start = 0
    if workdir is not None and (found := checkpoints.latest(workdir)) is not None:
        checkpoints.restore(found, model, optimizer, generator)
        start = found.step
        # The optimizer's state brought back each group's current lr; the schedule goes on from `start`.
        scheduler.last_epoch = start

    metrics: dict[str, float] = {}
    done = start
    model.train()
    steps = progress(range(start, settings.steps), desc="train", total=settings.steps, initial=start, unit="step")
    for step in steps:
        tokens = task.train_batch(generator, settings.batch_size).to(model.cfg.device)
        loss = task.loss(task.logits(model, tokens), tokens)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"non-finite training loss ({loss.item()}) at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        done = step + 1
        if done % settings.log_every == 0 or done == settings.steps:
            tracker.log_metrics({"train/loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, step=done)
            steps.set_postfix(loss=f"{loss.item():.4f}")
        finished = done == settings.steps
        if done % settings.eval_every == 0 or finished:
            model.eval()
            metrics = task.evaluate(model)
            model.train()
            tracker.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=done)
            if settings.target_met(metrics):
                tracker.log_metrics({"stopped_early_at": done})
                finished = True
        if workdir is not None and (done % settings.checkpoint_every == 0) and not finished:
            checkpoints.save(workdir, done, model, optimizer, generator, {"loss": loss.item()})
        if finished:
            break
    model.eval()
    if not metrics:  # resumed at the very end, or zero steps
        metrics = task.evaluate(model)
        tracker.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=start)
    tracker.log_metrics({"steps_trained": done})
    return metrics
