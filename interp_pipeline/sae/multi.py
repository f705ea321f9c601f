"""Several SAEs trained in one pass over the data: SAELens's MultiSAETrainer, one tracker per SAE.

MultiSAETrainer reads each batch once and hands it to one SAETrainer per SAE (their
public ``step`` seam), in lockstep; like SAETrainer, it reaches us after each step and
shows our bar through interp_pipeline.sae.sae_lens_adapter. Ours replaces those per-SAE trainers with
TrackedSAETrainers built from each SAE's own trainer config, so the learning rate
and its schedule may differ between SAEs (MultiSAETrainer would give all of them
one config), and each SAE's step metrics go to its own tracker: its own MLflow run.

A checkpoint holds every SAE: each one's weights under ``<name>/`` and its
optimizer, schedules and firing statistics, plus the shared data position and RNG.
Each SAE sees exactly the batches a separate run of it would (same data seed, same
position): the one pass only saves reading them again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from interp_pipeline.common.progress import progress
from interp_pipeline.common.distributed import SINGLE, Ranks
from interp_pipeline.sae import checkpoints
from interp_pipeline.sae import ranks as spread
from interp_pipeline.sae.trainer import (CountingBatches, flushed_denormals, restore_rng, rng_state,
                                         tracked_trainer_class)
from interp_pipeline.tracking.base import Tracker

# The key of the one hook in each of MultiSAETrainer's multi-hook batches.
_HOOK = "activations"


def _as_multi_hook(batches: Iterator[Any]) -> Iterator[dict[str, Any]]:
    """One tensor per batch becomes ``{_HOOK: tensor}``; batches already keyed by hook pass unchanged."""
    return (batch if isinstance(batch, Mapping) else {_HOOK: batch} for batch in batches)


def tracked_multi_trainer_class() -> type:
    """MultiSAETrainer's subclass, built on first use so importing this module does not import SAELens."""
    from interp_pipeline.sae.sae_lens_adapter import adapted_multi_trainer_class

    tracked = tracked_trainer_class()

    class TrackedMultiSAETrainer(adapted_multi_trainer_class()):
        def __init__(self, configs: Mapping[str, Any], saes: Mapping[str, Any], data_provider: CountingBatches, *,
                     trackers: Mapping[str, Tracker], log_every: int, desc: str, workdir: Path | None,
                     checkpoint_every: int, identity: Mapping[str, Any], hooks: Mapping[str, str] | None = None):
            first = next(iter(configs.values()))
            super().__init__(first, dict(saes), dict(hooks) if hooks else {name: _HOOK for name in saes},
                             data_provider)
            # MultiSAETrainer made a plain SAETrainer per SAE, all with the first config; ours take each its own.
            self.trainers = {name: tracked(configs[name], sae, iter(()), tracker=trackers[name], log_every=log_every,
                                           name=name) for name, sae in saes.items()}
            self.desc = desc
            self.workdir = workdir
            self.checkpoint_every = checkpoint_every if workdir is not None else 0
            self.identity = dict(identity)
            self.resumed_from_step = 0

        def after_step(self, step_outputs: Mapping[str, Any], bar: Any) -> None:
            losses = {name: self.trainers[name].log_step(output) for name, output in step_outputs.items()}
            bar.update(self.cfg.train_batch_size_samples)
            step = self.n_training_steps
            trainers = self.trainers.values()
            if all(t.last_logged_step == step for t in trainers):
                bar.set_postfix(l0="/".join(f"{t.last_metrics['metrics/l0']:.1f}" for t in trainers), refresh=False)
            if (self.checkpoint_every and step % self.checkpoint_every == 0 and step < self.cfg.total_training_steps
                    and spread.writes_checkpoints()):
                weights = {f"{name}/{key}": value for name, trainer in self.trainers.items()
                           for key, value in trainer.sae.state_dict().items()}
                state = {"saes": {name: trainer.own_state() for name, trainer in self.trainers.items()},
                         "data_position": self.data_provider.position, **rng_state()}
                checkpoints.save(self.workdir, step, sum(losses.values()), weights, state, self.identity)

        def restore(self, found: Any, batches_from: Callable[[int], Iterator[Any]]) -> None:
            """Bring back checkpoint ``found``: every SAE's weights and state, the RNG and the data position."""
            weights, state = checkpoints.load(found, self.cfg.device)
            for name, trainer in self.trainers.items():
                prefix = f"{name}/"
                trainer.restore_state({k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)},
                                      state["saes"][name])
            restore_rng(state)
            position = int(state["data_position"])
            self.data_provider = CountingBatches(_as_multi_hook(batches_from(position)), position)
            any_trainer = next(iter(self.trainers.values()))
            self.n_training_steps = any_trainer.n_training_steps
            self.n_training_samples = any_trainer.n_training_samples
            self.resumed_from_step = self.n_training_steps

        def training_bar(self, total: int) -> Any:
            # Ours instead of fit()'s tqdm, which has no resumed start and no rate.
            return progress(range(0), desc=self.desc, total=total, unit="tok", unit_scale=True,
                            initial=self.n_training_samples)

    return TrackedMultiSAETrainer


def train_many(saes: Mapping[str, Any], batches_from: Callable[[int], Iterator[Any]], configs: Mapping[str, Any], *,
               trackers: Mapping[str, Tracker], log_every: int = 50, desc: str = "training SAEs",
               workdir: Path | None = None, checkpoint_every: int = 0,
               identity: Mapping[str, Any] | None = None, hooks: Mapping[str, str] | None = None,
               ranks: Ranks = SINGLE) -> Any:
    """Train every SAE of ``saes`` in place, in one pass over ``batches_from(0)``; returns the trainer.

    With ``hooks`` ({name: key}), each batch is a mapping and SAE ``name`` trains on its
    ``key`` entry (the transcoders of several layers, interp_pipeline.transcoders);
    without, every SAE gets the whole batch.

    ``configs[name]`` is that SAE's SAETrainerConfig (the same batch size and token budget
    for all); ``trackers[name]`` gets its step metrics. Resumes and checkpoints as
    interp_pipeline.sae.trainer.train does.
    """
    trainer = tracked_multi_trainer_class()(
        configs, saes, CountingBatches(_as_multi_hook(batches_from(0))), trackers=trackers, log_every=log_every,
        desc=desc, workdir=workdir, checkpoint_every=checkpoint_every, identity=identity or {}, hooks=hooks)
    found = spread.latest_checkpoint(workdir, ranks)
    if found is not None:
        checkpoints.check_identity(found, trainer.identity)
        trainer.restore(found, batches_from)
        for tracker in trackers.values():
            tracker.log_metrics({"resumed_from_step": float(found.step)})
    with (flushed_denormals(next(iter(configs.values())).device),
          spread.spread_over_ranks(trainer.trainers, ranks, resumed=found is not None)):
        trainer.fit()
    return trainer
