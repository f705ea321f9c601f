"""Token datasets built in code for a model: random tokens, a task's sequences, induction
probes and prompts listed in YAML.

Every stage takes the model first (for its tokenizer, ``cfg.d_vocab`` and
``cfg.n_ctx``) and returns ``tokens``: an int64 CPU tensor of shape [batch, pos].
Text files and Hugging Face datasets are in text_datasets.py; prompt pairs for patching in
prompt_pairs.py.

BOS: the tokenizer's ``bos_token_id`` (TransformerLens sets it to EOS when a
tokenizer has none). A model built from a config has no tokenizer; there BOS is
token 0, and only :func:`repeated_tokens` works, drawing its tokens from 1..d_vocab-1
so that BOS never appears after position 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from interp_pipeline.config.ranges import require_int
from interp_pipeline.errors import ConfigError
from interp_pipeline.models.tokens import as_tokens, bos_id, check_fits_context, plain_token_ids, require_tokenizer
from interp_pipeline.pipeline.registry import stage
from interp_pipeline.shapes import TokensShape
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer



# ---------------------------------------------------------------- repeated tokens


def _check_repeated_params(params: dict[str, Any]) -> None:
    for key in ("n_sequences", "half_len"):
        require_int(params, key)
    require_int(params, "seed", minimum=0)


def _repeated_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> TokensShape:
    return TokensShape(params["n_sequences"], int(params.get("prepend_bos", True)) + 2 * params["half_len"])


def _check_repeated_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    if inputs.get("model") is not None:
        inputs["model"].check_fits_context("half_len", _repeated_shape(params, inputs).seq_len)


@stage("repeated_tokens", outputs=("tokens",), preflight=_check_repeated_params, shape=_repeated_shape,
       check_shapes=_check_repeated_shapes, metrics=("n_sequences", "seq_len"))
def repeated_tokens(
    model: HookedTransformer,
    n_sequences: int,
    half_len: int,
    seed: int,
    prepend_bos: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """The induction probe: [BOS] + r + r, r uniform over the vocabulary, length 2 * half_len (+1).

    r excludes the tokenizer's special tokens (without a tokenizer: excludes BOS = 0),
    and comes from a generator seeded with ``seed``, never the global RNG. The draws
    do not depend on ``prepend_bos``: without it the rows are the same, minus BOS.
    """
    import torch

    _check_repeated_params({"n_sequences": n_sequences, "half_len": half_len, "seed": seed})
    check_fits_context(model, int(prepend_bos) + 2 * half_len, "half_len")
    candidates = plain_token_ids(model)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(candidates), (n_sequences, half_len), generator=generator)
    half = candidates[picks]
    parts = [half, half]
    if prepend_bos:
        parts.insert(0, torch.full((n_sequences, 1), bos_id(model), dtype=torch.int64))
    tokens = as_tokens(torch.cat(parts, dim=1), model)
    tracker.log_metrics({"n_sequences": n_sequences, "seq_len": tokens.shape[1]})
    return tokens


# ---------------------------------------------------------------- prompts


def _check_prompt_params(params: dict[str, Any]) -> None:
    prompts = params.get("prompts")
    if not isinstance(prompts, Sequence) or isinstance(prompts, str) or not prompts:
        raise ConfigError("prompts", f"expected a non-empty list of strings, found {prompts!r}")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, str):
            raise ConfigError(f"prompts.{i}", f"expected a string, found {prompt!r}")


def _prompt_lengths(params: dict[str, Any], model: Any) -> list[int] | None:
    """Each prompt's length in tokens, when the model's tokenizer is within reach before the run."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return None
    bos = int(params.get("prepend_bos", True))
    return [bos + len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in params["prompts"]]


def _prompt_shape(params: dict[str, Any], inputs: Mapping[str, Any]) -> TokensShape:
    lengths = _prompt_lengths(params, inputs.get("model"))
    return TokensShape(len(params["prompts"]), max(lengths) if lengths else None)


def _check_prompt_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    model = inputs.get("model")
    for i, length in enumerate(_prompt_lengths(params, model) or []):
        if length > model.n_ctx:
            raise ConfigError(f"prompts.{i}", f"expected at most n_ctx={model.n_ctx} tokens, found {length}")


@stage("prompt_tokens", outputs=("tokens",), preflight=_check_prompt_params, shape=_prompt_shape,
       check_shapes=_check_prompt_shapes, metrics=("n_sequences", "seq_len", "pad_fraction"))
def prompt_tokens(
    model: HookedTransformer,
    prompts: list[str],
    prepend_bos: bool = True,
    tracker: Tracker = NULL_TRACKER,
) -> Int[Tensor, "batch pos"]:
    """Prompts tokenized as ``model.to_tokens`` does, right-padded with the pad token (EOS when none).

    A prompt longer than n_ctx is an error, not silently truncated. Padding is not
    marked: where pad is EOS, a downstream stage cannot tell the two apart.
    """
    import torch

    _check_prompt_params({"prompts": prompts})
    tokenizer = require_tokenizer(model, "prompts")
    # One at a time: each prompt's length is known (for the error below), and no
    # pad token is needed to tokenize.
    rows = [model.to_tokens(p, prepend_bos=prepend_bos, padding_side="right", move_to_device=False,
                            truncate=False)[0].cpu() for p in prompts]
    for i, row in enumerate(rows):
        if len(row) > model.cfg.n_ctx:
            raise ConfigError(f"prompts.{i}", f"expected at most n_ctx={model.cfg.n_ctx} tokens, found {len(row)}")
    pad = next((t for t in (tokenizer.pad_token_id, tokenizer.eos_token_id, bos_id(model)) if t is not None))
    tokens = as_tokens(torch.nn.utils.rnn.pad_sequence(rows, batch_first=True, padding_value=pad), model)
    tracker.log_metrics({"n_sequences": len(rows), "seq_len": tokens.shape[1],
                         "pad_fraction": 1 - sum(len(r) for r in rows) / tokens.numel()})
    return tokens


# ---------------------------------------------------------------- random tokens, a task's sequences


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
