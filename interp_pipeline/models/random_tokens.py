"""Token datasets drawn at random from a model's vocabulary: uniform random ids (random_tokens), and
the induction probe [BOS] + r + r (repeated_tokens).

Each draws from a generator seeded with ``settings.seed``, never the global RNG. BOS is the
tokenizer's (interp_pipeline.models.tokens); a model built from a config has no tokenizer,
and there BOS is token 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp_pipeline.models.config import RandomTokensConfig, RepeatedTokensConfig
from interp_pipeline.models.tokens import as_tokens, bos_id, check_fits_context, plain_token_ids
from interp_pipeline.tracking.base import NULL_TRACKER, Tracker

if TYPE_CHECKING:
    from jaxtyping import Int
    from torch import Tensor
    from transformer_lens import HookedTransformer


def repeated_length(settings: RepeatedTokensConfig) -> int:
    return int(settings.prepend_bos) + 2 * settings.half_len


def repeated_tokens(model: HookedTransformer, settings: RepeatedTokensConfig,
                    tracker: Tracker = NULL_TRACKER) -> Int[Tensor, "batch pos"]:
    """[BOS] + r + r, r uniform over the vocabulary's plain tokens (without a tokenizer: all but BOS = 0).

    The draws do not depend on ``prepend_bos``: without it the rows are the same, minus BOS.
    """
    import torch

    check_fits_context(model, repeated_length(settings), "half_len")
    n = settings.n_sequences
    candidates = plain_token_ids(model)
    generator = torch.Generator().manual_seed(settings.seed)
    picks = torch.randint(0, len(candidates), (n, settings.half_len), generator=generator)
    half = candidates[picks]
    parts = [half, half]
    if settings.prepend_bos:
        parts.insert(0, torch.full((n, 1), bos_id(model), dtype=torch.int64))
    tokens = as_tokens(torch.cat(parts, dim=1), model)
    tracker.log_metrics({"n_sequences": n, "seq_len": tokens.shape[1]})
    return tokens


def random_tokens(model: Any, settings: RandomTokensConfig) -> Int[Tensor, "batch pos"]:
    """Uniform random ids below ``settings.d_vocab`` (None: the model's vocabulary size)."""
    import torch

    generator = torch.Generator().manual_seed(settings.seed)
    high = settings.d_vocab if settings.d_vocab is not None else model.cfg.d_vocab
    return torch.randint(0, high, (settings.n_sequences, settings.seq_len), generator=generator)
