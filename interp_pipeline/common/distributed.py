"""Ranks of a data-parallel job: torch.distributed, started by ``torchrun`` (or SLURM, one task a rank).

``torchrun --nproc-per-node N -m interp_pipeline ...`` starts N copies of the same
command with ``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` in their environment; ``srun``
(or Hydra's submitit launcher with several tasks per node) starts them with
``SLURM_PROCID``/``SLURM_NTASKS``, which :func:`join` turns into the same variables
(submitit's TorchDistributedEnvironment when installed). Every rank composes and
checks the config itself; :func:`join` then compares the composed configs, so ranks
started with different overrides stop before any work naming the first key that
differs. The backend is NCCL on GPUs, gloo on CPUs.

Only the plumbing is here: which rank this is, a few collectives on Python objects,
and the group's lifetime. What each stage does with ranks is in the stage's domain
package (interp_pipeline.sae.ranks, activations.caching) and the runner
(interp_pipeline.runner.ranked).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interp_pipeline.common.errors import ConfigError

log = logging.getLogger("interp_pipeline")

# How long a rank waits in a collective: the other ranks may be training the model, or caching,
# while it waits for their result (rank 0 computes the stages that are not spread over ranks).
TIMEOUT_ENV = "INTERP_PIPELINE_DIST_TIMEOUT_S"
_DEFAULT_TIMEOUT_S = 4 * 3600


@dataclass(frozen=True)
class Ranks:
    """This process's place in the job: ``rank`` of ``world_size`` (0 of 1 when not started by torchrun)."""

    rank: int = 0
    world_size: int = 1

    @property
    def spread(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def broadcast(self, value: Any = None) -> Any:
        """Rank 0's ``value`` on every rank (every rank must call it; the others' ``value`` is ignored)."""
        if not self.spread:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order, on every rank."""
        if not self.spread:
            return [value]
        import torch.distributed as dist

        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any."""
        return any(self.gather(bool(flag))) if self.spread else bool(flag)

    def barrier(self) -> None:
        if self.spread:
            import torch.distributed as dist

            dist.barrier()


SINGLE = Ranks()


def current() -> Ranks:
    """The ranks of the initialised process group, or :data:`SINGLE` (a plain run, a notebook, a test)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch without distributed support
        return SINGLE
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return SINGLE


def _env_from_slurm(env: dict[str, str]) -> None:
    """SLURM's task variables as torchrun's, for a job started by ``srun`` or submitit (one task a rank)."""
    if "RANK" in env or int(env.get("SLURM_NTASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return
    try:
        from submitit.helpers import TorchDistributedEnvironment

        TorchDistributedEnvironment().export(overwrite=False)  # MASTER_ADDR from SLURM's node list
        return
    except (ImportError, RuntimeError):
        pass
    env.setdefault("RANK", env["SLURM_PROCID"])
    env.setdefault("WORLD_SIZE", env["SLURM_NTASKS"])
    env.setdefault("LOCAL_RANK", env.get("SLURM_LOCALID", "0"))
    env.setdefault("MASTER_ADDR", env.get("SLURM_LAUNCH_NODE_IPADDR", "127.0.0.1"))
    env.setdefault("MASTER_PORT", str(29500 + int(env.get("SLURM_JOB_ID", "0")) % 1000))


def world_size_from_env() -> int:
    """The job's world size as its launcher set it (1 when not launched with ranks); for pre-flight."""
    initialised = current()
    if initialised.spread:
        return initialised.world_size
    if "WORLD_SIZE" in os.environ:
        return int(os.environ["WORLD_SIZE"])
    if "SLURM_PROCID" in os.environ and "RANK" not in os.environ:
        return int(os.environ.get("SLURM_NTASKS", "1"))
    return 1


def join(config: Mapping[str, Any]) -> Ranks:
    """Join the job's process group (once) and check every rank composed the same ``config``.

    ``config`` is the composed config as a flat mapping (``{"sae.lr": 0.001, ...}``), unresolved,
    so paths with ``${now:...}`` compare equal. Ranks whose configs differ raise ConfigError naming
    the first key that differs, on every rank. Returns :data:`SINGLE` outside a ranked job.
    """
    _env_from_slurm(os.environ)  # type: ignore[arg-type]
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available()
        if use_cuda:  # "cuda" then means this rank's GPU (LOCAL_RANK), for the model and the SAE alike
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, _DEFAULT_TIMEOUT_S)))
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timeout)
    ranks = current()
    _check_same_config(ranks, config)
    log.info("rank %d of %d (%s)", ranks.rank, ranks.world_size, dist.get_backend())
    return ranks


def config_digest(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _check_same_config(ranks: Ranks, config: Mapping[str, Any]) -> None:
    """Compare a hash of each rank's config; where they differ, name the first key that does."""
    digests = ranks.gather(config_digest(config))
    if len(set(digests)) == 1:
        return
    flats = ranks.gather(dict(config))
    for other, flat in enumerate(flats):
        differ = sorted(key for key in set(flats[0]) | set(flat) if flats[0].get(key, "<unset>") != flat.get(key, "<unset>"))
        if differ:
            key = differ[0]
            raise ConfigError(key, f"expected the same composed config on every rank (hash {digests[0]} on rank 0), "
                                   f"found {flat.get(key, '<unset>')!r} on rank {other} and "
                                   f"{flats[0].get(key, '<unset>')!r} on rank 0",
                              suggestion="start every rank with the same command and overrides", absolute=True)


def leave() -> None:
    """Destroy the process group, if this process joined one (at the end of a run)."""
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover
        return
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
