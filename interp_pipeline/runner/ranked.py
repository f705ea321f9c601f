"""The runner in a job of several ranks (torchrun): rank 0 stores and logs, every rank trains.

Every rank runs the same pipeline. A stage declared ``ranks=True`` (SAE training,
caching activations) runs on every rank at once, its function talking to the other
ranks through torch.distributed; rank 0 alone writes its cache entry and its MLflow
run, and decides, under the key's lock, whether it must be computed at all (another
job may have stored it meanwhile), telling the others. A stage that is not spread
over ranks is rank 0's: the other ranks wait for it when a ranked stage needs its
output (then read it from the stage cache, or recompute it when it is never stored,
like a model loaded from its source) and skip it otherwise. So everything after the
last ranked stage (evaluation, figures, ``expect:``) is rank 0's alone.

Rank 0's plan (which stages to compute) is the job's, so the ranks cannot disagree
about what runs even when the cache changes while they start.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from interp_pipeline.common.distributed import Ranks
from interp_pipeline.common.errors import StageFailed
from interp_pipeline.pipeline.spec import StageSpec
from interp_pipeline.runner.runner import COMPUTED, SKIPPED, PipelineRunner, StageOutcome, flatten
from interp_pipeline.tracking.base import NullRun, RecordingTracker


class RankedRunner(PipelineRunner):
    """PipelineRunner for one rank of a data-parallel job (see the module doc)."""

    def __init__(self, *args: Any, ranks: Ranks, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.ranks = ranks
        self.to_compute = set(ranks.broadcast(sorted(self.to_compute)))
        ranked = [s for s in self.spec.stages if s.name in self.to_compute and s.definition.ranks]
        # The stages whose outputs a ranked stage reads, directly or further up.
        needed: set[str] = set()
        frontier = [ref.stage for s in ranked for ref in s.inputs.values()]
        while frontier:
            name = frontier.pop()
            if name not in needed:
                needed.add(name)
                frontier.extend(ref.stage for ref in self.spec.stage(name).inputs.values())
        self.ranked = {s.name for s in ranked}
        self.needed = needed - self.ranked

    def _compute_once(self, index: int, stage: StageSpec,
                      on_start: Callable[[int, StageSpec], None] | None) -> StageOutcome:
        if stage.name in self.ranked:
            return self._compute_ranked(index, stage, on_start)
        if self.ranks.is_main:
            outcome = super()._compute_once(index, stage, on_start)
            if stage.name in self.needed:
                self.ranks.broadcast(True)  # the other ranks may read it now
            return outcome
        if stage.name not in self.needed:
            return StageOutcome(stage.name, SKIPPED, self.keys[stage.name])
        self.ranks.broadcast()  # wait for rank 0 to have it
        if stage.cacheable:
            self.entries[stage.name] = self.cache.lookup(stage.definition.name, self.keys[stage.name])
            if self.entries[stage.name] is None:
                raise StageFailed(stage.name, RuntimeError(
                    f"rank 0 computed stage '{stage.name}' but its cache entry is not visible from rank "
                    f"{self.ranks.rank}; put runner.cache_dir on a filesystem every rank sees"))
            return StageOutcome(stage.name, "cached", self.keys[stage.name])
        return self._compute_here(stage)

    def _compute_ranked(self, index: int, stage: StageSpec,
                        on_start: Callable[[int, StageSpec], None] | None) -> StageOutcome:
        if self.ranks.is_main:  # decides under the key's lock; _decided tells the others
            return super()._compute_once(index, stage, on_start)
        if self.ranks.broadcast():
            return self._compute_here(stage)
        self.entries[stage.name] = self.cache.lookup(stage.definition.name, self.keys[stage.name])
        return self._record_uncomputed(stage)

    def _decided(self, stage: StageSpec, compute: bool) -> None:
        if stage.name in self.ranked:
            self.ranks.broadcast(compute)

    def _compute_here(self, stage: StageSpec) -> StageOutcome:
        """A rank other than 0 runs the stage for its own use: nothing stored, nothing logged."""
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix=f"interp-rank{self.ranks.rank}-{stage.name}-") as scratch:
            try:
                outputs = self._call(stage, RecordingTracker(NullRun(), Path(scratch)))
            except Exception as error:
                raise StageFailed(stage.name, error) from error
        for name, value in outputs.items():
            self._values[(stage.name, name)] = value
        return StageOutcome(stage.name, COMPUTED, self.keys[stage.name], time.perf_counter() - started)


def run_other_rank(runner: RankedRunner, params_key: Callable[[str], str]) -> int:
    """A rank other than 0 runs its share of the pipeline; its exit status (0, 1, or 2 for a ConfigError).

    ``params_key(stage)`` is the stage's params key, to name a ConfigError's key as the user wrote it.
    """
    import logging

    from interp_pipeline.common.errors import ConfigError
    from interp_pipeline.common.exit_status import EXIT_CONFIG, EXIT_FAILED, EXIT_OK

    log = logging.getLogger("interp_pipeline")
    try:
        runner.run()
    except StageFailed as failure:
        cause = failure.__cause__
        if isinstance(cause, ConfigError):
            log.error("error: %s", cause.under(params_key(failure.stage)))
            return EXIT_CONFIG
        log.error("error: rank %d: %s", runner.ranks.rank, failure)
        return EXIT_FAILED
    return EXIT_OK


def join_ranks(cfg: Any) -> Ranks:
    """This job's ranks (interp_pipeline.common.distributed.join on the composed, unresolved config).

    A rank other than 0 logs warnings and errors only, and draws no progress bars: rank 0 speaks for the job.
    """
    import atexit
    import logging
    import os

    from omegaconf import OmegaConf

    from interp_pipeline.common.distributed import join, leave

    ranks = join(flatten("", OmegaConf.to_container(cfg, resolve=False)))
    if ranks.spread:
        atexit.register(leave)
        if not ranks.is_main:
            logging.getLogger("interp_pipeline").setLevel(logging.WARNING)
            os.environ["TQDM_DISABLE"] = "1"
    return ranks
