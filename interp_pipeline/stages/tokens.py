"""Token datasets built in code."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.pipeline.registry import stage

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


@stage("random_tokens", outputs=("tokens",), version=2)
def random_tokens(
    model: Any, n_sequences: int, seq_len: int, seed: int, d_vocab: int | None = None
) -> Int[Tensor, "batch pos"]:
    """Uniform random token ids below ``d_vocab`` (default: the model's vocabulary size),
    from a generator of their own (no global RNG state touched)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    high = d_vocab if d_vocab is not None else model.cfg.d_vocab
    return torch.randint(0, high, (n_sequences, seq_len), generator=generator)


def _check_task_params(params: dict[str, Any]) -> None:
    from interp_pipeline.tasks.base import make_task

    make_task(params.get("task") or {}, key="task")


@stage("task_tokens", outputs=("tokens",), preflight=_check_task_params)
def task_tokens(model: Any, task: dict[str, Any], n_sequences: int, seed: int) -> Int[Tensor, "batch pos"]:
    """Sequences from a synthetic task's generator (``task``: name and fields, as in model.train.task).

    The model is an input only so that the tokens follow it in the pipeline (and in
    the cache key); they come from the task and ``seed`` alone.
    """
    import torch

    from interp_pipeline.tasks.base import make_task

    return make_task(task, key="task").dataset(torch.Generator().manual_seed(seed), n_sequences)
