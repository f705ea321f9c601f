"""Token datasets built in code."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.errors import ConfigError
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.shapes import TokensShape

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor


def _random_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> TokensShape:
    return TokensShape(params.get("n_sequences"), params.get("seq_len"))


def _check_random_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model = inputs.get("model")
    if model is None:
        return
    model.check_fits_context("seq_len", params["seq_len"])
    d_vocab = params.get("d_vocab")
    if d_vocab is not None and not 1 <= d_vocab <= model.d_vocab:
        raise ConfigError("d_vocab", f"expected 1..{model.d_vocab} (the model's d_vocab), found {d_vocab}")


@stage("random_tokens", outputs=("tokens",), version=2, shape=_random_shape, check_shapes=_check_random_shapes,
       metrics=())
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


def _task_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> TokensShape:
    from interp_pipeline.tasks.base import make_task

    # A task's sequences are as long as the context it fixes for its models.
    n_ctx = make_task(params.get("task") or {}, key="task").model_config().get("n_ctx")
    return TokensShape(params.get("n_sequences"), n_ctx)


def _check_task_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model, tokens = inputs.get("model"), _task_shape(params, inputs)
    if model is not None and tokens.seq_len is not None:
        model.check_fits_context("task", tokens.seq_len)


@stage("task_tokens", outputs=("tokens",), preflight=_check_task_params, shape=_task_shape,
       check_shapes=_check_task_shapes, metrics=())
def task_tokens(model: Any, task: dict[str, Any], n_sequences: int, seed: int) -> Int[Tensor, "batch pos"]:
    """Sequences from a synthetic task's generator (``task``: name and fields, as in model.train.task).

    The model is an input only so that the tokens follow it in the pipeline (and in
    the cache key); they come from the task and ``seed`` alone.
    """
    import torch

    from interp_pipeline.tasks.base import make_task

    return make_task(task, key="task").dataset(torch.Generator().manual_seed(seed), n_sequences)
