"""The prompt-pair datasets the patching stages read: IOI prompts generated in code, pairs written in
YAML, and clean/corrupted induction probes (the ioi_prompts, prompt_pairs and repeated_pairs stages).

Each takes the model (its tokenizer, ``cfg.n_ctx`` and ``cfg.d_vocab``) and returns the pairs dict
that interp_pipeline/patching/prompt_pairs.py describes (clean and corrupted tokens, answer and
wrong tokens, END positions, loss targets, and for IOI the io/s1/s2 positions), all CPU tensors.
The ``check_*`` functions are the stages' pre-flight: what the settings' schema cannot say.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from interp_pipeline.config.records import check_string_records
from interp_pipeline.common.errors import ConfigError
from interp_pipeline.models.tokens import as_tokens, plain_token_ids, require_tokenizer
from interp_pipeline.patching.config import IOIPromptsConfig, PromptPairsConfig, RepeatedPairsConfig
from interp_pipeline.tasks.ioi_prompts import IOIPrompt, check_options, generate_ioi
from interp_pipeline.tracking.base import Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer

PAIR_FIELDS = ("clean", "corrupted", "answer", "wrong")


def _checked_pairs(model: HookedTransformer, pairs: dict[str, Tensor]) -> dict[str, Tensor]:
    # A tokenizer larger than the embedding would only fail later, deep in the model.
    for name in PAIR_FIELDS:
        as_tokens(pairs[name], model)
    return pairs


def _log(tracker: Tracker, pairs: dict[str, Tensor], dropped: int) -> None:
    lengths = pairs["length"]
    tracker.log_metrics({
        "pairs_kept": len(lengths),
        "pairs_dropped": dropped,
        "seq_len": pairs["clean"].shape[1],
        "pad_fraction": 1 - float(lengths.sum()) / pairs["clean"].numel(),
    })


# ---------------------------------------------------------------- IOI


def check_ioi(settings: IOIPromptsConfig) -> None:
    """``min_pairs`` at most ``n_prompts``; template indices, orders and names the generator knows."""
    if settings.min_pairs > settings.n_prompts:
        raise ConfigError("min_pairs", f"expected at most n_prompts={settings.n_prompts}, found {settings.min_pairs}")
    check_options(templates=settings.templates, orders=settings.orders, names=settings.names)


def _ioi_records(settings: IOIPromptsConfig) -> list[IOIPrompt]:
    return generate_ioi(settings.n_prompts, settings.seed, templates=settings.templates, orders=settings.orders,
                        corruption=settings.corruption, names=settings.names,
                        spaced_punctuation=settings.spaced_punctuation)


def check_ioi_inputs(settings: IOIPromptsConfig, inputs: Mapping[str, Any]) -> None:
    """Tokenize and align the prompts with the model's tokenizer before the model exists (``inputs``: the
    inputs' shapes; a trained toy model's tokenizer is built in code), so too few aligned pairs stop the
    run before the model trains."""
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    model = inputs.get("model")
    if model is None or model.tokenizer is None:
        return
    try:
        tokenize_pairs(model.tokenizer, _ioi_records(settings), prepend_bos=settings.prepend_bos,
                       min_pairs=settings.min_pairs, key="min_pairs", max_len=model.n_ctx,
                       loss_positions=settings.loss_positions)
    except ConfigError as error:
        if not error.key.startswith("min_pairs["):
            raise
        # A generated prompt the tokenizer cannot encode: what to change is the names or templates it came from.
        raise ConfigError("names" if settings.names else "templates", error.message) from None


def ioi_pairs(model: HookedTransformer, settings: IOIPromptsConfig, tracker: Tracker) -> dict[str, Tensor]:
    """``n_prompts`` IOI pairs from tasks/ioi_prompts.py's generator, tokenized and aligned; pairs the
    tokenizer does not align are dropped (fewer than ``min_pairs`` left is an error). Logs
    ``pairs_kept``, ``pairs_dropped``, ``seq_len`` and ``pad_fraction``."""
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    check_ioi(settings)
    tokenizer = require_tokenizer(model, "n_prompts")
    pairs, dropped = tokenize_pairs(tokenizer, _ioi_records(settings), prepend_bos=settings.prepend_bos,
                                    min_pairs=settings.min_pairs, key="min_pairs", max_len=model.cfg.n_ctx,
                                    loss_positions=settings.loss_positions)
    _log(tracker, pairs, dropped)
    return _checked_pairs(model, pairs)


# ---------------------------------------------------------------- pairs written in YAML


def check_written(settings: PromptPairsConfig) -> None:
    """Every pair a mapping of exactly clean, corrupted, answer and wrong, each a non-empty string."""
    check_string_records("pairs", settings.pairs, PAIR_FIELDS)


def check_written_inputs(settings: PromptPairsConfig, inputs: Mapping[str, Any]) -> None:
    """Every pair aligned under the model's tokenizer (``inputs``: the inputs' shapes), before the model is
    built or trained."""
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    model = inputs.get("model")
    if model is None or model.tokenizer is None:
        return
    tokenize_pairs(model.tokenizer, settings.pairs, prepend_bos=settings.prepend_bos, min_pairs=1, key="pairs",
                   max_len=model.n_ctx, loss_positions=settings.loss_positions)


def written_pairs(model: HookedTransformer, settings: PromptPairsConfig, tracker: Tracker) -> dict[str, Tensor]:
    """The pairs of ``settings.pairs``, tokenized; a pair that does not align is a ConfigError naming it
    (``pairs[3].answer: expected a single token, found 2 tokens [' Ma', 'ry']``)."""
    from interp_pipeline.patching.prompt_pairs import tokenize_pairs

    check_written(settings)
    tokenizer = require_tokenizer(model, "pairs")
    tokenized, dropped = tokenize_pairs(tokenizer, settings.pairs, prepend_bos=settings.prepend_bos, min_pairs=1,
                                        key="pairs", max_len=model.cfg.n_ctx, loss_positions=settings.loss_positions)
    _log(tracker, tokenized, dropped)
    return _checked_pairs(model, tokenized)


# ---------------------------------------------------------------- repeated-token pairs (induction)


def check_repeated_inputs(settings: RepeatedPairsConfig, inputs: Mapping[str, Any]) -> None:
    """``n_pairs`` at most the probe's sequences (``inputs``: the inputs' shapes)."""
    tokens = inputs.get("tokens")
    if tokens is not None and tokens.n_sequences is not None and settings.n_pairs > tokens.n_sequences:
        raise ConfigError("n_pairs", f"expected at most the probe's {tokens.n_sequences} sequences, "
                                     f"found {settings.n_pairs}")


def repeated_token_pairs(model: HookedTransformer, tokens: Int[Tensor, "batch pos"], settings: RepeatedPairsConfig,
                         tracker: Tracker) -> dict[str, Tensor]:
    """Clean [BOS] r r (the first ``n_pairs`` rows of a repeated_tokens probe), corrupted [BOS] r' r
    with a fresh first half r' drawn from the model's plain tokens.

    The second half is the same in both, and only the clean run can predict it from
    the first: the ``loss`` metric reads the second half's predictions (``loss_mask``).
    For ``logit_diff`` the answer is the last token, the wrong answer the token at the
    same place in r'. Logs ``n_pairs`` and ``seq_len``.
    """
    import torch

    n_pairs, seed = settings.n_pairs, settings.seed
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
