"""Data-parallel SAE training: SAELens's SAETrainer on every rank, DDP around the SAE's training forward.

Why DDP inside SAELens's trainer rather than a loop of our own: SAETrainer keeps the
loop, Adam, the learning-rate and coefficient schedules, gradient clipping and the
activation scaler; DDP (torch.nn.parallel.DistributedDataParallel, the engine
torchrun jobs use) all-reduces the gradients during ``loss.backward()``, so the
trainer's clipping and Adam step see the gradient of the whole global batch on
every rank, and every rank takes the same step. SAETrainer calls
``sae.training_forward_pass`` rather than ``sae(...)``, so that one method of the
SAE instance is routed through the DDP module (:func:`wrap`); the SAE object,
its state dict and the trainer are otherwise untouched.

What DDP does not cover, because SAELens keeps it in the trainer, not the module:

- the feature-firing statistics (dead latents decide the TopK auxiliary loss and
  the dead-feature count): summed over ranks after each step, so ``act_freq_scores``
  and ``n_forward_passes_since_fired`` are those of the global batch, exactly
  (they are counts);
- the loss: averaged over ranks, so the NaN check stops every rank at the same step
  and the logged loss is the global batch's;
- the activation scale (``normalize_activations=expected_average_only_in``): each
  rank estimates it on its rows of the first batches, then the mean norms are
  averaged (equal row counts: the global batches' mean norm);
- the sample count: SAETrainer adds the rows it was given (this rank's); the rest of
  the global batch is added, so steps, schedules and logs count global samples.

Each rank gets rows ``[r*b/N, (r+1)*b/N)`` of every global batch ``b`` of the data
source (:func:`rank_share`): the same batches, in the same order, as one process,
split disjointly. The loss of SAELens's architectures that split this way is a mean
over rows, and the mean of the ranks' means over equal shares is the global mean,
so N ranks take the steps of one process up to floating-point rounding (the order of
the sums differs). BatchTopK picks its top activations over the whole batch, which a
share cannot see: pre-flight refuses it with ranks (:func:`check_architecture`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.distributed import Ranks, world_size_from_env
from interp_pipeline.common.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from interp_pipeline.sae.data import TrainingData

# Whose loss is a mean over rows (and whose statistics live in the trainer): these split over ranks.
SPLITS_OVER_RANKS = ("standard", "topk", "jumprelu", "gated")


def check_ranks(params: Mapping[str, Any], world_size: int | None = None) -> None:
    """Pre-flight for a job of several ranks: the global batch divides among them, the architecture splits."""
    world = world_size_from_env() if world_size is None else world_size
    if world <= 1:
        return
    batch = int(params["train_batch_size_tokens"])
    if batch % world:
        raise ConfigError("train_batch_size_tokens", f"expected a multiple of the world size ({world} ranks), "
                                                     f"found {batch}; the global batch is split evenly over the ranks")
    architectures = [params["architecture"]] + [v.get("architecture") for v in params.get("variants") or []
                                                 if isinstance(v, Mapping) and v.get("architecture")]
    for architecture in architectures:
        if architecture not in SPLITS_OVER_RANKS:
            raise ConfigError("architecture", f"expected one whose batches split over ranks "
                                              f"({', '.join(SPLITS_OVER_RANKS)}) with {world} ranks, found "
                                              f"'{architecture}': it picks its top activations over the whole batch")


def check_rows(n_sequences: int | None, world_size: int | None = None, key: str = "inputs.store") -> None:
    """A store (or token set) must hold at least one sequence per rank."""
    world = world_size_from_env() if world_size is None else world_size
    if world > 1 and n_sequences is not None and n_sequences < world:
        raise ConfigError(key, f"expected at least one sequence per rank ({world} ranks), found {n_sequences}; "
                               "cache more sequences or start fewer ranks")


def rank_share(source: TrainingData, ranks: Ranks) -> TrainingData:
    """``source`` whose batches are this rank's rows of each global batch; held-out rows stay whole."""
    if not ranks.spread:
        return source
    inner = source.batches_from

    def batches_from(position: int) -> Iterator[torch.Tensor]:
        for batch in inner(position):  # the global batch, checked for NaN whole: every rank stops together
            share = batch.shape[0] // ranks.world_size
            yield batch[ranks.rank * share:(ranks.rank + 1) * share]

    return dataclasses.replace(source, batches_from=batches_from)


class DataParallel:
    """What one SAE's trainer needs to train on a share of each batch (see the module doc)."""

    def __init__(self, ranks: Ranks, global_batch: int):
        self.ranks = ranks
        self.global_batch = global_batch
        self.scale_agreed = False  # the activation scale: estimated per rank until averaged once
        self._before: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def wrap(self, sae: Any, device: str) -> Callable[[], None]:
        """Route ``sae.training_forward_pass`` through DDP; returns the function that undoes it."""
        import torch
        from torch.nn.parallel import DistributedDataParallel

        class TrainingForward(torch.nn.Module):
            def __init__(self, inner: Any):
                super().__init__()
                self.inner = inner

            def forward(self, step_input: Any) -> Any:
                return type(self.inner).training_forward_pass(self.inner, step_input=step_input)

        on_gpu = torch.device(device).type == "cuda"
        ddp = DistributedDataParallel(TrainingForward(sae), device_ids=[torch.cuda.current_device()] if on_gpu
                                      else None)
        # An instance attribute shadows the class's method: SAETrainer's call now goes through DDP.
        sae.__dict__["training_forward_pass"] = lambda step_input: ddp(step_input)
        return lambda: sae.__dict__.pop("training_forward_pass", None)

    def before_step(self, trainer: Any) -> None:
        if not self.scale_agreed:
            self._agree_on_scale(trainer)
        self._before = (trainer.act_freq_scores.clone(), trainer.n_forward_passes_since_fired.clone(),
                        trainer.n_frac_active_samples)

    def after_step(self, trainer: Any, output: Any, rows: int) -> Any:
        """The global batch's statistics, sample count and loss on every rank; ``output`` with that loss."""
        import torch
        import torch.distributed as dist

        assert self._before is not None
        freq, since_fired, active_samples = self._before
        fired = trainer.act_freq_scores - freq  # [d_sae]: this rank's rows that fired each latent
        summed = torch.cat([fired.float(), output.loss.detach().reshape(1).float()])
        dist.all_reduce(summed)
        fired_anywhere = summed[:-1]
        trainer.act_freq_scores = freq + fired_anywhere.to(freq.dtype)
        trainer.n_forward_passes_since_fired = torch.where(fired_anywhere > 0, torch.zeros_like(since_fired),
                                                           since_fired + 1)
        trainer.n_frac_active_samples = active_samples + self.global_batch
        trainer.n_training_samples += self.global_batch - rows
        loss = (summed[-1] / self.ranks.world_size).to(output.loss.dtype)
        return dataclasses.replace(output, loss=loss)

    def mean_metrics(self, metrics: Mapping[str, float]) -> dict[str, float]:
        """Logged metrics averaged over the ranks (each computed on its share of the batch)."""
        import torch
        import torch.distributed as dist

        names = sorted(metrics)
        values = torch.tensor([float(metrics[n]) for n in names], dtype=torch.float64)
        dist.all_reduce(values)
        return {name: float(v) / self.ranks.world_size for name, v in zip(names, values.tolist())}

    def _agree_on_scale(self, trainer: Any) -> None:
        """Average the ranks' mean activation norms (SAELens's estimate is sqrt(d_in) / mean norm)."""
        self.scale_agreed = True
        scale = trainer.activation_scaler.scaling_factor
        if scale is None:
            return
        root = math.sqrt(trainer.sae.cfg.d_in)
        norms = self.ranks.gather(root / float(scale))
        trainer.activation_scaler.scaling_factor = root / (sum(norms) / len(norms))


def latest_checkpoint(workdir: Any, ranks: Ranks) -> Any:
    """The checkpoint to resume from: rank 0's pick, the same on every rank (rank 0 alone writes them)."""
    from interp_pipeline.sae import checkpoints

    found = checkpoints.latest(workdir) if workdir is not None and ranks.is_main else None
    return ranks.broadcast(found)


def writes_checkpoints() -> bool:
    from interp_pipeline.common.distributed import current

    return current().is_main


@contextlib.contextmanager
def spread_over_ranks(trainers: Mapping[str, Any], ranks: Ranks, *, resumed: bool) -> Iterator[None]:
    """Each SAE trainer of ``trainers`` trains on this rank's share, its SAE wrapped in DDP, for the block.

    ``ranks`` is what the caller was given (SINGLE unless every rank trains together on its
    :func:`rank_share`): a stage that runs on rank 0 alone must not wait for the others."""
    if not ranks.spread:
        yield
        return
    undo = []
    for trainer in trainers.values():
        trainer.data_parallel = DataParallel(ranks, int(trainer.cfg.train_batch_size_samples))
        trainer.data_parallel.scale_agreed = resumed  # a checkpoint's scale is already the agreed one
        undo.append(trainer.data_parallel.wrap(trainer.sae, trainer.cfg.device))
    try:
        yield
    finally:
        for step in undo:
            step()
