"""Token datasets built for a model: induction probes and prompts listed in YAML.

Every stage takes the model first (for its tokenizer, ``cfg.d_vocab`` and
``cfg.n_ctx``) and returns ``tokens``: an int64 CPU tensor of shape [batch, pos].
Text files and Hugging Face datasets are in text_datasets.py.

BOS: the tokenizer's ``bos_token_id`` (TransformerLens sets it to EOS when a
tokenizer has none). A model built from a config has no tokenizer; there BOS is
token 0, and only :func:`repeated_tokens` works, drawing its tokens from 1..d_vocab-1
so that BOS never appears after position 0.
"""

from __future__ import annotations

import hashlib
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


# ---------------------------------------------------------------- repeated-token pairs (patching)


def _check_repeated_pairs_params(params: dict[str, Any]) -> None:
    require_int(params, "n_pairs")
    require_int(params, "seed", minimum=0)


def _check_repeated_pairs_shapes(params: dict[str, Any], inputs: Mapping[str, Any]) -> None:
    tokens = inputs.get("tokens")
    if tokens is not None and tokens.n_sequences is not None and params["n_pairs"] > tokens.n_sequences:
        raise ConfigError("n_pairs", f"expected at most the probe's {tokens.n_sequences} sequences, "
                                     f"found {params['n_pairs']}")


@stage("repeated_pairs", outputs=("pairs",), preflight=_check_repeated_pairs_params,
       check_shapes=_check_repeated_pairs_shapes, metrics=("n_pairs", "seq_len"))
def repeated_pairs(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    n_pairs: int,
    seed: int,
    tracker: Tracker = NULL_TRACKER,
) -> dict[str, Tensor]:
    """Prompt pairs for patching induction: clean [BOS] r r (the first ``n_pairs`` rows of a
    repeated_tokens probe), corrupted [BOS] r' r with a fresh first half r'.

    The second half is the same in both, and only the clean run can predict it from
    the first: the ``loss`` metric reads the second half's predictions (``loss_mask``).
    For ``logit_diff`` the answer is the last token, the wrong answer the token at the
    same place in r'. The pairs dict is the one patching/prompt_pairs.py describes.
    """
    import torch

    _check_repeated_pairs_params({"n_pairs": n_pairs, "seed": seed})
    if tokens.shape[1] % 2 == 0:
        raise ConfigError("tokens", "expected a repeated_tokens probe with BOS ([BOS] r r, odd length), "
                                    f"found length {tokens.shape[1]}")
    if n_pairs > tokens.shape[0]:
        raise ConfigError("n_pairs", f"expected at most the probe's {tokens.shape[0]} sequences, found {n_pairs}")
    clean = tokens[:n_pairs].clone()
    n, width = clean.shape
    half = (width - 1) // 2
    candidates = plain_token_ids(model)
    # A stream of its own: seeded with ``seed`` alone it would redraw the probe's own first halves.
    stream = int.from_bytes(hashlib.sha256(f"repeated_pairs:{seed}".encode()).digest()[:8], "little")
    generator = torch.Generator().manual_seed(stream)
    corrupted = clean.clone()
    corrupted[:, 1:1 + half] = candidates[torch.randint(0, len(candidates), (n, half), generator=generator)]
    targets = torch.cat([clean[:, 1:], clean[:, -1:]], dim=1)
    loss_mask = torch.zeros(n, width, dtype=torch.bool)
    loss_mask[:, half + 1:width - 1] = True  # predictions of the second half's tokens 2.. (the first is not predictable)
    end = torch.full((n,), width - 2)
    tracker.log_metrics({"n_pairs": n, "seq_len": width})
    return {
        "clean": clean, "corrupted": corrupted, "answer": clean[:, -1].clone(), "wrong": corrupted[:, half].clone(),
        "end": end, "length": torch.full((n,), width), "targets": targets, "loss_mask": loss_mask,
    }
