"""Token datasets built in code for a model: random tokens, a task's sequences, induction
probes and prompts listed in YAML.

Every stage takes the model first (for its tokenizer, ``cfg.d_vocab`` and
``cfg.n_ctx``) and returns ``tokens``: an int64 CPU tensor of shape [batch, pos].
The draws are interp_pipeline.models.random_tokens, the prompts
interp_pipeline.text.token_datasets, a task's sequences interp_pipeline.tasks.base.
Text files and Hugging Face datasets are in text_datasets.py; prompt pairs for patching in
prompt_pairs.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.common.errors import ConfigError
from interp_pipeline.models.config import RandomTokensConfig, RepeatedTokensConfig
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.pipeline.shapes import TokensShape
from interp_pipeline.tasks.base import check_task_settings
from interp_pipeline.tasks.config import TaskTokensConfig
from interp_pipeline.text.config import PromptTokensConfig
from interp_pipeline.text.token_datasets import check_prompt_lengths, check_prompts, prompt_lengths
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


def _repeated_shape(settings: RepeatedTokensConfig, inputs: Mapping[str, Any]) -> TokensShape:
    from interp_pipeline.models.random_tokens import repeated_length

    return TokensShape(settings.n_sequences, repeated_length(settings))


def _check_repeated_shapes(settings: RepeatedTokensConfig, inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        inputs["model"].check_fits_context("half_len", _repeated_shape(settings, inputs).seq_len)


@stage("repeated_tokens", outputs=("tokens",), config=RepeatedTokensConfig, shape=_repeated_shape,
       check_shapes=_check_repeated_shapes, metrics=("n_sequences", "seq_len"))
def repeated_tokens(model: HookedTransformer, settings: RepeatedTokensConfig,
                    tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """The induction probe: [BOS] + r + r, r uniform over the vocabulary, length 2 * half_len (+1).

    r excludes the tokenizer's special tokens (without a tokenizer: excludes BOS = 0),
    and comes from a generator seeded with ``seed``, never the global RNG.
    """
    from interp_pipeline.models.random_tokens import repeated_tokens as draw

    return draw(model, settings, tracker)


def _prompt_shape(settings: PromptTokensConfig, inputs: Mapping[str, Any]) -> TokensShape:
    lengths = prompt_lengths(settings, inputs.get("model"))
    return TokensShape(len(settings.prompts), max(lengths) if lengths else None)


def _check_prompt_shapes(settings: PromptTokensConfig, inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        check_prompt_lengths(settings, inputs["model"])


@stage("prompt_tokens", outputs=("tokens",), config=PromptTokensConfig, preflight=check_prompts,
       shape=_prompt_shape, check_shapes=_check_prompt_shapes, metrics=("n_sequences", "seq_len", "pad_fraction"))
def prompt_tokens(model: HookedTransformer, settings: PromptTokensConfig,
                  tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """Prompts tokenized as ``model.to_tokens`` does, right-padded with the pad token (EOS when none)."""
    from interp_pipeline.text.token_datasets import prompt_tokens as tokenize

    return tokenize(model, settings, tracker)


def _random_shape(settings: RandomTokensConfig, inputs: Mapping[str, Any]) -> TokensShape:
    return TokensShape(settings.n_sequences, settings.seq_len)


def _check_random_shapes(settings: RandomTokensConfig, inputs: Mapping[str, Any]) -> None:
    model = inputs.get("model")
    if model is None:
        return
    model.check_fits_context("seq_len", settings.seq_len)
    if settings.d_vocab is not None and settings.d_vocab > model.d_vocab:
        raise ConfigError("d_vocab", f"expected 1..{model.d_vocab} (the model's d_vocab), found {settings.d_vocab}")


@stage("random_tokens", outputs=("tokens",), config=RandomTokensConfig, version=2, shape=_random_shape,
       check_shapes=_check_random_shapes, metrics=())
def random_tokens(model: Any, settings: RandomTokensConfig) -> Int[Tensor, "batch pos"]:
    """Uniform random token ids below ``d_vocab`` (default: the model's vocabulary size),
    from a generator of their own (no global RNG state touched)."""
    from interp_pipeline.models.random_tokens import random_tokens as draw

    return draw(model, settings)


def _task_shape(settings: TaskTokensConfig, inputs: Mapping[str, Any]) -> TokensShape:
    from interp_pipeline.tasks.base import task_context

    return TokensShape(settings.n_sequences, task_context(settings))


def _check_task_shapes(settings: TaskTokensConfig, inputs: Mapping[str, Any]) -> None:
    model, tokens = inputs.get("model"), _task_shape(settings, inputs)
    if model is not None and tokens.seq_len is not None:
        model.check_fits_context("task", tokens.seq_len)


@stage("task_tokens", outputs=("tokens",), config=TaskTokensConfig, preflight=check_task_settings, shape=_task_shape,
       check_shapes=_check_task_shapes, metrics=())
def task_tokens(model: Any, settings: TaskTokensConfig) -> Int[Tensor, "batch pos"]:
    """Sequences from a synthetic task's generator (``task``: name and fields, as in model.train.task).

    The model is an input only so that the tokens follow it in the pipeline (and in
    the cache key); they come from the task and ``seed`` alone.
    """
    from interp_pipeline.tasks.base import task_sequences

    return task_sequences(settings)
