"""The training loop for toy models: seeded, resumable, logged with steps, stopping early on a target.

AdamW with a linear warm-up, one batch (or the whole training set, for full-batch
tasks) per step. Deterministic on CPU: the model's init comes from its config's
seed and the data from a generator of its own seeded from the same number.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.common.progress import progress
from interp_pipeline.tasks.base import Task
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker
from interp_pipeline.training import checkpoints
from interp_pipeline.training.config import TrainConfig


def target_met(settings: TrainConfig, metrics: Mapping[str, float]) -> bool:
    """Whether the eval metrics reach the early-stop target (``early_stop_min`` / ``early_stop_max``), if any."""
    if settings.early_stop_metric is None or settings.early_stop_metric not in metrics:
        return False
    value = metrics[settings.early_stop_metric]
    if settings.early_stop_min is not None and value < settings.early_stop_min:
        return False
    if settings.early_stop_max is not None and value > settings.early_stop_max:
        return False
    return settings.early_stop_min is not None or settings.early_stop_max is not None


def train(
    model: Any,
    task: Task,
    settings: TrainConfig,
    *,
    seed: int,
    tracker: Tracker = NULL_TRACKER,
    workdir: Path | None = None,
) -> dict[str, float]:
    """Train ``model`` in place on ``task`` (``settings.task`` is read by whoever made it); returns the last eval metrics (also logged as ``eval/...``).

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
        tokens = task.train_batch(generator, settings.batch_size_prompts).to(model.cfg.device)
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
            if target_met(settings, metrics):
                tracker.log_metrics({"stopped_early_at": done})
                finished = True
        if workdir is not None and settings.checkpoint_every and done % settings.checkpoint_every == 0 and not finished:
            checkpoints.save(workdir, done, model, optimizer, generator, {"loss": loss.item()})
        if finished:
            break
    model.eval()
    if not metrics:  # resumed at the very end, or zero steps
        metrics = task.evaluate(model)
        tracker.log_metrics({f"eval/{k}": v for k, v in metrics.items()}, step=start)
    tracker.log_metrics({"steps_trained": done})
    return metrics
