"""Drive SAELens's SAETrainer, reporting to our Tracker instead of W&B.

SAETrainer.fit() runs the loop; through interp_pipeline.sae.sae_lens_adapter (the
one module that touches SAELens's private members) it calls our ``after_step``
once after every step (the step counter already advanced), asks our
``is_logging_step`` before each step whether to compute its logging-only metrics,
and shows our progress bar. The loop itself, the activation normalisation and its
folding into the weights stay SAELens's. (``step`` is overridden too, only to drop
what a step returns beyond its loss when nothing will log it.) The same trainer
serves each SAE of a one-pass run (interp_pipeline.sae.multi).

With a ``workdir``, a checkpoint (interp_pipeline.sae.checkpoints) is written
every ``checkpoint_every`` steps, right after the step's loss was checked, and a
later call with the same arguments resumes from the newest one: the same step
count, optimizer state, learning-rate and coefficient schedules, firing
statistics, activation scaler, data position (batches drawn from the provider)
and torch RNG state, so the resumed run ends with the weights an uninterrupted
one would have.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.progress import progress
from interp_pipeline.common.distributed import SINGLE, Ranks
from interp_pipeline.sae import checkpoints
from interp_pipeline.sae import ranks as spread
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    import torch

# SAELens's names for its step metrics, as its W&B runs show them; kept so the two compare.
BAR_METRICS = ("metrics/l0", "losses/overall_loss")


class NonFiniteLoss(FloatingPointError):
    """The SAE's training loss became NaN or infinite."""


@functools.cache
def tracked_trainer_class() -> type:
    """SAETrainer's subclass, built on first use so importing this module does not import SAELens."""
    from interp_pipeline.sae.sae_lens_adapter import adapted_trainer_class

    return type("TrackedSAETrainer", (TrackedSteps, CheckpointedState, adapted_trainer_class()), {})


class TrackedSteps:
    """SAETrainer's steps reported to a Tracker, stopped on a non-finite loss, and checkpointed."""

    def __init__(self, cfg: Any, sae: Any, data_provider: Any, *, tracker: Tracker = NULL_TRACKER,
                 log_every: int = 50, desc: str = "training SAE", workdir: Path | None = None,
                 checkpoint_every: int = 0, identity: Mapping[str, Any] | None = None, name: str = "",
                 **kwargs: Any):
        super().__init__(cfg, sae, data_provider, **kwargs)
        self.name = name  # which of several SAEs trained together, for messages
        self.tracker = tracker
        self.log_every = log_every
        self.desc = desc
        self.last_metrics: dict[str, float] = {}
        self.last_logged_step = -1
        self.workdir = workdir
        self.checkpoint_every = checkpoint_every if workdir is not None else 0
        self.identity = dict(identity or {})
        self.resumed_from_step = 0
        self.data_parallel: Any = None  # with ranks: interp_pipeline.sae.ranks.DataParallel

    def step(self, batch: Any) -> Any:
        # Between logging steps only the loss is read afterwards. Dropping the rest now (latents,
        # reconstructions: batch x d_sae floats) matters when several SAEs train in lockstep:
        # MultiSAETrainer keeps every SAE's output until the last one has stepped.
        if self.data_parallel is not None:
            self.data_parallel.before_step(self)
        output = super().step(batch)
        if self.data_parallel is not None:  # the global batch's statistics, sample count and loss
            output = self.data_parallel.after_step(self, output, batch.shape[0])
        return output if self.is_logging_step() else LossOnly(output.loss.detach())

    def is_logging_step(self) -> bool:
        step = self.n_training_steps + 1  # asked before the step runs
        return step % self.log_every == 0 or step == self.cfg.total_training_steps

    def after_step(self, step_output: Any, bar: Any) -> None:
        loss = self.log_step(step_output)
        bar.update(self.cfg.train_batch_size_samples)
        if self.last_logged_step == self.n_training_steps:
            bar.set_postfix(l0=f"{self.last_metrics['metrics/l0']:.1f}", loss=f"{loss:.4g}", refresh=False)
        step = self.n_training_steps
        if (self.checkpoint_every and step % self.checkpoint_every == 0 and step < self.cfg.total_training_steps
                and spread.writes_checkpoints()):
            # The last step needs none: its result goes to the stage cache. Rank 0 alone writes them.
            checkpoints.save(self.workdir, step, loss, self.sae.state_dict(), self.state_for_checkpoint(),
                             self.identity)

    def log_step(self, step_output: Any) -> float:
        """After a step (the counter already advanced): stop on a non-finite loss, log every log_every steps."""
        loss = float(step_output.loss.detach())
        if not math.isfinite(loss):
            raise NonFiniteLoss(
                f"SAE training{f' of {self.name}' if self.name else ''} stopped at step {self.n_training_steps}: "
                f"the loss is {loss}; lower sae.lr, or rescale the activations "
                "(sae.normalize_activations=expected_average_only_in)")
        step = self.n_training_steps
        if step % self.log_every == 0 or step == self.cfg.total_training_steps:
            metrics = self.build_train_step_log_dict(output=step_output, n_training_samples=self.n_training_samples)
            numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
            if self.data_parallel is not None:  # each rank's are of its share of the batch
                numeric = self.data_parallel.mean_metrics(numeric)
            self.tracker.log_metrics(numeric, step=step)
            self.last_metrics = numeric
            self.last_logged_step = step
        return loss

    def maybe_reset_sparsity(self) -> dict[str, Any]:
        # Every feature_sampling_window steps: SAELens's feature-density summary (its histogram is W&B-only).
        log = super().maybe_reset_sparsity()
        scalars = {k: float(v) for k, v in log.items() if isinstance(v, (int, float))}
        if scalars:
            self.tracker.log_metrics(scalars, step=self.n_training_steps)
        return log

    def training_bar(self, total: int) -> Any:
        # Ours instead of fit()'s tqdm: tokens/s, L0, a resumed run's start, quiet in log files.
        return progress(range(0), desc=self.desc, total=total, unit="tok", unit_scale=True,
                        initial=self.n_training_samples)


class CheckpointedState:
    """What a checkpoint of one SAE's training holds, and bringing it back."""

    def state_for_checkpoint(self) -> dict[str, Any]:
        """SAETrainer.save_trainer_state's contents, plus the scaler, data position and RNG, as one dict."""
        return {**self.own_state(), "data_position": self.data_provider.position, **rng_state()}

    def own_state(self) -> dict[str, Any]:
        """What this SAE's training needs to go on, without the data position and RNG it may share."""
        return {
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "coefficient_schedulers": {name: s.state_dict() for name, s in self.coefficient_schedulers.items()},
            "n_training_samples": self.n_training_samples,
            "n_training_steps": self.n_training_steps,
            "act_freq_scores": self.act_freq_scores,
            "n_forward_passes_since_fired": self.n_forward_passes_since_fired,
            "n_frac_active_samples": self.n_frac_active_samples,
            "started_fine_tuning": self.started_fine_tuning,
            "scaling_factor": self.activation_scaler.scaling_factor,
        }

    def restore(self, found: Any, batches_from: Callable[[int], Iterator[Any]]) -> None:
        """Bring back checkpoint ``found``: weights, state, RNG, and the provider at its data position."""
        weights, state = checkpoints.load(found, self.cfg.device)
        self.restore_state(weights, state)
        restore_rng(state)
        self.data_provider = CountingBatches(batches_from(int(state["data_position"])), int(state["data_position"]))

    def restore_state(self, weights: Mapping[str, Any], state: Mapping[str, Any]) -> None:
        """This SAE's own part of a checkpoint: weights, optimizer, schedules, firing statistics, scaler."""
        self.sae.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        for name, scheduler_state in state["coefficient_schedulers"].items():
            self.coefficient_schedulers[name].load_state_dict(scheduler_state)
        for name in ("n_training_samples", "n_training_steps", "act_freq_scores", "n_forward_passes_since_fired",
                     "n_frac_active_samples", "started_fine_tuning"):
            setattr(self, name, state[name])
        self.activation_scaler.scaling_factor = state["scaling_factor"]
        self.resumed_from_step = self.n_training_steps


@dataclass(frozen=True)
class LossOnly:
    """A step's output where nothing but its loss is needed (see TrackedSAETrainer.step)."""

    loss: Any


def rng_state() -> dict[str, Any]:
    import torch

    return {"rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: Mapping[str, Any]) -> None:
    import torch

    torch.set_rng_state(state["rng_cpu"].cpu())
    if state["rng_cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["rng_cuda"]])


@contextlib.contextmanager
def flushed_denormals(device: str) -> Iterator[None]:
    """Denormal floats (tiny Adam moments, decaying latents) are ~10x slower on CPUs; zero
    is as good for training. Process-wide in torch, so put back afterwards (off by default)."""
    import torch

    on_cpu = torch.device(device).type == "cpu"
    if on_cpu:
        torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if on_cpu:
            torch.set_flush_denormal(False)


class CountingBatches:
    """The data provider SAETrainer draws from, counting its batches: the data position a checkpoint keeps."""

    def __init__(self, batches: Iterator[Any], position: int = 0):
        self.batches = batches
        self.position = position

    def __iter__(self) -> CountingBatches:
        return self

    def __next__(self) -> Any:
        batch = next(self.batches)
        self.position += 1
        return batch


def train(sae: Any, batches_from: Callable[[int], Iterator[Any]], trainer_cfg: Any, *,
          tracker: Tracker = NULL_TRACKER, log_every: int = 50, desc: str = "training SAE",
          workdir: Path | None = None, checkpoint_every: int = 0, identity: Mapping[str, Any] | None = None,
          ranks: Ranks = SINGLE) -> Any:
    """Train ``sae`` in place with SAELens's SAETrainer; returns the trainer (for its state).

    ``batches_from(n)`` is the data from its ``n``-th batch on. With ``workdir``, resumes from
    its newest checkpoint (ConfigError when that one was written with another ``identity``)
    and checkpoints every ``checkpoint_every`` steps. With ``ranks`` (torchrun, every rank
    calling it with its share of the batches), trains data-parallel (interp_pipeline.sae.ranks).
    """
    trainer = tracked_trainer_class()(trainer_cfg, sae, CountingBatches(batches_from(0)), tracker=tracker,
                                      log_every=log_every, desc=desc, workdir=workdir,
                                      checkpoint_every=checkpoint_every, identity=identity)
    found = spread.latest_checkpoint(workdir, ranks)
    if found is not None:
        checkpoints.check_identity(found, trainer.identity)
        trainer.restore(found, batches_from)
        tracker.log_metrics({"resumed_from_step": float(found.step)})
    with flushed_denormals(trainer_cfg.device), spread.spread_over_ranks({"": trainer}, ranks,
                                                                          resumed=found is not None):
        trainer.fit()
    return trainer


def evaluate(sae: Any, activations: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
    """Reconstruction on held-out rows: MSE (per token, summed over d_in), explained variance, L0, dead latents."""
    import torch

    if activations.shape[0] == 0:
        return {}
    device = next(sae.parameters()).device
    squared_error = total_variance = l0 = 0.0
    fired = None
    mean = activations.mean(0).to(device)
    was_training = sae.training
    sae.eval()
    with torch.no_grad():
        for start in range(0, activations.shape[0], batch_size):
            x = activations[start:start + batch_size].to(device)
            latents = sae.encode(x)
            out = sae.decode(latents)
            squared_error += float((out - x).pow(2).sum())
            total_variance += float((x - mean).pow(2).sum())
            active = latents != 0
            l0 += float(active.sum())
            fired = active.any(0) if fired is None else fired | active.any(0)
    sae.train(was_training)
    n = activations.shape[0]
    return {
        "eval/mse": squared_error / n,
        "eval/explained_variance": 1 - squared_error / total_variance if total_variance > 0 else float("nan"),
        "eval/l0": l0 / n,
        "eval/dead_latents": float((~fired).sum()),
        "eval/tokens": float(n),
    }

